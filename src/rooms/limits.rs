//! What one connection may send: a token bucket for media negotiation
//! (offers, answers, candidates) and a tighter one for everything people
//! do (chat, questions, upvotes, hands, polls, moderation), so one client
//! cannot flood the room or queue writes ahead of everyone else's. Over the
//! allowance a message is dropped and the client told (at most once a
//! second); a client that keeps on is disconnected (close code 4029).

use std::time::{Duration, Instant};

use super::protocol::ClientMessage;

/// Refills `per_second`, holds at most `burst`.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    burst: f64,
    per_second: f64,
    last: Instant,
}

impl Bucket {
    fn new(burst: f64, per_second: f64, now: Instant) -> Bucket {
        Bucket { tokens: burst, burst, per_second, last: now }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Negotiation: a join's offer, answer and a few dozen candidates, and a
/// renegotiation for every stage or breakout change.
const NEGOTIATION_BURST: f64 = 200.0;
const NEGOTIATION_PER_SECOND: f64 = 50.0;
/// People's actions: a quick burst of clicks, then about two a second.
const ACTIONS_BURST: f64 = 30.0;
const ACTIONS_PER_SECOND: f64 = 2.0;
/// Dropped messages within [`STRIKE_WINDOW`] that end the connection.
const STRIKES: u32 = 200;
const STRIKE_WINDOW: Duration = Duration::from_secs(10);

/// What to do with one incoming message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Drop it; `tell` is true for the first drop in a second.
    Drop {
        tell: bool,
    },
    /// Drop it and close the connection.
    Disconnect,
}

#[derive(Debug)]
pub struct Allowance {
    negotiation: Bucket,
    actions: Bucket,
    strikes: u32,
    window_start: Instant,
    last_told: Option<Instant>,
}

impl Allowance {
    pub fn new(now: Instant) -> Allowance {
        Allowance {
            negotiation: Bucket::new(NEGOTIATION_BURST, NEGOTIATION_PER_SECOND, now),
            actions: Bucket::new(ACTIONS_BURST, ACTIONS_PER_SECOND, now),
            strikes: 0,
            window_start: now,
            last_told: None,
        }
    }

    pub fn check(&mut self, message: &ClientMessage, now: Instant) -> Verdict {
        let bucket = match message {
            // Leaving is always allowed.
            ClientMessage::Leave | ClientMessage::Join { .. } => return Verdict::Pass,
            ClientMessage::Action(_) => &mut self.actions,
            ClientMessage::Offer { .. } | ClientMessage::Answer { .. } | ClientMessage::Candidate { .. } => {
                &mut self.negotiation
            }
        };
        if bucket.take(now) {
            return Verdict::Pass;
        }
        self.strike(now)
    }

    /// A message that could not even be parsed still counts against the client.
    pub fn check_unparsed(&mut self, now: Instant) -> Verdict {
        if self.negotiation.take(now) {
            Verdict::Pass
        } else {
            self.strike(now)
        }
    }

    fn strike(&mut self, now: Instant) -> Verdict {
        if now.saturating_duration_since(self.window_start) > STRIKE_WINDOW {
            self.window_start = now;
            self.strikes = 0;
        }
        self.strikes += 1;
        if self.strikes >= STRIKES {
            return Verdict::Disconnect;
        }
        let tell = self.last_told.is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
        if tell {
            self.last_told = Some(now);
        }
        Verdict::Drop { tell }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::protocol::Action;

    fn chat() -> ClientMessage {
        ClientMessage::Action(Action::Chat { body: "hi".into() })
    }

    #[test]
    fn a_burst_of_clicks_passes_then_the_client_is_slowed_and_told_once_a_second() {
        let start = Instant::now();
        let mut a = Allowance::new(start);
        for _ in 0..30 {
            assert_eq!(a.check(&chat(), start), Verdict::Pass);
        }
        assert_eq!(a.check(&chat(), start), Verdict::Drop { tell: true });
        assert_eq!(a.check(&chat(), start), Verdict::Drop { tell: false });
        // Half a second later one more action has been earned.
        let later = start + Duration::from_millis(500);
        assert_eq!(a.check(&chat(), later), Verdict::Pass);
        // A second after the first warning, another earned action, then a fresh warning.
        let second = start + Duration::from_millis(1100);
        assert_eq!(a.check(&chat(), second), Verdict::Pass);
        assert_eq!(a.check(&chat(), second), Verdict::Drop { tell: true });
    }

    #[test]
    fn negotiation_has_its_own_allowance_and_leaving_is_never_refused() {
        let start = Instant::now();
        let mut a = Allowance::new(start);
        for _ in 0..40 {
            a.check(&chat(), start);
        }
        let candidate = ClientMessage::Candidate { candidate: None };
        assert_eq!(a.check(&candidate, start), Verdict::Pass, "a flood of chat does not block media negotiation");
        assert_eq!(a.check(&ClientMessage::Leave, start), Verdict::Pass);
    }

    #[test]
    fn a_client_that_keeps_flooding_is_disconnected() {
        let start = Instant::now();
        let mut a = Allowance::new(start);
        let verdicts: Vec<Verdict> = (0..300).map(|i| a.check(&chat(), start + Duration::from_millis(i))).collect();
        assert!(verdicts.contains(&Verdict::Disconnect));
        let first = verdicts.iter().position(|v| *v == Verdict::Disconnect).unwrap();
        assert!((200..=240).contains(&first), "disconnected after about 200 drops: {first}");
    }
}
