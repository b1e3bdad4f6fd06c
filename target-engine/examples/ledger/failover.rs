//! dm-multipath's `failover` path grouping with the TUR checker: one path
//! in use, the one that worked last, while it works. When a command ends
//! NOT READY with LOGICAL UNIT NOT ACCESSIBLE (04h/0Ah transitioning,
//! 04h/0Bh standby, 04h/0Ch unavailable), or the path stops answering
//! within the deadline, each path is probed with TEST UNIT READY,
//! reconnecting those whose session is gone, and the first that answers
//! GOOD is used. A unit attention is retried on the same path.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use target_engine::testkit::initiator::CmdResult;

use super::paths::{ended, Ended, Outcome, Path};

pub struct Failover {
    pub paths: Vec<Path>,
    current: AtomicUsize,
    /// Bumped each time a path is chosen: a command that failed on an
    /// older choice just tries the new one.
    choice: AtomicU64,
    choosing: tokio::sync::Mutex<()>,
    lun: u64,
    timeout: Duration,
    pub switches: AtomicU64,
    pub errors: AtomicU64,
}

impl Failover {
    pub fn new(paths: Vec<Path>, lun: u64, timeout: Duration) -> Failover {
        Failover {
            paths,
            current: AtomicUsize::new(0),
            choice: AtomicU64::new(0),
            choosing: tokio::sync::Mutex::new(()),
            lun,
            timeout,
            switches: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    /// Runs a command until it ends GOOD (or `until` passes): on the path
    /// in use, and on another one when it fails over.
    pub async fn command(&self, cdb: &[u8], read_len: u32, data: Bytes, until: Instant) -> Option<CmdResult> {
        while Instant::now() < until {
            let choice = self.choice.load(Ordering::Acquire);
            let path = self.current.load(Ordering::Acquire);
            let outcome = self.paths[path].run(self.lun, cdb, read_len, data.clone(), self.timeout).await;
            match ended(&outcome) {
                Ended::Good => {
                    let Outcome::Done(r) = outcome else { unreachable!() };
                    return Some(r);
                }
                Ended::UnitAttention { .. } => {}
                Ended::Error => {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ended::Transitioning | Ended::NotServing { .. } | Ended::Down => {
                    self.choose_path(choice, until).await;
                    // The same path again (transitioning, or no other
                    // answers): give it a moment before the next try.
                    if self.current.load(Ordering::Acquire) == path {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        None
    }

    /// Probes every path with TEST UNIT READY, the one in use last, and
    /// takes the first that answers GOOD; waits and probes again while none
    /// does. Does nothing if a path was chosen since `seen` (by another
    /// command that failed too).
    pub async fn choose_path(&self, seen: u64, until: Instant) {
        let _one_at_a_time = self.choosing.lock().await;
        if self.choice.load(Ordering::Acquire) != seen {
            return;
        }
        let current = self.current.load(Ordering::Acquire);
        while Instant::now() < until {
            let n = self.paths.len();
            for k in 1..=n {
                let p = (current + k) % n;
                let path = &self.paths[p];
                if path.connect(self.timeout).await && path.test_unit_ready(self.lun, self.timeout).await == Ended::Good
                {
                    if p != current {
                        self.switches.fetch_add(1, Ordering::Relaxed);
                        self.current.store(p, Ordering::Release);
                    }
                    self.choice.fetch_add(1, Ordering::AcqRel);
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
