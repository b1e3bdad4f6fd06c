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
}

impl Default for Lease {
    fn default() -> Self {
        Lease { base: Instant::now(), until: AtomicU64::new(0), quorum_acked: AtomicU64::new(0) }
    }
}

impl Lease {
    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_millis() as u64
    }

    /// Whether this node may serve as a primary now.
    pub fn holds(&self) -> bool {
        self.ms(Instant::now()) < self.until.load(Ordering::Relaxed)
    }

    /// The majority was last heard from at `at`.
    fn heard_at(&self, at: Instant) {
        self.until.fetch_max(self.ms(at + LEASE), Ordering::Relaxed);
    }

    /// On the leader: how long ago a quorum last acknowledged it, for its
    /// AppendEntries (`None` when it is not the leader or never was).
    pub fn quorum_age(&self) -> Option<Duration> {
        let acked = self.quorum_acked.load(Ordering::Relaxed);
        (acked > 0).then(|| Duration::from_millis(self.ms(Instant::now()).saturating_sub(acked)))
    }

    /// On a follower: it accepted an AppendEntries whose leader's quorum
    /// acknowledged it `age` ago.
    pub fn heard_from_leader(&self, age: Duration) {
        if let Some(at) = Instant::now().checked_sub(age) {
            self.heard_at(at);
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
                lease.heard_at(at);
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
        lease.heard_from_leader(Duration::ZERO);
        assert!(lease.holds());
        let late = Lease::default();
        std::thread::sleep(Duration::from_millis(20));
        late.heard_from_leader(LEASE);
        assert!(!late.holds(), "the leader's quorum acknowledged it 3 s ago: nothing is left");
        late.heard_from_leader(LEASE - Duration::from_millis(500));
        assert!(late.holds(), "half a second left");
        // An older acknowledgement never shortens the lease.
        late.heard_from_leader(LEASE + Duration::from_secs(5));
        assert!(late.holds());
    }
}
