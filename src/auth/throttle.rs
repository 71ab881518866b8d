//! Slows repeated failed sign-ins, per account and per IP address.
//!
//! Each key may fail `FREE_FAILURES` times in a window; after that every further
//! attempt is refused until a lock-out that doubles with each failure (capped)
//! has passed. A successful sign-in clears the account's count.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

const FREE_FAILURES: u32 = 5;
const WINDOW: Duration = Duration::from_secs(15 * 60);
const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// Addresses share NAT (a whole school behind one IP), so they get more room.
const IP_FACTOR: u32 = 4;

#[derive(Default)]
pub struct SignInThrottle {
    failures: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    count: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

impl SignInThrottle {
    /// How long the caller must wait before trying again, if at all.
    pub fn wait(&self, email: &str, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let map = self.failures.lock().unwrap();
        [account_key(email), ip_key(ip)]
            .iter()
            .filter_map(|k| map.get(k)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    pub fn failed(&self, email: &str, ip: IpAddr) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap();
        if map.len() > 100_000 {
            map.retain(|_, e| now - e.first < WINDOW);
        }
        for (key, free) in [(account_key(email), FREE_FAILURES), (ip_key(ip), FREE_FAILURES * IP_FACTOR)] {
            let e = map.entry(key).or_insert(Entry { count: 0, first: now, locked_until: None });
            if now - e.first > WINDOW {
                *e = Entry { count: 0, first: now, locked_until: None };
            }
            e.count += 1;
            if e.count >= free {
                let doublings = (e.count - free).min(10);
                let lock = (Duration::from_secs(1) * 2u32.pow(doublings)).min(MAX_LOCK);
                e.locked_until = Some(now + lock);
            }
        }
    }

    pub fn succeeded(&self, email: &str) {
        self.failures.lock().unwrap().remove(&account_key(email));
    }
}

fn account_key(email: &str) -> String {
    format!("a:{}", email.trim().to_lowercase())
}

fn ip_key(ip: IpAddr) -> String {
    format!("i:{ip}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_the_account_but_not_another() {
        let t = SignInThrottle::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..4 {
            t.failed("a@x.org", ip);
            assert!(t.wait("a@x.org", ip).is_none());
        }
        t.failed("a@x.org", ip);
        assert!(t.wait("a@x.org", ip).is_some());
        assert!(t.wait("b@x.org", ip).is_none());
        t.succeeded("a@x.org");
        assert!(t.wait("a@x.org", ip).is_none());
    }
}
