//! This node's lease (CLUSTER.md §2, fencing): the primary of a replicated
//! volume serves media commands only while its node has heard from a
//! majority of the cluster within the last [`LEASE`] (3 s, monotonic
//! clock). The controller promotes another node only after it has not
//! heard from the old one for longer than that (4 s, `liveness`), so an
//! old primary cut off with a minority has stopped serving reads before a
//! new one starts.
//!
//! * The leader holds the lease while a quorum acknowledged it within
//!   [`LEASE`] (openraft's `last_quorum_acked`, dated by when the
//!   acknowledged messages were sent); alone in a one-voter cluster, always.
//! * A follower's lease is renewed only by a round trip it started itself
//!   (`/raft/lease`, about every second), never by a message the leader
//!   sent: a message that sat in a socket, or waited while this node was
//!   stopped, says how things stood when it was sent. The leader answers
//!   with an age: how long ago it last had both its quorum's
//!   acknowledgement and *this follower's* (the send time of the last
//!   AppendEntries the follower acknowledged, the very time the leader's
//!   offline verdict counts from). The lease then ends at the question's
//!   send time less that age, plus [`LEASE`]. The question was sent before
//!   the answer, so the lease ends no later than [`LEASE`] after the
//!   follower's last acknowledgement, and the leader marks it offline no
//!   earlier than [`OFFLINE_AFTER`] after it (CLUSTER.md §6, rule 3).
//!   With a one-way cut (the leader's messages to the follower lost, the
//!   follower's questions answered), the follower's acknowledgements stop,
//!   its lease ages with them, and it has stopped serving before the
//!   leader may declare it offline and promote another copy.
//! * The second between [`LEASE`] and [`OFFLINE_AFTER`] is what the
//!   guarantee assumes of the machines: monotonic clocks whose rates differ
//!   by at most 1%, and a primary that is not killed paused for at most
//!   [`MAX_PAUSE`] between checking its lease and answering a command.
//!   Stated once, and checked when the program is compiled:
//!   `LEASE × 1.01 + MAX_PAUSE ≤ OFFLINE_AFTER`.
//!
//! * A node whose lease had run out (or that just started) holds it again
//!   only once its engine has been brought to what the cluster had
//!   committed when it heard from the majority again: a primary that was
//!   stopped, cut off or restarted while the controller moved its volume
//!   elsewhere must not serve the old placement for the moment it takes
//!   to apply the new one.
//!
//! * A node whose own applied state marks it offline holds no lease,
//!   whatever its clock says: a leader may act on that mark at once (one
//!   its predecessor made, or one made before the node came back), and
//!   the node serves again only once the cluster counts it online.
//!
//! The lease is kept as a deadline in an atomic, read on every command of a
//! replicated volume.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::liveness::OFFLINE_AFTER;
use super::raft::{RaftInstant as _, WatchReceiver as _};
use super::Cluster;

pub const LEASE: Duration = Duration::from_secs(3);
/// The longest a primary that is not killed may be paused between checking
/// its lease and answering a command (an assumption; see the module
/// documentation).
pub const MAX_PAUSE: Duration = Duration::from_millis(900);
/// How far two nodes' monotonic clocks may disagree on a rate, in parts
/// per thousand (an assumption).
const CLOCK_RATE_ERROR_PERMILLE: u128 = 10;
const _: () = assert!(
    LEASE.as_millis() * (1000 + CLOCK_RATE_ERROR_PERMILLE) / 1000 + MAX_PAUSE.as_millis() <= OFFLINE_AFTER.as_millis(),
    "a lease must end before the leader may declare its node offline: LEASE x (1 + rate error) + MAX_PAUSE <= OFFLINE_AFTER"
);
/// A follower asks for its lease again once less than this is left.
const RENEW_WHEN_LEFT: Duration = Duration::from_secs(2);
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
    /// This node's applied state marks it offline: the cluster may be
    /// promoting other copies of its volumes, so it serves none.
    offline_here: std::sync::atomic::AtomicBool,
}

impl Default for Lease {
    fn default() -> Self {
        Lease {
            base: Instant::now(),
            until: AtomicU64::new(0),
            quorum_acked: AtomicU64::new(0),
            catch_up_to: AtomicU64::new(0),
            engine_at: AtomicU64::new(0),
            offline_here: Default::default(),
        }
    }
}

impl Lease {
    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_millis() as u64
    }

    /// Whether this node may serve as a primary now: the lease is in time,
    /// the engine runs what the cluster had committed when it was renewed,
    /// and the state it runs does not mark this node offline.
    pub fn holds(&self) -> bool {
        self.in_time()
            && self.engine_at.load(Ordering::Acquire) >= self.catch_up_to.load(Ordering::Acquire)
            && !self.offline_here.load(Ordering::Acquire)
    }

    /// Whether the state this node's engine runs marks the node offline.
    pub fn marked_offline_here(&self, offline: bool) {
        self.offline_here.store(offline, Ordering::Release);
    }

    fn in_time(&self) -> bool {
        self.ms(Instant::now()) < self.until.load(Ordering::Relaxed)
    }

    /// How long the lease holds from now (zero when it has lapsed).
    fn left(&self) -> Duration {
        Duration::from_millis(self.until.load(Ordering::Relaxed).saturating_sub(self.ms(Instant::now())))
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
                if let (true, Some(leader)) = (lease.left() < RENEW_WHEN_LEFT, metrics.current_leader) {
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

/// How long a follower waits for the leader's answer.
const ASK_DEADLINE: Duration = Duration::from_secs(1);

/// A follower's question: whose lease.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct LeaseRequest {
    pub raft_id: u64,
}

/// The leader's answer to a follower's question.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct LeaseAnswer {
    /// How long before answering it last had both its quorum's
    /// acknowledgement and the asking follower's.
    pub quorum_age_ms: u64,
    /// Its last log index when it answered.
    pub log_index: u64,
}

/// Asks the leader, from this follower, how lately it heard from its quorum
/// and from this node; renews the lease by its answer.
async fn ask_leader(cluster: &Cluster, leader: super::NodeId) {
    let (Some(client), Some(address)) = (&cluster.shared.client, cluster.member_address(leader)) else { return };
    let sent = Instant::now();
    let request = LeaseRequest { raft_id: cluster.id };
    match client.call::<_, Result<LeaseAnswer, String>>(&address, "/raft/lease", &request, ASK_DEADLINE).await {
        Ok(Ok(answer)) => {
            let age = Duration::from_millis(answer.quorum_age_ms);
            cluster.shared.lease.renewed_by_round_trip(sent, age, answer.log_index);
        }
        Ok(Err(why)) => tracing::debug!(leader, "the leader did not renew this node's lease: {why}"),
        Err(e) => tracing::debug!(leader, "cannot ask the leader for a lease: {e}"),
    }
}

/// The leader's side of [`ask_leader`]: how lately it had both its quorum's
/// acknowledgement and the follower's (`follower_acked`: how long ago the
/// last AppendEntries the follower acknowledged was sent; `None` if it
/// never acknowledged one), and how far its log goes.
pub fn answer_follower(
    lease: &Lease,
    leader: bool,
    log_index: u64,
    follower_acked: Option<Duration>,
) -> Result<LeaseAnswer, String> {
    if !leader {
        return Err("this node is not the leader".into());
    }
    let quorum = lease.quorum_age().ok_or("no quorum has acknowledged this leader yet")?;
    let follower = follower_acked.ok_or("this node has not acknowledged the leader yet")?;
    Ok(LeaseAnswer { quorum_age_ms: quorum.max(follower).as_millis() as u64, log_index })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_runs_out_three_seconds_after_the_majority_was_last_heard() {
        let lease = Lease::default();
        assert!(!lease.holds(), "no lease before anything is heard");
        lease.renewed_by_round_trip(Instant::now(), Duration::ZERO, 0);
        assert!(lease.holds());
        let late = Lease::default();
        std::thread::sleep(Duration::from_millis(20));
        late.renewed_by_round_trip(Instant::now(), LEASE, 0);
        assert!(!late.holds(), "the leader's quorum acknowledged it 3 s ago: nothing is left");
        late.renewed_by_round_trip(Instant::now(), LEASE - Duration::from_millis(500), 0);
        assert!(late.holds(), "half a second left");
        // An older answer never shortens the lease.
        late.renewed_by_round_trip(Instant::now(), LEASE + Duration::from_secs(5), 0);
        assert!(late.holds());
        assert!(late.left() <= Duration::from_millis(500));
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
        // Renewed while it holds: the engine follows as it goes.
        lease.renewed_by_round_trip(Instant::now(), Duration::ZERO, 15);
        assert!(lease.holds(), "a node that never lost the lease follows as it goes");
    }

    #[test]
    fn a_lapsed_lease_is_renewed_only_once_the_engine_runs_what_the_leader_had() {
        let lease = Lease::default();
        lease.engine_brought_to(5);
        lease.renewed_by_round_trip(Instant::now(), LEASE - Duration::from_millis(30), 5);
        assert!(lease.holds());
        std::thread::sleep(Duration::from_millis(60));
        assert!(!lease.holds(), "lapsed");
        // Asked itself: the leader's log has moved on (the volume was moved).
        lease.renewed_by_round_trip(Instant::now(), Duration::ZERO, 9);
        assert!(!lease.holds(), "the engine must first run what index 9 says");
        lease.engine_brought_to(9);
        assert!(lease.holds());
    }

    #[test]
    fn a_node_its_own_state_marks_offline_holds_no_lease() {
        let lease = Lease::default();
        lease.renewed_by_round_trip(Instant::now(), Duration::ZERO, 0);
        assert!(lease.holds());
        lease.marked_offline_here(true);
        assert!(!lease.holds(), "marked offline: another copy may be promoted");
        lease.renewed_by_round_trip(Instant::now(), Duration::ZERO, 0);
        assert!(!lease.holds(), "a renewal does not undo the mark");
        lease.marked_offline_here(false);
        assert!(lease.holds());
    }

    #[test]
    fn only_a_leader_with_a_quorum_and_the_followers_acknowledgement_answers() {
        let lease = Lease::default();
        let fresh = Some(Duration::ZERO);
        assert!(answer_follower(&lease, false, 3, fresh).is_err());
        assert!(answer_follower(&lease, true, 3, fresh).is_err(), "no quorum yet");
        lease.quorum_acked.store(lease.ms(Instant::now()).max(1), Ordering::Relaxed);
        assert!(answer_follower(&lease, true, 3, None).is_err(), "the follower never acknowledged this leader");
        let answer = answer_follower(&lease, true, 3, fresh).expect("answers");
        assert_eq!(answer.log_index, 3);
        assert!(answer.quorum_age_ms < 1000);
    }

    /// A one-way cut: the leader hears from its quorum (the other
    /// follower) and answers this follower's questions, but this follower
    /// has acknowledged nothing for 3.5 s (the leader's messages to it are
    /// lost), and the leader will mark it offline at 4 s. The lease this
    /// follower gets from the answer has run out already. (Before, the
    /// answer carried the quorum's age alone, and the follower kept
    /// serving while the leader promoted another node.)
    #[test]
    fn a_follower_cut_off_one_way_gets_no_lease_past_the_leaders_offline_verdict() {
        let leader = Lease::default();
        leader.quorum_acked.store(leader.ms(Instant::now()).max(1), Ordering::Relaxed);
        let answer = answer_follower(&leader, true, 3, Some(Duration::from_millis(3500))).expect("answers");
        let follower = Lease::default();
        follower.engine_brought_to(3);
        follower.renewed_by_round_trip(Instant::now(), Duration::from_millis(answer.quorum_age_ms), 3);
        assert!(!follower.holds(), "a lease past the leader's view of this node");
        let recent = answer_follower(&leader, true, 3, Some(Duration::from_millis(200))).expect("answers");
        follower.renewed_by_round_trip(Instant::now(), Duration::from_millis(recent.quorum_age_ms), 3);
        assert!(follower.holds(), "acknowledged 0.2 s ago: about 2.8 s left");
    }

    proptest::proptest! {
        /// Whatever the delays: the lease a follower takes from an answer
        /// ends no later than LEASE after the send time of the last message
        /// it acknowledged, so at least MAX_PAUSE (and the clocks' drift)
        /// before the leader may mark it offline. Times in milliseconds on
        /// one clock: the follower acknowledged at `acked`, asked `asked`
        /// after that, the answer was made `delay` later.
        #[test]
        fn a_lease_ends_before_the_offline_verdict(acked in 0u64..10_000, asked in 0u64..10_000, delay in 0u64..5_000, quorum in 0u64..5_000) {
            let answered = acked + asked + delay;
            let follower_age = answered - acked;
            let age = follower_age.max(quorum);
            let sent = acked + asked;
            let lease_end = (sent + LEASE.as_millis() as u64).saturating_sub(age);
            let offline_at = acked + OFFLINE_AFTER.as_millis() as u64;
            proptest::prop_assert!(lease_end + MAX_PAUSE.as_millis() as u64 <= offline_at);
        }
    }
}
