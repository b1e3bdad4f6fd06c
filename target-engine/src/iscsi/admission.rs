//! What any peer, logged in or not, can make the engine hold, and the
//! gates that keep it bounded.
//!
//! A portal is reachable by everyone on its network, so before a login has
//! succeeded nothing may grow with what a peer sends, and after it every
//! queue has a byte budget (RFC 7143 §4.2.2.1 and §6 leave resource limits
//! to the target; these are ours).
//!
//! Before login ([`Admission`]):
//! * at most [`Limits::max_login_connections`] connections are in the login
//!   phase at once, and at most [`Limits::max_login_connections_per_address`]
//!   from one source address. A connection beyond either takes the place of
//!   the oldest one within that cap that has not sent a complete Login PDU
//!   yet (a silent connection is closed, so a retrying initiator gets in
//!   and a flood of idle connections only churns itself); when every one
//!   has spoken, the new connection is closed at once. A warning says which
//!   cap was hit (at most once a second);
//! * a login has [`LOGIN_TIMEOUT`] for all its reads *and* writes, at most
//!   [`MAX_LOGIN_PDUS`] Login PDUs, [`MAX_LOGIN_KEYS`] distinct keys and
//!   [`MAX_LOGIN_TEXT`] bytes of text in one request;
//! * at most [`Limits::max_sessions`] sessions exist; a login beyond it is
//!   refused with "out of resources" (status 0302h).
//!
//! After login, per connection (one session has one connection here):
//! * [`CONTROL_BUDGET`] bytes of NOP-In, R2T, Text, Reject, task management
//!   and write-status PDUs queued for the socket; when it is full the reader
//!   stops reading until the writer has sent some;
//! * [`READ_BUDGET`] bytes of Data-In being read or queued; a READ counts the
//!   larger of its CDB's transfer length and its Expected Data Transfer Length;
//! * [`WRITE_BUDGET`] bytes of Data-Out being collected (allocated as it
//!   arrives), [`MAX_WRITE`] for one command;
//! * [`EARLY_COMMANDS_BUDGET`] bytes of commands that arrived ahead of their
//!   CmdSN; MaxCmdSN bounds how many there can be;
//! * the receive buffer: one PDU of at most MaxRecvDataSegmentLength
//!   (256 KiB) plus 64 KiB;
//! * a socket write that makes no progress for [`WRITE_TIMEOUT`] ends the
//!   connection (the peer stopped reading), as does Data-Out that the target
//!   solicited and that does not arrive within [`DATA_OUT_TIMEOUT`].
//!
//! So one connection holds at most about 198 MiB (1 + 64 + 128 + 4 + 0.3),
//! and across every session the Data-In and Data-Out held at once is capped
//! by [`Limits::data_memory`] (default 1 GiB): reads wait for room, writes
//! beyond it are answered TASK SET FULL.
//!
//! Discovery sessions carry only Text and Logout (§4.3): their Text and
//! NOP-Out requests are served at most [`DISCOVERY_REQUESTS_PER_SECOND`] a
//! second (bursts of [`DISCOVERY_BURST`]); faster ones wait, and so does the
//! reading of the socket.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// All reads and writes of one login must be done within this time.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Login Request PDUs in one login (a CHAP login with continued text takes about ten).
pub const MAX_LOGIN_PDUS: u32 = 32;
/// Distinct keys one login may send (RFC 7143 defines about thirty).
pub const MAX_LOGIN_KEYS: usize = 128;
/// Text one Login Request may carry across its Continue PDUs.
pub const MAX_LOGIN_TEXT: usize = 64 * 1024;

/// Control PDUs queued for one connection's socket.
pub const CONTROL_BUDGET: usize = 1 << 20;
/// Data-In allocated or queued at once per session.
pub const READ_BUDGET: u32 = 64 << 20;
/// Data-Out being collected at once per session; beyond it: TASK SET FULL.
pub const WRITE_BUDGET: u64 = 128 << 20;
/// Largest Expected Data Transfer Length accepted for one write.
pub const MAX_WRITE: u32 = 64 << 20;
/// Commands held because they arrived before an earlier CmdSN.
pub const EARLY_COMMANDS_BUDGET: usize = 4 << 20;

/// A socket write that makes no progress for this long ends the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(20);
/// Solicited Data-Out that does not arrive within this time ends the connection.
pub const DATA_OUT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a closing connection may take to send what it has queued.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Text and NOP-Out requests a discovery session may make per second.
pub const DISCOVERY_REQUESTS_PER_SECOND: u32 = 10;
/// Requests a discovery session may make at once before the rate applies.
pub const DISCOVERY_BURST: u32 = 20;

/// The engine-wide caps an administrator may tune (`[limits]` in the
/// engine's TOML). Defaults suit a node serving a few hundred hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Sessions (discovery ones included) at once.
    pub max_sessions: usize,
    /// Connections in the login phase at once.
    pub max_login_connections: usize,
    /// Connections in the login phase at once from one source address.
    pub max_login_connections_per_address: usize,
    /// Bytes of Data-In and Data-Out all sessions together may hold.
    pub data_memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 1024,
            max_login_connections: 256,
            max_login_connections_per_address: 16,
            data_memory: 1 << 30,
        }
    }
}

impl Limits {
    /// Why these limits cannot work, if they cannot.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.max_sessions == 0 || self.max_sessions > 65_535 {
            return Err("max_sessions must be between 1 and 65535 (a TSIH is 16 bits)");
        }
        if self.max_login_connections == 0 || self.max_login_connections_per_address == 0 {
            return Err("login connection caps must be at least 1");
        }
        if self.data_memory < u64::from(MAX_WRITE) {
            return Err("data_memory must hold at least one largest write (64 MiB)");
        }
        Ok(())
    }
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    LoginsTotal(usize),
    LoginsFromAddress(usize),
}

/// The connections in the login phase.
#[derive(Debug, Default)]
struct Logins {
    per_address: HashMap<IpAddr, usize>,
    total: usize,
    /// Those that have not sent a complete Login PDU yet, oldest first (by
    /// the number each was admitted with), with what tells them to go.
    silent: BTreeMap<u64, (IpAddr, Arc<Eviction>)>,
    admitted: u64,
}

impl Logins {
    fn remove(&mut self, addr: IpAddr) {
        if let Some(n) = self.per_address.get_mut(&addr) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&addr);
            }
        }
        self.total -= 1;
    }

    /// Closes the oldest silent connection (from `addr` only, if given);
    /// false if there is none.
    fn evict_oldest(&mut self, addr: Option<IpAddr>) -> bool {
        let Some(key) = self.silent.iter().find(|(_, (from, _))| addr.is_none_or(|a| a == *from)).map(|(k, _)| *k)
        else {
            return false;
        };
        let (from, eviction) = self.silent.remove(&key).expect("found above");
        eviction.evicted.store(true, Ordering::Release);
        eviction.notify.notify_one();
        self.remove(from);
        true
    }
}

/// Tells a silent connection that a newer one took its place.
#[derive(Debug, Default)]
struct Eviction {
    evicted: AtomicBool,
    notify: Notify,
}

/// Admission control shared by every portal of the engine.
#[derive(Debug)]
pub struct Admission {
    max_sessions: AtomicUsize,
    max_logins: AtomicUsize,
    max_logins_per_address: AtomicUsize,
    logins: Mutex<Logins>,
    data: Arc<Semaphore>,
    data_size: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

impl Default for Admission {
    fn default() -> Self {
        Admission::new(Limits::default())
    }
}

impl Admission {
    pub fn new(limits: Limits) -> Self {
        Admission {
            max_sessions: AtomicUsize::new(limits.max_sessions),
            max_logins: AtomicUsize::new(limits.max_login_connections),
            max_logins_per_address: AtomicUsize::new(limits.max_login_connections_per_address),
            logins: Mutex::default(),
            data: Arc::new(Semaphore::new(limits.data_memory as usize)),
            data_size: AtomicU64::new(limits.data_memory),
            last_warning: Mutex::new(None),
        }
    }

    /// Changes the caps live; connections and sessions already admitted stay.
    pub fn set_limits(&self, limits: Limits) {
        self.max_sessions.store(limits.max_sessions, Ordering::Relaxed);
        self.max_logins.store(limits.max_login_connections, Ordering::Relaxed);
        self.max_logins_per_address.store(limits.max_login_connections_per_address, Ordering::Relaxed);
        let old = self.data_size.swap(limits.data_memory, Ordering::AcqRel);
        if limits.data_memory > old {
            self.data.add_permits((limits.data_memory - old) as usize);
        } else if old > limits.data_memory {
            // Shrinks as permits come back; nothing held is taken away.
            self.data.forget_permits((old - limits.data_memory) as usize);
        }
    }

    pub fn max_sessions(&self) -> usize {
        self.max_sessions.load(Ordering::Relaxed)
    }

    /// Lets a new connection from `addr` start its login, in the place of
    /// the oldest silent one if a cap is reached; or says which cap it hit
    /// when every connection within it has spoken.
    pub fn admit_login(self: &Arc<Self>, addr: IpAddr) -> Result<LoginPermit, Refusal> {
        let max_total = self.max_logins.load(Ordering::Relaxed);
        let max_here = self.max_logins_per_address.load(Ordering::Relaxed);
        let mut logins = self.logins.lock().unwrap_or_else(|e| e.into_inner());
        while logins.per_address.get(&addr).copied().unwrap_or(0) >= max_here {
            if !logins.evict_oldest(Some(addr)) {
                return Err(Refusal::LoginsFromAddress(max_here));
            }
        }
        while logins.total >= max_total {
            if !logins.evict_oldest(None) {
                return Err(Refusal::LoginsTotal(max_total));
            }
        }
        *logins.per_address.entry(addr).or_insert(0) += 1;
        logins.total += 1;
        logins.admitted += 1;
        let number = logins.admitted;
        let eviction = Arc::new(Eviction::default());
        logins.silent.insert(number, (addr, eviction.clone()));
        Ok(LoginPermit { admission: self.clone(), addr, number, eviction })
    }

    /// Connections in the login phase now.
    pub fn logins_in_progress(&self) -> usize {
        self.logins.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// Whether a warning about a refusal may be logged now (at most one a
    /// second, so that a flood does not become a flood of log lines).
    pub fn may_warn(&self) -> bool {
        let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// The engine-wide Data-In/Data-Out budget.
    pub fn data_budget(&self) -> &Arc<Semaphore> {
        &self.data
    }

    /// Takes `bytes` of the engine-wide data budget if they are free now.
    pub fn try_data(&self, bytes: u32) -> Option<OwnedSemaphorePermit> {
        self.data.clone().try_acquire_many_owned(bytes.max(1)).ok()
    }
}

/// A connection's place in the login phase; given back when dropped.
#[derive(Debug)]
pub struct LoginPermit {
    admission: Arc<Admission>,
    addr: IpAddr,
    number: u64,
    eviction: Arc<Eviction>,
}

impl LoginPermit {
    /// The connection sent a complete Login PDU: a newer connection no
    /// longer takes its place.
    pub fn spoke(&self) {
        let mut logins = self.admission.logins.lock().unwrap_or_else(|e| e.into_inner());
        logins.silent.remove(&self.number);
    }

    /// Resolves once a newer connection took this one's place (never, once
    /// it has spoken): the connection is then to be closed.
    pub async fn evicted(&self) {
        loop {
            let notified = self.eviction.notify.notified();
            if self.eviction.evicted.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for LoginPermit {
    fn drop(&mut self) {
        let mut logins = self.admission.logins.lock().unwrap_or_else(|e| e.into_inner());
        // An evicted connection's place was given to another already.
        if !self.eviction.evicted.load(Ordering::Acquire) {
            logins.silent.remove(&self.number);
            logins.remove(self.addr);
        }
    }
}

/// A token bucket: `rate` requests a second, `burst` at once; time is an
/// argument so tests need no clock.
#[derive(Debug, Clone)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        RateLimit { rate: f64::from(rate), burst: f64::from(burst), tokens: f64::from(burst), at: now }
    }

    /// Takes one request at `now`; returns how long to wait before serving it.
    pub fn take(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evicted_now(p: &LoginPermit) -> bool {
        p.eviction.evicted.load(Ordering::Acquire)
    }

    #[test]
    fn a_new_connection_takes_the_place_of_the_oldest_silent_one() {
        let a = Arc::new(Admission::new(Limits {
            max_login_connections: 3,
            max_login_connections_per_address: 2,
            ..Limits::default()
        }));
        let x: IpAddr = "10.0.0.1".parse().unwrap();
        let y: IpAddr = "10.0.0.2".parse().unwrap();
        let x1 = a.admit_login(x).unwrap();
        let x2 = a.admit_login(x).unwrap();
        // A third from x: the oldest silent one from x goes.
        let x3 = a.admit_login(x).unwrap();
        assert!(evicted_now(&x1) && !evicted_now(&x2));
        assert_eq!(a.logins_in_progress(), 2);
        drop(x1);
        assert_eq!(a.logins_in_progress(), 2, "an evicted place is not given back twice");
        // y fills the overall cap; the next from y takes the oldest silent place of all (x2).
        let _y1 = a.admit_login(y).unwrap();
        let y2 = a.admit_login(y).unwrap();
        assert!(evicted_now(&x2) && !evicted_now(&x3));
        // Once every connection has spoken, a new one is refused.
        x3.spoke();
        _y1.spoke();
        y2.spoke();
        assert_eq!(a.admit_login(y).unwrap_err(), Refusal::LoginsFromAddress(2));
        assert_eq!(a.admit_login(IpAddr::from([10, 0, 0, 3])).unwrap_err(), Refusal::LoginsTotal(3));
        drop((x2, x3, y2));
        assert_eq!(a.logins_in_progress(), 1);
        let logins = a.logins.lock().unwrap();
        assert_eq!(logins.per_address.len(), 1);
        assert!(logins.silent.is_empty());
    }

    #[tokio::test]
    async fn an_evicted_connection_hears_of_it_and_one_that_spoke_never_does() {
        let a = Arc::new(Admission::new(Limits { max_login_connections_per_address: 1, ..Limits::default() }));
        let x: IpAddr = "10.0.0.1".parse().unwrap();
        let first = a.admit_login(x).unwrap();
        let waiting = tokio::spawn(async move {
            first.evicted().await;
        });
        tokio::task::yield_now().await;
        let second = a.admit_login(x).unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("told in time").unwrap();
        second.spoke();
        assert_eq!(a.admit_login(x).unwrap_err(), Refusal::LoginsFromAddress(1));
        assert!(tokio::time::timeout(Duration::from_millis(50), second.evicted()).await.is_err());
    }

    #[test]
    fn permits_given_back_leave_no_address_behind() {
        let a = Arc::new(Admission::default());
        for i in 0..100u8 {
            drop(a.admit_login(IpAddr::from([10, 0, 1, i])).unwrap());
        }
        assert!(a.logins.lock().unwrap().per_address.is_empty());
        assert!(a.logins.lock().unwrap().silent.is_empty());
        assert_eq!(a.logins_in_progress(), 0);
    }

    #[test]
    fn the_data_budget_follows_live_changes() {
        let a = Admission::new(Limits { data_memory: 100 << 20, ..Limits::default() });
        let held = a.try_data(90 << 20).unwrap();
        assert!(a.try_data(20 << 20).is_none());
        a.set_limits(Limits { data_memory: 200 << 20, ..Limits::default() });
        assert!(a.try_data(20 << 20).is_some());
        drop(held);
        a.set_limits(Limits { data_memory: 64 << 20, ..Limits::default() });
        assert_eq!(a.data_budget().available_permits(), 64 << 20);
    }

    #[test]
    fn rate_limit_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(10, 3, t0);
        assert_eq!(r.take(t0), Duration::ZERO);
        assert_eq!(r.take(t0), Duration::ZERO);
        assert_eq!(r.take(t0), Duration::ZERO);
        let wait = r.take(t0);
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        // A second later the bucket is full again, never fuller.
        let t1 = t0 + Duration::from_secs(5);
        for _ in 0..3 {
            assert_eq!(r.take(t1), Duration::ZERO);
        }
        assert!(r.take(t1) > Duration::ZERO);
    }

    #[test]
    fn limits_are_checked() {
        assert!(Limits::default().check().is_ok());
        assert!(Limits { max_sessions: 0, ..Limits::default() }.check().is_err());
        assert!(Limits { max_sessions: 70_000, ..Limits::default() }.check().is_err());
        assert!(Limits { data_memory: 1 << 20, ..Limits::default() }.check().is_err());
    }
}
