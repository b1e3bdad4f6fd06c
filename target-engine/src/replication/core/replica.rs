//! A replica's side of one replicated volume, as a state machine with no
//! I/O inside (CLUSTER.md §2).
//!
//! * A stream is accepted only from the primary of the placement this node
//!   has applied, at that epoch; anything else is answered
//!   [`FromReplica::StaleEpoch`] with the epoch this node holds, never with
//!   success, and closed. So once one in-sync replica has moved on, the old
//!   primary cannot complete a write.
//! * Every operation and copy on the stream carries the epoch and is checked
//!   again; operations' numbers grow along the stream (copies leave when
//!   their region has been read, and may come late).
//! * Operations apply in arrival order where they conflict and at once where
//!   they do not ([`Sequencer`]), as on the primary. FUA writes, flushes,
//!   unit state and copies are reported done only once durable (the driver
//!   applies them so).
//! * The replica keeps the activity log of its copy: the regions of every
//!   operation the primary has not yet told it settled (every operation
//!   numbered below `settled` has completed on every in-sync copy), and of
//!   every copy received since the last primary reconciled the copies.
//!   Only there can in-sync copies differ after their primary is lost: its
//!   last operations may have reached some copies and not others. A new
//!   primary learns each replica's log when its stream opens
//!   ([`Replica::unsettled`]) and copies those regions before it numbers a
//!   new operation; the first operation a stream brings therefore means
//!   the copies agree again, and the log of earlier streams is dropped. A
//!   replica that starts knows nothing of what it applied before it
//!   stopped: its log is not known until a stream brings an operation.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::dirty::DirtyMap;
use super::ops::{Epoch, Extent, Op, ReplicaId};
use super::order::Sequencer;
use super::primary::{FromReplica, ToReplica};

/// What the driver is to do for a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaAction {
    /// Apply `op` to the local copy (durably if it says so), then call
    /// [`Replica::applied`] with `id`.
    Apply { id: u64, op: Op },
    /// Write a region copied from the primary, durably, then call
    /// [`Replica::applied`] with `id`.
    WriteCopy { id: u64, offset: u64, data: Bytes },
    /// Compare the CRC32C of the local region with `crc`, then call
    /// [`Replica::verified`] with `id`.
    Verify { id: u64, offset: u64, len: u64, crc: u32 },
    /// Send `msg` on stream `stream` (the one the work or frame came on;
    /// work may be started by another stream's finishing, so the driver
    /// routes by this number, never by the task that runs it).
    Send { stream: u64, msg: FromReplica },
    /// Close the stream.
    Disconnect,
}

#[derive(Debug)]
struct Work {
    seq: u64,
    /// The stream it came on; answers go only to that stream.
    stream: u64,
    kind: WorkKind,
}

#[derive(Debug)]
enum WorkKind {
    Op(Op),
    Copy { offset: u64, data: Bytes },
    Verify { offset: u64, len: u64, crc: u32 },
    Started,
}

/// The most operations of one stream the activity log tracks one by one;
/// beyond, it says it does not know (the next primary compares every region).
const MAX_TRACKED_OPS: usize = 65_536;
/// The most regions a replica reports as unsettled (1 GiB of 64 KiB regions).
pub const MAX_UNSETTLED_REGIONS: u64 = 16_384;

/// A replica's state machine for one volume.
#[derive(Debug)]
pub struct Replica {
    epoch: Epoch,
    primary: ReplicaId,
    /// Whether a stream from the primary is open.
    open: bool,
    /// The last operation's number received on the open stream.
    last_seq: u64,
    /// Streams accepted so far (the open one's number).
    stream: u64,
    order: Sequencer,
    /// Arrival order, across streams (a restarted primary numbers afresh).
    next_id: u64,
    work: BTreeMap<u64, Work>,
    /// The open stream's operations not yet settled: their bytes, by number.
    unsettled_ops: BTreeMap<u64, (u64, u64)>,
    /// Regions of earlier streams' unsettled operations, and of copies,
    /// since a primary last reconciled the copies.
    carried: DirtyMap,
    /// Nothing is known of where the copies may differ: this copy started
    /// with what it applied before unknown (a restart), or had too much to
    /// track. A stream's first operation clears it.
    unknown: bool,
}

impl Replica {
    /// A replica of the placement at `epoch` whose primary is `primary`.
    pub fn new(epoch: Epoch, primary: ReplicaId) -> Self {
        Replica {
            epoch,
            primary,
            open: false,
            last_seq: 0,
            stream: 0,
            order: Sequencer::default(),
            next_id: 1,
            work: BTreeMap::new(),
            unsettled_ops: BTreeMap::new(),
            carried: DirtyMap::default(),
            unknown: true,
        }
    }

    /// A replica made of the copy that was the primary until now and handed
    /// over with every operation it admitted completed and settled on every
    /// in-sync copy (`Engine::demote`): it differs from them nowhere, so its
    /// activity log starts known and empty.
    pub fn settled(epoch: Epoch, primary: ReplicaId) -> Self {
        Replica { unknown: false, ..Replica::new(epoch, primary) }
    }

    /// Where this copy may differ from the other in-sync copies (see the
    /// module documentation); `None` when that is not known.
    pub fn unsettled(&self) -> Option<DirtyMap> {
        if self.unknown {
            return None;
        }
        let mut regions = self.carried.clone();
        for &(offset, len) in self.unsettled_ops.values() {
            regions.mark(offset, len);
            if regions.len() > MAX_UNSETTLED_REGIONS {
                return None;
            }
        }
        (regions.len() <= MAX_UNSETTLED_REGIONS).then_some(regions)
    }

    /// Operation `seq` of the open stream changes `changes`, and every
    /// operation numbered below `settled` is on every in-sync copy.
    fn log(&mut self, seq: u64, changes: Option<(u64, u64)>, settled: u64) {
        while self.unsettled_ops.first_key_value().is_some_and(|(&seq, _)| seq < settled) {
            self.unsettled_ops.pop_first();
        }
        if let Some(c) = changes.filter(|_| !self.unknown) {
            if self.unsettled_ops.len() >= MAX_TRACKED_OPS {
                self.unknown = true;
                self.unsettled_ops.clear();
            } else {
                self.unsettled_ops.insert(seq, c);
            }
        }
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The control plane applied a new placement: a stream of the old one ends.
    pub fn set_placement(&mut self, epoch: Epoch, primary: ReplicaId) -> Vec<ReplicaAction> {
        if (epoch, primary) == (self.epoch, self.primary) {
            return Vec::new();
        }
        self.epoch = epoch;
        self.primary = primary;
        if std::mem::take(&mut self.open) {
            vec![ReplicaAction::Disconnect]
        } else {
            Vec::new()
        }
    }

    /// A primary opens a stream: accepted only for the placement applied
    /// here. Returns the stream's number: a newer stream replaces it.
    pub fn hello(&mut self, epoch: Epoch, primary: ReplicaId) -> Result<u64, FromReplica> {
        if (epoch, primary) != (self.epoch, self.primary) {
            return Err(FromReplica::StaleEpoch { current: self.epoch });
        }
        self.open = true;
        self.last_seq = 0;
        self.stream += 1;
        for (_, (offset, len)) in std::mem::take(&mut self.unsettled_ops) {
            self.carried.mark(offset, len);
        }
        Ok(self.stream)
    }

    /// Stream `stream` closed (or failed); work already started carries on.
    pub fn closed(&mut self, stream: u64) {
        if stream == self.stream {
            self.open = false;
        }
    }

    /// Something from the primary on stream `stream`; a stream that was
    /// replaced is told to close.
    pub fn receive(&mut self, stream: u64, msg: ToReplica) -> Vec<ReplicaAction> {
        let (seq, epoch) = match &msg {
            ToReplica::Op { seq, epoch, .. }
            | ToReplica::Copy { seq, epoch, .. }
            | ToReplica::Verify { seq, epoch, .. } => (*seq, *epoch),
        };
        // A frame of another epoch is answered so, on whatever stream it
        // came (one the placement closed included): the old primary learns
        // it is fenced instead of taking a silent close for a lost replica.
        if epoch != self.epoch {
            if stream == self.stream {
                self.open = false;
            }
            return vec![
                ReplicaAction::Send { stream, msg: FromReplica::StaleEpoch { current: self.epoch } },
                ReplicaAction::Disconnect,
            ];
        }
        if !self.open || stream != self.stream {
            return vec![ReplicaAction::Disconnect];
        }
        // Operations leave the primary in the order it numbered them; copies
        // leave when their region has been read, so their numbers may come
        // late (the primary sends nothing that overlaps a copy in flight).
        match &msg {
            ToReplica::Op { op, settled, .. } => {
                if seq <= self.last_seq {
                    tracing::warn!(seq, last = self.last_seq, "replication stream out of order: closing it");
                    self.open = false;
                    return vec![ReplicaAction::Disconnect];
                }
                if self.last_seq == 0 {
                    // The primary numbers operations only once it has
                    // reconciled every in-sync copy.
                    self.carried = DirtyMap::default();
                    self.unknown = false;
                }
                self.last_seq = seq;
                self.log(seq, op.changes(), *settled);
            }
            ToReplica::Copy { offset, data, .. } => self.carried.mark(*offset, data.len() as u64),
            ToReplica::Verify { .. } => {}
        }
        let id = self.next_id;
        self.next_id += 1;
        let (extent, kind) = match msg {
            ToReplica::Op { op, .. } => (op.extent(), WorkKind::Op(op)),
            ToReplica::Copy { offset, data, .. } => {
                (Extent::Bytes { offset, len: data.len() as u64 }, WorkKind::Copy { offset, data })
            }
            ToReplica::Verify { offset, len, crc, .. } => {
                (Extent::Bytes { offset, len }, WorkKind::Verify { offset, len, crc })
            }
        };
        let free = self.order.push(id, extent);
        self.work.insert(id, Work { seq, stream: self.stream, kind });
        let mut out = Vec::new();
        if free {
            self.start(id, &mut out);
        }
        out
    }

    fn start(&mut self, id: u64, out: &mut Vec<ReplicaAction>) {
        let Some(w) = self.work.get_mut(&id) else { return };
        match std::mem::replace(&mut w.kind, WorkKind::Started) {
            WorkKind::Op(op) => out.push(ReplicaAction::Apply { id, op }),
            WorkKind::Copy { offset, data } => out.push(ReplicaAction::WriteCopy { id, offset, data }),
            WorkKind::Verify { offset, len, crc } => out.push(ReplicaAction::Verify { id, offset, len, crc }),
            WorkKind::Started => {}
        }
    }

    /// The local copy finished `id`: answer the primary, start what waited.
    pub fn applied(&mut self, id: u64, result: Result<(), String>) -> Vec<ReplicaAction> {
        self.finish(id, |seq| match result {
            Ok(()) => FromReplica::Done { seq },
            Err(why) => FromReplica::Failed { seq, why },
        })
    }

    /// The local copy compared verification `id`: `Ok(true)` if the region
    /// matches. Answers the primary and starts what waited.
    pub fn verified(&mut self, id: u64, result: Result<bool, String>) -> Vec<ReplicaAction> {
        self.finish(id, |seq| match result {
            Ok(true) => FromReplica::Done { seq },
            Ok(false) => FromReplica::Differs { seq },
            Err(why) => FromReplica::Failed { seq, why },
        })
    }

    /// Work `id` is over: what waited for it starts, and the primary gets
    /// `answer` for its number.
    fn finish(&mut self, id: u64, answer: impl FnOnce(u64) -> FromReplica) -> Vec<ReplicaAction> {
        let mut out = Vec::new();
        let Some(w) = self.work.remove(&id) else { return out };
        for next in self.order.finish(id) {
            self.start(next, &mut out);
        }
        // Answers go to the stream the work came on; a closed one has no
        // reader, and a later one numbers afresh.
        if self.open && w.stream == self.stream {
            out.push(ReplicaAction::Send { stream: w.stream, msg: answer(w.seq) });
        }
        out
    }

    /// The number the last operation or copy received was given (the `id`
    /// of its [`ReplicaAction`]).
    pub fn last_id(&self) -> u64 {
        self.next_id - 1
    }

    /// Work received and not yet done.
    pub fn in_flight(&self) -> usize {
        self.work.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(seq: u64, epoch: u64) -> ToReplica {
        ToReplica::Op {
            seq,
            epoch: Epoch(epoch),
            settled: 1,
            op: Op::Write { offset: 0, data: Bytes::from_static(b"x"), fua: false },
        }
    }

    #[test]
    fn a_primary_that_handed_over_starts_as_a_replica_with_nothing_unsettled() {
        assert_eq!(Replica::new(Epoch(2), 1).unsettled(), None, "a replica that starts knows nothing");
        let r = Replica::settled(Epoch(2), 1);
        assert_eq!(r.unsettled().map(|log| log.len()), Some(0));
    }

    #[test]
    fn a_new_placement_fences_the_old_primary_on_its_open_stream() {
        let mut r = Replica::new(Epoch(1), 1);
        let s = r.hello(Epoch(1), 1).unwrap();
        assert!(matches!(r.receive(s, write(1, 1)).as_slice(), [ReplicaAction::Apply { .. }]));
        assert_eq!(r.set_placement(Epoch(2), 3), vec![ReplicaAction::Disconnect]);
        // The old primary's next frame learns why, on the stream it still has.
        assert_eq!(
            r.receive(s, write(2, 1)),
            vec![
                ReplicaAction::Send { stream: s, msg: FromReplica::StaleEpoch { current: Epoch(2) } },
                ReplicaAction::Disconnect
            ]
        );
        assert_eq!(r.hello(Epoch(1), 1), Err(FromReplica::StaleEpoch { current: Epoch(2) }));
        // Only the new placement's primary is taken.
        assert_eq!(r.hello(Epoch(2), 1), Err(FromReplica::StaleEpoch { current: Epoch(2) }));
        let s2 = r.hello(Epoch(2), 3).unwrap();
        // Its write waits for the old primary's write still being applied
        // there, and the old one's answer goes nowhere.
        assert!(r.receive(s2, write(1, 2)).is_empty());
        assert!(matches!(r.applied(1, Ok(())).as_slice(), [ReplicaAction::Apply { id: 2, .. }]));
    }

    /// A late retransmission of the old stream delivers a write just before
    /// the new stream's hello; a copy on the new stream overlapping it waits,
    /// and is started when the old stream's write finishes, on the old
    /// stream's task. Its answer must name the new stream (CI once lost it on
    /// the old one, and the primary's resync waited for ever).
    #[test]
    fn work_started_by_an_old_streams_work_is_answered_on_its_own_stream() {
        let mut r = Replica::new(Epoch(1), 2);
        let old = r.hello(Epoch(1), 2).unwrap();
        let late = ToReplica::Op {
            seq: 7,
            epoch: Epoch(1),
            settled: 1,
            op: Op::Write { offset: 0, data: Bytes::from_static(b"x"), fua: true },
        };
        let [ReplicaAction::Apply { id: write, .. }] = r.receive(old, late)[..] else { panic!("the write starts") };
        let new = r.hello(Epoch(1), 2).unwrap();
        let copy = ToReplica::Copy { seq: 9, epoch: Epoch(1), offset: 0, data: Bytes::from(vec![0u8; 65536]) };
        assert!(r.receive(new, copy).is_empty(), "the copy waits for the old stream's write");
        r.closed(old);
        let out = r.applied(write, Ok(()));
        let [ReplicaAction::WriteCopy { id: copy, .. }] = out[..] else { panic!("{out:?}") };
        assert_eq!(
            r.applied(copy, Ok(())),
            vec![ReplicaAction::Send { stream: new, msg: FromReplica::Done { seq: 9 } }]
        );
    }
}
