//! Write load over one iSCSI session, as `iscsi-perf` does for reads: a
//! fixed number of WRITE(16)s in flight, each carrying its data as
//! immediate data, for a fixed time. Prints throughput, IOPS and the
//! median and 99th-percentile latency.
//!
//! ```text
//! cargo run --release --features test-util --example writebench -- \
//!     --portal 127.0.0.1:3260 --target IQN [--lun 0] [--block-size 512] \
//!     [--size 4096] [--depth 32] [--seconds 10] [--random] [--span-mib 1024] \
//!     [--offset-mib 0] [--mib N] [--seed 0]
//! ```
//!
//! `--mib N` stops after N MiB instead of at the time limit; `--seed`
//! changes the data written. With `--retry-not-ready S`, a write that ends
//! NOT READY, ASYMMETRIC ACCESS STATE TRANSITION (04h/0Ah) is sent again
//! 50 ms later, for up to S seconds from its first try, as a multipathing
//! host retries it; its latency counts from that first try. Besides the percentiles, the longest wait for
//! one write is printed: a pause (a replica lost, a path failing over)
//! shows there.
//!
//! `scripts/bench-durability.sh` runs it against each write-cache policy,
//! `scripts/replication-test.sh` and `scripts/bench-replication.sh` against
//! replicated volumes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use target_engine::iscsi::pdu::{op, Pdu};
use target_engine::testkit::initiator::{Initiator, LoginOpts, INITIATOR};
use target_engine::testkit::rng::Rng;

struct Args {
    portal: SocketAddr,
    target: String,
    lun: u64,
    block_size: u64,
    size: usize,
    depth: usize,
    seconds: u64,
    random: bool,
    span: u64,
    offset: u64,
    bytes: Option<u64>,
    seed: u8,
    retry_not_ready: Option<Duration>,
}

fn args() -> Args {
    let mut a = Args {
        portal: "127.0.0.1:3260".parse().unwrap(),
        target: String::new(),
        lun: 0,
        block_size: 512,
        size: 4096,
        depth: 32,
        seconds: 10,
        random: false,
        span: 1 << 30,
        offset: 0,
        bytes: None,
        seed: 0,
        retry_not_ready: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().expect("a value after each flag");
        match k.as_str() {
            "--portal" => a.portal = v().parse().expect("--portal ADDR"),
            "--target" => a.target = v(),
            "--lun" => a.lun = v().parse().expect("--lun N"),
            "--block-size" => a.block_size = v().parse().expect("--block-size 512|4096"),
            "--size" => a.size = v().parse().expect("--size BYTES"),
            "--depth" => a.depth = v().parse().expect("--depth N"),
            "--seconds" => a.seconds = v().parse().expect("--seconds N"),
            "--span-mib" => a.span = v().parse::<u64>().expect("--span-mib N") << 20,
            "--random" => a.random = true,
            "--offset-mib" => a.offset = v().parse::<u64>().expect("--offset-mib N") << 20,
            "--mib" => a.bytes = Some(v().parse::<u64>().expect("--mib N") << 20),
            "--seed" => a.seed = v().parse().expect("--seed 0..255"),
            "--retry-not-ready" => {
                a.retry_not_ready = Some(Duration::from_secs_f64(v().parse().expect("--retry-not-ready SECONDS")))
            }
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(!a.target.is_empty(), "--target IQN is required");
    assert!(
        (a.size as u64).is_multiple_of(a.block_size) && a.size <= 256 * 1024,
        "--size: whole blocks, at most 256 KiB"
    );
    a
}

fn write16(lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x8a;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = args();
    let mut i = Initiator::connect(a.portal).await;
    let keys = vec![
        ("ImmediateData", "Yes"),
        ("InitialR2T", "No"),
        ("FirstBurstLength", "262144"),
        ("MaxBurstLength", "1048576"),
    ];
    let o = LoginOpts { initiator: INITIATOR, target: Some(&a.target), keys, ..Default::default() };
    i.login(&o).await.expect("login");
    i.tx_framing.max_data = i.tx_framing.max_data.max(a.size.min(256 * 1024));
    // The first command reports the power-on unit attention.
    let _ = i.command_ok(a.lun, &[0u8; 6], 0, &[]).await;
    let data = Bytes::from((0..a.size).map(|k| (k * 7 % 251) as u8 ^ a.seed).collect::<Vec<u8>>());
    let blocks = (a.size as u64 / a.block_size) as u32;
    let slots = (a.span / a.size as u64).max(1);
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let mut next_slot = 0u64;
    // By task tag: when the write was first sent, and where it goes.
    let mut in_flight: HashMap<u32, (Instant, u64)> = HashMap::new();
    // Writes to send again: (when, first sent, where).
    let mut again: std::collections::VecDeque<(Instant, Instant, u64)> = Default::default();
    let mut latencies: Vec<Duration> = Vec::new();
    let (mut errors, mut retries, mut not_ready) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    let end = start + Duration::from_secs(a.seconds);
    let mut sent = 0u64;
    let more = |sent: u64| a.bytes.map_or(Instant::now() < end, |b| sent < b);
    loop {
        while in_flight.len() < a.depth {
            let (first, lba) = match again.front() {
                Some(&(at, first, lba)) if at <= Instant::now() => {
                    again.pop_front();
                    (first, lba)
                }
                _ if more(sent) => {
                    let slot = if a.random { rng.next_u64() % slots } else { next_slot % slots };
                    next_slot += 1;
                    sent += a.size as u64;
                    (Instant::now(), (a.offset + slot * a.size as u64) / a.block_size)
                }
                _ => break,
            };
            let b = i.scsi_pdu(a.lun, &write16(lba, blocks), false, true, a.size as u32);
            in_flight.insert(b.itt(), (first, lba));
            i.send(Pdu::with_data(b, data.clone())).await;
        }
        if in_flight.is_empty() {
            match again.front() {
                Some(&(at, ..)) => {
                    tokio::time::sleep_until(at.into()).await;
                    continue;
                }
                None => break,
            }
        }
        let p = i.recv().await;
        if p.bhs.opcode() != op::SCSI_RESP {
            continue;
        }
        if let Some((first, lba)) = in_flight.remove(&p.bhs.itt()) {
            // Sense data follows its 2-byte length: key, then ASC/ASCQ at 12–13.
            let sense = p.data.get(2..).unwrap_or_default();
            let transitioning = sense.get(2).map(|k| k & 0x0f) == Some(0x2) && sense.get(12..14) == Some(&[0x04, 0x0a]);
            match p.bhs.0[3] {
                0 => latencies.push(first.elapsed()),
                0x28 | 0x08 => retries += 1, // TASK SET FULL, BUSY
                2 if transitioning && a.retry_not_ready.is_some_and(|limit| first.elapsed() < limit) => {
                    not_ready += 1;
                    again.push_back((Instant::now() + Duration::from_millis(50), first, lba));
                }
                _ => errors += 1,
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 - 1.0) * p) as usize).copied().unwrap_or_default();
    let n = latencies.len() as f64;
    println!(
        "writes of {} KiB, {} in flight, {}: {:.0} IOPS, {:.1} MB/s, latency median {:.3} ms, p99 {:.3} ms, longest {:.0} ms ({} done, {} errors, {} refused for lack of room, {} sent again after NOT READY)",
        a.size / 1024,
        a.depth,
        if a.random { "random" } else { "sequential" },
        n / elapsed,
        n * a.size as f64 / elapsed / 1e6,
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        latencies.len(),
        errors,
        retries,
        not_ready
    );
}
