//! Ordering of numbered operations on one copy of a volume: an operation
//! starts once every earlier one it conflicts with (shares bytes with, or a
//! flush) has finished; others run at the same time. Every copy numbers and
//! orders the same way, so overlapping writes land in the same order
//! everywhere while the rest pipeline.

use std::collections::BTreeMap;

use super::ops::Extent;

#[derive(Debug)]
struct Entry {
    extent: Extent,
    started: bool,
}

/// Operations numbered but not yet finished on this copy.
#[derive(Debug, Default)]
pub struct Sequencer {
    entries: BTreeMap<u64, Entry>,
}

impl Sequencer {
    /// Adds operation `seq` (numbers only grow); true if it may start now.
    pub fn push(&mut self, seq: u64, extent: Extent) -> bool {
        debug_assert!(self.entries.last_key_value().is_none_or(|(&last, _)| last < seq), "sequence numbers grow");
        let free = !self.entries.values().any(|e| e.extent.conflicts(extent));
        self.entries.insert(seq, Entry { extent, started: free });
        free
    }

    /// Operation `seq` finished; returns the operations that may start now,
    /// in order.
    pub fn finish(&mut self, seq: u64) -> Vec<u64> {
        if self.entries.remove(&seq).is_none() {
            return Vec::new();
        }
        let mut ready = Vec::new();
        let mut before: Vec<Extent> = Vec::new();
        for (&s, e) in self.entries.iter_mut() {
            if !e.started && !before.iter().any(|b| b.conflicts(e.extent)) {
                e.started = true;
                ready.push(s);
            }
            before.push(e.extent);
        }
        ready
    }

    /// Operations numbered and not finished.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(offset: u64, len: u64) -> Extent {
        Extent::Bytes { offset, len }
    }

    #[test]
    fn overlapping_operations_wait_and_the_rest_pipeline() {
        let mut s = Sequencer::default();
        assert!(s.push(1, b(0, 10)));
        assert!(s.push(2, b(20, 10)), "no overlap: starts at once");
        assert!(!s.push(3, b(5, 10)), "overlaps 1");
        assert!(!s.push(4, Extent::All), "a flush waits for everything before it");
        assert!(!s.push(5, b(40, 1)), "and everything after waits for the flush");
        assert_eq!(s.finish(2), Vec::<u64>::new());
        assert_eq!(s.finish(1), vec![3]);
        assert_eq!(s.finish(3), vec![4]);
        assert_eq!(s.finish(4), vec![5]);
        assert_eq!(s.finish(5), Vec::<u64>::new());
        assert!(s.is_empty());
    }

    proptest::proptest! {
        /// Whatever finishes in whatever order, two conflicting operations
        /// are never running at once, and everything runs in the end.
        #[test]
        fn conflicting_operations_never_run_together(
            ops in proptest::collection::vec((0u64..8, 1u64..4, proptest::prelude::any::<bool>()), 1..40),
            picks in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 0..200),
        ) {
            let mut s = Sequencer::default();
            let extents: Vec<Extent> = ops.iter().map(|&(o, l, flush)| if flush && o == 0 { Extent::All } else { b(o, l) }).collect();
            let mut running: Vec<u64> = Vec::new();
            for (i, e) in extents.iter().enumerate() {
                if s.push(i as u64, *e) { running.push(i as u64); }
            }
            let mut done = 0;
            let mut picks = picks.into_iter();
            while !running.is_empty() {
                let k = picks.next().map(|p| p.index(running.len())).unwrap_or(0);
                let seq = running.swap_remove(k);
                done += 1;
                for r in s.finish(seq) {
                    running.push(r);
                }
                for (i, a) in running.iter().enumerate() {
                    for c in &running[i + 1..] {
                        proptest::prop_assert!(!extents[*a as usize].conflicts(extents[*c as usize]), "{a} and {c} run together");
                    }
                }
            }
            proptest::prop_assert_eq!(done, extents.len());
        }
    }
}
