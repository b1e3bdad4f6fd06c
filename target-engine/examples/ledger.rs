//! A ledger workload over several paths to one logical unit, as a
//! multipathing host sees it (dev only; CLUSTER.md §4, how failover is
//! proven). Every write puts a self-describing record in one block —
//! `{volume, block, generation, CRC32C}` — and is counted acknowledged only
//! once it ended GOOD. At the end every block is read back and must hold
//! its last acknowledged generation or a later one issued since (a write
//! that was in flight), never an older one, never a torn or foreign record.
//! Blocks it never wrote are not judged (they hold what was there before),
//! nor is a block whose only write was never acknowledged, unless it holds
//! a record it never wrote.
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
//!     [--blocks 4096] [--block-size 512] [--seconds 10] [--timeout 2] [--volume NAME] [--seed 1]
//! ```
//!
//! Prints one line: writes acknowledged, path switches, the longest pause
//! between two acknowledged writes, and the verdict of the read-back
//! (`intact`, or the blocks lost, torn or foreign). Exits 1 unless intact.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use target_engine::testkit::initiator::{read10, write10, CmdResult, Initiator, LoginOpts, INITIATOR};

const MAGIC: &[u8; 8] = b"PLEDGER1";

struct Args {
    paths: Vec<(SocketAddr, String)>,
    lun: u64,
    blocks: u32,
    block_size: usize,
    seconds: f64,
    timeout: Duration,
    volume: String,
    seed: u64,
}

fn usage() -> ! {
    eprintln!("usage: ledger --path ADDR=IQN [--path ADDR=IQN ...] [--lun N] [--blocks N] [--block-size 512] [--seconds S] [--timeout S] [--volume NAME] [--seed N]");
    std::process::exit(2)
}

fn args() -> Args {
    let mut a = Args {
        paths: Vec::new(),
        lun: 0,
        blocks: 4096,
        block_size: 512,
        seconds: 10.0,
        timeout: Duration::from_secs(2),
        volume: "ledger".into(),
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        let bad = || -> ! { usage() };
        match flag.as_str() {
            "--path" => {
                let (addr, iqn) = value.split_once('=').unwrap_or_else(|| bad());
                a.paths.push((addr.parse().unwrap_or_else(|_| bad()), iqn.to_string()));
            }
            "--lun" => a.lun = value.parse().unwrap_or_else(|_| bad()),
            "--blocks" => a.blocks = value.parse().unwrap_or_else(|_| bad()),
            "--block-size" => a.block_size = value.parse().unwrap_or_else(|_| bad()),
            "--seconds" => a.seconds = value.parse().unwrap_or_else(|_| bad()),
            "--timeout" => a.timeout = Duration::from_secs_f64(value.parse().unwrap_or_else(|_| bad())),
            "--volume" => a.volume = value,
            "--seed" => a.seed = value.parse().unwrap_or_else(|_| bad()),
            _ => bad(),
        }
    }
    if a.paths.is_empty() || a.blocks == 0 || a.block_size < 64 || a.lun > 255 {
        usage();
    }
    a
}

/// One path: a portal and target, and its session while it has one.
struct Path {
    portal: SocketAddr,
    target: String,
    session: Option<Initiator>,
}

/// How a command ended on a path.
enum Outcome {
    Done(CmdResult),
    /// No session, or it failed or did not answer in time.
    Down,
}

impl Path {
    /// Logs in if there is no session; false if that failed.
    async fn connect(&mut self, timeout: Duration) -> bool {
        if self.session.is_some() {
            return true;
        }
        let (portal, target) = (self.portal, self.target.clone());
        // The test initiator panics on a failed socket: one task per attempt.
        let task = tokio::spawn(async move {
            let mut i = Initiator::connect_from(portal, "0.0.0.0".parse().unwrap()).await.ok()?;
            let o = LoginOpts { initiator: INITIATOR, target: Some(&target), ..Default::default() };
            i.login(&o).await.ok()?;
            Some(i)
        });
        self.session = match tokio::time::timeout(timeout, task).await {
            Ok(Ok(session)) => session,
            _ => None,
        };
        self.session.is_some()
    }

    async fn run(&mut self, lun: u64, cdb: Vec<u8>, read_len: u32, data: Vec<u8>, timeout: Duration) -> Outcome {
        let Some(mut i) = self.session.take() else { return Outcome::Down };
        let task = tokio::spawn(async move {
            let r = i.command(lun, &cdb, read_len, &data, 0, 0).await;
            (i, r)
        });
        let abort = task.abort_handle();
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok((i, r))) => {
                self.session = Some(i);
                Outcome::Done(r)
            }
            Ok(Err(_)) => Outcome::Down,
            Err(_) => {
                abort.abort();
                Outcome::Down
            }
        }
    }
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

fn judge(outcome: &Outcome) -> Next {
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

/// The multipath device: its paths and the one in use.
struct Multipath {
    paths: Vec<Path>,
    current: usize,
    lun: u64,
    timeout: Duration,
    switches: u32,
    errors: u32,
}

impl Multipath {
    /// Runs a command until it ends GOOD (or `until` passes): on the path
    /// in use, and on another one when it fails over.
    async fn command(&mut self, cdb: Vec<u8>, read_len: u32, data: Vec<u8>, until: Instant) -> Option<CmdResult> {
        while Instant::now() < until {
            let outcome =
                self.paths[self.current].run(self.lun, cdb.clone(), read_len, data.clone(), self.timeout).await;
            match judge(&outcome) {
                Next::Good => {
                    let Outcome::Done(r) = outcome else { unreachable!() };
                    return Some(r);
                }
                Next::Again => {}
                Next::Error => {
                    self.errors += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Next::Failover => {
                    let before = self.current;
                    self.choose_path(until).await;
                    // The same path again (transitioning, or no other
                    // answers): give it a moment before the next try.
                    if self.current == before {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        None
    }

    /// Probes every path with TEST UNIT READY, the one in use last, and
    /// takes the first that answers GOOD; waits and probes again while none does.
    async fn choose_path(&mut self, until: Instant) {
        while Instant::now() < until {
            let n = self.paths.len();
            for k in 1..=n {
                let p = (self.current + k) % n;
                let path = &mut self.paths[p];
                if !path.connect(self.timeout).await {
                    continue;
                }
                // A unit attention is reported once: the next TUR says
                // how the path stands.
                let mut next = Next::Again;
                for _ in 0..3 {
                    next = judge(&path.run(self.lun, vec![0u8; 6], 0, Vec::new(), self.timeout).await);
                    if next != Next::Again {
                        break;
                    }
                }
                if next == Next::Good {
                    if p != self.current {
                        self.switches += 1;
                        self.current = p;
                    }
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The record for `block` at `generation`.
fn record(size: usize, volume: u64, block: u32, generation: u64) -> Vec<u8> {
    let mut r = vec![0u8; size];
    r[..8].copy_from_slice(MAGIC);
    r[8..16].copy_from_slice(&volume.to_be_bytes());
    r[16..20].copy_from_slice(&block.to_be_bytes());
    r[20..28].copy_from_slice(&generation.to_be_bytes());
    for (i, b) in r[28..size - 4].iter_mut().enumerate() {
        *b = (i as u64 ^ generation.wrapping_mul(0x9e37) ^ u64::from(block)) as u8;
    }
    let crc = crc32c::crc32c(&r[..size - 4]);
    r[size - 4..].copy_from_slice(&crc.to_be_bytes());
    r
}

/// What a block read back holds.
#[derive(Debug, PartialEq)]
enum Found {
    Empty,
    Generation(u64),
    /// A record of another block or volume.
    Foreign,
    /// Not a whole record: a torn or damaged write.
    Torn,
}

fn parse(data: &[u8], volume: u64, block: u32) -> Found {
    if data.iter().all(|&b| b == 0) {
        return Found::Empty;
    }
    let size = data.len();
    let crc = u32::from_be_bytes(data[size - 4..].try_into().unwrap());
    if &data[..8] != MAGIC || crc32c::crc32c(&data[..size - 4]) != crc {
        return Found::Torn;
    }
    let (v, b) =
        (u64::from_be_bytes(data[8..16].try_into().unwrap()), u32::from_be_bytes(data[16..20].try_into().unwrap()));
    if v != volume || b != block {
        return Found::Foreign;
    }
    Found::Generation(u64::from_be_bytes(data[20..28].try_into().unwrap()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let a = args();
    // The test initiator's panics on a dropped socket are path failures here.
    std::panic::set_hook(Box::new(|_| {}));
    let volume =
        a.volume.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let paths = a
        .paths
        .iter()
        .map(|(portal, target)| Path { portal: *portal, target: target.clone(), session: None })
        .collect();
    let mut mp = Multipath { paths, current: 0, lun: a.lun, timeout: a.timeout, switches: 0, errors: 0 };
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(a.seconds);
    // Room after the end for a write in flight to find a path.
    let grace = Duration::from_secs(30);
    mp.choose_path(end + grace).await;

    let mut issued = vec![0u64; a.blocks as usize];
    let mut acked = vec![0u64; a.blocks as usize];
    let mut rng = a.seed | 1;
    let (mut writes, mut last_good, mut longest) = (0u64, Instant::now(), Duration::ZERO);
    while Instant::now() < end {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let block = (rng % u64::from(a.blocks)) as u32;
        issued[block as usize] += 1;
        let generation = issued[block as usize];
        let data = record(a.block_size, volume, block, generation);
        let blocks = 1;
        if mp.command(write10(block, blocks).to_vec(), 0, data, end + grace).await.is_none() {
            println!(
                "ledger: write of block {block} never acknowledged within {} s: no path served it",
                grace.as_secs()
            );
            return ExitCode::FAILURE;
        }
        acked[block as usize] = generation;
        writes += 1;
        longest = longest.max(last_good.elapsed());
        last_good = Instant::now();
    }
    let took = started.elapsed().as_secs_f64();

    // Read every block back, 64 at a time.
    let (mut lost, mut torn, mut foreign, mut unknown) = (Vec::new(), 0u32, 0u32, 0u32);
    let chunk = 64u32;
    let read_until = Instant::now() + grace;
    for first in (0..a.blocks).step_by(chunk as usize) {
        let n = chunk.min(a.blocks - first);
        let len = n * a.block_size as u32;
        let Some(r) = mp.command(read10(first, n as u16).to_vec(), len, Vec::new(), read_until).await else {
            println!("ledger: the read-back of blocks {first}.. found no path");
            return ExitCode::FAILURE;
        };
        for k in 0..n {
            let b = first + k;
            let at = (k as usize) * a.block_size;
            let Some(data) = r.data.get(at..at + a.block_size) else {
                torn += 1;
                continue;
            };
            let (issued, acked) = (issued[b as usize], acked[b as usize]);
            match parse(data, volume, b) {
                // Never written here: whatever was there before.
                _ if issued == 0 => {}
                Found::Generation(g) if g > issued => unknown += 1,
                Found::Generation(g) if g >= acked => {}
                // Written but never acknowledged: the old content may stay.
                Found::Empty | Found::Torn if acked == 0 => {}
                Found::Generation(_) | Found::Empty => lost.push(b),
                Found::Torn => torn += 1,
                Found::Foreign => foreign += 1,
            }
        }
    }
    let intact = lost.is_empty() && torn == 0 && foreign == 0 && unknown == 0;
    let verdict = if intact {
        "intact".to_string()
    } else {
        format!(
            "NOT INTACT: {} lost (first {:?}), {torn} torn, {foreign} foreign, {unknown} of generations never written",
            lost.len(),
            lost.iter().take(5).collect::<Vec<_>>()
        )
    };
    println!(
        "ledger: {writes} writes acknowledged in {took:.1} s through {} paths ({} path switches, {} errors), longest pause {} ms; {} blocks read back: {verdict}",
        mp.paths.len(),
        mp.switches,
        mp.errors,
        longest.as_millis(),
        a.blocks
    );
    if intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
