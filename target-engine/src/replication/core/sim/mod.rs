//! A seeded simulation of one replicated volume: a primary, replicas, their
//! streams and the control plane, with every event (a local apply, a frame
//! on a stream, an answer, a control-plane decision) delivered in a random
//! order that keeps each stream first-in first-out, connections that drop
//! and come back, and a random workload. The faults it models, besides
//! lost streams: a control plane that commits a mark and answers that it
//! does not know, or does not commit it and says the same (the driver asks
//! again, one mark of a replica at a time); the primary's lease lost and
//! renewed (what waits fails NOT READY); a replica that loses power (what
//! it had not flushed is gone, and it restarts knowing nothing of its
//! activity log); a replica whose disk fails an operation; the primary's
//! second failover while the promoted primary reconciles; the primary's
//! own disk failing an operation (it stops serving and the volume is
//! handed over to a copy in sync, as [`Sim::lose_the_primary`] does, or,
//! with no copy in sync, it answers MEDIUM ERROR and goes on). The workload
//! mixes writes, WRITE SAMEs, unmaps, flushes and changes of the unit's
//! saved state. After every acknowledgement, every mark and at the end
//! it checks what replication promises, against the *cluster's* view of
//! which copies are in sync, not the primary's:
//!
//! * an acknowledged write is on every replica the cluster counts in sync
//!   at that moment (or a later write of the same block is), but for one
//!   that lost power and is not yet marked out of sync (it may have lost
//!   what it did not flush; the primary holds everything until it is);
//! * when the cluster marks a copy in sync, every acknowledged write is on it;
//! * once the faults stop and every replica has resynced, every image is
//!   the primary's, byte for byte;
//! * every operation was answered;
//! * after the primary is lost with operations in flight and a replica in
//!   sync is promoted, the copies in sync agree exactly once the new
//!   primary has reconciled them by the activity logs, before it numbers a
//!   new operation, and every acknowledged write is on them.
//!
//! Every block's first eight bytes hold the number of the operation that
//! wrote it, so that "this write or a later one" can be checked.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::dirty::DirtyMap;
use super::ops::{Epoch, Op, ReplicaId};
use super::primary::{Action, FromReplica, Primary, ReplicaState, ToReplica};
use super::replica::{Replica, ReplicaAction};

const BLOCK: usize = 512;

/// The last events of the run on this thread, printed when a seed fails.
const TRACE_LEN: usize = 80;
thread_local! {
    static TRACE: std::cell::RefCell<VecDeque<String>> = const { std::cell::RefCell::new(VecDeque::new()) };
}

fn trace(event: impl FnOnce() -> String) {
    TRACE.with(|t| {
        let mut t = t.borrow_mut();
        if t.len() == TRACE_LEN {
            t.pop_front();
        }
        t.push_back(event());
    });
}

/// xorshift64*: the same run for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

enum Local {
    Apply { seq: u64, op: Op },
    Read { seq: u64, offset: u64, len: u64 },
}

use super::primary::{Mark, MarkAnswer, MarkStep};

struct Node {
    replica: Replica,
    image: Vec<u8>,
    work: Vec<ReplicaAction>,
    /// Frames from the primary, and answers to it, in order.
    inbound: VecDeque<ToReplica>,
    outbound: VecDeque<FromReplica>,
    up: bool,
    stream: u64,
    /// Down until this step.
    down_until: u64,
    /// What survives a power loss: operations applied durably (FUA
    /// writes, flushes, copies), the others only once a flush follows.
    durable: Vec<u8>,
    /// Lost power since the cluster last marked it out of sync.
    lost_power: bool,
}

impl Node {
    /// Does the replica's work item `i` on its image, and says what follows.
    fn do_work(&mut self, i: usize, fail: bool) -> Vec<ReplicaAction> {
        match self.work.swap_remove(i) {
            // Its disk fails the operation: nothing of it is written.
            ReplicaAction::Apply { id, .. } if fail => self.replica.applied(id, Err("disk error".into())),
            ReplicaAction::Apply { id, op } => {
                apply(&mut self.image, &op);
                if op == Op::Flush {
                    self.durable.clone_from(&self.image);
                } else if op.durable() {
                    apply(&mut self.durable, &op);
                }
                self.replica.applied(id, Ok(()))
            }
            ReplicaAction::WriteCopy { id, offset, data } => {
                self.image[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
                self.durable[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
                self.replica.applied(id, Ok(()))
            }
            ReplicaAction::Verify { id, offset, len, crc } => {
                let same = crc32c::crc32c(&self.image[offset as usize..(offset + len) as usize]) == crc;
                self.replica.verified(id, Ok(same))
            }
            other => panic!("not work: {other:?}"),
        }
    }
}

pub struct Sim {
    rng: Rng,
    epoch: Epoch,
    /// The primary's id (0 until a replica is promoted).
    primary_id: ReplicaId,
    primary: Primary,
    /// Whether the control plane counts each replica in sync.
    in_sync_for_control: BTreeMap<ReplicaId, bool>,
    image: Vec<u8>,
    local: Vec<Local>,
    nodes: BTreeMap<ReplicaId, Node>,
    /// Marks asked of the control plane, per replica, in order.
    control: BTreeMap<ReplicaId, VecDeque<Mark>>,
    /// Whether the primary holds its lease, and when it is renewed if not.
    lease: bool,
    lease_back_at: u64,
    /// Whether replicas may lose power.
    power_loss: bool,
    /// Operations that ended NOT READY (the initiator would retry them).
    pub not_ready: u64,
    /// Marks whose outcome the control plane could not tell.
    pub unknown_marks: u64,
    /// Submitted operations: the blocks they write and whether they were answered.
    ops: BTreeMap<u64, (u64, u64, bool, bool)>,
    /// Unmaps, by token: the blocks they cleared.
    unmaps: Vec<(u64, u64, u64)>,
    next_token: u64,
    step: u64,
    pub acknowledged: u64,
    acknowledged_tokens: std::collections::BTreeSet<u64>,
    /// Copies found equal to a promoted primary once reconciled.
    pub reconciled: u64,
    /// Streams a replica closed on its own.
    replica_closes: u64,
    /// The primary's own disk may fail an operation.
    local_failures: bool,
    /// A promoted primary may be lost in turn while it reconciles (once).
    second_failovers: bool,
    /// The primary may be demoted for a hand-over, then resume or hand over.
    demotions: bool,
    /// Demoted until this step.
    demoted_until: Option<u64>,
    /// Until when a demoted primary waits for what it numbered to settle.
    demoted_deadline: u64,
    /// The final flush of a demoted primary, while it runs.
    settling: Option<u64>,
    /// The primary asked to hand over (its copy failed an operation).
    hand_over_due: bool,
    /// Hand-overs done for a failed local copy.
    pub handovers: u64,
    /// Operations that ended MEDIUM ERROR (the local copy failed, no copy in sync).
    pub medium_errors: u64,
    /// The run stopped early: a hand-over was due and no copy could take
    /// over (the volume stays offline; nothing more to check).
    stopped: bool,
}

fn apply(image: &mut [u8], op: &Op) {
    match op {
        Op::Write { offset, data, .. } => image[*offset as usize..*offset as usize + data.len()].copy_from_slice(data),
        Op::WriteSame { offset, len, block, .. } => {
            for b in (*offset..offset + len).step_by(block.len()) {
                image[b as usize..b as usize + block.len()].copy_from_slice(block);
            }
        }
        Op::Unmap { offset, len } => image[*offset as usize..(offset + len) as usize].fill(0),
        Op::Flush | Op::UnitState { .. } | Op::Resize { .. } => {}
    }
}

fn version(image: &[u8], block: u64) -> u64 {
    let at = block as usize * BLOCK;
    u64::from_le_bytes(image[at..at + 8].try_into().unwrap())
}

impl Sim {
    pub fn new(seed: u64, replicas: u32, blocks: u64) -> Sim {
        Sim::with_stale(seed, replicas, blocks, 0)
    }

    /// As [`Sim::new`], with replica 1 (if `stale_blocks` > 0) starting out
    /// of sync with nothing known of what it missed (a full resync), its
    /// image differing from the primary's in up to `stale_blocks` blocks.
    pub fn with_stale(seed: u64, replicas: u32, blocks: u64, stale_blocks: u64) -> Sim {
        let size = blocks * BLOCK as u64;
        let states = (1..=replicas)
            .map(|r| {
                if r == 1 && stale_blocks > 0 {
                    let mut all = DirtyMap::default();
                    all.mark_all(size);
                    (r, ReplicaState::OutOfSync(all))
                } else {
                    (r, ReplicaState::InSync)
                }
            })
            .collect();
        let mut sim = Sim {
            rng: Rng(seed | 1),
            epoch: Epoch(1),
            primary_id: 0,
            primary: Primary::new(Epoch(1), size, 1, states),
            in_sync_for_control: (1..=replicas).map(|r| (r, !(r == 1 && stale_blocks > 0))).collect(),
            image: vec![0; size as usize],
            local: Vec::new(),
            nodes: BTreeMap::new(),
            control: BTreeMap::new(),
            lease: true,
            lease_back_at: 0,
            power_loss: false,
            not_ready: 0,
            unknown_marks: 0,
            ops: BTreeMap::new(),
            unmaps: Vec::new(),
            next_token: 1,
            step: 0,
            acknowledged: 0,
            acknowledged_tokens: Default::default(),
            reconciled: 0,
            replica_closes: 0,
            local_failures: false,
            second_failovers: false,
            demotions: false,
            demoted_until: None,
            demoted_deadline: 0,
            settling: None,
            hand_over_due: false,
            handovers: 0,
            medium_errors: 0,
            stopped: false,
        };
        for r in 1..=replicas {
            let mut image = vec![0; size as usize];
            if r == 1 {
                for _ in 0..stale_blocks {
                    let b = sim.rng.below(blocks) as usize * BLOCK;
                    image[b..b + BLOCK].fill(0xee);
                }
            }
            sim.nodes.insert(
                r,
                Node {
                    replica: Replica::new(Epoch(1), 0),
                    durable: image.clone(),
                    lost_power: false,
                    image,
                    work: Vec::new(),
                    inbound: VecDeque::new(),
                    outbound: VecDeque::new(),
                    up: false,
                    stream: 0,
                    down_until: 0,
                },
            );
            sim.connect(r);
        }
        sim
    }

    /// Replicas may lose power (see [`Sim::power_loss`]).
    pub fn with_power_loss(mut self) -> Sim {
        self.power_loss = true;
        self
    }

    /// The next promoted primary may be lost in turn before it has
    /// reconciled the copies.
    pub fn with_second_failover(mut self) -> Sim {
        self.second_failovers = true;
        self
    }

    /// The primary may be demoted for a hand-over, and then either resume
    /// or settle everything and hand the volume over.
    pub fn with_demotions(mut self) -> Sim {
        self.demotions = true;
        self
    }

    /// The primary's own disk may fail an operation.
    pub fn with_local_failures(mut self) -> Sim {
        self.local_failures = true;
        self
    }

    /// Hands the volume over if the primary asked to (its copy failed);
    /// false if nothing could take over (the run stops there).
    fn hand_over_if_due(&mut self) -> bool {
        if !self.hand_over_due {
            return true;
        }
        self.hand_over_due = false;
        trace(|| "the primary's copy failed: the volume is handed over".into());
        if self.lose_the_primary() {
            self.handovers += 1;
            true
        } else {
            self.stopped = true;
            false
        }
    }

    fn connect(&mut self, r: ReplicaId) {
        let node = self.nodes.get_mut(&r).unwrap();
        node.stream = node.replica.hello(self.epoch, self.primary_id).expect("same placement");
        node.up = true;
        let unsettled = node.replica.unsettled();
        let actions = self.primary.connected(r, unsettled);
        self.run(actions);
    }

    fn disconnect(&mut self, r: ReplicaId) {
        let node = self.nodes.get_mut(&r).unwrap();
        if !node.up {
            return;
        }
        trace(|| format!("stream to {r} lost"));
        node.up = false;
        node.inbound.clear();
        node.outbound.clear();
        node.replica.closed(node.stream);
        node.down_until = self.step + 1 + self.rng.below(60);
        let actions = self.primary.replica_lost(r);
        self.run(actions);
    }

    /// A random operation: mostly writes, some WRITE SAMEs, unmaps and flushes.
    fn submit(&mut self) {
        let blocks = (self.image.len() / BLOCK) as u64;
        let token = self.next_token;
        self.next_token += 1;
        let first = self.rng.below(blocks);
        let n = 1 + self.rng.below(8.min(blocks - first));
        let stamp = |token: u64, k: u64| {
            let mut b = vec![(token % 251) as u8; BLOCK];
            b[..8].copy_from_slice(&token.to_le_bytes());
            b[8] = k as u8;
            b
        };
        let op = match self.rng.below(24) {
            0 => Op::Flush,
            // The unit's saved state (reservations, mode pages): ordered
            // against other such changes only.
            20 => Op::UnitState { text: self.rng.chance(80).then(|| Bytes::from(format!("state {token}"))) },
            1 => {
                self.unmaps.push((token, first, n));
                Op::Unmap { offset: first * BLOCK as u64, len: n * BLOCK as u64 }
            }
            2 | 3 => Op::WriteSame {
                offset: first * BLOCK as u64,
                len: n * BLOCK as u64,
                block: Bytes::from(stamp(token, 0)),
                fua: self.rng.chance(30),
            },
            _ => {
                let data: Vec<u8> = (0..n).flat_map(|k| stamp(token, k)).collect();
                Op::Write { offset: first * BLOCK as u64, data: Bytes::from(data), fua: self.rng.chance(30) }
            }
        };
        let writes = matches!(op, Op::Write { .. } | Op::WriteSame { .. });
        self.ops.insert(token, (first, n, writes, false));
        trace(|| format!("submit {token}: {op:?}"));
        let actions = self.primary.submit(token, op);
        self.run(actions);
    }

    fn run(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::ApplyLocal { seq, op } => self.local.push(Local::Apply { seq, op }),
                Action::ReadForCopy { seq, offset, len } => self.local.push(Local::Read { seq, offset, len }),
                Action::Send { to, msg } => {
                    let node = self.nodes.get_mut(&to).unwrap();
                    if node.up {
                        node.inbound.push_back(msg);
                    }
                }
                Action::Complete { token, result } if self.settling == Some(token) => {
                    self.settling = None;
                    self.ops.get_mut(&token).unwrap().3 = true;
                    if result.is_ok() {
                        trace(|| "settled: the volume is handed over".into());
                        self.hand_over_due = true;
                    } else {
                        trace(|| "not settled: the primary resumes".into());
                        let actions = self.primary.resume();
                        self.run(actions);
                    }
                }
                Action::Complete { token, result: Err(super::primary::Failure::NotReady) } => {
                    // The initiator would retry it on another path; it was
                    // not acknowledged.
                    let e = self.ops.get_mut(&token).unwrap();
                    assert!(!e.3, "operation {token} answered twice");
                    e.3 = true;
                    self.not_ready += 1;
                }
                Action::Complete { token, result: Err(super::primary::Failure::Local(_)) } => {
                    assert!(self.local_failures, "operation {token} failed on the primary's copy");
                    let e = self.ops.get_mut(&token).unwrap();
                    assert!(!e.3, "operation {token} answered twice");
                    e.3 = true;
                    self.medium_errors += 1;
                }
                Action::Complete { token, result } => {
                    assert!(result.is_ok(), "operation {token} failed: {result:?}");
                    self.acknowledge(token);
                }
                Action::OwnCopyFailed { epoch } => {
                    assert_eq!(epoch, self.epoch, "asked to hand over at another epoch");
                    self.hand_over_due = true;
                }
                Action::RequestOutOfSync { replica, .. } => {
                    self.control.entry(replica).or_default().push_back(Mark::OutOfSync)
                }
                Action::RequestInSync { replica, .. } => {
                    self.control.entry(replica).or_default().push_back(Mark::InSync)
                }
                Action::Disconnect { replica } => self.disconnect(replica),
            }
        }
    }

    /// Checks the acknowledged write against every replica counted in sync.
    fn acknowledge(&mut self, token: u64) {
        let (_, _, _, answered) = self.ops.get_mut(&token).map(|e| *e).unwrap();
        assert!(!answered, "operation {token} answered twice");
        self.ops.get_mut(&token).unwrap().3 = true;
        self.acknowledged += 1;
        self.acknowledged_tokens.insert(token);
        for (&r, node) in &self.nodes {
            if self.in_sync_for_control[&r] && !node.lost_power {
                self.holds_acknowledged(token, &node.image, r);
            }
        }
    }

    /// The control plane's answer to the first mark asked for `r`: made
    /// (and said so), made but not known, not made and not known, or
    /// nothing yet. A mark made for a copy in sync finds every
    /// acknowledged write on it.
    fn answer_mark(&mut self, r: ReplicaId) {
        let Some(&mark) = self.control.get(&r).and_then(VecDeque::front) else { return };
        let roll = self.rng.below(100);
        if roll >= 85 {
            return;
        }
        if roll < 70 {
            self.in_sync_for_control.insert(r, mark == Mark::InSync);
            match mark {
                Mark::OutOfSync => self.nodes.get_mut(&r).unwrap().lost_power = false,
                Mark::InSync => {
                    let image = &self.nodes[&r].image;
                    for &token in &self.acknowledged_tokens {
                        self.holds_acknowledged(token, image, r);
                    }
                }
            }
        }
        let answer = if roll < 55 { MarkAnswer::Made } else { MarkAnswer::Unknown };
        trace(|| format!("mark {mark:?} of {r}: committed {}, answered {answer:?}", roll < 70));
        if answer == MarkAnswer::Unknown {
            self.unknown_marks += 1;
        }
        match self.primary.mark_answered(r, mark, answer) {
            MarkStep::AskAgain => {}
            MarkStep::Done(actions) => {
                self.control.get_mut(&r).unwrap().pop_front();
                self.run(actions);
            }
        }
    }

    /// Replica `r` loses power: what it did not flush is gone, work in
    /// flight too, and it restarts knowing nothing of its activity log.
    fn power_loss(&mut self, r: ReplicaId) {
        trace(|| format!("replica {r} loses power"));
        self.disconnect(r);
        let (epoch, primary) = (self.epoch, self.primary_id);
        let node = self.nodes.get_mut(&r).unwrap();
        node.image.clone_from(&node.durable);
        node.work.clear();
        node.replica = Replica::new(epoch, primary);
        node.lost_power = true;
    }

    /// Acknowledged write `token` (if it is one) is in `image`, or a later
    /// write of the same blocks is.
    fn holds_acknowledged(&self, token: u64, image: &[u8], who: ReplicaId) {
        let (first, n, writes, _) = self.ops[&token];
        if !writes {
            return;
        }
        for b in first..first + n {
            let v = version(image, b);
            let unmapped_later = v == 0 && self.unmaps.iter().any(|&(t, f, k)| t > token && (f..f + k).contains(&b));
            assert!(
                v >= token || unmapped_later,
                "write {token} acknowledged, but copy {who} holds version {v} of block {b}"
            );
        }
    }

    /// The primary is lost with whatever it had in flight: each replica
    /// got some prefix of its stream and applies what it got; then a
    /// replica the control plane counts in sync is promoted at the next
    /// epoch, and reconciles the others counted in sync by the activity
    /// logs. Checks that the acknowledged writes are on the new primary and
    /// that, once reconciled and before anything new is written, every
    /// copy in sync is the new primary's image exactly.
    pub fn lose_the_primary(&mut self) -> bool {
        let ids: Vec<ReplicaId> = self.nodes.keys().copied().collect();
        // A copy that lost power since it was last marked out of sync may
        // lack what it acknowledged and did not flush: not a candidate.
        let candidates: Vec<ReplicaId> =
            ids.iter().copied().filter(|r| self.in_sync_for_control[r] && !self.nodes[r].lost_power).collect();
        if candidates.is_empty() {
            // Nothing can take over (the volume is suspended): not this test.
            return false;
        }
        let new = candidates[self.rng.below(candidates.len() as u64) as usize];
        trace(|| format!("the primary is lost; {new} is promoted"));
        // What each replica still gets of the old primary's streams.
        for &r in &ids {
            let keep = {
                let node = &self.nodes[&r];
                if node.up {
                    self.rng.below(node.inbound.len() as u64 + 1) as usize
                } else {
                    0
                }
            };
            let node = self.nodes.get_mut(&r).unwrap();
            let frames: Vec<ToReplica> = node.inbound.drain(..).take(keep).collect();
            node.outbound.clear();
            for msg in frames {
                let actions = node.replica.receive(node.stream, msg);
                node.work.extend(
                    actions
                        .into_iter()
                        .filter(|a| !matches!(a, ReplicaAction::Send { .. } | ReplicaAction::Disconnect)),
                );
            }
            // The replica applies what it received (answers go nowhere).
            while !node.work.is_empty() {
                let i = self.rng.below(node.work.len() as u64) as usize;
                let more = node.do_work(i, false);
                node.work.extend(
                    more.into_iter().filter(|a| !matches!(a, ReplicaAction::Send { .. } | ReplicaAction::Disconnect)),
                );
            }
            node.up = false;
            node.replica.closed(node.stream);
        }
        self.local.clear();
        self.control.clear();
        self.lease = true;
        self.demoted_until = None;
        self.settling = None;
        // Operations never answered stay so: their initiator retries them.
        for e in self.ops.values_mut() {
            e.3 = true;
        }

        let node = self.nodes.remove(&new).unwrap();
        self.in_sync_for_control.remove(&new);
        for &token in &self.acknowledged_tokens {
            self.holds_acknowledged(token, &node.image, new);
        }
        let log = node.replica.unsettled();
        self.image = node.image;
        self.epoch = Epoch(self.epoch.0 + 1);
        self.primary_id = new;
        let size = self.image.len() as u64;
        let states = self
            .nodes
            .keys()
            .map(|&r| {
                let mut all = DirtyMap::default();
                all.mark_all(size);
                let state = match (&log, self.in_sync_for_control[&r]) {
                    (_, false) => ReplicaState::OutOfSync(all),
                    (Some(log), true) => ReplicaState::Unsettled(log.clone()),
                    (None, true) => ReplicaState::Failing(all),
                };
                (r, state)
            })
            .collect();
        self.primary = Primary::new(self.epoch, size, 1, states);
        let start = self.primary.start();
        self.run(start);
        for &r in self.nodes.keys().copied().collect::<Vec<_>>().iter() {
            let node = self.nodes.get_mut(&r).unwrap();
            let _ = node.replica.set_placement(self.epoch, new);
            node.inbound.clear();
            if self.rng.chance(30) {
                // Not reached at first (it had not applied the placement
                // yet, or its node is slow): it connects later.
                node.down_until = self.step + 1 + self.rng.below(40);
                let actions = self.primary.replica_lost(r);
                self.run(actions);
            } else {
                self.connect(r);
            }
        }
        // Reconcile, with nothing new submitted and no fault but, now and
        // then, the loss of this primary too before it is done.
        while self.nodes.keys().any(|r| {
            matches!(
                self.primary.replica(*r),
                Some(ReplicaState::Unsettled(_) | ReplicaState::Resyncing { reconcile: true, .. })
            )
        }) {
            if self.second_failovers && self.rng.chance(4) {
                trace(|| format!("{new} is lost in turn while it reconciles"));
                self.second_failovers = false;
                return self.lose_the_primary();
            }
            assert!(self.event(false), "reconciliation stalled");
        }
        for (&r, node) in &self.nodes {
            if self.primary.replica(r) == Some(&ReplicaState::InSync) {
                assert!(node.image == self.image, "copy {r}, in sync, differs from the promoted primary {new}");
                self.reconciled += 1;
            }
        }
        true
    }

    /// One random event; false when nothing is left to happen.
    fn event(&mut self, faults: bool) -> bool {
        self.step += 1;
        let mut choices: Vec<u8> = Vec::new();
        if !self.local.is_empty() {
            choices.push(0);
        }
        if self.nodes.values().any(|n| !n.work.is_empty()) {
            choices.push(1);
        }
        if self.nodes.values().any(|n| n.up && !n.inbound.is_empty()) {
            choices.push(2);
        }
        if self.nodes.values().any(|n| n.up && !n.outbound.is_empty()) {
            choices.push(3);
        }
        if self.control.values().any(|q| !q.is_empty()) {
            choices.push(4);
        }
        if !self.lease && self.lease_back_at <= self.step {
            choices.push(6);
        }
        if self.demoted_until.is_some_and(|at| at <= self.step) {
            choices.push(7);
        }
        let down: Vec<ReplicaId> =
            self.nodes.iter().filter(|(_, n)| !n.up && n.down_until <= self.step).map(|(&r, _)| r).collect();
        if !down.is_empty() {
            choices.push(5);
        }
        if choices.is_empty() {
            return false;
        }
        // (After hand-overs no replica may be left to fail.)
        if faults && !self.nodes.is_empty() && self.rng.chance(2) {
            let ids: Vec<ReplicaId> = self.nodes.keys().copied().collect();
            let r = ids[self.rng.below(ids.len() as u64) as usize];
            match self.rng.below(10) {
                0 if self.lease => {
                    trace(|| "lease lost".into());
                    self.lease = false;
                    self.lease_back_at = self.step + 1 + self.rng.below(30);
                    let actions = self.primary.lease_lost();
                    self.run(actions);
                }
                1 if self.power_loss => self.power_loss(r),
                2..=4 if self.demotions && self.demoted_until.is_none() && self.settling.is_none() => {
                    trace(|| "the primary is demoted for a hand-over".into());
                    self.demoted_until = Some(self.step + 1 + self.rng.below(40));
                    self.demoted_deadline = self.step + 1000;
                    let actions = self.primary.demote();
                    self.run(actions);
                }
                _ => self.disconnect(r),
            }
            return true;
        }
        match choices[self.rng.below(choices.len() as u64) as usize] {
            0 => {
                let i = self.rng.below(self.local.len() as u64) as usize;
                let fail = faults && self.local_failures && self.rng.chance(3);
                let actions = match self.local.swap_remove(i) {
                    Local::Apply { seq, .. } if fail => {
                        trace(|| format!("the primary's disk fails operation {seq}"));
                        self.primary.local_done(seq, Err("disk error".into()))
                    }
                    Local::Apply { seq, op } => {
                        apply(&mut self.image, &op);
                        self.primary.local_done(seq, Ok(()))
                    }
                    Local::Read { seq, offset, len } => {
                        let data = Bytes::copy_from_slice(&self.image[offset as usize..(offset + len) as usize]);
                        self.primary.copy_read(seq, Ok(data))
                    }
                };
                self.run(actions);
            }
            1 => {
                let busy: Vec<ReplicaId> =
                    self.nodes.iter().filter(|(_, n)| !n.work.is_empty()).map(|(&r, _)| r).collect();
                let r = busy[self.rng.below(busy.len() as u64) as usize];
                let fail = faults && self.rng.chance(2);
                if fail {
                    trace(|| format!("replica {r}'s disk fails a piece of work"));
                }
                let node = self.nodes.get_mut(&r).unwrap();
                let i = self.rng.below(node.work.len() as u64) as usize;
                let actions = node.do_work(i, fail);
                self.replica_actions(r, actions);
            }
            2 => {
                let ready: Vec<ReplicaId> =
                    self.nodes.iter().filter(|(_, n)| n.up && !n.inbound.is_empty()).map(|(&r, _)| r).collect();
                let r = ready[self.rng.below(ready.len() as u64) as usize];
                let node = self.nodes.get_mut(&r).unwrap();
                let msg = node.inbound.pop_front().unwrap();
                let actions = node.replica.receive(node.stream, msg);
                self.replica_actions(r, actions);
            }
            3 => {
                let ready: Vec<ReplicaId> =
                    self.nodes.iter().filter(|(_, n)| n.up && !n.outbound.is_empty()).map(|(&r, _)| r).collect();
                let r = ready[self.rng.below(ready.len() as u64) as usize];
                let msg = self.nodes.get_mut(&r).unwrap().outbound.pop_front().unwrap();
                let actions = self.primary.received(r, msg);
                self.run(actions);
            }
            4 => {
                let asked: Vec<ReplicaId> =
                    self.control.iter().filter(|(_, q)| !q.is_empty()).map(|(&r, _)| r).collect();
                let r = asked[self.rng.below(asked.len() as u64) as usize];
                self.answer_mark(r);
            }
            // As the driver does: a demoted primary waits (a while) for what
            // it numbered to settle before its final flush.
            7 if self.primary.backlog().0 > 0 && self.step < self.demoted_deadline => {
                self.demoted_until = Some(self.step + 1 + self.rng.below(10));
            }
            7 => {
                self.demoted_until = None;
                if self.rng.chance(50) {
                    trace(|| "the hand-over does not happen: the primary resumes".into());
                    let actions = self.primary.resume();
                    self.run(actions);
                } else {
                    // A final flush that tells every replica all is settled;
                    // once it is done the volume is handed over.
                    let token = self.next_token;
                    self.next_token += 1;
                    self.ops.insert(token, (0, 0, false, false));
                    self.settling = Some(token);
                    trace(|| format!("the demoted primary settles everything ({token})"));
                    let actions = self.primary.settle_everything(token);
                    self.run(actions);
                }
            }
            6 => {
                trace(|| "lease renewed".into());
                self.lease = true;
                let actions = self.primary.lease_renewed();
                self.run(actions);
            }
            _ => {
                let r = down[self.rng.below(down.len() as u64) as usize];
                self.connect(r);
            }
        }
        true
    }

    fn replica_actions(&mut self, r: ReplicaId, actions: Vec<ReplicaAction>) {
        for a in actions {
            match a {
                ReplicaAction::Send { stream, msg } => {
                    let node = self.nodes.get_mut(&r).unwrap();
                    if node.up && stream == node.stream {
                        node.outbound.push_back(msg);
                    }
                }
                ReplicaAction::Disconnect => {
                    // Only a new placement makes a replica close a good
                    // stream, and the placement here never changes.
                    self.replica_closes += 1;
                    self.disconnect(r);
                }
                work => self.nodes.get_mut(&r).unwrap().work.push(work),
            }
        }
    }

    /// Runs `ops` operations with faults, and stops at once.
    pub fn run_to_end_without_healing(&mut self, ops: u64, fault_percent: u64) {
        let mut submitted = 0;
        while submitted < ops {
            if !self.hand_over_if_due() {
                return;
            }
            if self.rng.chance(35) {
                self.submit();
                submitted += 1;
            } else {
                let faults = self.rng.chance(fault_percent);
                self.event(faults);
            }
        }
    }

    /// Runs `ops` operations with faults, then heals and checks the images.
    pub fn run_to_end(&mut self, ops: u64, fault_percent: u64) {
        self.run_to_end_without_healing(ops, fault_percent);
        if self.stopped || !self.hand_over_if_due() {
            return;
        }
        // Heal: no more faults; down replicas come back when due. A few
        // writes go on at first, while replicas catch up and are marked.
        let mut idle = 0;
        let trickle_until = self.step + 400;
        while idle < 200 {
            if !self.hand_over_if_due() {
                return;
            }
            if self.step < trickle_until && self.rng.chance(4) {
                self.submit();
                idle = 0;
            } else if self.event(false) {
                idle = 0;
            } else {
                idle += 1;
                self.step += 1;
            }
        }
        for (&r, node) in &self.nodes {
            assert_eq!(self.primary.replica(r), Some(&ReplicaState::InSync), "replica {r} is back in sync");
            assert!(node.image == self.image, "replica {r}'s image differs from the primary's");
        }
        assert_eq!(self.replica_closes, 0, "a replica closed a stream of the primary (frames out of order?)");
        let unanswered: Vec<u64> = self.ops.iter().filter(|(_, e)| !e.3).map(|(&t, _)| t).collect();
        assert!(unanswered.is_empty(), "never answered: {unanswered:?}");
        assert_eq!(self.primary.backlog(), (0, 0));
    }
}

#[cfg(test)]
mod tests;
