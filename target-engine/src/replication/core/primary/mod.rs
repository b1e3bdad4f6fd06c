//! The primary's side of one replicated volume, as a state machine with no
//! I/O inside (CLUSTER.md §2). Events go in (an operation submitted, the
//! local copy done, a replica's answer, a replica lost, the control plane's
//! decision) and [`Action`]s come out (apply locally, send to a replica,
//! complete the operation, ask the control plane); a driver does the I/O.
//!
//! * Every operation gets the next number and goes, in number order, to the
//!   local copy and to every connected replica that is not out of sync. It
//!   completes (GOOD) only when the local copy and every in-sync replica
//!   have done it: an acknowledged write is on every in-sync copy.
//! * Conflicting operations (sharing bytes, or a flush) apply in number order
//!   on every copy ([`super::order::Sequencer`]); the others pipeline.
//! * When an in-sync replica is lost, nothing completes any more and new
//!   operations are held, and the control plane is asked to mark it out of
//!   sync at the current epoch. Once it has, what the replica did not
//!   acknowledge starts its [`DirtyMap`] and the waiting operations complete
//!   without it. Until then nothing completes, however long it takes: a
//!   write that skipped an in-sync replica is never acknowledged. If the
//!   primary loses its lease meanwhile, what waits fails as NOT READY, so
//!   that the initiator retries on another path.
//! * A replica that comes back gets new operations at once and the regions
//!   it missed as numbered copies: a copy reads the local region in number
//!   order, so a write numbered before it is in what it reads and one
//!   numbered after it lands after it on the replica too. When nothing is
//!   left to copy, operations wait for it as for an in-sync replica, and
//!   once it has done every operation that was answered without it, the
//!   control plane is asked to mark it in sync.
//! * **Unknown is not no** (CLUSTER.md §6, rules 1 and 2): a replica leaves
//!   the set of copies that operations wait for only once the control
//!   plane has *committed* its out-of-sync mark at this epoch. A mark whose
//!   outcome is not known is asked again until the answer is definite
//!   ([`Primary::mark_answered`]), and the driver asks the marks of one
//!   replica one at a time, in order, so that a late in-sync mark cannot
//!   land after the out-of-sync mark that followed it. While an in-sync
//!   mark is unknown, the replica is waited for as if it had been made.
//! * **Write-back copies** (rule 5): a replica may acknowledge a write from
//!   its cache and lose it with its power. The regions of such writes since
//!   its last completed flush join what it missed when it is lost, so that
//!   its resync brings them back.
//! * **Settled means answered by every in-sync copy** (rule 4): an
//!   operation stays unsettled (in the replicas' activity logs) until the
//!   local copy and every in-sync replica have done it, whatever became of
//!   its initiator's command: a lease loss answers the command NOT READY,
//!   not the operation.
//! * Fewer in-sync copies than `min_in_sync` (the primary counts) suspends
//!   writes: they are held, and [`Primary::suspended`] says so.
//! * A replica that answers with a newer epoch has seen another primary
//!   take over: this one is fenced, fails everything and accepts nothing.
//! * Every operation tells the replicas how far operations are settled
//!   (every one numbered below has completed on every in-sync copy), so
//!   that each keeps the activity log of its copy (see `super::replica`).
//! * A primary promoted from a replica starts with its in-sync replicas
//!   [`ReplicaState::Unsettled`]: the old primary's last operations may be
//!   on some copies only. Each replica's log comes with its stream; the
//!   regions of both logs are copied from here before any operation is
//!   numbered, and then it is in sync at the new epoch with nothing more
//!   asked of the control plane. A replica that cannot be reconciled (it is
//!   not reached, or its log is not known) is marked out of sync first,
//!   as one lost in sync is, and resynced by checksums.
//! * **A primary whose own copy fails an operation stops serving**
//!   (issue 29, finding 8). The replicas may have done what the local copy
//!   could not, so the copies differ there: while any copy is in sync for
//!   the control plane, the primary admits nothing more, the failed
//!   operation and what is held end NOT READY (the initiator retries on
//!   another path), and [`Action::OwnCopyFailed`] asks the control plane
//!   to hand the volume over to an in-sync copy with this one out of sync.
//!   With no copy in sync it goes on serving, the failed operation ends
//!   MEDIUM ERROR, and a copy being resynced gets the region again.
//! * A primary that is demoted stops admitting operations (what comes
//!   fails NOT READY, so that the initiator retries on another path), lets
//!   what it numbered complete, and then settles everything on the
//!   replicas with a flush, so that the next primary has nothing to copy.
//!
//! The epoch changes only when the primary does; marking replicas in or
//! out of sync is a compare-and-set on it in the control plane.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::dirty::{DirtyMap, REGION};
use super::ops::{Epoch, Extent, Op, ReplicaId};
use super::order::Sequencer;

mod marks;
mod resync;
mod role;

pub use marks::{Mark, MarkAnswer, MarkStep};

/// The caller's handle for a submitted operation.
pub type Token = u64;

/// Why an operation did not complete GOOD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The local copy could not do it (MEDIUM ERROR).
    Local(String),
    /// The primary may not serve it: its lease ran out, or another primary
    /// took over (NOT READY, ASYMMETRIC ACCESS STATE TRANSITION).
    NotReady,
}

/// What the primary sends a replica, on one ordered stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToReplica {
    Op {
        seq: u64,
        epoch: Epoch,
        /// Every operation numbered below has completed on every in-sync copy.
        settled: u64,
        op: Op,
    },
    /// A region it missed, as the primary holds it now.
    Copy { seq: u64, epoch: Epoch, offset: u64, data: Bytes },
    /// A region it may hold already (a full resync): the CRC32C of the
    /// primary's bytes, answered `Done` if the replica's match, `Differs`
    /// if not (then the `Copy` follows with the same number).
    Verify { seq: u64, epoch: Epoch, offset: u64, len: u64, crc: u32 },
}

/// What a replica answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FromReplica {
    /// Operation or copy `seq` is done there (durably, where it asked for it).
    Done { seq: u64 },
    /// Operation `seq` failed there.
    Failed { seq: u64, why: String },
    /// The replica has applied another placement than ours.
    StaleEpoch { current: Epoch },
    /// The region of verification `seq` differs there.
    Differs { seq: u64 },
}

/// What the driver is to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Apply `op` to the local copy, then call [`Primary::local_done`].
    ApplyLocal {
        seq: u64,
        op: Op,
    },
    /// Read the local region for a copy, then call [`Primary::copy_read`].
    ReadForCopy {
        seq: u64,
        offset: u64,
        len: u64,
    },
    Send {
        to: ReplicaId,
        msg: ToReplica,
    },
    /// Operation `token` ended.
    Complete {
        token: Token,
        result: Result<(), Failure>,
    },
    /// Ask the control plane to mark `replica` out of sync at `epoch`.
    RequestOutOfSync {
        replica: ReplicaId,
        epoch: Epoch,
    },
    /// Ask the control plane to mark `replica` in sync at `epoch`.
    RequestInSync {
        replica: ReplicaId,
        epoch: Epoch,
    },
    /// The local copy failed an operation while copies are in sync: ask
    /// the control plane to hand the volume over to one of them, with this
    /// copy out of sync. Until it has, nothing is admitted. Given once.
    OwnCopyFailed {
        epoch: Epoch,
    },
    /// Close the stream to `replica`.
    Disconnect {
        replica: ReplicaId,
    },
}

/// Where a replica stands, as this primary sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaState {
    /// Has every completed operation; every new one waits for it.
    InSync,
    /// In sync for the control plane, but the previous primary's last
    /// operations may differ here in these regions (this copy's activity
    /// log; the replica's is added when it connects). Nothing is numbered
    /// until it is reconciled.
    Unsettled(DirtyMap),
    /// Lost while in sync; being marked out of sync. Nothing completes.
    Failing(DirtyMap),
    /// Missed the regions in the map.
    OutOfSync(DirtyMap),
    /// Connected again: gets new operations and, a region at a time, what
    /// it missed; `copying` are the regions being copied now. With
    /// `verify` (nothing is known of what it missed: the whole volume is
    /// dirty) a region is sent only if its checksum differs there. With
    /// `reconcile` it is in sync for the control plane and is being
    /// reconciled after a promotion: nothing is numbered until it is done.
    Resyncing { dirty: DirtyMap, copying: BTreeSet<u64>, cursor: u64, verify: bool, reconcile: bool },
    /// Nothing left to copy; being marked in sync. Operations wait for it.
    Catching,
}

impl ReplicaState {
    /// Whether operations wait for this replica before they complete.
    fn waited_for(&self) -> bool {
        matches!(self, ReplicaState::InSync | ReplicaState::Catching) || self.reconciling()
    }

    /// In sync for the control plane, not yet reconciled with this primary.
    fn reconciling(&self) -> bool {
        matches!(self, ReplicaState::Unsettled(_) | ReplicaState::Resyncing { reconcile: true, .. })
    }
}

#[derive(Debug)]
enum Kind {
    /// An operation; `changes` are the bytes it changes; `cached` when a
    /// replica may acknowledge it before it is durable; `flush` for a
    /// flush (every operation before it is durable once it is done).
    Op { changes: Option<(u64, u64)>, cached: bool, flush: bool },
    /// A copy of `region` for `to`; `abandoned` once `to` went away;
    /// `held`, the bytes read, while the replica compares checksums;
    /// `sent` once they were sent.
    Copy { to: ReplicaId, region: u64, abandoned: bool, held: Option<Bytes>, sent: bool },
}

#[derive(Debug)]
struct Pending {
    kind: Kind,
    /// Answered to the caller once complete; `None` after (or for copies).
    token: Option<Token>,
    /// Held until its turn to apply locally.
    op: Option<Op>,
    local: Option<Result<(), String>>,
    /// Replicas it was sent to that have not acknowledged it.
    unacked: BTreeSet<ReplicaId>,
}

/// Progress of a resync, for the dashboard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResyncProgress {
    pub copied_bytes: u64,
    pub left_bytes: u64,
    /// Regions a full resync found equal there, and did not send.
    pub matched_bytes: u64,
}

/// The primary's state machine for one volume.
#[derive(Debug)]
pub struct Primary {
    epoch: Epoch,
    size: u64,
    min_in_sync: usize,
    next_seq: u64,
    replicas: BTreeMap<ReplicaId, ReplicaState>,
    connected: BTreeSet<ReplicaId>,
    pending: BTreeMap<u64, Pending>,
    order: Sequencer,
    /// Submitted while operations are frozen, suspended or without lease.
    held: VecDeque<(Token, Op)>,
    fenced: bool,
    lease: bool,
    copied: BTreeMap<ReplicaId, u64>,
    matched: BTreeMap<ReplicaId, u64>,
    /// Regions copied at once per resyncing replica.
    copy_window: usize,
    /// Operations numbered and not yet done by the local copy and every
    /// in-sync replica, whatever became of their initiator's command (a
    /// lease loss answers the command, not the operation): the replicas'
    /// activity logs keep every one of them (CLUSTER.md §6, rule 4).
    unsettled: BTreeSet<u64>,
    /// Per replica, the regions of writes it acknowledged from its cache
    /// (not durable) since the last flush it completed: a replica that
    /// loses power may lose them, so they join what it missed when it is
    /// lost (CLUSTER.md §6, rule 5).
    volatile: BTreeMap<ReplicaId, DirtyMap>,
    /// Replicas caught up (`Catching`) whose in-sync mark is not asked for
    /// yet: they owe operations answered without them.
    unasked: BTreeSet<ReplicaId>,
    /// Demoted: nothing new is admitted.
    demoted: bool,
    /// The local copy failed an operation while copies were in sync:
    /// nothing is admitted, ever (see [`Action::OwnCopyFailed`]).
    own_copy_failed: bool,
}

impl Primary {
    /// A primary at `epoch` of a volume of `size` bytes, with its replicas
    /// in the states the control plane holds: in sync, or out of sync with
    /// what they missed (the whole volume when nothing better is known);
    /// after a promotion, unsettled; `Failing` for one that the control
    /// plane counts in sync and this primary cannot trust (see [`Primary::start`]).
    pub fn new(epoch: Epoch, size: u64, min_in_sync: usize, replicas: BTreeMap<ReplicaId, ReplicaState>) -> Self {
        Primary {
            epoch,
            size,
            min_in_sync: min_in_sync.max(1),
            next_seq: 1,
            replicas,
            connected: BTreeSet::new(),
            pending: BTreeMap::new(),
            order: Sequencer::default(),
            held: VecDeque::new(),
            fenced: false,
            lease: true,
            copied: BTreeMap::new(),
            matched: BTreeMap::new(),
            copy_window: 4,
            unsettled: BTreeSet::new(),
            volatile: BTreeMap::new(),
            unasked: BTreeSet::new(),
            demoted: false,
            own_copy_failed: false,
        }
    }

    /// What the primary asks for before anything else: that every replica
    /// it started `Failing` be marked out of sync.
    pub fn start(&mut self) -> Vec<Action> {
        let epoch = self.epoch;
        self.replicas
            .iter()
            .filter(|(_, s)| matches!(s, ReplicaState::Failing(_)))
            .map(|(&replica, _)| Action::RequestOutOfSync { replica, epoch })
            .collect()
    }

    /// Every operation numbered below this has completed on every in-sync copy.
    fn settled(&self) -> u64 {
        self.unsettled.first().copied().unwrap_or(self.next_seq)
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub fn replica(&self, id: ReplicaId) -> Option<&ReplicaState> {
        self.replicas.get(&id)
    }

    /// Copies that have every completed operation, the primary's own included.
    pub fn in_sync(&self) -> usize {
        1 + self.replicas.values().filter(|s| matches!(s, ReplicaState::InSync)).count()
    }

    /// Whether writes wait because fewer copies than `min_in_sync` are in sync.
    pub fn suspended(&self) -> bool {
        self.in_sync() < self.min_in_sync
    }

    /// Whether an in-sync replica is being reconciled after a promotion
    /// (operations are not numbered until it is).
    pub fn reconciling(&self) -> bool {
        self.replicas
            .values()
            .any(|s| matches!(s, ReplicaState::Unsettled(_) | ReplicaState::Resyncing { reconcile: true, .. }))
    }

    /// Whether everything waits while a lost replica is being marked out of sync.
    pub fn frozen(&self) -> bool {
        self.replicas.values().any(|s| matches!(s, ReplicaState::Failing(_)))
    }

    pub fn fenced(&self) -> bool {
        self.fenced
    }

    /// Operations numbered and not yet settled on every in-sync copy
    /// (answered to their initiator or not), and operations held.
    pub fn backlog(&self) -> (usize, usize) {
        (self.unsettled.len(), self.held.len())
    }

    pub fn progress(&self, id: ReplicaId) -> ResyncProgress {
        let left = match self.replicas.get(&id) {
            Some(ReplicaState::OutOfSync(d)) | Some(ReplicaState::Failing(d)) | Some(ReplicaState::Unsettled(d)) => {
                d.len() * REGION
            }
            Some(ReplicaState::Resyncing { dirty, copying, .. }) => (dirty.len() + copying.len() as u64) * REGION,
            _ => 0,
        };
        ResyncProgress {
            copied_bytes: self.copied.get(&id).copied().unwrap_or(0),
            left_bytes: left,
            matched_bytes: self.matched.get(&id).copied().unwrap_or(0),
        }
    }

    /// Whether new operations may be numbered: not fenced, with a lease,
    /// not frozen or suspended, and every replica operations wait for
    /// connected (at start, before the streams are up, they wait).
    fn may_number(&self) -> bool {
        !self.fenced
            && self.lease
            && !self.frozen()
            && !self.suspended()
            && self.replicas.values().all(|s| !s.reconciling())
            && self.replicas.iter().all(|(id, s)| !s.waited_for() || self.connected.contains(id))
    }

    /// An operation from the initiator's side.
    pub fn submit(&mut self, token: Token, op: Op) -> Vec<Action> {
        if self.fenced || !self.lease || self.demoted || self.own_copy_failed {
            return vec![Action::Complete { token, result: Err(Failure::NotReady) }];
        }
        let mut out = Vec::new();
        if self.may_number() && self.held.is_empty() {
            self.number(Some(token), op, &mut out);
        } else {
            self.held.push_back((token, op));
        }
        out
    }

    /// Numbers held operations while that is allowed.
    fn release_held(&mut self, out: &mut Vec<Action>) {
        while self.may_number() {
            let Some((token, op)) = self.held.pop_front() else { break };
            self.number(Some(token), op, out);
        }
    }

    /// Numbers an operation and sends it wherever it goes.
    fn number(&mut self, token: Option<Token>, op: Op, out: &mut Vec<Action>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut changes = op.changes();
        // A copy that misses a growth gets the new bytes as a dirty range:
        // its resync makes them (and grows it).
        if let Op::Resize { size } = op {
            if size > self.size {
                changes = Some((self.size, size - self.size));
                self.size = size;
            }
        }
        let mut unacked = BTreeSet::new();
        for (&id, state) in self.replicas.iter_mut() {
            match state {
                ReplicaState::OutOfSync(dirty) => {
                    if let Some((o, l)) = changes {
                        dirty.mark(o, l);
                    }
                }
                // A region being copied to it was read before this change
                // and its copy leaves later: the change would arrive first
                // and be overwritten. The region is copied again instead.
                ReplicaState::Resyncing { dirty, copying, .. }
                    if changes.is_some_and(|(o, l)| overlaps_any(copying, o, l)) =>
                {
                    if let Some((o, l)) = changes {
                        dirty.mark(o, l);
                    }
                }
                _ if self.connected.contains(&id) => {
                    unacked.insert(id);
                }
                // Lost, not yet marked: it missed this.
                ReplicaState::Failing(dirty) => {
                    if let Some((o, l)) = changes {
                        dirty.mark(o, l);
                    }
                }
                _ => {}
            }
        }
        self.unsettled.insert(seq);
        let settled = self.settled();
        for &to in &unacked {
            out.push(Action::Send { to, msg: ToReplica::Op { seq, epoch: self.epoch, settled, op: op.clone() } });
        }
        let free = self.order.push(seq, op.extent());
        let kind = Kind::Op { changes, cached: !op.durable(), flush: matches!(op, Op::Flush) };
        self.pending.insert(seq, Pending { kind, token, op: Some(op), local: None, unacked });
        if free {
            self.start_local(seq, out);
        }
    }

    fn start_local(&mut self, seq: u64, out: &mut Vec<Action>) {
        let Some(p) = self.pending.get_mut(&seq) else { return };
        match p.kind {
            Kind::Copy { region, .. } => {
                let offset = region * REGION;
                out.push(Action::ReadForCopy { seq, offset, len: REGION.min(self.size.saturating_sub(offset)) });
            }
            Kind::Op { .. } => {
                if let Some(op) = p.op.take() {
                    out.push(Action::ApplyLocal { seq, op });
                }
            }
        }
    }

    /// The local copy finished operation `seq`.
    pub fn local_done(&mut self, seq: u64, result: Result<(), String>) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(p) = self.pending.get_mut(&seq) {
            let failed = match (&result, &p.kind) {
                (Err(why), Kind::Op { changes, .. }) => Some((why.clone(), *changes)),
                _ => None,
            };
            p.local = Some(result);
            if let Some((why, changes)) = failed {
                self.own_copy_failed(seq, &why, changes, &mut out);
            }
        }
        for next in self.order.finish(seq) {
            self.start_local(next, &mut out);
        }
        self.settle(seq, &mut out);
        out
    }

    /// A replica's answer.
    pub fn received(&mut self, from: ReplicaId, msg: FromReplica) -> Vec<Action> {
        let mut out = Vec::new();
        match msg {
            FromReplica::Done { seq } => {
                let Some(p) = self.pending.get_mut(&seq) else { return out };
                if !p.unacked.remove(&from) {
                    return out;
                }
                match p.kind {
                    Kind::Copy { to, region, sent, .. } => {
                        if to == from {
                            self.pending.remove(&seq);
                            self.copied_region(from, region, sent, &mut out);
                        }
                        return out;
                    }
                    // Everything numbered before a flush applied before it
                    // there, and what follows it applies after it.
                    Kind::Op { flush: true, .. } => {
                        self.volatile.remove(&from);
                    }
                    Kind::Op { changes: Some((offset, len)), cached: true, .. } => {
                        self.volatile.entry(from).or_default().mark(offset, len);
                    }
                    Kind::Op { .. } => {}
                }
                self.settle(seq, &mut out);
                self.ask_in_sync(from, &mut out);
            }
            FromReplica::Differs { seq } => {
                // The region differs there: send what was read (the region
                // is still being copied, so nothing that changes it has been
                // sent in between).
                let Some(p) = self.pending.get_mut(&seq) else { return out };
                if let Kind::Copy { to, region, ref mut held, ref mut sent, .. } = p.kind {
                    if let Some(data) = held.take().filter(|_| to == from && p.unacked.contains(&from)) {
                        *sent = true;
                        let msg = ToReplica::Copy { seq, epoch: self.epoch, offset: region * REGION, data };
                        out.push(Action::Send { to, msg });
                    }
                }
            }
            FromReplica::Failed { seq, why } => {
                tracing::warn!(replica = from, seq, "a replica failed an operation: {why}");
                out.push(Action::Disconnect { replica: from });
                self.lost(from, &mut out);
            }
            FromReplica::StaleEpoch { current } if current > self.epoch => {
                tracing::error!(replica = from, ours = %self.epoch, theirs = %current, "fenced: the volume has another primary");
                self.fence(&mut out);
            }
            FromReplica::StaleEpoch { current } => {
                // It has not applied this placement yet: try again later.
                tracing::info!(replica = from, ours = %self.epoch, theirs = %current, "the replica is behind the placement");
                out.push(Action::Disconnect { replica: from });
                self.lost(from, &mut out);
            }
        }
        out
    }

    /// Answers operation `seq`'s caller if the local copy and every replica
    /// it waits for have done it, and forgets it once every replica it was
    /// sent to has answered.
    fn settle(&mut self, seq: u64, out: &mut Vec<Action>) {
        if self.frozen() {
            return;
        }
        let Some(p) = self.pending.get_mut(&seq) else { return };
        if matches!(p.kind, Kind::Copy { .. }) {
            return;
        }
        let Some(local) = &p.local else { return };
        let waits = p.unacked.iter().any(|r| self.replicas.get(r).is_some_and(ReplicaState::waited_for));
        if waits {
            return;
        }
        if let Some(token) = p.token.take() {
            // Handing over: the initiator retries on the copy that takes over.
            let result = match local {
                Err(_) if self.own_copy_failed => Err(Failure::NotReady),
                local => local.clone().map_err(Failure::Local),
            };
            out.push(Action::Complete { token, result });
        }
        self.unsettled.remove(&seq);
        // A resyncing replica's answer is still awaited: should it fail, the
        // bytes go back into its map.
        if p.unacked.is_empty() {
            self.pending.remove(&seq);
        }
    }

    fn settle_all(&mut self, out: &mut Vec<Action>) {
        let seqs: Vec<u64> = self.pending.keys().copied().collect();
        for seq in seqs {
            self.settle(seq, out);
        }
    }
}

/// Whether bytes `offset..offset + len` touch any of `regions`.
fn overlaps_any(regions: &BTreeSet<u64>, offset: u64, len: u64) -> bool {
    len > 0 && regions.range(offset / REGION..=(offset.saturating_add(len) - 1) / REGION).next().is_some()
}
