//! The group-commit scheduler against a backend that loses unflushed writes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::GroupCommit;
use crate::backend::power_cut::PowerCutBackend;
use crate::backend::BlockBackend;

const BLOCK: usize = 512;

fn block(i: usize) -> Bytes {
    Bytes::from(vec![(i % 250) as u8 + 1; BLOCK])
}

fn setup(blocks: usize, delay_ms: u64) -> (Arc<PowerCutBackend>, Arc<GroupCommit>) {
    setup_with(blocks, delay_ms, super::FLUSHES_IN_FLIGHT)
}

fn setup_with(blocks: usize, delay_ms: u64, in_flight: usize) -> (Arc<PowerCutBackend>, Arc<GroupCommit>) {
    let disk = Arc::new(PowerCutBackend::new((blocks * BLOCK) as u64));
    disk.set_flush_delay(Duration::from_millis(delay_ms));
    let gc = Arc::new(GroupCommit::with_flushes_in_flight(disk.clone(), in_flight));
    (disk, gc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_write_is_durable_when_acknowledged_and_flushes_are_shared() {
    let (disk, gc) = setup(256, 5);
    let mut tasks = Vec::new();
    for i in 0..256 {
        let (disk, gc) = (disk.clone(), gc.clone());
        tasks.push(tokio::spawn(async move {
            gc.write((i * BLOCK) as u64, block(i), true).await.unwrap();
            // At the moment of its acknowledgement the write is on "stable storage".
            let durable = disk.durable_image();
            assert_eq!(&durable[i * BLOCK..(i + 1) * BLOCK], &block(i)[..], "write {i} acknowledged before its flush");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let flushes = disk.flushes();
    println!("256 durable writes took {flushes} flushes");
    assert!(flushes < 64, "flushes are shared: {flushes} for 256 writes");
    assert_eq!(gc.flushes(), flushes);
}

#[tokio::test]
async fn a_write_waits_for_a_flush_that_began_after_it_completed() {
    // One long flush runs; a write that completes meanwhile must not ride on it.
    let (disk, gc) = setup(8, 200);
    let first = {
        let gc = gc.clone();
        tokio::spawn(async move { gc.write(0, block(0), true).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(disk.flushes(), 1, "the first flush is running");
    gc.write(BLOCK as u64, block(1), true).await.unwrap();
    assert_eq!(disk.flushes(), 2, "the second write needed a flush of its own");
    assert_eq!(&disk.durable_image()[BLOCK..2 * BLOCK], &block(1)[..]);
    first.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_failed_flush_fails_the_writes_that_waited_for_it() {
    // One flush at a time, so that the two writes below share the next.
    let (disk, gc) = setup_with(8, 100, 1);
    let first = {
        let gc = gc.clone();
        tokio::spawn(async move { gc.write(0, block(0), true).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The first flush is running; the two writes below complete meanwhile
    // and wait for the second, which fails.
    disk.fail_next_flush();
    let (a, b) = tokio::join!(gc.write(BLOCK as u64, block(1), true), gc.write(2 * BLOCK as u64, block(2), true));
    assert!(a.is_err() && b.is_err(), "both waited for the failing flush: {a:?} {b:?}");
    first.await.unwrap().unwrap();
    // The next flush starts afresh and saves what is left.
    gc.write(3 * BLOCK as u64, block(3), true).await.unwrap();
    assert_eq!(&disk.power_cut()[3 * BLOCK..4 * BLOCK], &block(3)[..]);
}

#[tokio::test]
async fn no_more_flushes_run_at_once_than_allowed() {
    let (disk, gc) = setup_with(64, 30, 2);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let gc = gc.clone();
        tasks.push(tokio::spawn(async move { gc.write((i * BLOCK) as u64, block(i), true).await }));
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(disk.flushes(), 2, "two start at once, the rest wait for the next");
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(disk.flushes() <= 4, "64 writes, {} flushes", disk.flushes());
}

#[tokio::test]
async fn write_back_writes_are_durable_only_after_a_flush() {
    let (disk, gc) = setup(8, 0);
    gc.write(0, block(0), false).await.unwrap();
    gc.write(BLOCK as u64, block(1), false).await.unwrap();
    gc.flush().await.unwrap();
    gc.write(2 * BLOCK as u64, block(2), false).await.unwrap();
    let after = disk.power_cut();
    assert_eq!(&after[..BLOCK], &block(0)[..]);
    assert_eq!(&after[BLOCK..2 * BLOCK], &block(1)[..]);
    assert!(after[2 * BLOCK..3 * BLOCK].iter().all(|&b| b == 0), "never flushed, lost");
}

#[test]
fn stopping_with_writes_in_flight_acknowledges_none_without_its_flush() {
    let (disk, gc) = setup(64, 300);
    let (tx, rx) = std::sync::mpsc::channel();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    for i in 0..64 {
        let (gc, tx) = (gc.clone(), tx.clone());
        rt.spawn(async move {
            if gc.write((i * BLOCK) as u64, block(i), true).await.is_ok() {
                let _ = tx.send(i);
            }
        });
    }
    std::thread::sleep(Duration::from_millis(100));
    // The engine stops while the first flush is still running.
    rt.shutdown_timeout(Duration::ZERO);
    drop(tx);
    let acked: Vec<usize> = rx.iter().collect();
    let durable = disk.durable_image();
    for i in &acked {
        assert_eq!(&durable[i * BLOCK..(i + 1) * BLOCK], &block(*i)[..], "write {i} acknowledged, not durable");
    }
    println!("{} of 64 writes were acknowledged before the stop", acked.len());
    // A new runtime: the layer is usable again (nothing is left waiting for ever).
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    disk.set_flush_delay(Duration::ZERO);
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), gc.flush()).await })
        .expect("a flush after the stop does not hang")
        .unwrap();
}
