//! Throttles for the account routes, per address and per client IP, bounded
//! in memory.
//!
//! - [`SignInThrottle`] slows repeated *failed* sign-ins: each key may fail
//!   `FREE_FAILURES` times in a window; after that every further attempt is
//!   refused until a lock-out that doubles with each failure (capped) has
//!   passed. A successful sign-in clears the account's count.
//! - [`MailThrottle`] limits the routes that send mail to an address the
//!   caller names (sign-up, verification resend, password reset), so nobody
//!   can use Staffroom to mail-bomb an inbox or spend the mail budget: a
//!   fixed number per address (or account) and per client IP in an hour.
//!
//! Both keep at most [`MAX_KEYS`] keys: expired ones go first, then the
//! oldest, so spraying new addresses costs memory only up to the cap. IPv6
//! clients are keyed by their /64, which one host usually holds whole.

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
/// The most keys either throttle holds (a key and its entry are well under
/// 200 bytes, so 100,000 keys stay under 20 MB).
pub const MAX_KEYS: usize = 100_000;

/// Makes room for one more key in `map`: drops the expired entries and, if
/// it is still full, the oldest tenth, which an attacker spraying keys can
/// only push out by spending as many requests.
fn make_room<E>(map: &mut HashMap<String, E>, now: Instant, window: Duration, started: impl Fn(&E) -> Instant) {
    if map.len() < MAX_KEYS {
        return;
    }
    map.retain(|_, e| now.duration_since(started(e)) < window);
    if map.len() >= MAX_KEYS {
        let mut starts: Vec<Instant> = map.values().map(&started).collect();
        let tenth = MAX_KEYS / 10;
        starts.select_nth_unstable(tenth);
        let cutoff = starts[tenth];
        map.retain(|_, e| started(e) > cutoff);
    }
}

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
        for (key, free) in [(account_key(email), FREE_FAILURES), (ip_key(ip), FREE_FAILURES * IP_FACTOR)] {
            if !map.contains_key(&key) {
                make_room(&mut map, now, WINDOW.max(MAX_LOCK), |e: &Entry| e.first);
            }
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
    match ip {
        IpAddr::V4(v4) => format!("i:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("i:{v4}"),
            None => {
                let s = v6.segments();
                format!("i:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// What a [`MailThrottle`] limits: each has its own counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailAction {
    SignUp,
    ResendVerification,
    PasswordReset,
}

impl MailAction {
    fn prefix(self) -> &'static str {
        match self {
            MailAction::SignUp => "signup",
            MailAction::ResendVerification => "resend",
            MailAction::PasswordReset => "reset",
        }
    }
}

/// How many of each [`MailAction`] one address (or account) may ask for in
/// an hour. Three is enough for a lost mail and a retry; more is abuse.
pub const PER_ADDRESS_PER_HOUR: u32 = 3;
const HOUR: Duration = Duration::from_secs(60 * 60);

/// Fixed one-hour windows of requests per key (see the module comment).
pub struct MailThrottle {
    per_ip: u32,
    windows: Mutex<HashMap<String, Window>>,
}

struct Window {
    start: Instant,
    count: u32,
}

impl MailThrottle {
    /// `per_ip`: how many of each action one client IP may ask for in an
    /// hour (`STAFFROOM_THROTTLE_IP_PER_HOUR`): a school behind one address
    /// signing its staff up together needs room.
    pub fn new(per_ip: u32) -> MailThrottle {
        MailThrottle { per_ip, windows: Mutex::new(HashMap::new()) }
    }

    /// Counts one `action` for the address or account `who` and for `ip`,
    /// or, if either is already at its limit, counts nothing and says how
    /// long until it may be asked again.
    pub fn hit(&self, action: MailAction, who: &str, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let keys = [
            (format!("{}:{}", action.prefix(), account_key(who)), PER_ADDRESS_PER_HOUR),
            (format!("{}:{}", action.prefix(), ip_key(ip)), self.per_ip),
        ];
        let mut map = self.windows.lock().unwrap();
        let wait = keys
            .iter()
            .filter_map(|(key, max)| {
                let w = map.get(key)?;
                let left = HOUR.checked_sub(now.duration_since(w.start))?;
                (w.count >= *max).then_some(left)
            })
            .max();
        if let Some(wait) = wait {
            return Err(wait.max(Duration::from_secs(1)));
        }
        for (key, _) in keys {
            if !map.contains_key(&key) {
                make_room(&mut map, now, HOUR, |w: &Window| w.start);
            }
            let w = map.entry(key).or_insert(Window { start: now, count: 0 });
            if now.duration_since(w.start) >= HOUR {
                *w = Window { start: now, count: 0 };
            }
            w.count += 1;
        }
        Ok(())
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.windows.lock().unwrap().len()
    }
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

    #[test]
    fn an_address_gets_three_mails_an_hour_and_an_ip_its_own_allowance_per_action() {
        let t = MailThrottle::new(5);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..PER_ADDRESS_PER_HOUR {
            assert!(t.hit(MailAction::PasswordReset, "Ann@x.org", ip).is_ok());
        }
        let wait = t.hit(MailAction::PasswordReset, "ann@x.org", ip).unwrap_err();
        assert!(wait > Duration::from_secs(59 * 60) && wait <= HOUR, "{wait:?}");
        // Another action, another address: their own counts.
        assert!(t.hit(MailAction::SignUp, "ann@x.org", ip).is_ok());
        assert!(t.hit(MailAction::PasswordReset, "bob@x.org", ip).is_ok());
        // The IP has now asked for five resets (three for Ann, one refused
        // and not counted, one for Bob): one more is allowed, then none.
        assert!(t.hit(MailAction::PasswordReset, "cy@x.org", ip).is_ok());
        assert!(t.hit(MailAction::PasswordReset, "di@x.org", ip).is_err());
        assert!(t.hit(MailAction::PasswordReset, "di@x.org", "192.0.2.2".parse().unwrap()).is_ok());
    }

    #[test]
    fn one_ipv6_host_is_one_client_whatever_address_of_its_64_it_uses() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(other));
        assert_eq!(ip_key("::ffff:192.0.2.1".parse().unwrap()), ip_key("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn spraying_new_addresses_keeps_memory_bounded() {
        let t = MailThrottle::new(u32::MAX);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..(MAX_KEYS + 5_000) {
            let _ = t.hit(MailAction::SignUp, &format!("{i}@x.org"), ip);
        }
        assert!(t.keys() <= MAX_KEYS, "{} keys", t.keys());
        // The IP's own window survives the pruning (it is not the oldest
        // tenth once it has been hit again) or is rebuilt: either way the
        // throttle still answers.
        assert!(t.hit(MailAction::SignUp, "last@x.org", ip).is_ok());
    }
}
