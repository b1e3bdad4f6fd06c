//! Command behaviour against a memory backend, asserting on `SenseReason`.

use std::sync::Arc;

use super::lu::Reply;
use super::sense::{Field, SenseReason, UnitAttention};
use super::testkit::{self, lun_map, ready_nexus};
use super::{expected_data_out, LunMap, Nexus, Privileges, ScsiStatus, WriteCache};

const BLOCKS: u64 = 4096;

async fn run(luns: &LunMap, nexus: &Nexus, cdb: &[u8], data: &[u8]) -> Result<Reply, SenseReason> {
    run_lun(luns, nexus, 0, cdb, data).await
}

async fn run_lun(luns: &LunMap, nexus: &Nexus, lun: u64, cdb: &[u8], data: &[u8]) -> Result<Reply, SenseReason> {
    testkit::outcome(luns, nexus, lun, cdb, data).await
}

fn read10(lba: u32, blocks: u16) -> Vec<u8> {
    let mut c = vec![0x28, 0];
    c.extend_from_slice(&lba.to_be_bytes());
    c.push(0);
    c.extend_from_slice(&blocks.to_be_bytes());
    c.push(0);
    c
}

fn with_op(mut c: Vec<u8>, op: u8) -> Vec<u8> {
    c[0] = op;
    c
}

fn rw16(op: u8, lba: u64, blocks: u32) -> Vec<u8> {
    let mut c = vec![op, 0];
    c.extend_from_slice(&lba.to_be_bytes());
    c.extend_from_slice(&blocks.to_be_bytes());
    c.extend_from_slice(&[0, 0]);
    c
}

fn invalid_field(r: Result<Reply, SenseReason>) -> bool {
    matches!(r, Err(SenseReason::InvalidFieldInCdb(_)))
}

#[tokio::test]
async fn power_on_attention_is_reported_once_but_not_to_inquiry() {
    let (luns, _) = lun_map(512, BLOCKS, false);
    let n = Nexus::new(testkit::nexus_id(1));
    assert!(run(&luns, &n, &[0x12, 0, 0, 0, 36, 0], &[]).await.is_ok());
    assert_eq!(run(&luns, &n, &[0x00], &[]).await, Err(SenseReason::UnitAttention(UnitAttention::PowerOnReset)));
    assert_eq!(run(&luns, &n, &[0x00], &[]).await, Ok(Reply::good()));
}

#[tokio::test]
async fn request_sense_returns_and_clears_the_attention() {
    let (luns, _) = lun_map(512, BLOCKS, false);
    let n = Nexus::new(testkit::nexus_id(1));
    let r = run(&luns, &n, &[0x03, 0, 0, 0, 252, 0], &[]).await.unwrap();
    assert_eq!((r.data[2], r.data[12], r.data[13]), (0x06, 0x29, 0x00));
    let r = run(&luns, &n, &[0x03, 1, 0, 0, 252, 0], &[]).await.unwrap();
    assert_eq!(&r.data[..4], &[0x72, 0, 0, 0]);
    assert!(run(&luns, &n, &[0x00], &[]).await.is_ok());
}

#[tokio::test]
async fn write_then_read_round_trips_through_all_sizes() {
    let (luns, lu) = lun_map(512, BLOCKS, false);
    let n = ready_nexus(&luns, 1).await;
    let data: Vec<u8> = (0..1024u32).map(|i| (i % 253) as u8).collect();
    assert!(run(&luns, &n, &with_op(read10(10, 2), 0x2a), &data).await.is_ok());
    let r = run(&luns, &n, &read10(10, 2), &[]).await.unwrap();
    assert_eq!(&r.data[..], &data[..]);
    let r = run(&luns, &n, &rw16(0x88, 10, 2), &[]).await.unwrap();
    assert_eq!(&r.data[..], &data[..]);
    let r = run(&luns, &n, &[0xa8, 0, 0, 0, 0, 10, 0, 0, 0, 2, 0, 0], &[]).await.unwrap();
    assert_eq!(&r.data[..], &data[..]);
    let r = run(&luns, &n, &[0x08, 0, 0, 10, 2, 0], &[]).await.unwrap();
    assert_eq!(&r.data[..], &data[..]);
    // READ(6) with a zero length reads 256 blocks.
    let r = run(&luns, &n, &[0x08, 0, 0, 0, 0, 0], &[]).await.unwrap();
    assert_eq!(r.data.len(), 256 * 512);
    let c = lu.counters();
    assert_eq!(c.bytes_written, 1024);
    assert_eq!(c.bytes_read, 4 * 1024 + 256 * 512);
}

#[tokio::test]
async fn lba_range_checks() {
    let (luns, _) = lun_map(512, BLOCKS, false);
    let n = ready_nexus(&luns, 1).await;
    let last = (BLOCKS - 1) as u32;
    assert!(run(&luns, &n, &read10(last, 1), &[]).await.is_ok());
    assert_eq!(run(&luns, &n, &read10(last, 2), &[]).await, Err(SenseReason::LbaOutOfRange));
    assert_eq!(run(&luns, &n, &read10(last + 2, 0), &[]).await, Err(SenseReason::LbaOutOfRange));
    assert_eq!(run(&luns, &n, &read10(u32::MAX, 1), &[]).await, Err(SenseReason::LbaOutOfRange));
    assert_eq!(run(&luns, &n, &rw16(0x88, u64::MAX, 1), &[]).await, Err(SenseReason::LbaOutOfRange));
    assert_eq!(run(&luns, &n, &rw16(0x90, BLOCKS, 1), &[]).await, Err(SenseReason::LbaOutOfRange));
    assert_eq!(run(&luns, &n, &with_op(read10(last, 2), 0x2f), &[]).await, Err(SenseReason::LbaOutOfRange));
    assert!(run(&luns, &n, &read10(0, 0), &[]).await.unwrap().data.is_empty());
}

#[tokio::test]
async fn writes_only_what_the_cdb_names_and_what_arrived() {
    let (luns, _) = lun_map(512, BLOCKS, false);
    let n = ready_nexus(&luns, 1).await;
    run(&luns, &n, &with_op(read10(0, 2), 0x2a), &[b'a'; 1024]).await.unwrap();
    // Data-Out longer than the CDB: only one block is written.
    run(&luns, &n, &with_op(read10(0, 1), 0x2e), &[b'b'; 1024]).await.unwrap();
    let r = run(&luns, &n, &read10(0, 2), &[]).await.unwrap();
    assert!(r.data[..512].iter().all(|&b| b == b'b') && r.data[512..].iter().all(|&b| b == b'a'));
    // Data-Out shorter than the CDB: only the blocks that arrived.
    run(&luns, &n, &with_op(read10(0, 2), 0x2a), &[b'c'; 512]).await.unwrap();
    let r = run(&luns, &n, &read10(0, 2), &[]).await.unwrap();
    assert!(r.data[..512].iter().all(|&b| b == b'c') && r.data[512..].iter().all(|&b| b == b'a'));
}

#[tokio::test]
async fn read_only_units_and_swp_refuse_writes() {
    let (luns, _) = lun_map(512, BLOCKS, true);
    let n = ready_nexus(&luns, 1).await;
    for op in [0x2a, 0x2e] {
        assert_eq!(run(&luns, &n, &with_op(read10(0, 1), op), &[0; 512]).await, Err(SenseReason::WriteProtected));
    }
    assert_eq!(run(&luns, &n, &rw16(0x8a, 0, 1), &[0; 512]).await, Err(SenseReason::WriteProtected));
    assert!(run(&luns, &n, &read10(0, 1), &[]).await.is_ok());
    let ms = run(&luns, &n, &[0x1a, 0x08, 0x3f, 0, 255, 0], &[]).await.unwrap();
    assert_eq!(ms.data[2] & 0x80, 0x80, "WP bit");

    let (luns, _) = lun_map(512, BLOCKS, false);
    let a = ready_nexus(&luns, 1).await;
    let b = ready_nexus(&luns, 2).await;
    let ctl = run(&luns, &a, &[0x1a, 0x08, 0x0a, 0, 255, 0], &[]).await.unwrap();
    let mut pl = vec![0u8, 0, 0, 0];
    pl.extend_from_slice(&ctl.data[4..]);
    pl[4 + 4] |= 0x08;
    // By default no initiator may write-protect the unit for everyone.
    assert!(matches!(
        run(&luns, &a, &[0x15, 0x10, 0, 0, pl.len() as u8, 0], &pl).await,
        Err(SenseReason::InvalidFieldInParameterList(_))
    ));
    let changeable = run(&luns, &a, &[0x1a, 0x08, 0x4a, 0, 255, 0], &[]).await.unwrap();
    assert_eq!(changeable.data[4 + 4] & 0x08, 0, "SWP is not changeable");
    a.set_privileges(Privileges { software_write_protect: true, ..Privileges::default() });
    run(&luns, &a, &[0x15, 0x10, 0, 0, pl.len() as u8, 0], &pl).await.unwrap();
    assert_eq!(run(&luns, &a, &with_op(read10(0, 1), 0x2a), &[0; 512]).await, Err(SenseReason::WriteProtected));
    assert_eq!(
        run(&luns, &b, &[0x00], &[]).await,
        Err(SenseReason::UnitAttention(UnitAttention::ModeParametersChanged))
    );
    assert_eq!(run(&luns, &a, &[0x00], &[]).await, Ok(Reply::good()));
}

#[tokio::test]
async fn d_sense_switches_to_descriptor_format() {
    let (luns, _) = lun_map(512, BLOCKS, false);
    let n = ready_nexus(&luns, 1).await;
    let mut pl = vec![0u8, 0, 0, 0];
    let ctl = run(&luns, &n, &[0x1a, 0x08, 0x0a, 0, 255, 0], &[]).await.unwrap();
    pl.extend_from_slice(&ctl.data[4..]);
    pl[4 + 2] |= 0x04;
    run(&luns, &n, &[0x15, 0x10, 0, 0, pl.len() as u8, 0], &pl).await.unwrap();
    let resp = testkit::run(&luns, &n, 0, &rw16(0x88, u64::MAX, 1), &[]).await;
    assert_eq!(resp.status, ScsiStatus::CheckCondition);
    assert_eq!(&resp.sense[..4], &[0x72, 0x05, 0x21, 0x00]);
}

#[tokio::test]
async fn verify_compares_bytes() {
    let (luns, _) = lun_map(512, BLOCKS, false);
    let n = ready_nexus(&luns, 1).await;
    let data = vec![7u8; 1024];
    run(&luns, &n, &with_op(read10(5, 2), 0x2a), &data).await.unwrap();
    let mut v = with_op(read10(5, 2), 0x2f);
    v[1] = 0x02;
    assert!(run(&luns, &n, &v, &data).await.is_ok());
    let mut bad = data.clone();
    bad[700] = 8;
    assert_eq!(run(&luns, &n, &v, &bad).await, Err(SenseReason::Miscompare { offset: 700 }));
    v[1] = 0x00;
    assert!(run(&luns, &n, &v, &[]).await.is_ok());
    v[1] = 0x06;
    assert!(run(&luns, &n, &v, &data[..512]).await.is_ok());
    assert_eq!(run(&luns, &n, &v, &bad[200..712]).await, Err(SenseReason::Miscompare { offset: 500 }));
}

#[tokio::test]
async fn capacity_change_and_reset_attentions() {
    let (luns, lu) = lun_map(512, BLOCKS, false);
    let a = ready_nexus(&luns, 1).await;
    let b = ready_nexus(&luns, 2).await;
    lu.resize(BLOCKS * 2 * 512).await.unwrap();
    assert_eq!(run(&luns, &a, &[0x00], &[]).await, Err(SenseReason::UnitAttention(UnitAttention::CapacityChanged)));
    let rc = run(&luns, &a, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await.unwrap();
    assert_eq!(&rc.data[..], &[0, 0, 0x1f, 0xff, 0, 0, 2, 0]);
    lu.reset(&a.id);
    for n in [&a, &b] {
        assert_eq!(run(&luns, n, &[0x00], &[]).await, Err(SenseReason::UnitAttention(UnitAttention::BusDeviceReset)));
        assert_eq!(run(&luns, n, &[0x00], &[]).await, Ok(Reply::good()));
    }
}

#[tokio::test]
async fn reported_luns_change_is_cleared_by_report_luns() {
    let (mut luns, _) = lun_map(512, BLOCKS, false);
    let (other, _) = lun_map(4096, 16, false);
    luns.insert(5, Arc::clone(&other[&0]));
    luns.insert(300, Arc::clone(&other[&0]));
    let n = ready_nexus(&luns, 1).await;
    n.report_luns_changed();
    let rl = [0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    let r = run(&luns, &n, &rl, &[]).await.unwrap();
    assert_eq!(&r.data[..8], &[0, 0, 0, 24, 0, 0, 0, 0]);
    assert_eq!(&r.data[8..10], &[0, 0]);
    assert_eq!(&r.data[16..18], &[0, 5]);
    assert_eq!(&r.data[24..26], &[0x41, 0x2c]);
    assert_eq!(run(&luns, &n, &[0x00], &[]).await, Ok(Reply::good()));
    n.report_luns_changed();
    assert_eq!(run(&luns, &n, &[0x00], &[]).await, Err(SenseReason::UnitAttention(UnitAttention::ReportedLunsChanged)));
    assert!(invalid_field(run(&luns, &n, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0], &[]).await));
    let wk = run(&luns, &n, &[0xa0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[]).await.unwrap();
    assert_eq!(&wk.data[..4], &[0, 0, 0, 0]);
}

#[tokio::test]
async fn absent_lun() {
    let (luns, _) = lun_map(512, BLOCKS, false);
    let n = ready_nexus(&luns, 1).await;
    let inq = run_lun(&luns, &n, 9, &[0x12, 0, 0, 0, 96, 0], &[]).await.unwrap();
    assert_eq!(inq.data[0], 0x7f);
    assert_eq!(run_lun(&luns, &n, 9, &[0x00], &[]).await, Err(SenseReason::LunNotSupported));
    let rs = run_lun(&luns, &n, 9, &[0x03, 0, 0, 0, 18, 0], &[]).await.unwrap();
    assert_eq!((rs.data[2], rs.data[12]), (0x05, 0x25));
}

#[tokio::test]
async fn supported_opcodes_all_and_one() {
    let (luns, _) = lun_map(512, BLOCKS, false);
    let n = ready_nexus(&luns, 1).await;
    let all = run(&luns, &n, &[0xa3, 0x0c, 0x80, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], &[]).await.unwrap();
    let len = u32::from_be_bytes([all.data[0], all.data[1], all.data[2], all.data[3]]) as usize;
    assert_eq!(len, all.data.len() - 4);
    assert_eq!(len % 20, 0);
    assert_eq!(&all.data[4 + 8..4 + 10], &[0x00, 0x0a]);
    let one = run(&luns, &n, &[0xa3, 0x0c, 0x01, 0x28, 0, 0, 0, 0, 1, 0, 0, 0], &[]).await.unwrap();
    assert_eq!(&one.data[..4], &[0, 0x03, 0, 10]);
    assert_eq!(&one.data[4..6], &[0x28, 0x1a]);
    assert!(invalid_field(run(&luns, &n, &[0xa3, 0x0c, 0x01, 0x9e, 0, 0x10, 0, 0, 1, 0, 0, 0], &[]).await));
    assert!(invalid_field(run(&luns, &n, &[0xa3, 0x0c, 0x02, 0x28, 0, 0, 0, 0, 1, 0, 0, 0], &[]).await));
    let rc16 = run(&luns, &n, &[0xa3, 0x0c, 0x82, 0x9e, 0, 0x10, 0, 0, 1, 0, 0, 0], &[]).await.unwrap();
    assert_eq!(&rc16.data[..6], &[0, 0x83, 0, 16, 0x9e, 0x10]);
    let none = run(&luns, &n, &[0xa3, 0x0c, 0x01, 0xc1, 0, 0, 0, 0, 1, 0, 0, 0], &[]).await.unwrap();
    assert_eq!(none.data[1] & 0x07, 0x01);
    let tmf = run(&luns, &n, &[0xa3, 0x0d, 0x80, 0, 0, 0, 0, 0, 0, 16, 0, 0], &[]).await.unwrap();
    assert_eq!(tmf.data.len(), 16);
}

#[tokio::test]
async fn mode_sense_allocation_and_page_control() {
    let (luns, _) = lun_map(512, BLOCKS, false);
    let n = ready_nexus(&luns, 1).await;
    let r = run(&luns, &n, &[0x1a, 0, 0x3f, 0, 4, 0], &[]).await.unwrap();
    assert_eq!(r.data.len(), 4);
    assert_eq!(r.data[2], 0x10, "DPOFUA");
    // Saved values are the current ones: every change is saved.
    let saved = run(&luns, &n, &[0x1a, 0, 0xff, 0, 255, 0], &[]).await.unwrap();
    assert_eq!(saved.data, run(&luns, &n, &[0x1a, 0, 0x3f, 0, 255, 0], &[]).await.unwrap().data);
    let ch = run(&luns, &n, &[0x5a, 0x08, 0x48, 0, 0, 0, 0, 0, 255, 0], &[]).await.unwrap();
    assert_eq!(ch.data[8], 0x08);
    assert_eq!(ch.data[10], 0, "WCE is not changeable under the default policy (write-through)");
    // SP is accepted (changes are saved anyway); an empty list changes nothing.
    assert!(run(&luns, &n, &[0x15, 0x11, 0, 0, 0, 0], &[]).await.is_ok());
}

#[tokio::test]
async fn inquiry_pages_and_allocation_lengths() {
    let (luns, _) = lun_map(512, BLOCKS, false);
    let n = ready_nexus(&luns, 1).await;
    let a = run(&luns, &n, &[0x12, 0, 0, 0x01, 0xff, 0], &[]).await.unwrap();
    let b = run(&luns, &n, &[0x12, 0, 0, 0x02, 0x00, 0], &[]).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(run(&luns, &n, &[0x12, 0, 0, 0, 5, 0], &[]).await.unwrap().data.len(), 5);
    assert!(invalid_field(run(&luns, &n, &[0x12, 0, 1, 1, 0, 0], &[]).await));
    assert!(invalid_field(run(&luns, &n, &[0x12, 1, 0x99, 1, 0, 0], &[]).await));
    let sn = run(&luns, &n, &[0x12, 1, 0x80, 1, 0, 0], &[]).await.unwrap();
    assert_eq!(&sn.data[4..], b"PORTICO0001");
}

#[tokio::test]
async fn misc_commands() {
    let (luns, lu) = lun_map(512, BLOCKS, false);
    let n = ready_nexus(&luns, 1).await;
    assert_eq!(run(&luns, &n, &[0xc1], &[]).await, Err(SenseReason::InvalidOpcode));
    assert_eq!(
        run(&luns, &n, &[0x1b, 0, 0, 0, 0x02, 0], &[]).await,
        Err(SenseReason::InvalidFieldInCdb(Field::bit(4, 1)))
    );
    assert!(run(&luns, &n, &[0x1b, 1, 0, 0, 0x01, 0], &[]).await.is_ok());
    assert!(run(&luns, &n, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await.is_ok());
    assert_eq!(run(&luns, &n, &rw16(0x90, 0, 8), &[]).await.unwrap().status, ScsiStatus::ConditionMet);
    let rc = run(&luns, &n, &[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], &[]).await.unwrap();
    assert_eq!(&rc.data[..12], &[0, 0, 0, 0, 0, 0, 0x0f, 0xff, 0, 0, 2, 0]);
    assert_eq!(&rc.data[13..15], &[3, 0xc0], "eight logical blocks per physical block; LBPME, LBPRZ");
    let rc = run(&luns, &n, &[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await.unwrap();
    assert!(rc.data.is_empty());
    assert!(invalid_field(run(&luns, &n, &[0x28, 0xe0, 0, 0, 0, 0, 0, 0, 1, 0], &[]).await));
    let (big, _) = lun_map(512, 1 << 17, false);
    let nb = ready_nexus(&big, 1).await;
    assert_eq!(run(&big, &nb, &read10(0, 0xffff), &[]).await, Err(SenseReason::InvalidFieldInCdb(Field::byte(7))));
    assert_eq!(expected_data_out(&luns, 0, &with_op(read10(0, 3), 0x2a)), Some(1536));
    assert_eq!(expected_data_out(&luns, 7, &with_op(read10(0, 3), 0x2a)), None);
    let before = lu.counters();
    let _ = testkit::run(&luns, &n, 0, &[0xc1], &[]).await;
    let after = lu.counters();
    assert_eq!((after.commands - before.commands, after.errors - before.errors), (1, 1));
}

fn unmap_list(ranges: &[(u64, u32)]) -> Vec<u8> {
    let mut d = vec![0u8; 8];
    for &(lba, n) in ranges {
        d.extend_from_slice(&lba.to_be_bytes());
        d.extend_from_slice(&n.to_be_bytes());
        d.extend_from_slice(&[0; 4]);
    }
    let bdl = (d.len() - 8) as u16;
    let total = d.len() as u16 - 2;
    d[0..2].copy_from_slice(&total.to_be_bytes());
    d[2..4].copy_from_slice(&bdl.to_be_bytes());
    d
}

fn lba_status(data: &[u8]) -> Vec<(u64, u32, u8)> {
    data[8..]
        .chunks_exact(16)
        .map(|c| {
            (u64::from_be_bytes(c[0..8].try_into().unwrap()), u32::from_be_bytes(c[8..12].try_into().unwrap()), c[12])
        })
        .collect()
}

#[tokio::test]
async fn write_same_unmap_and_lba_status() {
    let (luns, _) = lun_map(512, BLOCKS, false);
    let n = ready_nexus(&luns, 1).await;
    let ws = |lba: u8, blocks: u8, unmap: bool| vec![0x41, if unmap { 0x08 } else { 0 }, 0, 0, 0, lba, 0, 0, blocks, 0];
    run(&luns, &n, &ws(0, 200, false), &[0xabu8; 512]).await.unwrap();
    let r = run(&luns, &n, &read10(0, 200), &[]).await.unwrap();
    assert!(r.data.iter().all(|&b| b == 0xab));
    let gls = [0x9e, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];
    let st = run(&luns, &n, &gls, &[]).await.unwrap();
    assert_eq!(lba_status(&st.data)[..2], [(0, 256, 0), (256, BLOCKS as u32 - 256, 1)], "two 64 KiB chunks mapped");
    // Unmapping whole chunks frees them; they read back as zeros.
    run(&luns, &n, &ws(0, 128, true), &[0u8; 512]).await.unwrap();
    let st = run(&luns, &n, &gls, &[]).await.unwrap();
    assert_eq!(lba_status(&st.data)[..2], [(0, 128, 1), (128, 128, 0)]);
    assert!(run(&luns, &n, &read10(0, 128), &[]).await.unwrap().data.iter().all(|&b| b == 0));
    assert!(invalid_field(run(&luns, &n, &ws(0, 1, false), &[0u8; 256]).await));
    assert_eq!(run(&luns, &n, &ws(255, 0, false), &[1u8; 512]).await, Ok(Reply::good()));
    assert_eq!(run(&luns, &n, &rw16(0x93, BLOCKS, 1), &[0u8; 512]).await, Err(SenseReason::LbaOutOfRange));
    let mut ndob = rw16(0x93, 300, 2);
    ndob[1] = 0x01;
    run(&luns, &n, &with_op(read10(300, 2), 0x2a), &[5u8; 1024]).await.unwrap();
    run(&luns, &n, &ndob, &[]).await.unwrap();
    assert!(run(&luns, &n, &read10(300, 2), &[]).await.unwrap().data.iter().all(|&b| b == 0));
    assert!(invalid_field(run(&luns, &n, &ndob, &[0u8; 512]).await));
    let mut gls_end = gls;
    gls_end[2..10].copy_from_slice(&BLOCKS.to_be_bytes());
    assert_eq!(run(&luns, &n, &gls_end, &[]).await, Err(SenseReason::LbaOutOfRange));
}

#[tokio::test]
async fn unmap_descriptors() {
    let (luns, _) = lun_map(512, BLOCKS, false);
    let n = ready_nexus(&luns, 1).await;
    run(&luns, &n, &with_op(read10(0, 16), 0x2a), &[9u8; 16 * 512]).await.unwrap();
    let unmap = |len: u16| vec![0x42, 0, 0, 0, 0, 0, 0, (len >> 8) as u8, len as u8, 0];
    let pl = unmap_list(&[(2, 3), (10, 0), (BLOCKS, 0)]);
    run(&luns, &n, &unmap(pl.len() as u16), &pl).await.unwrap();
    let r = run(&luns, &n, &read10(0, 16), &[]).await.unwrap();
    assert!(r.data[..1024].iter().all(|&b| b == 9));
    assert!(r.data[1024..2560].iter().all(|&b| b == 0));
    assert!(r.data[2560..].iter().all(|&b| b == 9));
    let pl = unmap_list(&[(BLOCKS - 1, 2)]);
    assert_eq!(run(&luns, &n, &unmap(pl.len() as u16), &pl).await, Err(SenseReason::LbaOutOfRange));
    assert_eq!(run(&luns, &n, &unmap(4), &[0; 4]).await, Err(SenseReason::ParameterListLength));
    assert_eq!(run(&luns, &n, &unmap(0), &[]).await, Ok(Reply::good()));
}

#[tokio::test]
async fn compare_and_write() {
    let (luns, _) = lun_map(512, BLOCKS, false);
    let n = ready_nexus(&luns, 1).await;
    run(&luns, &n, &with_op(read10(4, 2), 0x2a), &[b'A'; 1024]).await.unwrap();
    let caw = [0x89, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0];
    let mut data = vec![b'A'; 1024];
    data.extend_from_slice(&[b'B'; 1024]);
    run(&luns, &n, &caw, &data).await.unwrap();
    assert!(run(&luns, &n, &read10(4, 2), &[]).await.unwrap().data.iter().all(|&b| b == b'B'));
    assert_eq!(run(&luns, &n, &caw, &data).await, Err(SenseReason::Miscompare { offset: 0 }));
    data[..1024].fill(b'B');
    data[1000] = b'C';
    assert_eq!(run(&luns, &n, &caw, &data).await, Err(SenseReason::Miscompare { offset: 1000 }));
    assert!(run(&luns, &n, &read10(4, 2), &[]).await.unwrap().data.iter().all(|&b| b == b'B'));
    assert!(invalid_field(run(&luns, &n, &caw, &data[..1024]).await));
    // NUMBER OF LOGICAL BLOCKS 0 is no error, but Data-Out for it is.
    let caw0 = [0x89, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0];
    assert_eq!(run(&luns, &n, &caw0, &[]).await, Ok(Reply::good()));
    assert!(invalid_field(run(&luns, &n, &caw0, &data).await));
    assert_eq!(expected_data_out(&luns, 0, &caw), None);
}

#[tokio::test]
async fn or_write_ors_into_the_medium() {
    let (luns, _) = lun_map(512, BLOCKS, false);
    let n = ready_nexus(&luns, 1).await;
    run(&luns, &n, &with_op(read10(0, 1), 0x2a), &[0x0f; 512]).await.unwrap();
    run(&luns, &n, &rw16(0x8b, 0, 1), &[0xf0; 512]).await.unwrap();
    assert!(run(&luns, &n, &read10(0, 1), &[]).await.unwrap().data.iter().all(|&b| b == 0xff));
    assert_eq!(run(&luns, &n, &rw16(0x8b, BLOCKS, 1), &[0; 512]).await, Err(SenseReason::LbaOutOfRange));
    assert_eq!(run(&luns, &n, &rw16(0x8b, 0, 0), &[]).await, Ok(Reply::good()));
}

#[tokio::test]
async fn provisioning_writes_are_refused_on_read_only_units() {
    let (luns, _) = lun_map(512, BLOCKS, true);
    let n = ready_nexus(&luns, 1).await;
    let pl = unmap_list(&[(0, 1)]);
    assert_eq!(
        run(&luns, &n, &[0x42, 0, 0, 0, 0, 0, 0, 0, pl.len() as u8, 0], &pl).await,
        Err(SenseReason::WriteProtected)
    );
    assert_eq!(
        run(&luns, &n, &[0x41, 0x08, 0, 0, 0, 0, 0, 0, 1, 0], &[0; 512]).await,
        Err(SenseReason::WriteProtected)
    );
    let caw = [0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0];
    assert_eq!(run(&luns, &n, &caw, &[0; 1024]).await, Err(SenseReason::WriteProtected));
    assert_eq!(run(&luns, &n, &rw16(0x8b, 0, 1), &[0; 512]).await, Err(SenseReason::WriteProtected));
}

#[tokio::test]
async fn write_atomic_and_read_defect_data() {
    let (luns, _) = lun_map(512, BLOCKS, false);
    let n = ready_nexus(&luns, 1).await;
    let wa = |lba: u64, blocks: u16| {
        let mut c = vec![0x9c, 0];
        c.extend_from_slice(&lba.to_be_bytes());
        c.extend_from_slice(&[0, 0]);
        c.extend_from_slice(&blocks.to_be_bytes());
        c.extend_from_slice(&[0, 0]);
        c
    };
    run(&luns, &n, &wa(7, 2), &[3u8; 1024]).await.unwrap();
    assert!(run(&luns, &n, &read10(7, 2), &[]).await.unwrap().data.iter().all(|&b| b == 3));
    assert_eq!(run(&luns, &n, &wa(BLOCKS - 1, 2), &[3u8; 1024]).await, Err(SenseReason::LbaOutOfRange));
    let rd = run(&luns, &n, &[0x37, 0, 0x05, 0, 0, 0, 0, 0, 32, 0], &[]).await.unwrap();
    assert_eq!(&rd.data[..], &[0, 0x1d, 0, 0]);
    let (ro, _) = lun_map(512, BLOCKS, true);
    let n = ready_nexus(&ro, 1).await;
    assert_eq!(run(&ro, &n, &wa(0, 1), &[0u8; 512]).await, Err(SenseReason::WriteProtected));
}

#[tokio::test]
async fn persistent_reservation_conflict_is_a_status_without_sense() {
    let (luns, _) = lun_map(512, BLOCKS, false);
    let a = ready_nexus(&luns, 1).await;
    let b = ready_nexus(&luns, 2).await;
    let prout = |sa: u8, t: u8| vec![0x5f, sa, t, 0, 0, 0, 0, 0, 24, 0];
    let params = |key: u64, sa_key: u64| {
        let mut p = vec![0u8; 24];
        p[0..8].copy_from_slice(&key.to_be_bytes());
        p[8..16].copy_from_slice(&sa_key.to_be_bytes());
        p
    };
    run(&luns, &a, &prout(0x06, 0), &params(0, 0xab)).await.unwrap();
    run(&luns, &a, &prout(0x01, 0x03), &params(0xab, 0)).await.unwrap();
    assert_eq!(run(&luns, &b, &read10(0, 1), &[]).await, Err(SenseReason::ReservationConflict));
    let resp = testkit::run(&luns, &b, 0, &read10(0, 1), &[]).await;
    assert_eq!(resp.status, ScsiStatus::ReservationConflict);
    assert!(resp.sense.is_empty());
    assert!(run(&luns, &b, &[0x00], &[]).await.is_ok(), "TEST UNIT READY is allowed");
    assert!(run(&luns, &a, &read10(0, 1), &[]).await.is_ok());
    let rk = run(&luns, &b, &[0x5e, 0, 0, 0, 0, 0, 0, 0, 8, 0], &[]).await.unwrap();
    assert_eq!(&rk.data[4..8], &[0, 0, 0, 8], "ADDITIONAL LENGTH is not cut by the allocation length");
}

#[tokio::test]
async fn dropping_a_nexus_ends_its_spc2_reservation() {
    let (luns, _) = lun_map(512, BLOCKS, false);
    let a = ready_nexus(&luns, 1).await;
    let b = ready_nexus(&luns, 2).await;
    run(&luns, &a, &[0x16, 0, 0, 0, 0, 0], &[]).await.unwrap();
    assert_eq!(run(&luns, &b, &[0x1a, 0, 0x3f, 0, 255, 0], &[]).await, Err(SenseReason::ReservationConflict));
    assert!(run(&luns, &b, &[0x17, 0, 0, 0, 0, 0], &[]).await.is_ok());
    drop(a);
    run(&luns, &b, &[0x16, 0, 0, 0, 0, 0], &[]).await.unwrap();
    let a = Nexus::new(testkit::nexus_id(1));
    assert_eq!(run(&luns, &a, &[0x00], &[]).await, Err(SenseReason::UnitAttention(UnitAttention::PowerOnReset)));
    assert_eq!(run(&luns, &a, &[0x00], &[]).await, Err(SenseReason::ReservationConflict));
}

#[tokio::test]
async fn reserve_and_release_10_are_the_spc2_reservation() {
    let (luns, _) = lun_map(512, BLOCKS, false);
    let a = ready_nexus(&luns, 1).await;
    let b = ready_nexus(&luns, 2).await;
    let reserve10 = [0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let release10 = [0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    run(&luns, &a, &reserve10, &[]).await.unwrap();
    assert_eq!(run(&luns, &b, &reserve10, &[]).await, Err(SenseReason::ReservationConflict));
    assert_eq!(run(&luns, &b, &[0x16, 0, 0, 0, 0, 0], &[]).await, Err(SenseReason::ReservationConflict));
    assert_eq!(run(&luns, &b, &read10(0, 1), &[]).await, Err(SenseReason::ReservationConflict));
    // RELEASE from another nexus does nothing; the holder's ends it.
    assert!(run(&luns, &b, &release10, &[]).await.is_ok());
    assert_eq!(run(&luns, &b, &read10(0, 1), &[]).await, Err(SenseReason::ReservationConflict));
    assert!(run(&luns, &a, &release10, &[]).await.is_ok());
    assert!(run(&luns, &b, &read10(0, 1), &[]).await.is_ok());
    // Third-party reservations are not supported: 3RDPTY is an invalid field.
    assert_eq!(
        run(&luns, &a, &[0x56, 0x10, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await,
        Err(SenseReason::InvalidFieldInCdb(Field::bit(1, 4)))
    );
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Any CDB of a supported command with any Data-Out ends in a
        /// response, never a panic: every parameter-list decoder (MODE
        /// SELECT, UNMAP, PERSISTENT RESERVE OUT, EXTENDED COPY...) included.
        #[test]
        fn any_command_with_any_data_never_panics(
            op in proptest::sample::select(
                crate::scsi::opcodes::SUPPORTED.iter().collect::<Vec<_>>()),
            rest in proptest::collection::vec(any::<u8>(), 15),
            data in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let (luns, _) = lun_map(512, 256, false);
                let n = ready_nexus(&luns, 1).await;
                // Mostly valid CDBs (only allowed bits set) so that decoding
                // passes and the command itself runs on random input.
                let mut cdb = vec![op.opcode];
                cdb.extend(rest.iter().zip(&op.usage[1..]).map(|(b, m)| b & m));
                if let Some(sa) = op.service_action {
                    cdb[1] = sa as u8;
                }
                let _ = run(&luns, &n, &cdb, &data).await;
            });
        }
    }
}

/// A nexus of test initiator `n` through relative port `rtp` of target port group `tpg`.
async fn ready_nexus_on(luns: &LunMap, n: u8, tpg: u16, rtp: u16) -> Nexus {
    let mut id = testkit::nexus_id(n);
    id.target_port_group = tpg;
    id.relative_target_port = rtp;
    let nexus = Nexus::new(id);
    let _ = run(luns, &nexus, &[0x00], &[]).await;
    nexus
}

const RTPG: [u8; 12] = [0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];

#[tokio::test]
async fn alua_standby_path_refuses_media_access_and_state_changes_raise_attention() {
    use super::AluaState;
    let (luns, lu) = lun_map(512, BLOCKS, false);
    lu.set_target_ports(&[(1, 1), (2, 2)]);
    let a = ready_nexus_on(&luns, 1, 1, 1).await;
    let b = ready_nexus_on(&luns, 2, 2, 2).await;
    let inq = run(&luns, &a, &[0x12, 0, 0, 0, 36, 0], &[]).await.unwrap();
    assert_eq!(inq.data[5] & 0x30, 0x30, "TPGS: implicit and explicit");

    assert!(lu.set_alua_state(2, AluaState::Standby));
    assert!(!lu.set_alua_state(2, AluaState::Standby));
    let ua = Err(SenseReason::UnitAttention(UnitAttention::AsymmetricAccessStateChanged));
    assert_eq!(run(&luns, &a, &read10(0, 1), &[]).await, ua);
    assert_eq!(run(&luns, &b, &read10(0, 1), &[]).await, ua);
    assert!(run(&luns, &a, &read10(0, 1), &[]).await.is_ok());
    assert_eq!(run(&luns, &b, &read10(0, 1), &[]).await, Err(SenseReason::AluaStandby));
    assert_eq!(run(&luns, &b, &[0x00], &[]).await, Err(SenseReason::AluaStandby));
    assert!(run(&luns, &b, &[0x12, 0, 0, 0, 36, 0], &[]).await.is_ok());

    // Both paths report both groups, with group 2 in standby.
    for n in [&a, &b] {
        let d = run(&luns, n, &RTPG, &[]).await.unwrap().data;
        assert_eq!(u32::from_be_bytes(d[0..4].try_into().unwrap()), 24);
        assert_eq!((d[4] & 0x0f, &d[6..8], d[11], &d[14..16]), (0, &[0u8, 1][..], 1, &[0u8, 1][..]));
        assert_eq!((d[16] & 0x0f, &d[18..20], d[23], &d[26..28]), (2, &[0u8, 2][..], 1, &[0u8, 2][..]));
    }

    // SET TARGET PORT GROUPS through the standby path makes it active again;
    // the other nexus hears of it, the requester does not.
    let set = [0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0];
    run(&luns, &b, &set, &[0, 0, 0, 0, 0x00, 0, 0, 2]).await.unwrap();
    assert_eq!(lu.alua_state(2), AluaState::ActiveOptimized);
    assert!(run(&luns, &b, &read10(0, 1), &[]).await.is_ok());
    assert_eq!(run(&luns, &a, &read10(0, 1), &[]).await, ua);

    lu.set_alua_state(1, AluaState::Unavailable);
    let _ = run(&luns, &a, &[0x00], &[]).await;
    assert_eq!(run(&luns, &a, &read10(0, 1), &[]).await, Err(SenseReason::AluaUnavailable));
    lu.set_alua_state(1, AluaState::Transitioning);
    assert_eq!(run(&luns, &a, &[0x03, 0, 0, 0, 18, 0], &[]).await.map(|r| r.data[12]), Ok(0x2a));
    assert_eq!(run(&luns, &a, &read10(0, 1), &[]).await, Err(SenseReason::AluaTransitioning));
    assert!(run(&luns, &a, &RTPG, &[]).await.is_ok());
}

#[tokio::test]
async fn aptpl_reservations_come_back_on_a_reopened_unit() {
    let dir = std::env::temp_dir().join(format!("portico-lu-aptpl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vol.img.pr.toml");
    let prout = |sa: u8, t: u8| vec![0x5f, sa, t, 0, 0, 0, 0, 0, 24, 0];
    let params = |key: u64, sa_key: u64, aptpl: bool| {
        let mut p = vec![0u8; 24];
        p[0..8].copy_from_slice(&key.to_be_bytes());
        p[8..16].copy_from_slice(&sa_key.to_be_bytes());
        p[20] = u8::from(aptpl);
        p
    };
    let read_keys = [0x5e, 0, 0, 0, 0, 0, 0, 0x10, 0, 0];
    let before = {
        let (luns, lu) = lun_map(512, BLOCKS, false);
        lu.open_state(Some(path.clone()), WriteCache::default()).unwrap();
        let n = ready_nexus(&luns, 1).await;
        run(&luns, &n, &prout(0x06, 0), &params(0, 0xabc, true)).await.unwrap();
        run(&luns, &n, &prout(0x01, 1), &params(0xabc, 0, false)).await.unwrap();
        run(&luns, &n, &read_keys, &[]).await.unwrap().data
    };
    assert!(path.exists());
    let (luns, lu) = lun_map(512, BLOCKS, false);
    lu.open_state(Some(path.clone()), WriteCache::default()).unwrap();
    let other = ready_nexus(&luns, 2).await;
    assert_eq!(run(&luns, &other, &read_keys, &[]).await.unwrap().data, before);
    assert_eq!(run(&luns, &other, &rw16(0x8a, 0, 1), &[0; 512]).await, Err(SenseReason::ReservationConflict));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn reservations_without_aptpl_survive_a_reopen_but_not_a_restart() {
    let dir = std::env::temp_dir().join(format!("portico-lu-volatile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vol.img.pr.toml");
    let mut p = vec![0u8; 24];
    p[8..16].copy_from_slice(&0xabcu64.to_be_bytes());
    let read_keys = [0x5e, 0, 0, 0, 0, 0, 0, 0x10, 0, 0];
    {
        let (luns, lu) = lun_map(512, BLOCKS, false);
        lu.open_state(Some(path.clone()), WriteCache::default()).unwrap();
        let n = ready_nexus(&luns, 1).await;
        run(&luns, &n, &[0x5f, 0x00, 0, 0, 0, 0, 0, 0, 24, 0], &p).await.unwrap();
    }
    let keys_after = |warm: bool| {
        let path = path.clone();
        async move {
            let (luns, lu) = lun_map(512, BLOCKS, false);
            if warm {
                lu.reopen_state(Some(path), WriteCache::default()).unwrap();
            } else {
                lu.open_state(Some(path), WriteCache::default()).unwrap();
            }
            let n = ready_nexus(&luns, 2).await;
            let data = run(&luns, &n, &read_keys, &[]).await.unwrap().data;
            u32::from_be_bytes(data[4..8].try_into().unwrap())
        }
    };
    assert_eq!(keys_after(true).await, 8, "a unit opened anew keeps the registration");
    assert_eq!(keys_after(false).await, 0, "a restart drops it (no APTPL)");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_failed_aptpl_save_changes_nothing_and_is_not_good() {
    let dir = std::env::temp_dir().join(format!("portico-lu-aptpl-fail-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The file's directory disappears: the save cannot happen.
    let path = dir.join("gone").join("vol.img.reservations.toml");
    let (luns, lu) = lun_map(512, BLOCKS, false);
    lu.open_state(Some(path.clone()), WriteCache::default()).unwrap();
    let n = ready_nexus(&luns, 1).await;
    let mut p = vec![0u8; 24];
    p[8..16].copy_from_slice(&0xabcu64.to_be_bytes());
    p[20] = 0x01; // APTPL
    let register = [0x5f, 0x06, 0, 0, 0, 0, 0, 0, 24, 0];
    assert_eq!(run(&luns, &n, &register, &p).await, Err(SenseReason::InsufficientRegistrationResources));
    let keys = run(&luns, &n, &[0x5e, 0, 0, 0, 0, 0, 0, 0x10, 0, 0], &[]).await.unwrap().data;
    assert_eq!(&keys[4..8], &[0, 0, 0, 0], "nothing was registered");
    // Without APTPL nothing needs saving: the same registration succeeds.
    p[20] = 0;
    run(&luns, &n, &register, &p).await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_nexus_without_the_privilege_sees_implicit_alua_only() {
    let (luns, lu) = lun_map(512, BLOCKS, false);
    lu.set_target_ports(&[(1, 1), (2, 2)]);
    let n = ready_nexus(&luns, 1).await;
    assert_eq!(run(&luns, &n, &[0x12, 0, 0, 0, 96, 0], &[]).await.unwrap().data[5] & 0x30, 0x30);
    n.set_privileges(Privileges { set_target_port_groups: false, ..Privileges::default() });
    assert_eq!(run(&luns, &n, &[0x12, 0, 0, 0, 96, 0], &[]).await.unwrap().data[5] & 0x30, 0x10, "TPGS 01b");
    let set = [0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0];
    assert_eq!(run(&luns, &n, &set, &[0, 0, 0, 0, 0x02, 0, 0, 2]).await, Err(SenseReason::InvalidOpcode));
    assert_eq!(lu.alua_state(2), super::AluaState::ActiveOptimized);
    // REPORT SUPPORTED OPERATION CODES no longer lists it either.
    let all = run(&luns, &n, &[0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], &[]).await.unwrap().data;
    assert!(!all[4..].chunks(8).any(|d| d[0] == 0xa4 && d[2..4] == [0, 0x0a]));
}
