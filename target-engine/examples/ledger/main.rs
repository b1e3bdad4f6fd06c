//! A ledger workload over several paths to one logical unit, as a
//! multipathing host sees it (dev only; CLUSTER.md §4, how failover is
//! proven). `--depth` commands are in flight at once (32 by default), over
//! one session per path as a host keeps them, and writes to the same
//! blocks overlap, as a guest's filesystem journal makes them.
//!
//! Every write puts a self-describing record in each of its blocks —
//! `{volume, run, block, generation, CRC32C}` — and counts as acknowledged
//! only once it ended GOOD. The verdict is exact for a register per block
//! under real-time order: a write W2 issued after a write W1 was
//! acknowledged must win over W1; writes in flight together may land in
//! either order. So a read issued at time `t` may return a generation `g`
//! of the block unless some write acknowledged before `t` was issued after
//! `g` was acknowledged (`g` is then stale: a lost write, or a read served
//! by a copy that missed it), and it must return one of this run's records
//! once any write of the block was acknowledged before `t`. A share of the
//! commands (`--reads`) are such checked reads, during the run; at the end
//! every block is read back and judged the same way. Blocks this run never
//! wrote are not judged (they hold what was there before).
//!
//! `--reader ADDR=IQN` adds a reader that stays on that one path whatever
//! happens, as a host that does not fail over would (the old primary's
//! port, in a partition test): every read it gets GOOD is judged the same
//! way, and a stale one is a failure.
//!
//! Paths are chosen as Linux dm-multipath chooses them, by one of two
//! policies (`--policy`): `failover` (one path in use, the one that worked
//! last; [`failover`]), or `group-by-prio` (the ALUA prioritizer's groups,
//! round-robin over the best group's paths, a path checker every
//! `--check-interval` seconds; [`by_prio`]), which prints the paths in use
//! as they changed and what each path carried. Either way a command that
//! gets no answer within `--timeout` (a NOP-Out style deadline on every
//! command) counts as a failed path, and a unit attention is retried.
//!
//! ```text
//! cargo run --features test-util --example ledger -- \
//!     --path 127.0.1.1:3260=IQN --path 127.0.2.1:3260=IQN [--lun 0] \
//!     [--blocks 4096] [--block-size 512] [--seconds 10] [--timeout 2] [--volume NAME] [--seed 1] \
//!     [--depth 32] [--reads 20] [--reader ADDR=IQN] \
//!     [--policy failover|group-by-prio] [--check-interval 2]
//! ```
//!
//! Prints a line with the writes acknowledged (and how many overlapped
//! another write of the same block), the reads checked, the path switches,
//! the longest pause between two acknowledged writes and the verdict
//! (`intact`, or the blocks lost, stale, torn or foreign); then the pauses
//! as a histogram, the longest ones with the time of day they ended (to
//! match them with a fault schedule), and one verdict line; with
//! `--reader`, a line for the reader too; with `group-by-prio`, a line per
//! change of the paths in use and one per path. Exits 1 unless intact and no
//! read was stale.

mod by_prio;
mod failover;
mod paths;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use target_engine::testkit::history::{parse, record, Book, Faults, Judged, Stamp};
use target_engine::testkit::initiator::{read10, write10, CmdResult};
use target_engine::testkit::rng::Rng;

use by_prio::ByPrio;
use failover::Failover;
use paths::{time_of_day, Outcome, Path};

/// The blocks most writes go to at once, as a journal's (overlapping writes).
const HOT_BLOCKS: u32 = 16;
/// The longest write or read, in blocks.
const MAX_RUN: u32 = 8;
/// The last byte of the first path's ISID; the next paths count up from it.
const FIRST_PATH_ISID: u8 = 0x10;
const MAX_PATHS: usize = 64;
/// The last byte of the fixed-path reader's ISID.
const READER_ISID: u8 = 2;

struct Args {
    paths: Vec<(SocketAddr, String)>,
    reader: Option<(SocketAddr, String)>,
    lun: u64,
    blocks: u32,
    block_size: usize,
    seconds: f64,
    timeout: Duration,
    volume: String,
    seed: u64,
    depth: usize,
    reads_percent: u64,
    policy: Policy,
    check_every: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Policy {
    Failover,
    GroupByPrio,
}

fn usage() -> ! {
    eprintln!("usage: ledger --path ADDR=IQN [--path ADDR=IQN ...] [--lun N] [--blocks N] [--block-size 512] [--seconds S] [--timeout S] [--volume NAME] [--seed N] [--depth 32] [--reads PERCENT] [--reader ADDR=IQN] [--policy failover|group-by-prio] [--check-interval S]");
    std::process::exit(2)
}

fn path_arg(value: &str) -> (SocketAddr, String) {
    let (addr, iqn) = value.split_once('=').unwrap_or_else(|| usage());
    (addr.parse().unwrap_or_else(|_| usage()), iqn.to_string())
}

fn args() -> Args {
    let mut a = Args {
        paths: Vec::new(),
        reader: None,
        lun: 0,
        blocks: 4096,
        block_size: 512,
        seconds: 10.0,
        timeout: Duration::from_secs(2),
        volume: "ledger".into(),
        seed: 1,
        depth: 32,
        reads_percent: 20,
        policy: Policy::Failover,
        check_every: Duration::from_secs(2),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        let bad = || -> ! { usage() };
        match flag.as_str() {
            "--path" => a.paths.push(path_arg(&value)),
            "--reader" => a.reader = Some(path_arg(&value)),
            "--lun" => a.lun = value.parse().unwrap_or_else(|_| bad()),
            "--blocks" => a.blocks = value.parse().unwrap_or_else(|_| bad()),
            "--block-size" => a.block_size = value.parse().unwrap_or_else(|_| bad()),
            "--seconds" => a.seconds = value.parse().unwrap_or_else(|_| bad()),
            "--timeout" => a.timeout = Duration::from_secs_f64(value.parse().unwrap_or_else(|_| bad())),
            "--volume" => a.volume = value,
            "--seed" => a.seed = value.parse().unwrap_or_else(|_| bad()),
            "--depth" => a.depth = value.parse().unwrap_or_else(|_| bad()),
            "--reads" => a.reads_percent = value.parse().unwrap_or_else(|_| bad()),
            "--policy" => {
                a.policy = match value.as_str() {
                    "failover" => Policy::Failover,
                    "group-by-prio" => Policy::GroupByPrio,
                    _ => bad(),
                }
            }
            "--check-interval" => {
                a.check_every = Duration::from_secs_f64(value.parse().unwrap_or_else(|_| bad()));
            }
            _ => bad(),
        }
    }
    let sane = !a.paths.is_empty()
        && a.paths.len() <= MAX_PATHS
        && a.blocks > HOT_BLOCKS + MAX_RUN
        && a.block_size >= 64
        && a.lun <= 255
        && (1..=128).contains(&a.depth)
        && a.reads_percent <= 90
        && a.check_every >= Duration::from_millis(100);
    if !sane {
        usage();
    }
    a
}

// ---------------------------------------------------------------------------
// The multipath device

/// The paths to the unit as one device, under the chosen policy.
enum Device {
    Failover(Failover),
    ByPrio(Arc<ByPrio>),
}

impl Device {
    async fn command(&self, cdb: &[u8], read_len: u32, data: Bytes, until: Instant) -> Option<CmdResult> {
        match self {
            Device::Failover(d) => d.command(cdb, read_len, data, until).await,
            Device::ByPrio(d) => d.command(cdb, read_len, data, until).await,
        }
    }

    fn paths(&self) -> usize {
        match self {
            Device::Failover(d) => d.paths.len(),
            Device::ByPrio(d) => d.paths.len(),
        }
    }

    fn switches(&self) -> u64 {
        match self {
            Device::Failover(d) => d.switches.load(Ordering::Relaxed),
            Device::ByPrio(d) => d.switches(),
        }
    }

    fn errors(&self) -> u64 {
        match self {
            Device::Failover(d) => d.errors.load(Ordering::Relaxed),
            Device::ByPrio(d) => d.errors.load(Ordering::Relaxed),
        }
    }
}

// ---------------------------------------------------------------------------
// The workload

/// Everything the commands in flight share.
struct Run {
    mp: Device,
    lun: u64,
    timeout: Duration,
    book: Mutex<Book>,
    faults: Mutex<Faults>,
    stamp: Stamp,
    blocks: u32,
    block_size: usize,
    reads_percent: u64,
    end: Instant,
    grace: Duration,
    writes: AtomicU64,
    reads: AtomicU64,
    pauses: Mutex<Pauses>,
}

/// The gaps between two acknowledged writes (any command in flight).
struct Pauses {
    last_ack: Instant,
    longest: Duration,
    /// How many gaps reached each of [`PAUSE_BOUNDS`].
    over: [u64; PAUSE_BOUNDS.len()],
    /// The longest gaps of a second or more, with the time of day (UTC)
    /// each ended, to match them with what a fault test did then.
    worst: Vec<(Duration, std::time::SystemTime)>,
}

/// How many of the longest pauses are told with their time.
const WORST_KEPT: usize = 12;

const PAUSE_BOUNDS: [Duration; 6] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
];

impl Pauses {
    fn acked(&mut self) {
        let gap = self.last_ack.elapsed();
        self.longest = self.longest.max(gap);
        for (bound, count) in PAUSE_BOUNDS.iter().zip(&mut self.over) {
            if gap >= *bound {
                *count += 1;
            }
        }
        if gap >= Duration::from_secs(1) {
            self.worst.push((gap, std::time::SystemTime::now()));
            self.worst.sort_by_key(|w| std::cmp::Reverse(w.0));
            self.worst.truncate(WORST_KEPT);
        }
        self.last_ack = Instant::now();
    }

    /// The longest pauses, in the order they happened: `ms ending at HH:MM:SS.s`.
    fn worst(&self) -> String {
        let mut worst = self.worst.clone();
        worst.sort_by_key(|w| w.1);
        let told: Vec<String> =
            worst.iter().map(|(gap, at)| format!("{} ms ending at {}", gap.as_millis(), time_of_day(*at))).collect();
        if told.is_empty() {
            "none".into()
        } else {
            told.join(", ")
        }
    }

    fn histogram(&self) -> String {
        let parts: Vec<String> =
            PAUSE_BOUNDS.iter().zip(&self.over).map(|(b, n)| format!("{n} of {} ms or more", b.as_millis())).collect();
        parts.join(", ")
    }
}

impl Run {
    /// Where the next command goes: mostly one block, sometimes a run of
    /// blocks; a quarter of them among the hot blocks.
    fn extent(&self, rng: &mut Rng) -> (u32, u32) {
        let n = if rng.below(8) == 0 { 2 + rng.below(u64::from(MAX_RUN) - 1) as u32 } else { 1 };
        let first = if rng.below(4) == 0 {
            rng.below(u64::from(HOT_BLOCKS)) as u32
        } else {
            rng.below(u64::from(self.blocks - n + 1)) as u32
        };
        (first, n)
    }

    /// Judges each block of a read of `first..first+n` issued at `at`
    /// (in the book's order) that ended GOOD with `data`.
    fn judge_read(&self, book: &Book, faults: &mut Faults, first: u32, n: u32, data: &[u8], at: u64) {
        for k in 0..n {
            let b = first + k;
            let start = k as usize * self.block_size;
            let judged = match data.get(start..start + self.block_size) {
                Some(block) => book.judge(b, parse(block, self.stamp, b), at),
                None => Judged::Torn,
            };
            faults.note(b, judged);
        }
    }

    /// Reads `first..first+n` and judges each block; false if no path
    /// answered in time.
    async fn checked_read(&self, first: u32, n: u32, until: Instant) -> bool {
        let at = self.book.lock().unwrap().read_issued();
        let len = n * self.block_size as u32;
        let result = self.mp.command(&read10(first, n as u16), len, Bytes::new(), until).await;
        let mut book = self.book.lock().unwrap();
        book.read_done(at);
        let Some(r) = result else { return false };
        self.judge_read(&book, &mut self.faults.lock().unwrap(), first, n, &r.data, at);
        true
    }

    async fn write(&self, first: u32, n: u32, until: Instant) -> bool {
        let generation = self.book.lock().unwrap().write_issued(first, n);
        let mut data = Vec::with_capacity(n as usize * self.block_size);
        for b in first..first + n {
            data.extend_from_slice(&record(self.block_size, self.stamp, b, generation));
        }
        if self.mp.command(&write10(first, n as u16), 0, Bytes::from(data), until).await.is_none() {
            return false;
        }
        self.book.lock().unwrap().write_acked(first, n, generation);
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.pauses.lock().unwrap().acked();
        true
    }

    /// One of the `--depth` commands in flight, issued again as soon as it
    /// ends, until the run's end.
    async fn lane(self: Arc<Self>, seed: u64) -> Result<(), String> {
        let mut rng = Rng::new(seed);
        let until = self.end + self.grace;
        while Instant::now() < self.end {
            let (first, n) = self.extent(&mut rng);
            if rng.below(100) < self.reads_percent {
                if !self.checked_read(first, n, until).await {
                    return Err(format!("a read of blocks {first}.. found no path"));
                }
                self.reads.fetch_add(1, Ordering::Relaxed);
            } else if !self.write(first, n, until).await {
                return Err(format!(
                    "a write of block {first} was never acknowledged within {} s: no path served it",
                    self.grace.as_secs()
                ));
            }
        }
        Ok(())
    }
}

/// What the fixed-path reader saw.
#[derive(Default)]
struct ReaderCount {
    answered: u64,
    refused: u64,
    faults: Faults,
}

/// Reads through one path only until the end, reconnecting when its session
/// goes; every read answered GOOD is judged.
async fn fixed_reader(run: Arc<Run>, path: Path, seed: u64) -> ReaderCount {
    let mut count = ReaderCount::default();
    let mut rng = Rng::new(seed);
    while Instant::now() < run.end {
        if !path.connect(run.timeout).await {
            count.refused += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let (first, n) = run.extent(&mut rng);
        let at = run.book.lock().unwrap().read_issued();
        let len = n * run.block_size as u32;
        let outcome = path.run(run.lun, &read10(first, n as u16), len, Bytes::new(), run.timeout).await;
        let answered = {
            let mut book = run.book.lock().unwrap();
            book.read_done(at);
            match outcome {
                Outcome::Done(r) if r.status == 0 => {
                    run.judge_read(&book, &mut count.faults, first, n, &r.data, at);
                    true
                }
                _ => false,
            }
        };
        if answered {
            count.answered += 1;
        } else {
            count.refused += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    count
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let a = args();
    // The test initiator's panics on a dropped socket are path failures here.
    std::panic::set_hook(Box::new(|_| {}));
    let volume =
        a.volume.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let run_id = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
        ^ a.seed.rotate_left(32);
    let started = Instant::now();
    // One I_T nexus per path, as a host keeps one session per portal: two
    // portals of one target are one target port, so the ISIDs differ; and
    // ledgers on other LUNs of the same targets run beside this one, so
    // the LUN is in the ISID too.
    let paths: Vec<Path> = a
        .paths
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, p)| Path::new(p, [a.lun as u8, FIRST_PATH_ISID + i as u8]))
        .collect();
    let run = Arc::new(Run {
        mp: match a.policy {
            Policy::Failover => Device::Failover(Failover::new(paths, a.lun, a.timeout)),
            Policy::GroupByPrio => Device::ByPrio(Arc::new(ByPrio::new(paths, a.lun, a.timeout, a.check_every))),
        },
        lun: a.lun,
        timeout: a.timeout,
        book: Mutex::new(Book::new(a.blocks)),
        faults: Mutex::new(Faults::default()),
        stamp: Stamp { volume, run: run_id },
        blocks: a.blocks,
        block_size: a.block_size,
        reads_percent: a.reads_percent,
        end: started + Duration::from_secs_f64(a.seconds),
        // Room after the end for a command in flight to find a path.
        grace: Duration::from_secs(30),
        writes: AtomicU64::new(0),
        reads: AtomicU64::new(0),
        pauses: Mutex::new(Pauses {
            last_ack: started,
            longest: Duration::ZERO,
            over: [0; PAUSE_BOUNDS.len()],
            worst: Vec::new(),
        }),
    });
    // The paths found before the first command, as a host finds them when
    // the device is set up.
    let checker = match &run.mp {
        Device::Failover(d) => {
            d.choose_path(0, run.end + run.grace).await;
            None
        }
        Device::ByPrio(d) => {
            d.check_all().await;
            Some(tokio::spawn(d.clone().checker()))
        }
    };
    run.pauses.lock().unwrap().last_ack = Instant::now();

    let reader = a
        .reader
        .clone()
        .map(|p| tokio::spawn(fixed_reader(run.clone(), Path::new(p, [a.lun as u8, READER_ISID]), a.seed ^ 0x5eed)));
    let lanes: Vec<_> =
        (0..a.depth as u64).map(|k| tokio::spawn(run.clone().lane(a.seed.wrapping_mul(1000) + k))).collect();
    for lane in lanes {
        if let Err(why) = lane.await.expect("a lane") {
            println!("ledger: {why}");
            if let Device::ByPrio(d) = &run.mp {
                d.report().iter().for_each(|line| println!("{line}"));
            }
            return ExitCode::FAILURE;
        }
    }
    let took = started.elapsed().as_secs_f64();
    let reader = match reader {
        Some(task) => Some(task.await.expect("the reader")),
        None => None,
    };

    // Read every block back, 64 at a time, nothing in flight.
    let during = std::mem::take(&mut *run.faults.lock().unwrap());
    let until = Instant::now() + run.grace;
    for first in (0..a.blocks).step_by(64) {
        let n = 64.min(a.blocks - first);
        if !run.checked_read(first, n, until).await {
            println!("ledger: the read-back of blocks {first}.. found no path");
            return ExitCode::FAILURE;
        }
    }
    let after = std::mem::take(&mut *run.faults.lock().unwrap());
    let intact = during.none() && after.none();
    let verdict = match (during.none(), after.none()) {
        (true, true) => "intact".to_string(),
        (true, false) => format!("NOT INTACT: read back, {}", after.describe("lost")),
        (false, true) => format!("NOT INTACT: during the run, {}", during.describe("stale")),
        (false, false) => {
            format!("NOT INTACT: during the run, {}; read back, {}", during.describe("stale"), after.describe("lost"))
        }
    };
    let (longest, histogram, worst) = {
        let pauses = run.pauses.lock().unwrap();
        (pauses.longest, pauses.histogram(), pauses.worst())
    };
    let overlapping = run.book.lock().unwrap().overlapping;
    println!(
        "ledger: {} writes acknowledged ({overlapping} overlapping another in flight) and {} reads checked in {took:.1} s at depth {} through {} paths ({} path switches, {} errors), longest pause {} ms; {} blocks read back: {verdict}",
        run.writes.load(Ordering::Relaxed),
        run.reads.load(Ordering::Relaxed),
        a.depth,
        run.mp.paths(),
        run.mp.switches(),
        run.mp.errors(),
        longest.as_millis(),
        a.blocks
    );
    println!("ledger: pauses: {histogram}");
    println!("ledger: pauses of a second or more (UTC, the {WORST_KEPT} longest): {worst}");
    if let Some(checker) = checker {
        checker.abort();
    }
    if let Device::ByPrio(d) = &run.mp {
        for line in d.report() {
            println!("{line}");
        }
    }
    let mut fine = intact;
    let mut stale = during.stale.len();
    if let (Some(count), Some((portal, _))) = (reader, &a.reader) {
        let verdict = if count.faults.none() {
            "none stale".to_string()
        } else {
            format!("STALE READS: {}", count.faults.describe("stale"))
        };
        println!(
            "ledger: the reader through {portal} alone: {} reads answered GOOD, {} refused or unanswered; {verdict}",
            count.answered, count.refused
        );
        fine &= count.faults.none();
        stale += count.faults.stale.len();
    }
    println!(
        "ledger: verdict: {} acknowledged writes lost, {stale} stale reads, {} torn, {} foreign",
        after.stale.len(),
        during.torn + after.torn,
        during.foreign + after.foreign
    );
    if fine {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
