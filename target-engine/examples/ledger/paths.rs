//! One path to the logical unit — a portal and a target, and its session
//! while it has one — and how a command on a path ended, as a host's SCSI
//! layer sorts it (SPC-4 §5.16.2.3 for the ALUA senses).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use target_engine::testkit::initiator::{CmdResult, Initiator, LoginOpts, INITIATOR};
use target_engine::testkit::pipeline::Pipeline;

/// How a command ended on a path.
pub enum Outcome {
    Done(CmdResult),
    /// No session, or it failed or did not answer in time.
    Down,
}

/// What the answer means for the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Good,
    /// A unit attention; `alua_changed` for ASYMMETRIC ACCESS STATE
    /// CHANGED (2Ah/06h), after which a host asks the path's state again.
    UnitAttention {
        alua_changed: bool,
    },
    /// NOT READY, ASYMMETRIC ACCESS STATE TRANSITION (04h/0Ah): wait and
    /// try the same path again.
    Transitioning,
    /// NOT READY, TARGET PORT IN STANDBY STATE or UNAVAILABLE STATE
    /// (04h/0Bh, 04h/0Ch): the path does not serve the unit now.
    NotServing {
        standby: bool,
    },
    /// No session, or no answer within the deadline.
    Down,
    /// Any other error.
    Error,
}

pub fn ended(outcome: &Outcome) -> Ended {
    let r = match outcome {
        Outcome::Down => return Ended::Down,
        Outcome::Done(r) => r,
    };
    let key = r.sense.get(2).map(|k| k & 0x0f);
    let (asc, ascq) = (r.sense.get(12).copied(), r.sense.get(13).copied());
    match (r.status, key, asc, ascq) {
        (0, ..) => Ended::Good,
        (2, Some(0x6), Some(0x2a), Some(0x06)) => Ended::UnitAttention { alua_changed: true },
        (2, Some(0x6), ..) => Ended::UnitAttention { alua_changed: false },
        (2, Some(0x2), Some(0x04), Some(0x0a)) => Ended::Transitioning,
        (2, Some(0x2), Some(0x04), Some(q @ (0x0b | 0x0c))) => Ended::NotServing { standby: q == 0x0b },
        _ => Ended::Error,
    }
}

/// One path: a portal and target, and its session while it has one.
pub struct Path {
    pub portal: SocketAddr,
    pub target: String,
    /// The last two bytes of the session's ISID: every path and the
    /// reader are I_T nexuses of their own, also on the same target, and
    /// so are the paths of ledgers on other LUNs.
    isid: [u8; 2],
    session: Mutex<Option<Arc<Pipeline>>>,
}

impl Path {
    pub fn new((portal, target): (SocketAddr, String), isid: [u8; 2]) -> Path {
        Path { portal, target, isid, session: Mutex::new(None) }
    }

    pub fn session(&self) -> Option<Arc<Pipeline>> {
        let mut slot = self.session.lock().unwrap();
        if slot.as_ref().is_some_and(|s| !s.is_open()) {
            *slot = None;
        }
        slot.clone()
    }

    /// Closes `session` at once (its connection reset, so nothing it had
    /// sent arrives later), and forgets it if it is still this path's.
    fn drop_session(&self, session: &Arc<Pipeline>) {
        session.close();
        let mut slot = self.session.lock().unwrap();
        if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, session)) {
            *slot = None;
        }
    }

    /// Logs in if there is no session; false if that failed.
    pub async fn connect(&self, timeout: Duration) -> bool {
        if self.session().is_some() {
            return true;
        }
        let (portal, target, isid) = (self.portal, self.target.clone(), self.isid);
        // The test initiator panics on a failed socket: one task per attempt.
        let task = tokio::spawn(async move {
            let mut i = Initiator::connect_from(portal, "0.0.0.0".parse().unwrap()).await.ok()?;
            i.isid[4..6].copy_from_slice(&isid);
            let o = LoginOpts { initiator: INITIATOR, target: Some(&target), ..Default::default() };
            i.login(&o).await.ok()?;
            Some(i)
        });
        let Ok(Ok(Some(session))) = tokio::time::timeout(timeout, task).await else { return false };
        *self.session.lock().unwrap() = Some(Arc::new(Pipeline::start(session)));
        true
    }

    pub async fn run(&self, lun: u64, cdb: &[u8], read_len: u32, data: Bytes, timeout: Duration) -> Outcome {
        let Some(session) = self.session() else { return Outcome::Down };
        match tokio::time::timeout(timeout, session.command(lun, cdb, read_len, data)).await {
            Ok(Some(r)) => Outcome::Done(r),
            // Gone, or silent past the deadline: the path failed.
            _ => {
                self.drop_session(&session);
                Outcome::Down
            }
        }
    }

    /// Test Unit Ready until it is not a unit attention (a unit attention
    /// is reported once; at most three tries).
    pub async fn test_unit_ready(&self, lun: u64, timeout: Duration) -> Ended {
        let mut last = Ended::Down;
        for _ in 0..3 {
            last = ended(&self.run(lun, &[0u8; 6], 0, Bytes::new(), timeout).await);
            if !matches!(last, Ended::UnitAttention { .. }) {
                break;
            }
        }
        last
    }
}

/// The time of day (UTC) of `at`, to a tenth of a second: `HH:MM:SS.s`.
pub fn time_of_day(at: std::time::SystemTime) -> String {
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let day = since.as_secs() % 86_400;
    let tenths = since.subsec_millis() / 100;
    let (h, m, s) = (day / 3600, day / 60 % 60, day % 60);
    format!("{h:02}:{m:02}:{s:02}.{tenths}")
}
