//! The primary's side of a replicated volume as a [`BlockBackend`]: every
//! write, WRITE SAME, UNMAP, flush and change of the unit's saved state goes
//! through the [`Primary`] state machine, which numbers it and says where it
//! goes; this module does what it says (the local copy, the replicas'
//! streams, the control plane) and answers the caller when it completes.
//!
//! Frames for a replica are queued while the state machine's lock is held,
//! so they leave in the order the machine numbered them; everything else
//! (local I/O, control-plane calls) runs on tasks of its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};

use super::control::Placement;
use super::core::dirty::DirtyMap;
use super::core::ops::{Op, ReplicaId};
use super::core::primary::{
    Action, Failure, FromReplica, Mark, MarkAnswer, MarkStep, Primary, ReplicaState, ResyncProgress, Token,
};
use super::frame::Frame;
use crate::backend::{BackendError, BlockBackend, Run};

/// What a replica's link is told.
#[derive(Debug)]
pub enum LinkMessage {
    Frame(Frame),
    /// Close the stream (and connect again later).
    Drop,
}

/// How often a primary looks at its lease.
const LEASE_CHECK: std::time::Duration = std::time::Duration::from_millis(200);

/// What a demotion came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Demoted {
    pub epoch: super::core::ops::Epoch,
    /// Every operation admitted before the demotion completed.
    pub drained: bool,
    /// The replicas were told that everything is settled (a flush on every
    /// in-sync copy): the next primary has nothing to reconcile.
    pub settled: bool,
    #[serde(serialize_with = "millis")]
    pub took: std::time::Duration,
}

fn millis<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// The state a volume's primary shares between its backend, its links and
/// the tasks doing its I/O.
#[derive(Debug)]
pub struct PrimaryVolume {
    pub name: String,
    /// This opening's number in the volume's marks (`control::Opened`).
    instance: u64,
    core: Mutex<Primary>,
    local: Arc<dyn BlockBackend>,
    control: Arc<dyn Placement>,
    waiters: Mutex<HashMap<Token, oneshot::Sender<Result<(), Failure>>>>,
    next_token: Mutex<Token>,
    links: Mutex<HashMap<ReplicaId, mpsc::UnboundedSender<LinkMessage>>>,
    /// Each replica's queue of marks to ask of the control plane.
    marks: Mutex<HashMap<ReplicaId, mpsc::UnboundedSender<(Mark, super::core::ops::Epoch)>>>,
    /// The unit's saved state as last sent, sent again to every replica
    /// that connects (one that was away missed it, or restarted without it).
    unit_state: Mutex<Option<Bytes>>,
    /// Paces the reads of regions being copied to resyncing replicas.
    resync: crate::backend::throttle::Throttle,
    /// Each resync under way: when it started and what had been copied then.
    resyncs: Mutex<HashMap<ReplicaId, (std::time::Instant, ResyncProgress)>>,
    /// Each reconciliation after a promotion under way, likewise.
    reconciles: Mutex<HashMap<ReplicaId, (std::time::Instant, ResyncProgress)>>,
    /// How many there are: a replica's answer looks no further when none.
    reconciling: std::sync::atomic::AtomicUsize,
    /// Served again after a demotion at least once: a later hand-over does
    /// not vouch for its copy (what it admitted in between may be here only).
    resumed: std::sync::atomic::AtomicBool,
    /// A demotion drained and settled everything (and nothing was admitted
    /// since, unless `resumed`).
    settled_demotion: std::sync::atomic::AtomicBool,
}

impl PrimaryVolume {
    /// `resync_mbps` paces resync copies (0: no limit).
    pub fn new(
        name: String,
        instance: u64,
        core: Primary,
        local: Arc<dyn BlockBackend>,
        control: Arc<dyn Placement>,
        resync_mbps: u64,
    ) -> Arc<Self> {
        let pace = crate::backend::throttle::Limits {
            iops: None,
            bytes_per_second: (resync_mbps > 0).then(|| resync_mbps.saturating_mul(1_000_000)),
        };
        Arc::new(PrimaryVolume {
            name,
            instance,
            core: Mutex::new(core),
            local,
            control,
            waiters: Mutex::default(),
            next_token: Mutex::new(1),
            links: Mutex::default(),
            marks: Mutex::default(),
            unit_state: Mutex::default(),
            resync: crate::backend::throttle::Throttle::new(pace),
            resyncs: Mutex::default(),
            reconciles: Mutex::default(),
            reconciling: Default::default(),
            resumed: Default::default(),
            settled_demotion: Default::default(),
        })
    }

    /// Watches the primary's lease for as long as the volume is open: when
    /// it runs out, what waits fails NOT READY (the initiator retries on
    /// another path) and nothing new is admitted until it holds again.
    pub fn watch_lease(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut held = true;
            let mut tick = tokio::time::interval(LEASE_CHECK);
            loop {
                tick.tick().await;
                let Some(volume) = me.upgrade() else { return };
                let holds = volume.control.lease_valid(&volume.name);
                if holds != held {
                    held = holds;
                    if holds {
                        tracing::info!(volume = %volume.name, "the lease holds again: serving");
                        volume.drive(Primary::lease_renewed);
                    } else {
                        tracing::warn!(volume = %volume.name, "the lease ran out (no majority heard from): what waits fails NOT READY");
                        volume.drive(Primary::lease_lost);
                    }
                }
            }
        });
    }

    fn core(&self) -> std::sync::MutexGuard<'_, Primary> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The link that carries frames to `replica`.
    pub fn attach_link(&self, replica: ReplicaId, tx: mpsc::UnboundedSender<LinkMessage>) {
        self.links.lock().unwrap_or_else(|e| e.into_inner()).insert(replica, tx);
    }

    /// Runs `f` on the state machine and does what it asks: frames are
    /// queued before the lock is let go, the rest after.
    pub fn drive(self: &Arc<Self>, f: impl FnOnce(&mut Primary) -> Vec<Action>) {
        let mut later = Vec::new();
        {
            let mut core = self.core();
            let actions = f(&mut core);
            let links = self.links.lock().unwrap_or_else(|e| e.into_inner());
            for a in actions {
                match a {
                    Action::Send { to, msg } => {
                        if let Some(tx) = links.get(&to) {
                            let _ = tx.send(LinkMessage::Frame(Frame::ToReplica(msg)));
                        }
                    }
                    // In the order the machine asked, whichever task drives it.
                    Action::RequestOutOfSync { replica, epoch } => self.queue_mark(replica, Mark::OutOfSync, epoch),
                    Action::RequestInSync { replica, epoch } => self.queue_mark(replica, Mark::InSync, epoch),
                    other => later.push(other),
                }
            }
        }
        for a in later {
            self.act(a);
        }
    }

    /// Puts a mark in `replica`'s queue; its worker (started with the first
    /// mark) asks them of the control plane one at a time, in order, each
    /// until its answer is definite (`Primary::mark_answered`), so that the
    /// control plane applies them in the order they were asked: a late
    /// in-sync mark never lands after the out-of-sync mark that followed
    /// it. The queue holds at most a few marks: the machine asks one per
    /// change of the replica's state.
    fn queue_mark(self: &Arc<Self>, replica: ReplicaId, mark: Mark, epoch: super::core::ops::Epoch) {
        let mut marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        let queue = marks.entry(replica).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(ask_marks(Arc::downgrade(self), replica, rx));
            tx
        });
        let _ = queue.send((mark, epoch));
    }

    /// Asks the control plane for one mark until the answer is definite;
    /// true if it was (false: asked again later). The volume is held only
    /// while a question is out, so that it closes while the control plane
    /// cannot answer.
    async fn ask_mark_once(self: &Arc<Self>, replica: ReplicaId, mark: Mark, epoch: super::core::ops::Epoch) -> bool {
        {
            let asked = match mark {
                Mark::InSync => self.control.mark_in_sync(&self.name, epoch, replica).await,
                Mark::OutOfSync => self.control.mark_out_of_sync(&self.name, epoch, replica).await,
            };
            let answer = match asked {
                Ok(()) => MarkAnswer::Made,
                Err(super::control::PlacementError::Refused { current, .. }) => MarkAnswer::Refused { current },
                Err(super::control::PlacementError::Unavailable(why)) => {
                    tracing::warn!(volume = %self.name, replica, ?mark, %epoch,
                        "the outcome of the mark is not known, asking again (writes wait): {why}");
                    MarkAnswer::Unknown
                }
            };
            let mut again = false;
            self.drive(|p| match p.mark_answered(replica, mark, answer) {
                MarkStep::Done(actions) => actions,
                MarkStep::AskAgain => {
                    again = true;
                    Vec::new()
                }
            });
            if !again {
                self.report_mark(replica, mark, epoch, answer);
            }
            !again
        }
    }

    fn report_mark(&self, replica: ReplicaId, mark: Mark, epoch: super::core::ops::Epoch, answer: MarkAnswer) {
        match (mark, answer) {
            (Mark::OutOfSync, MarkAnswer::Made) => {
                tracing::warn!(volume = %self.name, replica, %epoch, "replica marked out of sync")
            }
            (Mark::InSync, MarkAnswer::Made) => {
                let now = self.core().progress(replica);
                let started = self.resyncs.lock().unwrap_or_else(|e| e.into_inner()).remove(&replica);
                let (at, before) = started.unwrap_or((std::time::Instant::now(), ResyncProgress::default()));
                let seconds = at.elapsed().as_secs_f64();
                let copied = now.copied_bytes - before.copied_bytes;
                let matched = now.matched_bytes - before.matched_bytes;
                let mb_per_s = copied as f64 / seconds.max(1e-3) / 1e6;
                tracing::info!(
                    volume = %self.name, replica, %epoch, copied_bytes = copied, matched_bytes = matched,
                    seconds = format!("{seconds:.2}"), mb_per_s = format!("{mb_per_s:.0}"),
                    "replica back in sync"
                );
            }
            (_, MarkAnswer::Refused { current }) => {
                tracing::warn!(volume = %self.name, replica, ?mark, %epoch, %current, "the mark was refused")
            }
            (_, MarkAnswer::Unknown) => {
                tracing::warn!(volume = %self.name, replica, ?mark, %epoch, "fenced: no longer asking for the mark")
            }
        }
    }

    fn act(self: &Arc<Self>, action: Action) {
        match action {
            Action::ApplyLocal { seq, op } => {
                let me = self.clone();
                tokio::spawn(async move {
                    let result = apply(&*me.local, op).await.map_err(|e| e.to_string());
                    me.drive(|p| p.local_done(seq, result));
                });
            }
            Action::ReadForCopy { seq, offset, len } => {
                let me = self.clone();
                tokio::spawn(async move {
                    me.resync.admit(len).await;
                    let data =
                        me.local.read(offset, len as usize).await.map(BytesMut::freeze).map_err(|e| e.to_string());
                    me.drive(|p| p.copy_read(seq, data));
                });
            }
            Action::Complete { token, result } => {
                if let Some(tx) = self.waiters.lock().unwrap_or_else(|e| e.into_inner()).remove(&token) {
                    let _ = tx.send(result);
                }
            }
            Action::Disconnect { replica } => {
                if let Some(tx) = self.links.lock().unwrap_or_else(|e| e.into_inner()).get(&replica) {
                    let _ = tx.send(LinkMessage::Drop);
                }
            }
            Action::OwnCopyFailed { epoch } => {
                tokio::spawn(hand_over_failed_copy(Arc::downgrade(self), epoch));
            }
            Action::Send { .. } | Action::RequestOutOfSync { .. } | Action::RequestInSync { .. } => {
                unreachable!("frames and marks are queued under the lock")
            }
        }
    }

    /// A new token, and where its operation's end is told.
    fn waiter(&self) -> (Token, oneshot::Receiver<Result<(), Failure>>) {
        let (tx, rx) = oneshot::channel();
        let token = {
            let mut next = self.next_token.lock().unwrap_or_else(|e| e.into_inner());
            *next += 1;
            *next
        };
        self.waiters.lock().unwrap_or_else(|e| e.into_inner()).insert(token, tx);
        (token, rx)
    }

    /// Submits `op` and waits for it to complete.
    pub async fn submit(self: &Arc<Self>, op: Op) -> Result<(), BackendError> {
        let (token, rx) = self.waiter();
        self.drive(|p| p.submit(token, op));
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Failure::Local(why))) => Err(BackendError::Io(std::io::Error::other(why))),
            Ok(Err(Failure::NotReady)) | Err(_) => Err(BackendError::NotServing("the primary lost its role")),
        }
    }

    /// Hands the volume over (the demotion hook of CLUSTER.md §3's planned
    /// move): nothing new is admitted (NOT READY, so that initiators retry
    /// on another path), what was numbered completes, and a final flush
    /// settles everything on the replicas, all within `within`.
    ///
    /// A primary already demoted (and not resumed since) answers how that
    /// demotion ended, at once: settling again after the move committed
    /// would wait on replicas that follow the new primary by then, and hold
    /// up this node's reopening as a replica, which the new primary awaits.
    pub async fn demote(self: &Arc<Self>, within: std::time::Duration) -> Demoted {
        let started = tokio::time::Instant::now();
        let deadline = started + within;
        let epoch = self.epoch();
        if self.core().demoted() {
            let waiting = self.core().backlog().0;
            let settled = self.handed_over();
            return Demoted { epoch, drained: waiting == 0, settled, took: started.elapsed() };
        }
        self.drive(|p| p.demote());
        let mut waiting = self.core().backlog().0;
        while waiting > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            waiting = self.core().backlog().0;
        }
        let mut settled = false;
        if waiting == 0 {
            let (token, rx) = self.waiter();
            self.drive(|p| p.settle_everything(token));
            settled = matches!(tokio::time::timeout_at(deadline, rx).await, Ok(Ok(Ok(()))));
        }
        let demoted = Demoted { epoch, drained: waiting == 0, settled, took: started.elapsed() };
        if demoted.drained && settled {
            self.settled_demotion.store(true, std::sync::atomic::Ordering::Release);
        }
        tracing::info!(volume = %self.name, %epoch, drained = demoted.drained, settled, waiting,
            ms = demoted.took.as_millis() as u64, "demoted: the primary admits nothing more");
        demoted
    }

    /// Serves again after [`PrimaryVolume::demote`].
    pub fn resume(self: &Arc<Self>) {
        self.resumed.store(true, std::sync::atomic::Ordering::Release);
        self.drive(Primary::resume);
        tracing::info!(volume = %self.name, "serving again: the hand-over did not happen");
    }

    /// Whether replica `id` is in sync and its activity log is awaited
    /// (after a promotion): nothing is numbered until it comes.
    pub fn awaits_log(&self, id: ReplicaId) -> bool {
        matches!(self.core().replica(id), Some(ReplicaState::Unsettled(_)))
    }

    /// Whether it handed over: a demotion drained and settled everything,
    /// and it never served again after a demotion, so its copy equals every
    /// in-sync copy (a later demotion may not settle again: the new primary
    /// fences it as soon as it connects).
    pub fn handed_over(&self) -> bool {
        self.settled_demotion.load(std::sync::atomic::Ordering::Acquire)
            && !self.resumed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// A replica answered on its stream.
    pub fn received(self: &Arc<Self>, from: ReplicaId, msg: FromReplica) {
        self.drive(|p| p.received(from, msg));
        self.report_reconciled(from);
    }

    /// Logs a reconciliation after promotion once it is over.
    fn report_reconciled(&self, replica: ReplicaId) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.reconciling.load(Relaxed) == 0 {
            return;
        }
        // The state machine's lock is never taken while `reconciles` is held.
        let Some((at, before)) = self.reconciles.lock().unwrap_or_else(|e| e.into_inner()).get(&replica).copied()
        else {
            return;
        };
        let (outcome, copied) = {
            let core = self.core();
            let outcome = match core.replica(replica) {
                Some(ReplicaState::InSync) => "reconciled",
                Some(ReplicaState::Unsettled(_) | ReplicaState::Resyncing { reconcile: true, .. }) => return,
                // Lost on the way, or its log was not known: marked out of sync.
                _ => "not reconciled, marked out of sync",
            };
            (outcome, core.progress(replica).copied_bytes - before.copied_bytes)
        };
        if self.reconciles.lock().unwrap_or_else(|e| e.into_inner()).remove(&replica).is_none() {
            return;
        }
        self.reconciling.fetch_sub(1, Relaxed);
        tracing::info!(
            volume = %self.name, replica, copied_bytes = copied, seconds = format!("{:.3}", at.elapsed().as_secs_f64()),
            "replica {outcome} after promotion"
        );
    }

    /// The stream to `replica` is open; `unsettled` is its activity log.
    pub fn connected(self: &Arc<Self>, replica: ReplicaId, unsettled: Option<DirtyMap>) {
        {
            let core = self.core();
            match core.replica(replica) {
                Some(ReplicaState::OutOfSync(_)) => {
                    let p = core.progress(replica);
                    tracing::info!(volume = %self.name, replica, left_bytes = p.left_bytes, "resync starts");
                    let mut resyncs = self.resyncs.lock().unwrap_or_else(|e| e.into_inner());
                    resyncs.insert(replica, (std::time::Instant::now(), p));
                }
                Some(ReplicaState::Unsettled(ours)) => {
                    let mut regions = ours.clone();
                    let theirs = unsettled.as_ref().map_or("not known".to_string(), |t| {
                        regions.absorb(t);
                        format!("{} regions", t.len())
                    });
                    tracing::info!(
                        volume = %self.name, replica, ours = ours.len(), theirs = %theirs, regions = regions.len(),
                        "reconciling a replica after promotion: the regions of both activity logs are copied from here"
                    );
                    let at = (std::time::Instant::now(), core.progress(replica));
                    if self.reconciles.lock().unwrap_or_else(|e| e.into_inner()).insert(replica, at).is_none() {
                        self.reconciling.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                _ => {}
            }
        }
        self.drive(|p| p.connected(replica, unsettled));
        self.report_reconciled(replica);
        // The unit's state travels whole, "none" included: a replica that
        // was away when reservations were cleared (or restarted with an
        // older state file) must not keep them (CLUSTER.md §6, rule 6).
        let text = self.unit_state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.submit(Op::UnitState { text }).await {
                tracing::warn!(volume = %me.name, replica, "cannot send the unit's state: {e}");
            }
        });
    }

    /// The unit's saved state as the primary opened it.
    pub fn set_unit_state(&self, text: Option<Bytes>) {
        *self.unit_state.lock().unwrap_or_else(|e| e.into_inner()) = text;
    }

    pub fn lost(self: &Arc<Self>, replica: ReplicaId) {
        self.drive(|p| p.replica_lost(replica));
    }

    pub fn epoch(&self) -> super::core::ops::Epoch {
        self.core().epoch()
    }

    /// This opening's number in the volume's marks.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// Where each replica stands, its resync progress and the resync's
    /// rate so far (bytes a second).
    pub fn replicas(&self) -> Vec<(ReplicaId, String, ResyncProgress, u64)> {
        let resyncs = self.resyncs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let core = self.core();
        let ids: Vec<ReplicaId> = self.links.lock().unwrap_or_else(|e| e.into_inner()).keys().copied().collect();
        ids.into_iter()
            .filter_map(|id| {
                let state = match core.replica(id)? {
                    ReplicaState::InSync => "in-sync",
                    ReplicaState::Unsettled(_) | ReplicaState::Resyncing { reconcile: true, .. } => "reconciling",
                    ReplicaState::Failing(_) => "failing",
                    ReplicaState::OutOfSync(_) => "out-of-sync",
                    ReplicaState::Resyncing { .. } => "resyncing",
                    ReplicaState::Catching => "catching-up",
                };
                let progress = core.progress(id);
                let rate = resyncs.get(&id).map_or(0, |(at, before)| {
                    ((progress.copied_bytes - before.copied_bytes) as f64 / at.elapsed().as_secs_f64().max(1e-3)) as u64
                });
                Some((id, state.to_string(), progress, rate))
            })
            .collect()
    }

    /// Whether writes are suspended for lack of in-sync copies.
    pub fn suspended(&self) -> bool {
        self.core().suspended()
    }

    fn serving(&self) -> Result<(), BackendError> {
        let core = self.core();
        if core.fenced() {
            return Err(BackendError::NotServing("another primary took over"));
        }
        if core.demoted() {
            return Err(BackendError::NotServing("the primary is handing the volume over"));
        }
        drop(core);
        if !self.control.lease_valid(&self.name) {
            return Err(BackendError::NotServing("the primary's lease ran out"));
        }
        Ok(())
    }
}

impl Drop for PrimaryVolume {
    fn drop(&mut self) {
        // Nothing holds the volume any more: no operation is in flight.
        let epoch = self.core().epoch();
        self.control.closed_cleanly(&self.name, epoch, self.instance);
    }
}

/// The worker of one replica's mark queue (see `PrimaryVolume::queue_mark`);
/// it ends with the volume.
async fn ask_marks(
    volume: std::sync::Weak<PrimaryVolume>,
    replica: ReplicaId,
    mut queue: mpsc::UnboundedReceiver<(Mark, super::core::ops::Epoch)>,
) {
    while let Some((mark, epoch)) = queue.recv().await {
        let mut wait = std::time::Duration::from_millis(100);
        loop {
            let Some(open) = volume.upgrade() else { return };
            if open.ask_mark_once(replica, mark, epoch).await {
                break;
            }
            drop(open);
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(std::time::Duration::from_secs(2));
        }
    }
}

/// Asks the control plane to move the primary away from a copy that
/// failed a write (`Action::OwnCopyFailed`) until the answer is definite,
/// or the volume is closed or fenced; the volume serves nothing meanwhile.
async fn hand_over_failed_copy(volume: std::sync::Weak<PrimaryVolume>, epoch: super::core::ops::Epoch) {
    let mut wait = std::time::Duration::from_millis(200);
    loop {
        let Some(open) = volume.upgrade() else { return };
        if open.core().fenced() {
            return;
        }
        match open.control.own_copy_failed(&open.name, epoch).await {
            Ok(()) => {
                tracing::warn!(volume = %open.name, %epoch, "this copy failed a write: the volume failed over to an in-sync copy");
                return;
            }
            Err(super::control::PlacementError::Refused { current, .. }) => {
                tracing::warn!(volume = %open.name, %epoch, %current, "this copy failed a write; the volume had moved on already");
                return;
            }
            Err(super::control::PlacementError::Unavailable(why)) => {
                tracing::error!(volume = %open.name, %epoch,
                    "this copy failed a write and serves nothing until the volume moves; asking again: {why}");
            }
        }
        drop(open);
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_secs(5));
    }
}

/// Applies one operation to a copy of the volume.
pub(crate) async fn apply(local: &dyn BlockBackend, op: Op) -> Result<(), BackendError> {
    match op {
        Op::Write { offset, data, fua } => local.write(offset, data, fua).await,
        Op::WriteSame { offset, len, block, fua } => local.write_same(offset, len, block, fua).await,
        Op::Unmap { offset, len } => local.unmap(offset, len).await,
        Op::Flush => local.flush().await,
        // The unit's state is the unit's business: the primary's own copy
        // of it was written by the unit before it asked for replication.
        Op::UnitState { .. } => Ok(()),
        // Grown already (by its own configuration, or this op sent again
        // after a lost answer): nothing to do.
        Op::Resize { size } if size <= local.size() => Ok(()),
        Op::Resize { size } => local.resize(size).await,
    }
}

/// The backend a replicated volume's unit uses on its primary.
#[derive(Debug)]
pub struct ReplicatedBackend {
    volume: Arc<PrimaryVolume>,
}

impl ReplicatedBackend {
    pub fn new(volume: Arc<PrimaryVolume>) -> Self {
        ReplicatedBackend { volume }
    }

    pub fn volume(&self) -> &Arc<PrimaryVolume> {
        &self.volume
    }
}

#[async_trait]
impl BlockBackend for ReplicatedBackend {
    fn size(&self) -> u64 {
        self.volume.local.size()
    }

    async fn read(&self, offset: u64, len: usize) -> Result<BytesMut, BackendError> {
        // Reads are fenced by the lease (CLUSTER.md §2).
        self.volume.serving()?;
        self.volume.local.read(offset, len).await
    }

    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), BackendError> {
        self.volume.serving()?;
        self.volume.submit(Op::Write { offset, data, fua }).await
    }

    async fn flush(&self) -> Result<(), BackendError> {
        self.volume.serving()?;
        self.volume.submit(Op::Flush).await
    }

    async fn unmap(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.volume.serving()?;
        self.volume.submit(Op::Unmap { offset, len }).await
    }

    async fn write_same(&self, offset: u64, len: u64, block: Bytes, fua: bool) -> Result<(), BackendError> {
        self.volume.serving()?;
        self.volume.submit(Op::WriteSame { offset, len, block, fua }).await
    }

    async fn replicate_state(&self, text: Option<Bytes>) -> Result<(), BackendError> {
        self.volume.serving()?;
        self.volume.set_unit_state(text.clone());
        self.volume.submit(Op::UnitState { text }).await
    }

    async fn resize(&self, new_size: u64) -> Result<(), BackendError> {
        // Every copy grows in the same place of the order of writes.
        self.volume.serving()?;
        self.volume.submit(Op::Resize { size: new_size }).await
    }

    fn serving(&self) -> Result<(), BackendError> {
        self.volume.serving()
    }

    fn transitioning(&self) -> bool {
        self.volume.serving().is_err() || self.volume.core().reconciling()
    }

    async fn allocation(&self, offset: u64, len: u64, max_runs: usize) -> Result<Vec<Run>, BackendError> {
        self.volume.local.allocation(offset, len, max_runs).await
    }
}
