//! Login throttling per source (the client's address) and per user name,
//! built so that an attacker cannot use it to keep the owner out.
//!
//! * **Per source**, checked before any password is hashed: one login at a
//!   time; after each failure a wait that doubles (none after the first,
//!   then `delay_step`, twice that, … up to `max_delay`) during which the
//!   source's attempts are refused at once; after `max_source_failures`
//!   failures within `window`, a lock of `lock_for`.
//! * **Per user name**: after `max_user_failures` failures within `window`
//!   (from any sources) the name is locked for `lock_for` — against sources
//!   that have failed. A *clean* source (fewer than
//!   `clean_source_failures` failures within `window`, and not locked) still
//!   gets its password checked, so the owner logs in with the right password
//!   from their own machine while the machines guessing are held off.
//!   A success clears the name's failures and lock.
//!
//! IPv6 sources are counted per /64, the block one subscriber usually
//! holds. Records live in memory (a restart forgets them, which an
//! attacker cannot cause), at most `max_tracked` per map: stale records go
//! first, then the least recently seen.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How failures are counted and answered.
#[derive(Clone, Debug)]
pub struct LoginPolicy {
    /// Failures older than this are forgotten.
    pub window: Duration,
    /// Failures of one user name after which it is locked against unclean sources.
    pub max_user_failures: u32,
    /// Failures from one source after which it is locked.
    pub max_source_failures: u32,
    /// A source with fewer failures than this is clean.
    pub clean_source_failures: u32,
    /// How long a lock lasts.
    pub lock_for: Duration,
    /// The wait after a source's second failure; it doubles with each further one.
    pub delay_step: Duration,
    pub max_delay: Duration,
    /// Records kept per map (sources, user names).
    pub max_tracked: usize,
}

impl Default for LoginPolicy {
    fn default() -> Self {
        LoginPolicy {
            window: Duration::from_secs(15 * 60),
            max_user_failures: 5,
            max_source_failures: 20,
            clean_source_failures: 3,
            lock_for: Duration::from_secs(15 * 60),
            delay_step: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_tracked: 10_000,
        }
    }
}

/// Why an attempt was refused before its password was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The source failed too often; locked for this long.
    SourceLocked(Duration),
    /// The source must wait this long after its last failure.
    Wait(Duration),
    /// Another login from the source is being checked.
    InFlight,
    /// The user name is locked for this long, and the source is not clean.
    UserLocked(Duration),
}

impl Refusal {
    /// A short word for the audit log.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::SourceLocked(_) => "address locked",
            Refusal::Wait(_) => "waiting after failures",
            Refusal::InFlight => "another login in progress",
            Refusal::UserLocked(_) => "user name locked",
        }
    }
}

/// What a failure led to.
#[derive(Debug, PartialEq, Eq)]
pub struct FailureOutcome {
    /// Failures of this user name within the window (this one included).
    pub user_failures: u32,
    /// Failures of this source within the window (this one included).
    pub source_failures: u32,
    /// How long the source must wait before its next attempt.
    pub wait: Duration,
    /// This failure locked the user name.
    pub user_locked: bool,
    /// This failure locked the source.
    pub source_locked: bool,
}

#[derive(Debug, Clone)]
struct Record {
    failures: u32,
    first_failure: Option<Instant>,
    last_seen: Instant,
    locked_until: Option<Instant>,
    next_attempt: Option<Instant>,
    in_flight: bool,
}

impl Record {
    fn new(now: Instant) -> Self {
        Record {
            failures: 0,
            first_failure: None,
            last_seen: now,
            locked_until: None,
            next_attempt: None,
            in_flight: false,
        }
    }

    fn locked_for(&self, now: Instant) -> Option<Duration> {
        self.locked_until.filter(|&t| t > now).map(|t| t - now)
    }

    /// Forgets failures older than the window.
    fn expire(&mut self, now: Instant, window: Duration) {
        if self.first_failure.is_some_and(|t| now.duration_since(t) >= window) {
            self.failures = 0;
            self.first_failure = None;
        }
    }

    fn fail(&mut self, now: Instant, window: Duration) -> u32 {
        self.expire(now, window);
        self.first_failure.get_or_insert(now);
        self.failures += 1;
        self.last_seen = now;
        self.failures
    }

    fn stale(&self, now: Instant, window: Duration) -> bool {
        !self.in_flight
            && self.locked_for(now).is_none()
            && self.next_attempt.is_none_or(|t| t <= now)
            && self.first_failure.is_none_or(|t| now.duration_since(t) >= window)
    }
}

/// An admitted login: its password may be checked. Dropping it without
/// [`LoginThrottle::failed`] or [`LoginThrottle::succeeded`] just ends it.
#[derive(Debug)]
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    source: String,
    user: String,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if let Some(r) = lock(&self.throttle.sources).get_mut(&self.source) {
            r.in_flight = false;
        }
    }
}

#[derive(Debug, Default)]
pub struct LoginThrottle {
    policy: LoginPolicy,
    users: Mutex<HashMap<String, Record>>,
    sources: Mutex<HashMap<String, Record>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The key a client address is counted under: the address, or its /64 for IPv6.
pub fn source_key(address: Option<&str>) -> String {
    match address.map(|a| a.parse::<IpAddr>()) {
        Some(Ok(IpAddr::V6(v6))) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(Ok(IpAddr::V6(v6))) => v6.to_ipv4_mapped().map(|v4| v4.to_string()).unwrap_or_default(),
        Some(Ok(ip)) => ip.to_string(),
        Some(Err(_)) => address.unwrap_or_default().chars().take(64).collect(),
        None => "unknown".into(),
    }
}

/// The record of `key`, made room for if the map is full.
fn entry<'m>(map: &'m mut HashMap<String, Record>, key: &str, now: Instant, p: &LoginPolicy) -> &'m mut Record {
    if !map.contains_key(key) && map.len() >= p.max_tracked {
        map.retain(|_, r| !r.stale(now, p.window));
        if map.len() >= p.max_tracked {
            let oldest =
                map.iter().filter(|(_, r)| !r.in_flight).min_by_key(|(_, r)| r.last_seen).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
    }
    map.entry(key.to_string()).or_insert_with(|| Record::new(now))
}

impl LoginThrottle {
    pub fn new(policy: LoginPolicy) -> Self {
        LoginThrottle { policy, ..Default::default() }
    }

    pub fn policy(&self) -> &LoginPolicy {
        &self.policy
    }

    /// Admits a login of `user` from `address`, or says why not. Runs before
    /// any password is hashed.
    pub fn admit(&self, user: &str, address: Option<&str>, now: Instant) -> Result<Attempt<'_>, Refusal> {
        let p = &self.policy;
        let key = source_key(address);
        let mut sources = lock(&self.sources);
        let source = entry(&mut sources, &key, now, p);
        source.expire(now, p.window);
        source.last_seen = now;
        if let Some(left) = source.locked_for(now) {
            return Err(Refusal::SourceLocked(left));
        }
        if source.in_flight {
            return Err(Refusal::InFlight);
        }
        if let Some(left) = source.next_attempt.filter(|&t| t > now).map(|t| t - now) {
            return Err(Refusal::Wait(left));
        }
        let clean = source.failures < p.clean_source_failures;
        if !clean {
            let users = lock(&self.users);
            if let Some(left) = users.get(user).and_then(|u| u.locked_for(now)) {
                return Err(Refusal::UserLocked(left));
            }
        }
        source.in_flight = true;
        Ok(Attempt { throttle: self, source: key, user: user.to_string() })
    }

    /// Counts a wrong password (or unknown user name).
    pub fn failed(&self, attempt: Attempt<'_>, now: Instant) -> FailureOutcome {
        let p = &self.policy;
        let (source_failures, wait, source_locked) = {
            let mut sources = lock(&self.sources);
            let r = entry(&mut sources, &attempt.source, now, p);
            let n = r.fail(now, p.window);
            let wait = match n {
                0 | 1 => Duration::ZERO,
                n => p.delay_step.saturating_mul(1u32 << (n - 2).min(20)).min(p.max_delay),
            };
            r.next_attempt = Some(now + wait);
            let locked = n >= p.max_source_failures && r.locked_for(now).is_none();
            if locked {
                r.locked_until = Some(now + p.lock_for);
            }
            (n, wait, locked)
        };
        let (user_failures, user_locked) = {
            let mut users = lock(&self.users);
            let r = entry(&mut users, &attempt.user, now, p);
            let n = r.fail(now, p.window);
            let locked = n >= p.max_user_failures && r.locked_for(now).is_none();
            if locked {
                r.locked_until = Some(now + p.lock_for);
            }
            (n, locked)
        };
        FailureOutcome { user_failures, source_failures, wait, user_locked, source_locked }
    }

    /// The right password: the user name's failures and lock, and the
    /// source's failures, are cleared.
    pub fn succeeded(&self, attempt: Attempt<'_>) {
        lock(&self.users).remove(&attempt.user);
        if let Some(r) = lock(&self.sources).get_mut(&attempt.source) {
            r.failures = 0;
            r.first_failure = None;
            r.next_attempt = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LoginPolicy {
        LoginPolicy { delay_step: Duration::from_secs(1), ..LoginPolicy::default() }
    }

    /// Fails `n` logins of `user` from `address`, each once its wait is over.
    fn fail(t: &LoginThrottle, user: &str, address: &str, n: u32, mut now: Instant) -> (FailureOutcome, Instant) {
        let mut last = None;
        for _ in 0..n {
            let a = t.admit(user, Some(address), now).expect("admitted");
            let o = t.failed(a, now);
            now += o.wait;
            last = Some(o);
        }
        (last.unwrap(), now)
    }

    #[test]
    fn a_source_waits_longer_after_each_failure_and_is_refused_meanwhile() {
        let t = LoginThrottle::new(LoginPolicy { max_user_failures: 100, ..policy() });
        let now = Instant::now();
        let waits: Vec<Duration> = (0..8)
            .scan(now, |at, _| {
                let a = t.admit("alice", Some("10.0.0.1"), *at).unwrap();
                let o = t.failed(a, *at);
                *at += o.wait;
                Some(o.wait)
            })
            .collect();
        let secs: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [0, 1, 2, 4, 8, 16, 32, 60]);
        let after = now + Duration::from_secs(63 + 30);
        assert!(matches!(t.admit("alice", Some("10.0.0.1"), after), Err(Refusal::Wait(_))));
        assert!(t.admit("alice", Some("10.0.0.2"), after).is_ok(), "other sources are not held up");
    }

    #[test]
    fn one_login_at_a_time_per_source() {
        let t = LoginThrottle::new(policy());
        let now = Instant::now();
        let first = t.admit("a", Some("10.0.0.1"), now).unwrap();
        assert_eq!(t.admit("b", Some("10.0.0.1"), now).unwrap_err(), Refusal::InFlight);
        drop(first);
        assert!(t.admit("b", Some("10.0.0.1"), now).is_ok());
    }

    #[test]
    fn a_locked_user_name_still_lets_a_clean_source_in() {
        let t = LoginThrottle::new(policy());
        let now = Instant::now();
        let (o, now) = fail(&t, "admin", "10.6.6.6", 5, now);
        assert!(o.user_locked);
        assert!(matches!(
            t.admit("admin", Some("10.6.6.6"), now + Duration::from_secs(60)),
            Err(Refusal::UserLocked(_))
        ));
        // The administrator, from a machine that has not failed.
        let owner = t.admit("admin", Some("10.0.0.5"), now).expect("a clean source is admitted");
        t.succeeded(owner);
        // The success lifts the lock, but not the guessing source's record:
        // its next failure waits twice as long as its last.
        let again = t.admit("admin", Some("10.6.6.6"), now).unwrap();
        assert_eq!(t.failed(again, now).wait, Duration::from_secs(16));
    }

    #[test]
    fn a_source_that_fails_too_often_is_locked_and_locks_expire() {
        let t = LoginThrottle::new(LoginPolicy { delay_step: Duration::from_millis(1), ..policy() });
        let now = Instant::now();
        let mut at = now;
        let mut locked = false;
        for i in 0..20 {
            let a = t.admit(&format!("user{i}"), Some("10.0.0.9"), at).unwrap();
            let o = t.failed(a, at);
            at += o.wait;
            locked = o.source_locked;
        }
        assert!(locked);
        assert!(matches!(t.admit("x", Some("10.0.0.9"), at), Err(Refusal::SourceLocked(_))));
        assert!(t.admit("x", Some("10.0.0.9"), at + Duration::from_secs(16 * 60)).is_ok());
    }

    #[test]
    fn ipv6_sources_count_per_64() {
        assert_eq!(source_key(Some("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(source_key(Some("2001:db8:1:2:bbbb::9")), source_key(Some("2001:db8:1:2::")));
        assert_eq!(source_key(Some("::ffff:10.0.0.1")), "10.0.0.1");
        assert_eq!(source_key(Some("10.0.0.1")), "10.0.0.1");
        assert_eq!(source_key(None), "unknown");
    }

    #[test]
    fn memory_is_bounded() {
        let t = LoginThrottle::new(LoginPolicy { max_tracked: 50, ..policy() });
        let now = Instant::now();
        for i in 0..500 {
            let a = t.admit(&format!("u{i}"), Some(&format!("10.1.{}.{}", i / 250, i % 250)), now).unwrap();
            t.failed(a, now);
        }
        assert!(lock(&t.sources).len() <= 50);
        assert!(lock(&t.users).len() <= 50);
    }
}
