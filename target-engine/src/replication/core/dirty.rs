//! The regions of a volume a replica has missed (CLUSTER.md §2, resync):
//! one bit per [`REGION`] bytes, kept in pages allocated on first use, so a
//! replica that missed little costs little, and one that missed everything
//! costs one bit per 64 KiB (16 KiB per GiB).

use std::collections::BTreeMap;

/// Bytes per bit.
pub const REGION: u64 = 64 * 1024;
/// Regions per page of the map.
const PAGE_REGIONS: u64 = 64 * 1024;
const WORDS: usize = (PAGE_REGIONS / 64) as usize;

/// A set of dirty regions.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DirtyMap {
    pages: BTreeMap<u64, Box<[u64; WORDS]>>,
    count: u64,
}

impl std::fmt::Debug for DirtyMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let first: Vec<u64> = std::iter::successors(self.next_from(0), |r| self.next_from(r + 1)).take(8).collect();
        write!(f, "DirtyMap({} regions, from {:?})", self.count, first)
    }
}

impl DirtyMap {
    /// Marks the regions `len` bytes at `offset` touch.
    pub fn mark(&mut self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let first = offset / REGION;
        let last = (offset.saturating_add(len) - 1) / REGION;
        for r in first..=last {
            self.set(r);
        }
    }

    /// Marks every region of a volume of `size` bytes.
    pub fn mark_all(&mut self, size: u64) {
        self.mark(0, size);
    }

    fn set(&mut self, region: u64) {
        let page = self.pages.entry(region / PAGE_REGIONS).or_insert_with(|| Box::new([0; WORDS]));
        let bit = region % PAGE_REGIONS;
        let word = &mut page[(bit / 64) as usize];
        let mask = 1u64 << (bit % 64);
        if *word & mask == 0 {
            *word |= mask;
            self.count += 1;
        }
    }

    /// Clears one region (it has been copied).
    pub fn clear(&mut self, region: u64) {
        let Some(page) = self.pages.get_mut(&(region / PAGE_REGIONS)) else { return };
        let bit = region % PAGE_REGIONS;
        let word = &mut page[(bit / 64) as usize];
        let mask = 1u64 << (bit % 64);
        if *word & mask != 0 {
            *word &= !mask;
            self.count -= 1;
            if page.iter().all(|w| *w == 0) {
                self.pages.remove(&(region / PAGE_REGIONS));
            }
        }
    }

    /// The first dirty region at or after `from`.
    pub fn next_from(&self, from: u64) -> Option<u64> {
        for (&p, page) in self.pages.range(from / PAGE_REGIONS..) {
            let base = p * PAGE_REGIONS;
            let start = from.saturating_sub(base);
            for w in (start / 64) as usize..WORDS {
                let mut word = page[w];
                if w == (start / 64) as usize {
                    word &= !0u64 << (start % 64);
                }
                if word != 0 {
                    return Some(base + w as u64 * 64 + u64::from(word.trailing_zeros()));
                }
            }
        }
        None
    }

    pub fn contains(&self, region: u64) -> bool {
        self.pages.get(&(region / PAGE_REGIONS)).is_some_and(|p| {
            let bit = region % PAGE_REGIONS;
            p[(bit / 64) as usize] & (1 << (bit % 64)) != 0
        })
    }

    /// Dirty regions.
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The dirty regions, in order.
    pub fn regions(&self) -> impl Iterator<Item = u64> + '_ {
        std::iter::successors(self.next_from(0), |r| self.next_from(r + 1))
    }

    /// Every region of `other` is dirty here too.
    pub fn absorb(&mut self, other: &DirtyMap) {
        let mut r = other.next_from(0);
        while let Some(region) = r {
            self.set(region);
            r = other.next_from(region + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_clears_and_walks_regions() {
        let mut d = DirtyMap::default();
        d.mark(REGION - 1, 2);
        assert_eq!(d.len(), 2);
        d.mark(5 * REGION, REGION);
        d.mark(PAGE_REGIONS * REGION * 3 + 7, 1);
        assert_eq!(d.len(), 4);
        let walked: Vec<u64> = std::iter::successors(d.next_from(0), |r| d.next_from(r + 1)).collect();
        assert_eq!(walked, vec![0, 1, 5, 3 * PAGE_REGIONS]);
        d.clear(1);
        d.clear(1);
        assert_eq!(d.len(), 3);
        assert!(!d.contains(1) && d.contains(5));
        d.clear(3 * PAGE_REGIONS);
        assert_eq!(d.pages.len(), 1, "an emptied page is given back");
    }

    #[test]
    fn a_whole_volume_costs_a_bit_per_region() {
        let mut d = DirtyMap::default();
        d.mark_all(10 << 30);
        assert_eq!(d.len(), (10 << 30) / REGION);
        assert_eq!(d.next_from(d.len() - 1), Some(d.len() - 1));
        assert_eq!(d.next_from(d.len()), None);
    }

    proptest::proptest! {
        #[test]
        fn the_map_agrees_with_a_set(ops in proptest::collection::vec((0u64..300_000, 0u64..3, proptest::prelude::any::<bool>()), 0..200)) {
            let mut d = DirtyMap::default();
            let mut set = std::collections::BTreeSet::new();
            for (region, span, clear) in ops {
                if clear {
                    d.clear(region);
                    set.remove(&region);
                } else {
                    d.mark(region * REGION, span * REGION + 1);
                    for r in region..=region + span {
                        set.insert(r);
                    }
                }
            }
            proptest::prop_assert_eq!(d.len(), set.len() as u64);
            let walked: Vec<u64> = std::iter::successors(d.next_from(0), |r| d.next_from(r + 1)).collect();
            proptest::prop_assert_eq!(walked, set.into_iter().collect::<Vec<_>>());
        }
    }
}
