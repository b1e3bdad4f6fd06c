//! This node's lease (CLUSTER.md §2, fencing): the primary of a replicated
//! volume serves media commands only while its node has heard from a
//! majority of the cluster within the last [`LEASE`] (3 s, monotonic
//! clock). The controller promotes another node only after it has not
//! heard from the old one for longer than that (4 s, `liveness`), so an
//! old primary cut off with a minority has stopped serving reads before a
//! new one starts.
//!
//! * The leader holds the lease while a quorum acknowledged it within
//!   [`LEASE`] (openraft's `last_quorum_acked`); alone in a one-voter
//!   cluster, always.
//! * A follower hears from a majority through the leader: every
//!   AppendEntries carries how long ago the leader's quorum last
//!   acknowledged it, and a follower that accepts one holds the lease until
//!   [`LEASE`] after that acknowledgement. A leader cut off with a minority
//!   sends ever older acknowledgements, so its followers' leases run out
//!   with its own.
//!
//! * A node whose lease had run out (or that just started) holds it again
//!   only once its engine has been brought to what the cluster had
//!   committed when it heard from the majority again: a primary that was
//!   stopped, cut off or restarted while the controller moved its volume
//!   elsewhere must not serve the old placement for the moment it takes
//!   to apply the new one.
//!
//! The lease is kept as a deadline in an atomic, read on every command of a
//! replicated volume.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::raft::{RaftInstant as _, WatchReceiver as _};
use super::Cluster;

pub const LEASE: Duration = Duration::from_secs(3);
/// How often the leader's lease is brought up to date from Raft's metrics.
const REFRESH: Duration = Duration::from_millis(100);

/// The lease, and (on the leader) when a quorum last acknowledged it.
#[derive(Debug)]
pub struct Lease {
    base: Instant,
    /// Milliseconds after `base` until which the lease holds (0: never).
    until: AtomicU64,
    /// Milliseconds after `base` of the leader's last quorum acknowledgement
    /// (0: none, or not the leader).
    quorum_acked: AtomicU64,
    /// The Raft index this node's engine must have been brought to before
    /// the lease holds: what was committed when a lapsed lease was renewed.
    catch_up_to: AtomicU64,
    /// The Raft index this node's engine was last brought to.
    engine_at: AtomicU64,
}

impl Default for Lease {
    fn default() -> Self {
        Lease {
            base: Instant::now(),
            until: AtomicU64::new(0),
            quorum_acked: AtomicU64::new(0),
            catch_up_to: AtomicU64::new(0),
            engine_at: AtomicU64::new(0),
        }
    }
}

impl Lease {
    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_millis() as u64
    }

    /// Whether this node may serve as a primary now.
    pub fn holds(&self) -> bool {
        self.in_time() && self.engine_at.load(Ordering::Acquire) >= self.catch_up_to.load(Ordering::Acquire)
    }

    fn in_time(&self) -> bool {
        self.ms(Instant::now()) < self.until.load(Ordering::Relaxed)
    }

    /// The majority was last heard from at `at`, when `committed` was the
    /// cluster's commit index.
    fn heard_at(&self, at: Instant, committed: u64) {
        if !self.in_time() {
            self.catch_up_to.fetch_max(committed, Ordering::AcqRel);
        }
        self.until.fetch_max(self.ms(at + LEASE), Ordering::Relaxed);
    }

    /// This node's engine now runs what the cluster had applied here up to
    /// Raft index `index`.
    pub fn engine_brought_to(&self, index: u64) {
        self.engine_at.fetch_max(index, Ordering::AcqRel);
    }

    /// On the leader: how long ago a quorum last acknowledged it, for its
    /// AppendEntries (`None` when it is not the leader or never was).
    pub fn quorum_age(&self) -> Option<Duration> {
        let acked = self.quorum_acked.load(Ordering::Relaxed);
        (acked > 0).then(|| Duration::from_millis(self.ms(Instant::now()).saturating_sub(acked)))
    }

    /// On a follower: it accepted an AppendEntries whose leader's quorum
    /// acknowledged it `age` ago, and which said the leader had committed
    /// up to `committed`.
    pub fn heard_from_leader(&self, age: Duration, committed: u64) {
        if let Some(at) = Instant::now().checked_sub(age) {
            self.heard_at(at, committed);
        }
    }
}

/// Keeps the leader's lease up to date for as long as the cluster runs.
pub fn spawn(cluster: Cluster) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFRESH);
        loop {
            tick.tick().await;
            let metrics = cluster.raft.metrics().borrow_watched().clone();
            if matches!(metrics.state, super::raft::ServerState::Shutdown) {
                return;
            }
            let lease = &cluster.shared.lease;
            if metrics.current_leader != Some(cluster.id) {
                lease.quorum_acked.store(0, Ordering::Relaxed);
                continue;
            }
            let voters: Vec<_> = metrics.membership_config.membership().voter_ids().collect();
            let acked = if voters == [cluster.id] {
                Some(Instant::now())
            } else {
                metrics.last_quorum_acked.as_ref().map(|at| {
                    let age = at.elapsed();
                    Instant::now().checked_sub(age).unwrap_or(lease.base)
                })
            };
            if let Some(at) = acked {
                lease.quorum_acked.store(lease.ms(at).max(1), Ordering::Relaxed);
                // A new leader's log holds everything committed.
                lease.heard_at(at, metrics.last_log_index.unwrap_or(0));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_runs_out_three_seconds_after_the_majority_was_last_heard() {
        let lease = Lease::default();
        assert!(!lease.holds(), "no lease before anything is heard");
        lease.heard_from_leader(Duration::ZERO, 0);
        assert!(lease.holds());
        let late = Lease::default();
        std::thread::sleep(Duration::from_millis(20));
        late.heard_from_leader(LEASE, 0);
        assert!(!late.holds(), "the leader's quorum acknowledged it 3 s ago: nothing is left");
        late.heard_from_leader(LEASE - Duration::from_millis(500), 0);
        assert!(late.holds(), "half a second left");
        // An older acknowledgement never shortens the lease.
        late.heard_from_leader(LEASE + Duration::from_secs(5), 0);
        assert!(late.holds());
    }

    #[test]
    fn a_renewed_lease_waits_for_the_engine_to_catch_up() {
        let lease = Lease::default();
        lease.engine_brought_to(7);
        // Restarted (or back from a stop): the cluster has committed up to 12.
        lease.heard_from_leader(Duration::ZERO, 12);
        assert!(!lease.holds(), "the engine runs what index 7 said; 12 may have moved a volume away");
        lease.engine_brought_to(11);
        assert!(!lease.holds());
        lease.engine_brought_to(12);
        assert!(lease.holds());
        // While the lease holds, later commits do not take it away.
        lease.heard_from_leader(Duration::ZERO, 30);
        assert!(lease.holds(), "a node that never lost the lease follows as it goes");
    }
}
