//! A replica lost, and the marks the primary asks of the control plane
//! about it: the rule that an unknown outcome is never taken for a no
//! lives here ([`Primary::mark_answered`]).

use super::*;

/// A mark the primary asks the control plane for (a compare-and-set on
/// its epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    InSync,
    OutOfSync,
}

/// What the control plane answered a mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkAnswer {
    /// Committed at the epoch asked for.
    Made,
    /// Certainly not made: the placement is at `current` (another epoch,
    /// or the copy or volume is gone at this one).
    Refused { current: Epoch },
    /// Not known: a timeout, a lost connection, or committed but not
    /// applied on this node yet. The mark may have been made, and may
    /// still be.
    Unknown,
}

/// What the driver does after [`Primary::mark_answered`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarkStep {
    /// The answer was definite: do these.
    Done(Vec<Action>),
    /// Ask the same mark again (after a pause), before any mark of this
    /// replica asked later: an unknown outcome is never taken for a no.
    AskAgain,
}

impl Primary {
    /// The stream to `replica` failed (or timed out).
    pub fn replica_lost(&mut self, replica: ReplicaId) -> Vec<Action> {
        let mut out = Vec::new();
        self.lost(replica, &mut out);
        out
    }

    pub(super) fn lost(&mut self, replica: ReplicaId, out: &mut Vec<Action>) {
        self.connected.remove(&replica);
        // Whatever it was sent and did not acknowledge, it may have missed.
        let mut missed = DirtyMap::default();
        let mut forget = Vec::new();
        for (&seq, p) in self.pending.iter_mut() {
            match &mut p.kind {
                Kind::Copy { to, region, abandoned, .. } if *to == replica => {
                    missed.mark(*region * REGION, 1);
                    *abandoned = true;
                    if p.local.is_some() {
                        forget.push(seq);
                    }
                }
                Kind::Op { changes, .. } => {
                    if p.unacked.remove(&replica) {
                        if let Some((o, l)) = *changes {
                            missed.mark(o, l);
                        }
                    }
                }
                Kind::Copy { .. } => {}
            }
        }
        for seq in forget {
            self.pending.remove(&seq);
        }
        // What it acknowledged from its cache, it may have lost with its power.
        if let Some(cached) = self.volatile.remove(&replica) {
            missed.absorb(&cached);
        }
        let Some(state) = self.replicas.get_mut(&replica) else { return };
        match state {
            // Caught up, and the control plane not asked yet: out of sync.
            ReplicaState::Catching if self.unasked.remove(&replica) => {
                *state = ReplicaState::OutOfSync(missed);
            }
            // The control plane may count it in sync: mark it out first.
            ReplicaState::InSync | ReplicaState::Catching => {
                *state = ReplicaState::Failing(missed);
                out.push(Action::RequestOutOfSync { replica, epoch: self.epoch });
            }
            // In sync for the control plane, and not reconciled; its own
            // log never came: where it differs is not known.
            ReplicaState::Unsettled(_) => {
                let mut all = DirtyMap::default();
                all.mark_all(self.size);
                *state = ReplicaState::Failing(all);
                out.push(Action::RequestOutOfSync { replica, epoch: self.epoch });
            }
            ReplicaState::Resyncing { dirty, copying, reconcile: true, .. } => {
                dirty.absorb(&missed);
                for r in std::mem::take(copying) {
                    dirty.mark(r * REGION, 1);
                }
                *state = ReplicaState::Failing(std::mem::take(dirty));
                out.push(Action::RequestOutOfSync { replica, epoch: self.epoch });
            }
            ReplicaState::Resyncing { dirty, copying, .. } => {
                dirty.absorb(&missed);
                for r in std::mem::take(copying) {
                    dirty.mark(r * REGION, 1);
                }
                *state = ReplicaState::OutOfSync(std::mem::take(dirty));
            }
            ReplicaState::OutOfSync(dirty) | ReplicaState::Failing(dirty) => dirty.absorb(&missed),
        }
        self.settle_all(out);
    }

    /// The control plane's answer to a [`Mark`] of `replica`. The driver
    /// asks the marks of one replica one at a time, in the order they were
    /// asked for, and asks a mark again until its answer is definite, so
    /// that the control plane applies them in that order (CLUSTER.md §6,
    /// rules 1 and 2):
    ///
    /// * out of sync, made: what waited for the replica completes;
    /// * in sync, made: operations wait for it from now on (they already did);
    /// * refused for a newer epoch: another primary may serve, this one is fenced;
    /// * in sync, refused at this epoch: certainly not in sync; it is
    ///   resynced from scratch at its next connection;
    /// * out of sync, refused at this epoch, or any mark unknown: asked again.
    ///   Meanwhile an in-sync candidate is still waited for, as if the mark
    ///   had been made, and a lost replica still holds every completion.
    pub fn mark_answered(&mut self, replica: ReplicaId, mark: Mark, answer: MarkAnswer) -> MarkStep {
        match (mark, answer) {
            (_, MarkAnswer::Refused { current }) if current > self.epoch => MarkStep::Done(self.superseded(current)),
            // Nothing this primary does completes any more: stop asking.
            (_, MarkAnswer::Unknown) if self.fenced => MarkStep::Done(Vec::new()),
            (Mark::OutOfSync, MarkAnswer::Made) => MarkStep::Done(self.out_of_sync_confirmed(replica)),
            (Mark::InSync, MarkAnswer::Made) => MarkStep::Done(self.in_sync_confirmed(replica)),
            (Mark::InSync, MarkAnswer::Refused { .. }) => MarkStep::Done(self.in_sync_refused(replica)),
            (Mark::OutOfSync, MarkAnswer::Refused { .. }) | (_, MarkAnswer::Unknown) => MarkStep::AskAgain,
        }
    }

    /// The control plane marked `replica` out of sync: what waited for it
    /// completes, and held operations go on.
    pub fn out_of_sync_confirmed(&mut self, replica: ReplicaId) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(state) = self.replicas.get_mut(&replica) {
            if let ReplicaState::Failing(dirty) = state {
                *state = ReplicaState::OutOfSync(std::mem::take(dirty));
            }
        }
        self.settle_all(&mut out);
        // It may be back already: then its resync starts now.
        if self.connected.contains(&replica) {
            self.resync(replica, &mut out);
        }
        self.release_held(&mut out);
        out
    }

    /// The control plane marked `replica` in sync.
    pub fn in_sync_confirmed(&mut self, replica: ReplicaId) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(state @ ReplicaState::Catching) = self.replicas.get_mut(&replica) {
            *state = ReplicaState::InSync;
        }
        self.release_held(&mut out);
        out
    }

    /// The control plane certainly did not mark `replica` in sync (never
    /// call this on an unknown outcome, see [`Primary::mark_answered`]): it
    /// goes on resyncing from scratch at the next connection.
    pub fn in_sync_refused(&mut self, replica: ReplicaId) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(state @ ReplicaState::Catching) = self.replicas.get_mut(&replica) {
            let mut all = DirtyMap::default();
            all.mark_all(self.size);
            *state = ReplicaState::OutOfSync(all);
            self.connected.remove(&replica);
            out.push(Action::Disconnect { replica });
        }
        self.settle_all(&mut out);
        out
    }
}
