//! dm-multipath's `group_by_prio` path grouping with the `alua`
//! prioritizer and the TUR checker, the settings multipath-tools uses for
//! an ALUA target (and the README's Linux walkthrough configures):
//!
//! * Each path's priority comes from the asymmetric access state of the
//!   port group its target port belongs to (SPC-4 §5.16: the Device
//!   Identification VPD page names the group, REPORT TARGET PORT GROUPS
//!   gives its state): 50 active/optimized, 10 active/non-optimized, 1
//!   standby, 0 otherwise. Paths of one priority form a group; commands go
//!   to the highest group with a path up, round-robin over its paths
//!   (`path_selector "round-robin 0"`, one command each).
//! * A command that fails on a path — no answer within the deadline (the
//!   NOP-Out timeout), the session gone, or NOT READY standby/unavailable
//!   (04h/0Bh, 04h/0Ch) — fails that path at once and is sent again on
//!   another. With no path up, commands wait (`no_path_retry queue`) until
//!   the checker brings one back. Transitioning (04h/0Ah) is retried on
//!   the same path; other unit attentions too.
//! * The checker visits every path every `--check-interval`
//!   (`polling_interval`), and sooner (at most twice a second) after a path
//!   failed or a unit attention said the access states changed (2Ah/06h):
//!   it logs in where the session is gone, sends TEST UNIT READY (GOOD or
//!   standby: the path is up, as the TUR checker's "ghost") and asks its
//!   priority again. A path back up is used by the next command
//!   (`failback immediate`).
//!
//! The groups themselves, and what each path carried, are kept by
//! [`PathGroups`]; every change of the paths in use is printed at the end
//! with its time of day.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use target_engine::testkit::alua::path_state;
use target_engine::testkit::initiator::CmdResult;
use target_engine::testkit::path_groups::PathGroups;
use tokio::sync::Notify;

use super::paths::{ended, time_of_day, Ended, Outcome, Path};

/// The checker's rounds are at least this far apart, however often it is
/// woken.
const MIN_ROUND: Duration = Duration::from_millis(500);
pub struct ByPrio {
    pub paths: Vec<Path>,
    lun: u64,
    timeout: Duration,
    check_every: Duration,
    groups: Mutex<PathGroups>,
    next: AtomicUsize,
    kick: Notify,
    pub errors: AtomicU64,
}

impl ByPrio {
    pub fn new(paths: Vec<Path>, lun: u64, timeout: Duration, check_every: Duration) -> ByPrio {
        ByPrio {
            groups: Mutex::new(PathGroups::new(paths.len())),
            paths,
            lun,
            timeout,
            check_every,
            next: AtomicUsize::new(0),
            kick: Notify::new(),
            errors: AtomicU64::new(0),
        }
    }

    /// The next path of the highest group, round-robin; None if no path is up.
    fn pick(&self) -> Option<usize> {
        let group = self.groups.lock().unwrap().in_use();
        (!group.is_empty()).then(|| group[self.next.fetch_add(1, Ordering::Relaxed) % group.len()])
    }

    fn fail(&self, p: usize) {
        self.groups.lock().unwrap().failed(p);
        self.kick.notify_one();
    }

    /// Runs a command until it ends GOOD (or `until` passes).
    pub async fn command(&self, cdb: &[u8], read_len: u32, data: Bytes, until: Instant) -> Option<CmdResult> {
        while Instant::now() < until {
            let Some(p) = self.pick() else {
                // Queued until the checker brings a path back.
                self.kick.notify_one();
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let outcome = self.paths[p].run(self.lun, cdb, read_len, data.clone(), self.timeout).await;
            match ended(&outcome) {
                Ended::Good => {
                    self.groups.lock().unwrap().good(p);
                    let Outcome::Done(r) = outcome else { unreachable!() };
                    return Some(r);
                }
                Ended::UnitAttention { alua_changed } => {
                    if alua_changed {
                        self.kick.notify_one();
                    }
                }
                Ended::Transitioning => tokio::time::sleep(Duration::from_millis(100)).await,
                Ended::NotServing { .. } | Ended::Down => self.fail(p),
                Ended::Error => {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        None
    }

    /// One path checked: whether it is up, and its priority.
    async fn check(&self, p: usize) -> (bool, u8) {
        let path = &self.paths[p];
        if !path.connect(self.timeout).await {
            return (false, 0);
        }
        match path.test_unit_ready(self.lun, self.timeout).await {
            Ended::Good | Ended::NotServing { standby: true } | Ended::Transitioning => {}
            _ => return (false, 0),
        }
        let Some(session) = path.session() else { return (false, 0) };
        match path_state(&session, self.lun, self.timeout).await {
            Some(state) => (true, state.priority()),
            None => (false, 0),
        }
    }

    /// Checks every path at once and records what it found.
    pub async fn check_all(self: &Arc<Self>) {
        let checks: Vec<_> = (0..self.paths.len())
            .map(|p| {
                let me = self.clone();
                tokio::spawn(async move { me.check(p).await })
            })
            .collect();
        let mut found = Vec::with_capacity(checks.len());
        for check in checks {
            found.push(check.await.unwrap_or((false, 0)));
        }
        self.groups.lock().unwrap().checked_all(&found);
    }

    /// The path checker, until the task is aborted.
    pub async fn checker(self: Arc<Self>) {
        loop {
            let round = Instant::now();
            self.check_all().await;
            let rest = self.check_every.saturating_sub(round.elapsed());
            tokio::select! {
                _ = tokio::time::sleep(rest) => {}
                _ = self.kick.notified() => {}
            }
            tokio::time::sleep_until((round + MIN_ROUND).into()).await;
        }
    }

    /// How many times the paths in use changed.
    pub fn switches(&self) -> u64 {
        self.groups.lock().unwrap().changes() as u64
    }

    /// One line per change of the paths in use, then one per path.
    pub fn report(&self) -> Vec<String> {
        let groups = self.groups.lock().unwrap();
        let (timeline, forgotten) = groups.timeline();
        let mut lines = Vec::new();
        if forgotten > 0 {
            lines.push(format!("ledger: {forgotten} earlier changes of the paths in use are not kept"));
        }
        for change in timeline {
            let told = if change.paths.is_empty() {
                "none".to_string()
            } else {
                let portals: Vec<String> = change.paths.iter().map(|&p| self.paths[p].portal.to_string()).collect();
                format!("{} (priority {})", portals.join(" "), change.priority)
            };
            lines.push(format!("ledger: in use from {}: {told}", time_of_day(change.at)));
        }
        for (path, state) in self.paths.iter().zip(&groups.states) {
            let last = state.last_good.map_or("never".to_string(), |t| format!("the last at {}", time_of_day(t)));
            lines.push(format!("ledger: path {}: {} commands GOOD, {last}", path.portal, state.good));
        }
        lines
    }
}
