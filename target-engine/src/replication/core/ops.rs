//! What a replicated volume's primary sends its replicas: numbered
//! operations, each with the bytes of the volume it touches.
//!
//! UNMAP and WRITE SAME travel as operations (a range and one block), not as
//! the data they stand for, and so does a volume's growth; COMPARE AND WRITE travels as the write it became
//! on the primary, which compared under the unit's exclusive lock (SBC-3
//! §5.2), so every copy applies the same bytes in the same place and order.

use bytes::Bytes;

/// A replica, by its node's identity in the cluster.
pub type ReplicaId = u32;

/// The generation of a volume's placement. Every placement change (a new
/// primary, a replica out of or back in sync) is a new epoch; a replica
/// accepts only the epoch it has been told about (CLUSTER.md §2, fencing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Epoch(pub u64);

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "epoch {}", self.0)
    }
}

/// One change to a volume, as every copy applies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Write {
        offset: u64,
        data: Bytes,
        fua: bool,
    },
    /// `len` bytes from `offset`, each block a copy of `block`.
    WriteSame {
        offset: u64,
        len: u64,
        block: Bytes,
        fua: bool,
    },
    Unmap {
        offset: u64,
        len: u64,
    },
    /// Makes every earlier operation durable (SYNCHRONIZE CACHE).
    Flush,
    /// The unit's saved state (reservations made with APTPL, mode
    /// parameters), kept by every copy before the command that changed it
    /// returns; `None` removes it.
    UnitState {
        text: Option<Bytes>,
    },
    /// Grows every copy to `size` bytes (never shrinks one): ordered after
    /// every operation before it, so that no copy gets a write beyond its
    /// end that the others could take.
    Resize {
        size: u64,
    },
}

/// What an operation is ordered against: the bytes it touches, everything
/// before it (a flush), or the unit's state (changes of it apply in turn).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extent {
    Bytes { offset: u64, len: u64 },
    All,
    UnitState,
}

impl Extent {
    /// Whether two operations must apply in the order they were numbered.
    pub fn conflicts(self, other: Extent) -> bool {
        match (self, other) {
            (Extent::All, _) | (_, Extent::All) => true,
            (Extent::UnitState, Extent::UnitState) => true,
            (Extent::Bytes { offset: a, len: la }, Extent::Bytes { offset: b, len: lb }) => {
                a < b.saturating_add(lb) && b < a.saturating_add(la)
            }
            _ => false,
        }
    }
}

impl Op {
    pub fn extent(&self) -> Extent {
        match self {
            Op::Write { offset, data, .. } => Extent::Bytes { offset: *offset, len: data.len() as u64 },
            Op::WriteSame { offset, len, .. } | Op::Unmap { offset, len } => {
                Extent::Bytes { offset: *offset, len: *len }
            }
            Op::Flush | Op::Resize { .. } => Extent::All,
            Op::UnitState { .. } => Extent::UnitState,
        }
    }

    /// Whether a copy acknowledges it only once it is durable.
    pub fn durable(&self) -> bool {
        matches!(
            self,
            Op::Write { fua: true, .. }
                | Op::WriteSame { fua: true, .. }
                | Op::Flush
                | Op::UnitState { .. }
                | Op::Resize { .. }
        )
    }

    /// Bytes of the volume it changes, if any (for dirty-region tracking).
    pub fn changes(&self) -> Option<(u64, u64)> {
        match self.extent() {
            Extent::Bytes { offset, len } => Some((offset, len)),
            _ => None,
        }
    }

    /// Bytes it carries over the network (for budgets).
    pub fn payload(&self) -> usize {
        match self {
            Op::Write { data, .. } => data.len(),
            Op::WriteSame { block, .. } => block.len(),
            Op::UnitState { text } => text.as_ref().map_or(0, Bytes::len),
            Op::Unmap { .. } | Op::Flush | Op::Resize { .. } => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_conflict_where_they_share_bytes_and_flushes_with_everything() {
        let b = |offset, len| Extent::Bytes { offset, len };
        assert!(b(0, 10).conflicts(b(9, 1)));
        assert!(!b(0, 10).conflicts(b(10, 5)));
        assert!(!b(10, 5).conflicts(b(0, 10)));
        assert!(Extent::All.conflicts(b(5, 1)));
        assert!(Extent::UnitState.conflicts(Extent::UnitState));
        assert!(!Extent::UnitState.conflicts(b(0, u64::MAX)));
        assert!(!b(u64::MAX - 1, 5).conflicts(b(0, 1)), "no overflow at the end");
    }
}
