//! What becomes of the primary's role: its lease, a newer epoch (fenced),
//! a demotion for a hand-over, and its own copy failing a write.

use super::*;

impl Primary {
    /// The local copy failed operation `seq`, which changes `changes`.
    pub(super) fn own_copy_failed(&mut self, seq: u64, why: &str, changes: Option<(u64, u64)>, out: &mut Vec<Action>) {
        // A copy being resynced may have done it: it gets the region again.
        if let Some((offset, len)) = changes {
            for state in self.replicas.values_mut() {
                if let ReplicaState::Resyncing { dirty, .. } = state {
                    dirty.mark(offset, len);
                }
            }
        }
        let in_sync_elsewhere = self.replicas.values().any(|s| s.waited_for() || matches!(s, ReplicaState::Failing(_)));
        if !in_sync_elsewhere || self.own_copy_failed {
            return;
        }
        tracing::error!(seq, epoch = %self.epoch, "the local copy failed an operation that in-sync copies may have done: \
            this primary stops serving and asks to hand over: {why}");
        self.own_copy_failed = true;
        for (token, _) in self.held.drain(..) {
            out.push(Action::Complete { token, result: Err(Failure::NotReady) });
        }
        out.push(Action::OwnCopyFailed { epoch: self.epoch });
    }

    /// Whether the local copy failed while copies were in sync (nothing is
    /// admitted until the volume is handed over).
    pub fn own_copy_has_failed(&self) -> bool {
        self.own_copy_failed
    }

    /// The primary no longer holds its lease (it cannot tell whether another
    /// took over): what waits fails NOT READY and nothing new is accepted
    /// until [`Primary::lease_renewed`].
    pub fn lease_lost(&mut self) -> Vec<Action> {
        self.lease = false;
        let mut out = Vec::new();
        self.fail_waiting(&mut out);
        out
    }

    pub fn lease_renewed(&mut self) -> Vec<Action> {
        self.lease = true;
        let mut out = Vec::new();
        self.release_held(&mut out);
        out
    }

    /// The control plane refused a mark because the placement is at
    /// `current`: past this primary's epoch, another primary may serve the
    /// volume, and this one is fenced.
    pub fn superseded(&mut self, current: Epoch) -> Vec<Action> {
        let mut out = Vec::new();
        if current > self.epoch && !self.fenced {
            tracing::error!(ours = %self.epoch, theirs = %current, "fenced: the control plane has a newer placement");
            self.fence(&mut out);
        }
        out
    }

    /// Another primary took over: everything fails and nothing is accepted.
    pub(super) fn fence(&mut self, out: &mut Vec<Action>) {
        self.fenced = true;
        self.fail_waiting(out);
        for replica in std::mem::take(&mut self.connected) {
            out.push(Action::Disconnect { replica });
        }
    }

    /// Stops admitting operations: what is held and what comes fails
    /// NOT READY, and what was numbered goes on to complete.
    pub fn demote(&mut self) -> Vec<Action> {
        self.demoted = true;
        self.held.drain(..).map(|(token, _)| Action::Complete { token, result: Err(Failure::NotReady) }).collect()
    }

    /// After [`Primary::demote`], once nothing numbered waits for an
    /// answer: a flush under `token` that tells every replica that all
    /// operations before it are settled (their activity logs empty, the
    /// next primary has nothing to reconcile). Completes NOT READY if it
    /// cannot be numbered now.
    pub fn settle_everything(&mut self, token: Token) -> Vec<Action> {
        let mut out = Vec::new();
        // A copy that failed a write is not in step with the others, however
        // its hand-over goes: never "settled", so never kept in sync.
        if self.demoted && !self.own_copy_failed && self.unsettled.is_empty() && self.may_number() {
            self.number(Some(token), Op::Flush, &mut out);
        } else {
            out.push(Action::Complete { token, result: Err(Failure::NotReady) });
        }
        out
    }

    pub fn demoted(&self) -> bool {
        self.demoted
    }

    /// Admits operations again after [`Primary::demote`] (the hand-over
    /// it was for did not happen).
    pub fn resume(&mut self) -> Vec<Action> {
        self.demoted = false;
        let mut out = Vec::new();
        self.release_held(&mut out);
        out
    }

    /// Fails every operation not yet answered, numbered or held. What was
    /// numbered stays unsettled until every in-sync copy has answered it:
    /// the replicas keep it in their activity logs meanwhile.
    pub(super) fn fail_waiting(&mut self, out: &mut Vec<Action>) {
        for p in self.pending.values_mut() {
            if let Some(token) = p.token.take() {
                out.push(Action::Complete { token, result: Err(Failure::NotReady) });
            }
        }
        for (token, _) in self.held.drain(..) {
            out.push(Action::Complete { token, result: Err(Failure::NotReady) });
        }
    }
}
