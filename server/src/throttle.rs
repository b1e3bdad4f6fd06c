//! Slows down and then locks repeated failed logins, per user name and per
//! client address.
//!
//! Kept in memory: a restart clears it, which an attacker cannot trigger.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How failures are counted and punished.
#[derive(Clone, Debug)]
pub struct LoginPolicy {
    /// Failures counted within this window.
    pub window: Duration,
    /// Failures of one user name after which it is locked.
    pub max_user_failures: u32,
    /// Failures from one address after which it is locked.
    pub max_address_failures: u32,
    /// How long a lock lasts.
    pub lock_for: Duration,
    /// Added delay per failure beyond the first, capped at `max_delay`.
    pub delay_step: Duration,
    pub max_delay: Duration,
}

impl Default for LoginPolicy {
    fn default() -> Self {
        LoginPolicy {
            window: Duration::from_secs(15 * 60),
            max_user_failures: 5,
            max_address_failures: 20,
            lock_for: Duration::from_secs(15 * 60),
            delay_step: Duration::from_millis(250),
            max_delay: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Default)]
struct Record {
    failures: u32,
    first_failure: Option<Instant>,
    locked_until: Option<Instant>,
}

/// What a failure led to.
#[derive(Debug, PartialEq, Eq)]
pub struct FailureOutcome {
    /// Failures of this user name within the window (this one included).
    pub user_failures: u32,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Set when this failure locked the user name or the address.
    pub locked: Option<LockedKey>,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum LockedKey {
    User,
    Address,
}

#[derive(Debug, Default)]
pub struct LoginThrottle {
    policy: LoginPolicy,
    users: Mutex<HashMap<String, Record>>,
    addresses: Mutex<HashMap<String, Record>>,
}

impl LoginThrottle {
    pub fn new(policy: LoginPolicy) -> Self {
        LoginThrottle { policy, ..Default::default() }
    }

    pub fn policy(&self) -> &LoginPolicy {
        &self.policy
    }

    /// The remaining lock time, if the user name or the address is locked.
    pub fn locked(&self, user: &str, address: Option<&str>, now: Instant) -> Option<Duration> {
        let u = lock_left(&self.users, user, now);
        let a = address.and_then(|a| lock_left(&self.addresses, a, now));
        u.into_iter().chain(a).max()
    }

    pub fn record_failure(&self, user: &str, address: Option<&str>, now: Instant) -> FailureOutcome {
        let p = &self.policy;
        let (user_failures, user_locked) = bump(&self.users, user, now, p, p.max_user_failures);
        let address_locked =
            address.map(|a| bump(&self.addresses, a, now, p, p.max_address_failures).1).unwrap_or(false);
        let delay = (p.delay_step * user_failures.saturating_sub(1)).min(p.max_delay);
        let locked = if user_locked {
            Some(LockedKey::User)
        } else if address_locked {
            Some(LockedKey::Address)
        } else {
            None
        };
        FailureOutcome { user_failures, delay, locked }
    }

    /// A successful login clears the user name's failures.
    pub fn record_success(&self, user: &str) {
        self.users.lock().unwrap_or_else(|e| e.into_inner()).remove(user);
    }
}

fn lock_left(map: &Mutex<HashMap<String, Record>>, key: &str, now: Instant) -> Option<Duration> {
    let map = map.lock().unwrap_or_else(|e| e.into_inner());
    map.get(key).and_then(|r| r.locked_until).filter(|&t| t > now).map(|t| t - now)
}

/// Counts one failure; returns the count and whether this failure set a lock.
fn bump(map: &Mutex<HashMap<String, Record>>, key: &str, now: Instant, p: &LoginPolicy, max: u32) -> (u32, bool) {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    // Bounded memory: forget stale records when the map grows large.
    if map.len() > 10_000 {
        map.retain(|_, r| {
            r.first_failure.is_some_and(|t| now.duration_since(t) < p.window) || r.locked_until.is_some_and(|t| t > now)
        });
    }
    let r = map.entry(key.to_string()).or_default();
    if r.first_failure.is_none_or(|t| now.duration_since(t) >= p.window) {
        r.failures = 0;
        r.first_failure = Some(now);
    }
    r.failures += 1;
    let newly_locked = r.failures >= max && r.locked_until.is_none_or(|t| t <= now);
    if newly_locked {
        r.locked_until = Some(now + p.lock_for);
        r.failures = 0;
        r.first_failure = None;
    }
    (if newly_locked { max } else { r.failures }, newly_locked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fifth_failure_locks_the_user() {
        let t = LoginThrottle::new(LoginPolicy::default());
        let now = Instant::now();
        for n in 1..5 {
            let o = t.record_failure("alice", Some("10.0.0.1"), now);
            assert_eq!(o.user_failures, n);
            assert_eq!(o.locked, None);
        }
        assert!(t.locked("alice", None, now).is_none());
        let o = t.record_failure("alice", Some("10.0.0.1"), now);
        assert_eq!(o.locked, Some(LockedKey::User));
        let left = t.locked("alice", None, now).unwrap();
        assert_eq!(left, Duration::from_secs(15 * 60));
        assert!(t.locked("bob", None, now).is_none(), "other users are not affected");
        assert!(t.locked("alice", None, now + Duration::from_secs(15 * 60 + 1)).is_none(), "locks expire");
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let t = LoginThrottle::new(LoginPolicy { max_user_failures: 100, ..Default::default() });
        let now = Instant::now();
        assert_eq!(t.record_failure("a", None, now).delay, Duration::ZERO);
        assert_eq!(t.record_failure("a", None, now).delay, Duration::from_millis(250));
        for _ in 0..20 {
            t.record_failure("a", None, now);
        }
        assert_eq!(t.record_failure("a", None, now).delay, Duration::from_secs(2));
    }

    #[test]
    fn success_clears_and_old_failures_expire() {
        let t = LoginThrottle::new(LoginPolicy::default());
        let now = Instant::now();
        for _ in 0..4 {
            t.record_failure("a", None, now);
        }
        t.record_success("a");
        assert_eq!(t.record_failure("a", None, now).user_failures, 1);
        let later = now + Duration::from_secs(16 * 60);
        assert_eq!(t.record_failure("a", None, later).user_failures, 1);
    }

    #[test]
    fn many_users_from_one_address_lock_the_address() {
        let t = LoginThrottle::new(LoginPolicy::default());
        let now = Instant::now();
        let mut locked = None;
        for i in 0..20 {
            locked = t.record_failure(&format!("user{i}"), Some("10.0.0.9"), now).locked;
        }
        assert_eq!(locked, Some(LockedKey::Address));
        assert!(t.locked("someone-else", Some("10.0.0.9"), now).is_some());
        assert!(t.locked("someone-else", Some("10.0.0.8"), now).is_none());
    }
}
