//! A replica that connects: reconciliation after a promotion, the copy of
//! the regions it missed, and its way back into the in-sync set.

use super::*;

impl Primary {
    /// The local region of copy `seq` has been read.
    pub fn copy_read(&mut self, seq: u64, data: Result<Bytes, String>) -> Vec<Action> {
        let mut out = Vec::new();
        for next in self.order.finish(seq) {
            self.start_local(next, &mut out);
        }
        let Some(p) = self.pending.get_mut(&seq) else { return out };
        let Kind::Copy { to, region, abandoned, ref mut held, ref mut sent } = p.kind else { return out };
        if abandoned {
            self.pending.remove(&seq);
            return out;
        }
        let verify = matches!(self.replicas.get(&to), Some(ReplicaState::Resyncing { verify: true, .. }));
        match data {
            Ok(data) => {
                p.local = Some(Ok(()));
                p.unacked.insert(to);
                let (epoch, offset) = (self.epoch, region * REGION);
                let msg = if verify {
                    let msg =
                        ToReplica::Verify { seq, epoch, offset, len: data.len() as u64, crc: crc32c::crc32c(&data) };
                    *held = Some(data);
                    msg
                } else {
                    *sent = true;
                    ToReplica::Copy { seq, epoch, offset, data }
                };
                out.push(Action::Send { to, msg });
            }
            Err(why) => {
                tracing::warn!(replica = to, region, "cannot read a region to copy: {why}");
                self.pending.remove(&seq);
                if let Some(ReplicaState::Resyncing { dirty, copying, .. }) = self.replicas.get_mut(&to) {
                    copying.remove(&region);
                    dirty.mark(region * REGION, 1);
                }
                out.push(Action::Disconnect { replica: to });
                self.lost(to, &mut out);
            }
        }
        out
    }

    /// The stream to `replica` is open and its handshake agreed on the
    /// epoch; `unsettled` is the replica's activity log (`None`: not known).
    pub fn connected(&mut self, replica: ReplicaId, unsettled: Option<DirtyMap>) -> Vec<Action> {
        let mut out = Vec::new();
        if self.fenced || !self.replicas.contains_key(&replica) {
            out.push(Action::Disconnect { replica });
            return out;
        }
        self.connected.insert(replica);
        if let Some(state @ ReplicaState::Unsettled(_)) = self.replicas.get_mut(&replica) {
            let ReplicaState::Unsettled(mut dirty) = std::mem::replace(state, ReplicaState::Catching) else {
                unreachable!()
            };
            match unsettled {
                Some(theirs) => {
                    dirty.absorb(&theirs);
                    *state = ReplicaState::Resyncing {
                        dirty,
                        copying: BTreeSet::new(),
                        cursor: 0,
                        verify: false,
                        reconcile: true,
                    };
                    self.copy_more(replica, &mut out);
                }
                None => {
                    // Nothing is known of where it may differ: out of sync
                    // first, then compared region by region.
                    let mut all = DirtyMap::default();
                    all.mark_all(self.size);
                    *state = ReplicaState::Failing(all);
                    out.push(Action::RequestOutOfSync { replica, epoch: self.epoch });
                }
            }
        }
        self.resync(replica, &mut out);
        self.release_held(&mut out);
        out
    }

    /// An out-of-sync replica that is connected starts getting what it missed.
    pub(super) fn resync(&mut self, replica: ReplicaId, out: &mut Vec<Action>) {
        let Some(state) = self.replicas.get_mut(&replica) else { return };
        if let ReplicaState::OutOfSync(dirty) = state {
            let dirty = std::mem::take(dirty);
            // Every region dirty: nothing is known of it (a full resync).
            let verify = dirty.len() >= self.size.div_ceil(REGION);
            *state = ReplicaState::Resyncing { dirty, copying: BTreeSet::new(), cursor: 0, verify, reconcile: false };
            self.copy_more(replica, out);
        }
    }

    /// Starts copies for `replica` up to the window, and asks for it to be
    /// marked in sync once nothing is left.
    pub(super) fn copy_more(&mut self, replica: ReplicaId, out: &mut Vec<Action>) {
        loop {
            let Some(ReplicaState::Resyncing { dirty, copying, cursor, reconcile, .. }) =
                self.replicas.get_mut(&replica)
            else {
                return;
            };
            if copying.len() >= self.copy_window {
                return;
            }
            // A region being copied that changed again is copied again once
            // that copy is done, never twice at once: the second copy's data
            // could arrive first.
            let next_idle = |from: u64| {
                let mut r = dirty.next_from(from);
                while let Some(region) = r.filter(|region| copying.contains(region)) {
                    r = dirty.next_from(region + 1);
                }
                r
            };
            let Some(region) = next_idle(*cursor).or_else(|| next_idle(0)) else {
                let (copied, reconcile) = (dirty.is_empty() && copying.is_empty(), *reconcile);
                if copied && reconcile {
                    // In sync for the control plane all along.
                    self.replicas.insert(replica, ReplicaState::InSync);
                    self.release_held(out);
                } else if copied {
                    // Operations wait for it from now on; the control plane
                    // is asked once it has done those answered without it.
                    self.replicas.insert(replica, ReplicaState::Catching);
                    self.unasked.insert(replica);
                    self.ask_in_sync(replica, out);
                }
                return;
            };
            dirty.clear(region);
            copying.insert(region);
            *cursor = region + 1;
            let seq = self.next_seq;
            self.next_seq += 1;
            let free = self.order.push(seq, Extent::Bytes { offset: region * REGION, len: REGION });
            let kind = Kind::Copy { to: replica, region, abandoned: false, held: None, sent: false };
            self.pending.insert(seq, Pending { kind, token: None, op: None, local: None, unacked: BTreeSet::new() });
            if free {
                self.start_local(seq, out);
            }
        }
    }

    /// Asks for `replica`, caught up, to be marked in sync once it owes
    /// nothing: an operation it was sent while resyncing may have been
    /// answered to the initiator without it, and until it has done every
    /// such one the cluster must not count it in sync (it could be
    /// promoted without an acknowledged write).
    pub(super) fn ask_in_sync(&mut self, replica: ReplicaId, out: &mut Vec<Action>) {
        if !self.unasked.contains(&replica) {
            return;
        }
        let owes = self
            .pending
            .values()
            .any(|p| matches!(p.kind, Kind::Op { .. }) && p.token.is_none() && p.unacked.contains(&replica));
        if !owes {
            self.unasked.remove(&replica);
            out.push(Action::RequestInSync { replica, epoch: self.epoch });
        }
    }

    pub(super) fn copied_region(&mut self, replica: ReplicaId, region: u64, sent: bool, out: &mut Vec<Action>) {
        let len = REGION.min(self.size.saturating_sub(region * REGION));
        *if sent { &mut self.copied } else { &mut self.matched }.entry(replica).or_default() += len;
        if let Some(ReplicaState::Resyncing { copying, .. }) = self.replicas.get_mut(&replica) {
            copying.remove(&region);
        }
        self.copy_more(replica, out);
    }
}
