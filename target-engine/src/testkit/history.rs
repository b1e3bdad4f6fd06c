//! What a multipath test workload (the `ledger` example) wrote and when,
//! and the verdict on what it reads back: each block is a register, and
//! reads must be linearizable in real time (Herlihy and Wing's condition,
//! as Jepsen's register checkers apply it).
//!
//! Every command is dated on one logical clock when it is issued and when
//! it ends. A write W2 issued after a write W1 was acknowledged must win
//! over W1; writes in flight together may land in either order (SCSI SIMPLE
//! tasks, SAM-5 §8.6). So a read issued at `t` may return generation `g` of
//! a block unless a write of that block acknowledged before `t` was issued
//! after `g` was acknowledged: `g` is then *stale* (a lost write, or a copy
//! that missed it serving the read). Once any write of the block was
//! acknowledged before `t`, the read must find one of this run's records.
//! Each record names its volume, run, block and generation and ends with a
//! CRC32C, so a torn or misplaced write is told apart from an old one.
//!
//! Memory stays bounded by what is in flight: a write is forgotten once a
//! later write was acknowledged before every read still in flight began.

use std::collections::BTreeMap;

const MAGIC: &[u8; 8] = b"PLEDGER2";

/// Who wrote a record: this volume, this run.
#[derive(Clone, Copy)]
pub struct Stamp {
    pub volume: u64,
    pub run: u64,
}

/// The record for `block` at `generation`.
pub fn record(size: usize, stamp: Stamp, block: u32, generation: u64) -> Vec<u8> {
    let mut r = vec![0u8; size];
    r[..8].copy_from_slice(MAGIC);
    r[8..16].copy_from_slice(&stamp.volume.to_be_bytes());
    r[16..24].copy_from_slice(&stamp.run.to_be_bytes());
    r[24..28].copy_from_slice(&block.to_be_bytes());
    r[28..36].copy_from_slice(&generation.to_be_bytes());
    for (i, b) in r[36..size - 4].iter_mut().enumerate() {
        *b = (i as u64 ^ generation.wrapping_mul(0x9e37) ^ u64::from(block)) as u8;
    }
    let crc = crc32c::crc32c(&r[..size - 4]);
    r[size - 4..].copy_from_slice(&crc.to_be_bytes());
    r
}

/// What a block read back holds.
#[derive(Debug, PartialEq)]
pub enum Found {
    /// Zeros, or a record of an earlier run: not written by this one.
    Before,
    Generation(u64),
    /// A record of another block or volume.
    Foreign,
    /// Not a whole record: a torn or damaged write.
    Torn,
}

pub fn parse(data: &[u8], stamp: Stamp, block: u32) -> Found {
    if data.iter().all(|&b| b == 0) {
        return Found::Before;
    }
    let size = data.len();
    let crc = u32::from_be_bytes(data[size - 4..].try_into().unwrap());
    if &data[..8] != MAGIC || crc32c::crc32c(&data[..size - 4]) != crc {
        return Found::Torn;
    }
    let field = |at: usize| u64::from_be_bytes(data[at..at + 8].try_into().unwrap());
    let b = u32::from_be_bytes(data[24..28].try_into().unwrap());
    if field(8) != stamp.volume || b != block {
        return Found::Foreign;
    }
    if field(16) != stamp.run {
        return Found::Before;
    }
    Found::Generation(field(28))
}

/// One write of one block, on a logical clock shared by every command.
struct Entry {
    generation: u64,
    issued: u64,
    acked: Option<u64>,
}

/// How one block read back stands.
#[derive(Debug, PartialEq)]
pub enum Judged {
    Fine,
    /// An older generation than a write acknowledged before the read, or
    /// none where one was: a lost write or a stale copy.
    Stale,
    Torn,
    Foreign,
    /// A generation this run never issued.
    Unknown,
}

#[derive(Default)]
pub struct Book {
    clock: u64,
    generations: u64,
    /// Per block, the writes that may still be what a read finds.
    blocks: Vec<Vec<Entry>>,
    /// Per block, when a write of it was first acknowledged.
    first_ack: Vec<Option<u64>>,
    /// When each read still in flight was issued (a multiset).
    reads_in_flight: BTreeMap<u64, u32>,
    /// Writes issued while another write of one of their blocks was in flight.
    pub overlapping: u64,
}

impl Book {
    pub fn new(blocks: u32) -> Book {
        Book {
            blocks: (0..blocks).map(|_| Vec::new()).collect(),
            first_ack: vec![None; blocks as usize],
            ..Book::default()
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// A write of `first..first+n` is issued: its generation.
    pub fn write_issued(&mut self, first: u32, n: u32) -> u64 {
        let issued = self.tick();
        self.generations += 1;
        let generation = self.generations;
        for b in first..first + n {
            let entries = &mut self.blocks[b as usize];
            if entries.iter().any(|e| e.acked.is_none()) {
                self.overlapping += 1;
            }
            entries.push(Entry { generation, issued, acked: None });
        }
        generation
    }

    pub fn write_acked(&mut self, first: u32, n: u32, generation: u64) {
        let acked = self.tick();
        for b in first..first + n {
            let entry = self.blocks[b as usize].iter_mut().find(|e| e.generation == generation);
            entry.expect("an issued write").acked = Some(acked);
            self.first_ack[b as usize].get_or_insert(acked);
            self.prune(b);
        }
    }

    /// Drops the writes of `block` that no read in flight or to come may
    /// find: those overwritten by a write issued after they were
    /// acknowledged and itself acknowledged before every read in flight.
    fn prune(&mut self, block: u32) {
        let horizon = self.reads_in_flight.keys().next().copied().unwrap_or(u64::MAX);
        let entries = &mut self.blocks[block as usize];
        let newest_settled = entries.iter().filter(|w| w.acked.is_some_and(|a| a < horizon)).map(|w| w.issued).max();
        if let Some(newest) = newest_settled {
            entries.retain(|v| v.acked.is_none_or(|a| a >= newest));
        }
    }

    pub fn read_issued(&mut self) -> u64 {
        let at = self.tick();
        *self.reads_in_flight.entry(at).or_default() += 1;
        at
    }

    pub fn read_done(&mut self, at: u64) {
        if let Some(n) = self.reads_in_flight.get_mut(&at) {
            *n -= 1;
            if *n == 0 {
                self.reads_in_flight.remove(&at);
            }
        }
    }

    /// The verdict on `found` in `block` for a read issued at `at`.
    pub fn judge(&self, block: u32, found: Found, at: u64) -> Judged {
        let entries = &self.blocks[block as usize];
        let acked_before = self.first_ack[block as usize].is_some_and(|a| a < at);
        let written_meanwhile = entries.iter().any(|e| e.acked.is_none_or(|a| a > at));
        match found {
            Found::Generation(g) if g > self.generations => Judged::Unknown,
            Found::Generation(g) => match entries.iter().find(|e| e.generation == g) {
                // Pruned: overwritten by a write acknowledged before this read.
                None => Judged::Stale,
                Some(e) => {
                    let superseded = e
                        .acked
                        .is_some_and(|ea| entries.iter().any(|w| w.acked.is_some_and(|wa| wa < at) && w.issued > ea));
                    if superseded {
                        Judged::Stale
                    } else {
                        Judged::Fine
                    }
                }
            },
            Found::Before if acked_before => Judged::Stale,
            Found::Before => Judged::Fine,
            // A read overlapping a write of the block may see it half done.
            Found::Torn if written_meanwhile || !acked_before => Judged::Fine,
            Found::Torn => Judged::Torn,
            Found::Foreign if acked_before || written_meanwhile => Judged::Foreign,
            Found::Foreign => Judged::Fine,
        }
    }
}

/// Counts of what reads found that they should not have.
#[derive(Default)]
pub struct Faults {
    pub stale: Vec<u32>,
    pub torn: u32,
    pub foreign: u32,
    pub unknown: u32,
}

impl Faults {
    pub fn note(&mut self, block: u32, judged: Judged) {
        match judged {
            Judged::Fine => {}
            Judged::Stale => self.stale.push(block),
            Judged::Torn => self.torn += 1,
            Judged::Foreign => self.foreign += 1,
            Judged::Unknown => self.unknown += 1,
        }
    }

    pub fn none(&self) -> bool {
        self.stale.is_empty() && self.torn == 0 && self.foreign == 0 && self.unknown == 0
    }

    pub fn describe(&self, stale_word: &str) -> String {
        format!(
            "{} {stale_word} (first {:?}), {} torn, {} foreign, {} of generations never written",
            self.stale.len(),
            self.stale.iter().take(5).collect::<Vec<_>>(),
            self.torn,
            self.foreign,
            self.unknown
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: Stamp = Stamp { volume: 7, run: 9 };

    fn found(generation: u64) -> Found {
        parse(&record(512, STAMP, 3, generation), STAMP, 3)
    }

    #[test]
    fn records_parse_back_and_tell_others_apart() {
        assert_eq!(found(5), Found::Generation(5));
        assert_eq!(parse(&[0u8; 512], STAMP, 3), Found::Before);
        assert_eq!(parse(&record(512, Stamp { run: 8, ..STAMP }, 3, 5), STAMP, 3), Found::Before);
        assert_eq!(parse(&record(512, STAMP, 4, 5), STAMP, 3), Found::Foreign);
        let mut torn = record(512, STAMP, 3, 5);
        torn[300] ^= 1;
        assert_eq!(parse(&torn, STAMP, 3), Found::Torn);
    }

    #[test]
    fn a_read_after_an_acknowledged_write_must_see_it_or_newer() {
        let mut book = Book::new(8);
        let g1 = book.write_issued(3, 1);
        book.write_acked(3, 1, g1);
        let g2 = book.write_issued(3, 1);
        book.write_acked(3, 1, g2);
        let at = book.read_issued();
        assert_eq!(book.judge(3, found(g2), at), Judged::Fine);
        assert_eq!(book.judge(3, found(g1), at), Judged::Stale, "g1 was overwritten before the read began");
        assert_eq!(book.judge(3, Found::Before, at), Judged::Stale, "an acknowledged write missing");
        assert_eq!(book.judge(3, found(g2 + 1), at), Judged::Unknown);
        assert_eq!(book.judge(3, Found::Torn, at), Judged::Torn);
        // Another block, never written: whatever it holds is not judged.
        assert_eq!(book.judge(4, Found::Before, at), Judged::Fine);
    }

    #[test]
    fn writes_in_flight_together_may_land_in_either_order() {
        let mut book = Book::new(8);
        let g1 = book.write_issued(3, 1);
        let g2 = book.write_issued(3, 1);
        assert_eq!(book.overlapping, 1);
        book.write_acked(3, 1, g2);
        book.write_acked(3, 1, g1);
        let at = book.read_issued();
        assert_eq!(book.judge(3, found(g1), at), Judged::Fine);
        assert_eq!(book.judge(3, found(g2), at), Judged::Fine);
    }

    #[test]
    fn a_read_overlapping_a_write_may_see_either_side_of_it() {
        let mut book = Book::new(8);
        let g1 = book.write_issued(3, 1);
        book.write_acked(3, 1, g1);
        let at = book.read_issued();
        let g2 = book.write_issued(3, 1);
        book.write_acked(3, 1, g2);
        assert_eq!(book.judge(3, found(g1), at), Judged::Fine, "g2 was acknowledged after the read began");
        assert_eq!(book.judge(3, found(g2), at), Judged::Fine);
        book.read_done(at);
        let later = book.read_issued();
        assert_eq!(book.judge(3, found(g1), later), Judged::Stale);
    }

    #[test]
    fn forgetting_old_writes_keeps_what_reads_in_flight_may_see() {
        let mut book = Book::new(8);
        let g1 = book.write_issued(3, 1);
        book.write_acked(3, 1, g1);
        let at = book.read_issued();
        for _ in 0..100 {
            let g = book.write_issued(3, 1);
            book.write_acked(3, 1, g);
        }
        // g1 is still a fair answer to the read that began before the rest.
        assert_eq!(book.judge(3, found(g1), at), Judged::Fine);
        book.read_done(at);
        let g = book.write_issued(3, 1);
        book.write_acked(3, 1, g);
        assert!(book.blocks[3].len() <= 2, "{} writes kept", book.blocks[3].len());
        let later = book.read_issued();
        assert_eq!(book.judge(3, found(g1), later), Judged::Stale);
        assert_eq!(book.judge(3, found(g), later), Judged::Fine);
    }
}
