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
//!   from one source address; a connection beyond either is closed at once,
//!   and a warning says which cap was hit (at most once a second);
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

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

/// Admission control shared by every portal of the engine.
#[derive(Debug)]
pub struct Admission {
    max_sessions: AtomicUsize,
    max_logins: AtomicUsize,
    max_logins_per_address: AtomicUsize,
    logins: Mutex<HashMap<IpAddr, usize>>,
    logins_total: AtomicUsize,
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
            logins_total: AtomicUsize::new(0),
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

    /// Lets a new connection from `addr` start its login, or says which cap it hit.
    pub fn admit_login(self: &Arc<Self>, addr: IpAddr) -> Result<LoginPermit, Refusal> {
        let max_total = self.max_logins.load(Ordering::Relaxed);
        let max_here = self.max_logins_per_address.load(Ordering::Relaxed);
        let mut map = self.logins.lock().unwrap_or_else(|e| e.into_inner());
        if self.logins_total.load(Ordering::Relaxed) >= max_total {
            return Err(Refusal::LoginsTotal(max_total));
        }
        let here = map.entry(addr).or_insert(0);
        if *here >= max_here {
            return Err(Refusal::LoginsFromAddress(max_here));
        }
        *here += 1;
        self.logins_total.fetch_add(1, Ordering::Relaxed);
        Ok(LoginPermit { admission: self.clone(), addr })
    }

    /// Connections in the login phase now.
    pub fn logins_in_progress(&self) -> usize {
        self.logins_total.load(Ordering::Relaxed)
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
}

impl Drop for LoginPermit {
    fn drop(&mut self) {
        let mut map = self.admission.logins.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.addr);
            }
        }
        self.admission.logins_total.fetch_sub(1, Ordering::Relaxed);
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

    #[test]
    fn login_caps_per_address_and_overall() {
        let a = Arc::new(Admission::new(Limits {
            max_login_connections: 3,
            max_login_connections_per_address: 2,
            ..Limits::default()
        }));
        let x: IpAddr = "10.0.0.1".parse().unwrap();
        let y: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = a.admit_login(x).unwrap();
        let _p2 = a.admit_login(x).unwrap();
        assert_eq!(a.admit_login(x).unwrap_err(), Refusal::LoginsFromAddress(2));
        let _p3 = a.admit_login(y).unwrap();
        assert_eq!(a.admit_login(y).unwrap_err(), Refusal::LoginsTotal(3));
        drop(p1);
        assert_eq!(a.logins_in_progress(), 2);
        let _p4 = a.admit_login(x).unwrap();
        assert_eq!(a.logins.lock().unwrap().len(), 2);
    }

    #[test]
    fn permits_given_back_leave_no_address_behind() {
        let a = Arc::new(Admission::default());
        for i in 0..100u8 {
            drop(a.admit_login(IpAddr::from([10, 0, 1, i])).unwrap());
        }
        assert!(a.logins.lock().unwrap().is_empty());
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
