//! Memory a hostile peer can make the engine hold, measured as this
//! process's resident set (the engine runs in it) against the ceilings of
//! `iscsi::admission`, with a wide margin. The scenarios run one after the
//! other in one test, so that nothing else in the process moves the figure;
//! the figures for the node binary come from `scripts/flood.sh`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use target_engine::iscsi::pdu::{op, Pdu};
use target_engine::testkit::initiator::*;
use target_engine::testkit::{logged_in, resident_kib, start_engine};
use target_engine::Engine;

const IQN: &str = "iqn.2026-11.test.portico:memory";

async fn start() -> (Engine, SocketAddr) {
    start_engine(&format!(
        r#"
[[volume]]
name = "a"
backend = "memory"
size = "16MiB"
[[target]]
iqn = "{IQN}"
portals = ["127.0.0.1:0"]
luns = {{ 0 = "a" }}
"#
    ))
    .await
}

fn rss_mib() -> u64 {
    resident_kib(std::process::id()).expect("/proc") / 1024
}

/// Sends NOP-Outs with 256 KiB each for `secs`, never reading the NOP-Ins;
/// returns how many the socket took.
async fn nop_flood(i: &mut Initiator, secs: u64) -> usize {
    let payload = Bytes::from(vec![0x5a; 256 * 1024]);
    let end = Instant::now() + Duration::from_secs(secs);
    let mut sent = 0;
    while Instant::now() < end {
        let p = i.nop_out_pdu(payload.clone());
        let bytes = target_engine::iscsi::pdu::encode(p, &i.tx_framing);
        match tokio::time::timeout(Duration::from_millis(500), i.send_raw(&bytes)).await {
            Ok(Ok(())) => sent += 1,
            Ok(Err(_)) => break,
            Err(_) => {} // the target stopped reading: that is the point
        }
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_hold_bounded_memory() {
    a_peer_that_never_reads_holds_little_and_is_dropped().await;
    reads_with_a_tiny_edtl_are_budgeted_by_their_transfer_length().await;
}

async fn a_peer_that_never_reads_holds_little_and_is_dropped() {
    let (e, addr) = start().await;
    let before = rss_mib();
    let mut flooder = Initiator::connect(addr).await;
    flooder.login(&LoginOpts::new(Some(IQN))).await.unwrap();
    flooder.tx_framing.max_data = 256 * 1024;
    let sent = nop_flood(&mut flooder, 6).await;
    let during = rss_mib();
    // Another host is served meanwhile.
    let mut other = logged_in(addr, IQN, 9).await;
    assert_eq!(other.nop(b"still here").await.bhs.opcode(), op::NOP_IN);
    println!("NOP-Outs taken: {sent}; RSS before {before} MiB, during {during} MiB");
    assert!(during < before + 48, "RSS grew from {before} to {during} MiB");
    // It stops reading for good: the write timeout ends its session.
    let flooders = || e.sessions().into_iter().filter(|s| s.isid == "800000001234").count();
    let deadline = Instant::now() + Duration::from_secs(45);
    while flooders() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let left: Vec<_> = e.sessions().into_iter().map(|s| s.isid).collect();
    assert_eq!(left, vec!["800000001209".to_string()], "only the well-behaved session is left");
    drop(flooder);
}

async fn reads_with_a_tiny_edtl_are_budgeted_by_their_transfer_length() {
    let (_e, addr) = start().await;
    let mut i = logged_in(addr, IQN, 1).await;
    // Data in the first 8 MiB, so that every read copies real pages.
    let chunk: Vec<u8> = (0..512 * 1024).map(|k| (k % 251) as u8 | 1).collect();
    for k in 0..16u32 {
        let r = i.command_ok(0, &write10(k * 1024, 1024), 0, &chunk).await;
        assert_eq!(r.status, 0);
    }
    let before = rss_mib();
    // Four whole 8 MiB reads fill the socket, so that what follows stays queued...
    for _ in 0..4 {
        let b = i.scsi_pdu(0, &read10(0, 16384), true, false, 8 << 20);
        i.send(Pdu::new(b)).await;
    }
    // ...then 64 READs of 8 MiB each that ask for one byte of Data-In.
    for _ in 0..64 {
        let b = i.scsi_pdu(0, &read10(0, 16384), true, false, 1);
        i.send(Pdu::new(b)).await;
    }
    let mut during = 0;
    for _ in 0..100 {
        during = during.max(rss_mib());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("RSS before {before} MiB, with 4 + 64 reads of 8 MiB outstanding {during} MiB at most");
    // The session's read budget is 64 MiB; unbudgeted this is 544 MiB.
    assert!(during < before + 160, "RSS grew from {before} to {during} MiB");
}
