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
//! * An AppendEntries only extends a lease that is in time. One that sat in
//!   this node's socket while the node was stopped (SIGSTOP, a VM paused)
//!   says how things stood when the leader sent it, which may be before the
//!   controller moved this node's volumes away; taken as news, it would
//!   renew a lapsed lease from the past. A follower whose lease lapsed asks
//!   the leader itself (`/raft/lease`): the answer comes after the question
//!   was sent, so the leader's quorum was heard no earlier than the time of
//!   sending less the age it reports, and what its log held when it
//!   answered includes everything committed before the question.
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
    /// cluster's commit index (or later): renews the lease, lapsed or not.
    fn renew(&self, at: Instant, committed: u64) {
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
    /// acknowledged it `age` before it was sent. It extends the lease only
    /// if the lease is in time (see the module documentation); whether it
    /// did.
    pub fn heard_from_leader(&self, age: Duration) -> bool {
        let Some(at) = Instant::now().checked_sub(age) else { return false };
        let (now, until) = (self.ms(Instant::now()), self.ms(at + LEASE));
        self.until
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| (now < held).then_some(held.max(until)))
            .is_ok()
    }

    /// On a follower: it asked the leader at `sent`, and the leader
    /// answered that its quorum acknowledged it `age` before the answer,
    /// when its log reached `committed`. Renews a lapsed lease too.
    pub fn renewed_by_round_trip(&self, sent: Instant, age: Duration, committed: u64) {
        if let Some(at) = sent.checked_sub(age) {
            self.renew(at, committed);
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
                if let (false, Some(leader)) = (lease.in_time(), metrics.current_leader) {
                    ask_leader(&cluster, leader).await;
                }
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
                lease.renew(at, metrics.last_log_index.unwrap_or(0));
            }
        }
    });
}

/// How long a follower whose lease lapsed waits for the leader's answer.
const ASK_DEADLINE: Duration = Duration::from_secs(1);

/// The leader's answer to a follower whose lease lapsed.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct LeaseAnswer {
    /// How long before answering its quorum last acknowledged it.
    pub quorum_age_ms: u64,
    /// Its last log index when it answered.
    pub log_index: u64,
}

/// Asks the leader, from this follower whose lease lapsed, how lately it
/// heard from its quorum; renews the lease by its answer.
async fn ask_leader(cluster: &Cluster, leader: super::NodeId) {
    let (Some(client), Some(address)) = (&cluster.shared.client, cluster.member_address(leader)) else { return };
    let sent = Instant::now();
    match client.call::<_, Result<LeaseAnswer, String>>(&address, "/raft/lease", &(), ASK_DEADLINE).await {
        Ok(Ok(answer)) => {
            let age = Duration::from_millis(answer.quorum_age_ms);
            cluster.shared.lease.renewed_by_round_trip(sent, age, answer.log_index);
        }
        Ok(Err(why)) => tracing::debug!(leader, "the leader did not renew this node's lease: {why}"),
        Err(e) => tracing::debug!(leader, "cannot ask the leader for a lease: {e}"),
    }
}

/// The leader's side of [`ask_leader`]: how lately its quorum acknowledged
/// it, and how far its log goes.
pub fn answer_follower(lease: &Lease, leader: bool, log_index: u64) -> Result<LeaseAnswer, String> {
    if !leader {
        return Err("this node is not the leader".into());
    }
    let age = lease.quorum_age().ok_or("no quorum has acknowledged this leader yet")?;
    Ok(LeaseAnswer { quorum_age_ms: age.as_millis() as u64, log_index })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_runs_out_three_seconds_after_the_majority_was_last_heard() {
        let lease = Lease::default();
        assert!(!lease.holds(), "no lease before anything is heard");
        assert!(!lease.heard_from_leader(Duration::ZERO), "an AppendEntries does not grant a lease");
        lease.renewed_by_round_trip(Instant::now(), Duration::ZERO, 0);
        assert!(lease.holds());
        let late = Lease::default();
        std::thread::sleep(Duration::from_millis(20));
        late.renewed_by_round_trip(Instant::now(), LEASE, 0);
        assert!(!late.holds(), "the leader's quorum acknowledged it 3 s ago: nothing is left");
        late.renewed_by_round_trip(Instant::now(), LEASE - Duration::from_millis(500), 0);
        assert!(late.holds(), "half a second left");
        // An older acknowledgement never shortens the lease.
        assert!(late.heard_from_leader(LEASE + Duration::from_secs(5)));
        assert!(late.holds());
    }

    #[test]
    fn a_renewed_lease_waits_for_the_engine_to_catch_up() {
        let lease = Lease::default();
        lease.engine_brought_to(7);
        // Restarted (or back from a stop): the leader's log reaches 12.
        lease.renewed_by_round_trip(Instant::now(), Duration::ZERO, 12);
        assert!(!lease.holds(), "the engine runs what index 7 said; 12 may have moved a volume away");
        lease.engine_brought_to(11);
        assert!(!lease.holds());
        lease.engine_brought_to(12);
        assert!(lease.holds());
        // While the lease holds, AppendEntries keep it; the engine follows as it goes.
        assert!(lease.heard_from_leader(Duration::ZERO));
        assert!(lease.holds(), "a node that never lost the lease follows as it goes");
    }

    #[test]
    fn an_old_message_does_not_renew_a_lapsed_lease() {
        let lease = Lease::default();
        lease.engine_brought_to(5);
        lease.renewed_by_round_trip(Instant::now(), LEASE - Duration::from_millis(30), 5);
        assert!(lease.holds());
        std::thread::sleep(Duration::from_millis(60));
        assert!(!lease.holds(), "lapsed");
        // An AppendEntries that waited in the socket while this node was
        // stopped: the leader's quorum was fresh when it was sent.
        assert!(!lease.heard_from_leader(Duration::ZERO));
        assert!(!lease.holds(), "a message from before the stop does not bring the lease back");
        // Asked itself: the leader's log has moved on (the volume was moved).
        lease.renewed_by_round_trip(Instant::now(), Duration::ZERO, 9);
        assert!(!lease.holds(), "the engine must first run what index 9 says");
        lease.engine_brought_to(9);
        assert!(lease.holds());
    }

    #[test]
    fn only_a_leader_with_a_quorum_answers() {
        let lease = Lease::default();
        assert!(answer_follower(&lease, false, 3).is_err());
        assert!(answer_follower(&lease, true, 3).is_err(), "no quorum yet");
        lease.quorum_acked.store(lease.ms(Instant::now()).max(1), Ordering::Relaxed);
        let answer = answer_follower(&lease, true, 3).expect("answers");
        assert_eq!(answer.log_index, 3);
        assert!(answer.quorum_age_ms < 1000);
    }
}
