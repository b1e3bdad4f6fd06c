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
//! Paths are chosen as dm-multipath's failover policy with the TUR checker
//! chooses them: the one that worked last (most recently used) while it
//! works; when a command ends NOT READY with LOGICAL UNIT NOT ACCESSIBLE
//! (04h/0Ah transitioning, 04h/0Bh standby, 04h/0Ch unavailable), or the
//! path stops answering within `--timeout` (a NOP-Out style deadline on
//! every command), each path is probed with TEST UNIT READY, reconnecting
//! those whose session is gone, and the first that answers GOOD is used.
//! A unit attention (ASYMMETRIC ACCESS STATE CHANGED and others) is retried
//! on the same path.
//!
//! ```text
//! cargo run --features test-util --example ledger -- \
//!     --path 127.0.1.1:3260=IQN --path 127.0.2.1:3260=IQN [--lun 0] \
//!     [--blocks 4096] [--block-size 512] [--seconds 10] [--timeout 2] [--volume NAME] [--seed 1] \
//!     [--depth 32] [--reads 20] [--reader ADDR=IQN]
//! ```
//!
//! Prints a line with the writes acknowledged (and how many overlapped
//! another write of the same block), the reads checked, the path switches,
//! the longest pause between two acknowledged writes and the verdict
//! (`intact`, or the blocks lost, stale, torn or foreign); then the pauses
//! as a histogram, the longest ones with the time of day they ended (to
//! match them with a fault schedule), and one verdict line; with
//! `--reader`, a line for the reader too. Exits 1 unless intact and no
//! read was stale.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use target_engine::testkit::history::{parse, record, Book, Faults, Judged, Stamp};
use target_engine::testkit::initiator::{read10, write10, CmdResult, Initiator, LoginOpts, INITIATOR};
use target_engine::testkit::pipeline::Pipeline;

/// The blocks most writes go to at once, as a journal's (overlapping writes).
const HOT_BLOCKS: u32 = 16;
/// The longest write or read, in blocks.
const MAX_RUN: u32 = 8;

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
}

fn usage() -> ! {
    eprintln!("usage: ledger --path ADDR=IQN [--path ADDR=IQN ...] [--lun N] [--blocks N] [--block-size 512] [--seconds S] [--timeout S] [--volume NAME] [--seed N] [--depth 32] [--reads PERCENT] [--reader ADDR=IQN]");
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
            _ => bad(),
        }
    }
    let sane = !a.paths.is_empty()
        && a.blocks > HOT_BLOCKS + MAX_RUN
        && a.block_size >= 64
        && a.lun <= 255
        && (1..=128).contains(&a.depth)
        && a.reads_percent <= 90;
    if !sane {
        usage();
    }
    a
}

// ---------------------------------------------------------------------------
// Paths and the multipath device

/// How a command ended on a path.
enum Outcome {
    Done(CmdResult),
    /// No session, or it failed or did not answer in time.
    Down,
}

/// What to do after a command.
#[derive(PartialEq)]
enum Next {
    Good,
    /// A unit attention: again on the same path.
    Again,
    /// This path does not serve the unit now: choose another.
    Failover,
    /// Another error: again, counted.
    Error,
}

fn judge_outcome(outcome: &Outcome) -> Next {
    let r = match outcome {
        Outcome::Down => return Next::Failover,
        Outcome::Done(r) => r,
    };
    let key = r.sense.get(2).map(|k| k & 0x0f);
    let (asc, ascq) = (r.sense.get(12).copied(), r.sense.get(13).copied());
    match (r.status, key, asc, ascq) {
        (0, ..) => Next::Good,
        (2, Some(0x6), ..) => Next::Again,
        (2, Some(0x2), Some(0x04), Some(0x0a..=0x0c)) => Next::Failover,
        _ => Next::Error,
    }
}

/// One path: a portal and target, and its session while it has one.
struct Path {
    portal: SocketAddr,
    target: String,
    /// The last byte of the session's ISID: the reader's session is another
    /// I_T nexus than the multipath device's, on the same target too.
    isid: u8,
    session: Mutex<Option<Arc<Pipeline>>>,
}

impl Path {
    fn new((portal, target): (SocketAddr, String), isid: u8) -> Path {
        Path { portal, target, isid, session: Mutex::new(None) }
    }

    fn session(&self) -> Option<Arc<Pipeline>> {
        let mut slot = self.session.lock().unwrap();
        if slot.as_ref().is_some_and(|s| !s.is_open()) {
            *slot = None;
        }
        slot.clone()
    }

    /// Closes `session` if it is still this path's.
    fn drop_session(&self, session: &Arc<Pipeline>) {
        let mut slot = self.session.lock().unwrap();
        if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, session)) {
            *slot = None;
        }
    }

    /// Logs in if there is no session; false if that failed.
    async fn connect(&self, timeout: Duration) -> bool {
        if self.session().is_some() {
            return true;
        }
        let (portal, target, isid) = (self.portal, self.target.clone(), self.isid);
        // The test initiator panics on a failed socket: one task per attempt.
        let task = tokio::spawn(async move {
            let mut i = Initiator::connect_from(portal, "0.0.0.0".parse().unwrap()).await.ok()?;
            i.isid[5] = isid;
            let o = LoginOpts { initiator: INITIATOR, target: Some(&target), ..Default::default() };
            i.login(&o).await.ok()?;
            Some(i)
        });
        let Ok(Ok(Some(session))) = tokio::time::timeout(timeout, task).await else { return false };
        *self.session.lock().unwrap() = Some(Arc::new(Pipeline::start(session)));
        true
    }

    async fn run(&self, lun: u64, cdb: &[u8], read_len: u32, data: Bytes, timeout: Duration) -> Outcome {
        let Some(session) = self.session() else { return Outcome::Down };
        match tokio::time::timeout(timeout, session.command(lun, cdb, read_len, data)).await {
            Ok(Some(r)) => Outcome::Done(r),
            // Gone, or silent past the deadline: the path failed.
            _ => {
                self.drop_session(&session);
                Outcome::Down
            }
        }
    }
}

/// The multipath device: its paths and the one in use, shared by every
/// command in flight.
struct Multipath {
    paths: Vec<Path>,
    current: AtomicUsize,
    /// Bumped each time a path is chosen: a command that failed on an
    /// older choice just tries the new one.
    choice: AtomicU64,
    choosing: tokio::sync::Mutex<()>,
    lun: u64,
    timeout: Duration,
    switches: AtomicU64,
    errors: AtomicU64,
}

impl Multipath {
    /// Runs a command until it ends GOOD (or `until` passes): on the path
    /// in use, and on another one when it fails over.
    async fn command(&self, cdb: &[u8], read_len: u32, data: Bytes, until: Instant) -> Option<CmdResult> {
        while Instant::now() < until {
            let choice = self.choice.load(Ordering::Acquire);
            let path = self.current.load(Ordering::Acquire);
            let outcome = self.paths[path].run(self.lun, cdb, read_len, data.clone(), self.timeout).await;
            match judge_outcome(&outcome) {
                Next::Good => {
                    let Outcome::Done(r) = outcome else { unreachable!() };
                    return Some(r);
                }
                Next::Again => {}
                Next::Error => {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Next::Failover => {
                    self.choose_path(choice, until).await;
                    // The same path again (transitioning, or no other
                    // answers): give it a moment before the next try.
                    if self.current.load(Ordering::Acquire) == path {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        None
    }

    /// Probes every path with TEST UNIT READY, the one in use last, and
    /// takes the first that answers GOOD; waits and probes again while none
    /// does. Does nothing if a path was chosen since `seen` (by another
    /// command that failed too).
    async fn choose_path(&self, seen: u64, until: Instant) {
        let _one_at_a_time = self.choosing.lock().await;
        if self.choice.load(Ordering::Acquire) != seen {
            return;
        }
        let current = self.current.load(Ordering::Acquire);
        while Instant::now() < until {
            let n = self.paths.len();
            for k in 1..=n {
                let p = (current + k) % n;
                let path = &self.paths[p];
                if !path.connect(self.timeout).await {
                    continue;
                }
                // A unit attention is reported once: the next TUR says
                // how the path stands.
                let mut next = Next::Again;
                for _ in 0..3 {
                    next = judge_outcome(&path.run(self.lun, &[0u8; 6], 0, Bytes::new(), self.timeout).await);
                    if next != Next::Again {
                        break;
                    }
                }
                if next == Next::Good {
                    if p != current {
                        self.switches.fetch_add(1, Ordering::Relaxed);
                        self.current.store(p, Ordering::Release);
                    }
                    self.choice.fetch_add(1, Ordering::AcqRel);
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

// ---------------------------------------------------------------------------
// The workload

/// Everything the commands in flight share.
struct Run {
    mp: Multipath,
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
            self.worst.sort_by(|a, b| b.0.cmp(&a.0));
            self.worst.truncate(WORST_KEPT);
        }
        self.last_ack = Instant::now();
    }

    /// The longest pauses, in the order they happened: `ms ending at HH:MM:SS.s`.
    fn worst(&self) -> String {
        let mut worst = self.worst.clone();
        worst.sort_by_key(|w| w.1);
        let told: Vec<String> = worst
            .iter()
            .map(|(gap, at)| {
                let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                let day = since.as_secs() % 86_400;
                let tenths = since.subsec_millis() / 100;
                let (h, m, s) = (day / 3600, day / 60 % 60, day % 60);
                format!("{} ms ending at {h:02}:{m:02}:{s:02}.{tenths}", gap.as_millis())
            })
            .collect();
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

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
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

    /// Reads `first..first+n` and judges each block; false if no path
    /// answered in time.
    async fn checked_read(&self, first: u32, n: u32, until: Instant) -> bool {
        let at = self.book.lock().unwrap().read_issued();
        let len = n * self.block_size as u32;
        let result = self.mp.command(&read10(first, n as u16), len, Bytes::new(), until).await;
        let mut book = self.book.lock().unwrap();
        book.read_done(at);
        let Some(r) = result else { return false };
        let mut faults = self.faults.lock().unwrap();
        for k in 0..n {
            let b = first + k;
            let start = k as usize * self.block_size;
            let judged = match r.data.get(start..start + self.block_size) {
                Some(data) => book.judge(b, parse(data, self.stamp, b), at),
                None => Judged::Torn,
            };
            faults.note(b, judged);
        }
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
        let mut rng = Rng(seed | 1);
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
    let mut rng = Rng(seed | 1);
    while Instant::now() < run.end {
        if !path.connect(run.mp.timeout).await {
            count.refused += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let (first, n) = run.extent(&mut rng);
        let at = run.book.lock().unwrap().read_issued();
        let len = n * run.block_size as u32;
        let outcome = path.run(run.mp.lun, &read10(first, n as u16), len, Bytes::new(), run.mp.timeout).await;
        let answered = {
            let mut book = run.book.lock().unwrap();
            book.read_done(at);
            match outcome {
                Outcome::Done(r) if r.status == 0 => {
                    for k in 0..n {
                        let b = first + k;
                        let start = k as usize * run.block_size;
                        let judged = match r.data.get(start..start + run.block_size) {
                            Some(data) => book.judge(b, parse(data, run.stamp, b), at),
                            None => Judged::Torn,
                        };
                        count.faults.note(b, judged);
                    }
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
    let run = Arc::new(Run {
        mp: Multipath {
            paths: a.paths.iter().cloned().map(|p| Path::new(p, 1)).collect(),
            current: AtomicUsize::new(0),
            choice: AtomicU64::new(0),
            choosing: tokio::sync::Mutex::new(()),
            lun: a.lun,
            timeout: a.timeout,
            switches: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        },
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
    run.mp.choose_path(0, run.end + run.grace).await;
    run.pauses.lock().unwrap().last_ack = Instant::now();

    let reader = a.reader.clone().map(|p| tokio::spawn(fixed_reader(run.clone(), Path::new(p, 2), a.seed ^ 0x5eed)));
    let lanes: Vec<_> =
        (0..a.depth as u64).map(|k| tokio::spawn(run.clone().lane(a.seed.wrapping_mul(1000) + k))).collect();
    for lane in lanes {
        if let Err(why) = lane.await.expect("a lane") {
            println!("ledger: {why}");
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
        run.mp.paths.len(),
        run.mp.switches.load(Ordering::Relaxed),
        run.mp.errors.load(Ordering::Relaxed),
        longest.as_millis(),
        a.blocks
    );
    println!("ledger: pauses: {histogram}");
    println!("ledger: pauses of a second or more (UTC, the {WORST_KEPT} longest): {worst}");
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
