//! Reservations and COMPARE AND WRITE with several initiators over real TCP:
//! the conflict table of SPC-4 §5.13.1 (table 45) for each reservation type,
//! seen by the holder, another registrant and an unregistered initiator;
//! PREEMPT between initiators; and COMPARE AND WRITE racing from two
//! sessions (SBC-3 §5.2: the compare and the write are one atomic operation).

use std::net::SocketAddr;

use target_engine::testkit::initiator::*;
use target_engine::{Engine, EngineConfig};

const TARGET: &str = "iqn.2026-11.test.portico:reservations";
const HOLDER: &str = "iqn.2026-11.test.portico:holder";
const REGISTRANT: &str = "iqn.2026-11.test.portico:registrant";
const STRANGER: &str = "iqn.2026-11.test.portico:stranger";

async fn start() -> (Engine, SocketAddr) {
    let toml = format!(
        "[[volume]]\nname = \"v\"\nbackend = \"memory\"\nsize = \"4MiB\"\n\
         [[target]]\niqn = \"{TARGET}\"\nportals = [\"127.0.0.1:0\"]\nluns = {{ 0 = \"v\" }}\n"
    );
    let engine = Engine::new();
    engine.apply(EngineConfig::from_toml(&toml).unwrap()).await.unwrap();
    let addr = *engine.portals().await.values().next().unwrap();
    (engine, addr)
}

async fn login(addr: SocketAddr, initiator: &str) -> Initiator {
    let mut i = Initiator::connect(addr).await;
    i.login(&LoginOpts { initiator, target: Some(TARGET), ..Default::default() }).await.expect("login");
    i
}

fn pr_out(service_action: u8, pr_type: u8) -> [u8; 10] {
    [0x5f, service_action, pr_type, 0, 0, 0, 0, 0, 24, 0]
}

fn params(key: u64, sa_key: u64) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p
}

const GOOD: u8 = 0x00;
const CHECK_CONDITION: u8 = 0x02;
const CONFLICT: u8 = 0x18;

async fn status(i: &mut Initiator, cdb: &[u8], read_len: u32, write: &[u8]) -> u8 {
    i.command_ok(0, cdb, read_len, write).await.status
}

/// What SPC-4 table 45 allows a nexus that does not hold the reservation:
/// (READ allowed, WRITE allowed) for the reservation type and whether the
/// nexus is registered.
fn allowed(pr_type: u8, registered: bool) -> (bool, bool) {
    let registrants_share = matches!(pr_type, 5..=8);
    let write_exclusive = matches!(pr_type, 1 | 5 | 7);
    let full = registered && registrants_share;
    (full || write_exclusive, full)
}

#[tokio::test]
async fn every_reservation_type_follows_the_conflict_table() {
    let (engine, addr) = start().await;
    let mut holder = login(addr, HOLDER).await;
    let mut registrant = login(addr, REGISTRANT).await;
    let mut stranger = login(addr, STRANGER).await;
    let block = vec![0x11u8; 512];
    for pr_type in [1u8, 3, 5, 6, 7, 8] {
        assert_eq!(status(&mut holder, &pr_out(0x06, 0), 0, &params(0, 0x1)).await, GOOD);
        assert_eq!(status(&mut registrant, &pr_out(0x06, 0), 0, &params(0, 0x2)).await, GOOD);
        assert_eq!(status(&mut holder, &pr_out(0x01, pr_type), 0, &params(0x1, 0)).await, GOOD, "type {pr_type}");

        assert_eq!(status(&mut holder, &read10(0, 1), 512, &[]).await, GOOD);
        assert_eq!(status(&mut holder, &write10(0, 1), 0, &block).await, GOOD);
        for (who, registered) in [(&mut registrant, true), (&mut stranger, false)] {
            let (read_ok, write_ok) = allowed(pr_type, registered);
            let expect = |ok: bool| if ok { GOOD } else { CONFLICT };
            let what = format!("type {pr_type}, registered {registered}");
            assert_eq!(status(who, &read10(0, 1), 512, &[]).await, expect(read_ok), "READ, {what}");
            assert_eq!(status(who, &write10(0, 1), 0, &block).await, expect(write_ok), "WRITE, {what}");
            // Allowed under every reservation.
            assert_eq!(status(who, &[0u8; 6], 0, &[]).await, GOOD, "TEST UNIT READY, {what}");
            assert_eq!(status(who, &[0x12, 0, 0, 0, 36, 0], 36, &[]).await, GOOD, "INQUIRY, {what}");
            assert_eq!(status(who, &report_luns(), 4096, &[]).await, GOOD, "REPORT LUNS, {what}");
        }
        // A stranger cannot take a reservation it is not registered for.
        assert_eq!(status(&mut stranger, &pr_out(0x01, pr_type), 0, &params(0x9, 0)).await, CONFLICT);
        // CLEAR ends the reservation and every registration.
        assert_eq!(status(&mut holder, &pr_out(0x03, 0), 0, &params(0x1, 0)).await, GOOD);
        assert_eq!(status(&mut stranger, &write10(0, 1), 0, &block).await, GOOD);
    }
    engine.shutdown().await;
}

#[tokio::test]
async fn a_registrant_preempts_another_initiator() {
    let (engine, addr) = start().await;
    let mut holder = login(addr, HOLDER).await;
    let mut registrant = login(addr, REGISTRANT).await;
    assert_eq!(status(&mut holder, &pr_out(0x00, 0), 0, &params(0, 0xa)).await, GOOD);
    assert_eq!(status(&mut registrant, &pr_out(0x00, 0), 0, &params(0, 0xb)).await, GOOD);
    // Exclusive Access: the other registrant may not even read.
    assert_eq!(status(&mut holder, &pr_out(0x01, 3), 0, &params(0xa, 0)).await, GOOD);
    assert_eq!(status(&mut registrant, &read10(0, 1), 512, &[]).await, CONFLICT);

    // PREEMPT the holder's key: its registration goes, the reservation moves.
    assert_eq!(status(&mut registrant, &pr_out(0x04, 3), 0, &params(0xb, 0xa)).await, GOOD);
    let r = holder.command(0, &read10(0, 1), 512, &[], 0, 0).await;
    assert_eq!(r.status, CHECK_CONDITION);
    assert_eq!((r.sense[2] & 0x0f, r.sense[12], r.sense[13]), (0x6, 0x2a, 0x05), "REGISTRATIONS PREEMPTED");
    assert_eq!(status(&mut holder, &read10(0, 1), 512, &[]).await, CONFLICT);
    assert_eq!(status(&mut registrant, &write10(0, 1), 0, &[7; 512]).await, GOOD);
    // The preempted initiator's old key no longer works.
    assert_eq!(status(&mut holder, &pr_out(0x01, 3), 0, &params(0xa, 0)).await, CONFLICT);
    let keys = holder.command_ok(0, &[0x5e, 0x00, 0, 0, 0, 0, 0, 0x10, 0, 0], 4096, &[]).await;
    assert_eq!(&keys.data[4..8], &[0, 0, 0, 8], "one key left");
    assert_eq!(u64::from_be_bytes(keys.data[8..16].try_into().unwrap()), 0xb);
    engine.shutdown().await;
}

fn compare_and_write(lba: u64) -> [u8; 16] {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x89;
    cdb[2..10].copy_from_slice(&lba.to_be_bytes());
    cdb[13] = 1;
    cdb
}

/// Adds one to the counter in block 8 with read + COMPARE AND WRITE,
/// retrying on MISCOMPARE, `times` times.
async fn increment(mut i: Initiator, times: u32) -> (Initiator, u32) {
    let mut miscompares = 0;
    let mut done = 0;
    while done < times {
        let current = i.command_ok(0, &read10(8, 1), 512, &[]).await.data;
        let value = u64::from_be_bytes(current[..8].try_into().unwrap());
        let mut next = current.clone();
        next[..8].copy_from_slice(&(value + 1).to_be_bytes());
        let mut data = current;
        data.extend_from_slice(&next);
        let r = i.command_ok(0, &compare_and_write(8), 0, &data).await;
        match r.status {
            GOOD => done += 1,
            CHECK_CONDITION if r.sense[2] & 0x0f == 0x0e => miscompares += 1,
            other => panic!("COMPARE AND WRITE: status {other:#x}, sense {:?}", r.sense),
        }
    }
    (i, miscompares)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_compare_and_writes_lose_no_update() {
    let (engine, addr) = start().await;
    let mut a = login(addr, HOLDER).await;
    let b = login(addr, REGISTRANT).await;
    assert_eq!(status(&mut a, &write10(8, 1), 0, &[0; 512]).await, GOOD);
    const EACH: u32 = 150;
    let (ra, rb) = tokio::join!(tokio::spawn(increment(a, EACH)), tokio::spawn(increment(b, EACH)));
    let ((mut a, misses_a), (_, misses_b)) = (ra.unwrap(), rb.unwrap());
    let block = a.command_ok(0, &read10(8, 1), 512, &[]).await.data;
    let value = u64::from_be_bytes(block[..8].try_into().unwrap());
    // Every successful COMPARE AND WRITE counted exactly once; the losers of
    // each race saw MISCOMPARE and tried again.
    assert_eq!(value, 2 * u64::from(EACH), "{misses_a} + {misses_b} miscompares");
    engine.shutdown().await;
}

/// A volume allowing one I/O per second, so that a second read waits in
/// the engine long enough to be aborted.
async fn start_slow() -> (Engine, SocketAddr) {
    let toml = format!(
        "[[volume]]\nname = \"v\"\nbackend = \"memory\"\nsize = \"4MiB\"\niops_limit = 1\n\
         [[target]]\niqn = \"{TARGET}\"\nportals = [\"127.0.0.1:0\"]\nluns = {{ 0 = \"v\" }}\n"
    );
    let engine = Engine::new();
    engine.apply(EngineConfig::from_toml(&toml).unwrap()).await.unwrap();
    let addr = *engine.portals().await.values().next().unwrap();
    (engine, addr)
}

/// Sends two reads without waiting and waits for the first to be answered,
/// so that the second is then waiting for the volume's limit; returns the
/// second's task tag.
async fn two_reads(i: &mut Initiator) -> u32 {
    let first = i.scsi_pdu(0, &read10(0, 1), true, false, 512);
    let second = i.scsi_pdu(0, &read10(1, 1), true, false, 512);
    let (first_tag, second_tag) = (first.itt(), second.itt());
    i.send(target_engine::iscsi::pdu::Pdu::new(first)).await;
    i.send(target_engine::iscsi::pdu::Pdu::new(second)).await;
    let tags = answered(i, std::time::Duration::from_millis(300)).await;
    assert_eq!(tags, vec![first_tag], "the first read is answered, the second waits");
    second_tag
}

/// The task tags answered (final Data-In or SCSI Response) within `wait`.
async fn answered(i: &mut Initiator, wait: std::time::Duration) -> Vec<u32> {
    use target_engine::iscsi::pdu::op;
    let mut tags = Vec::new();
    while let Some(p) = i.recv_timeout(wait).await {
        let last_data_in = p.bhs.opcode() == op::DATA_IN && p.bhs.flags() & 1 != 0;
        if last_data_in || p.bhs.opcode() == op::SCSI_RESP {
            tags.push(p.bhs.itt());
        }
    }
    tags
}

#[tokio::test]
async fn preempt_and_abort_aborts_the_preempted_initiators_tasks() {
    let (engine, addr) = start_slow().await;
    let mut victim = login(addr, HOLDER).await;
    let mut preempter = login(addr, REGISTRANT).await;
    assert_eq!(status(&mut victim, &pr_out(0x00, 0), 0, &params(0, 0xa)).await, GOOD);
    assert_eq!(status(&mut preempter, &pr_out(0x00, 0), 0, &params(0, 0xb)).await, GOOD);
    assert_eq!(status(&mut victim, &pr_out(0x01, 1), 0, &params(0xa, 0)).await, GOOD);

    let second = two_reads(&mut victim).await;
    // PREEMPT AND ABORT while the second read waits for the volume's limit.
    assert_eq!(status(&mut preempter, &pr_out(0x05, 1), 0, &params(0xb, 0xa)).await, GOOD);
    let tags = answered(&mut victim, std::time::Duration::from_secs(3)).await;
    assert!(!tags.contains(&second), "the waiting read was aborted: {tags:?}");
    // The session carries on: unit attention, then the preempted initiator is shut out of writes.
    assert_eq!(status(&mut victim, &write10(0, 1), 0, &[1; 512]).await, CONFLICT);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_logical_unit_reset_aborts_other_initiators_tasks() {
    let (engine, addr) = start_slow().await;
    let mut other = login(addr, HOLDER).await;
    let mut resetter = login(addr, REGISTRANT).await;
    assert_eq!(status(&mut other, &[0u8; 6], 0, &[]).await, GOOD);
    assert_eq!(status(&mut resetter, &[0u8; 6], 0, &[]).await, GOOD);
    let second = two_reads(&mut other).await;
    assert_eq!(resetter.tmf(5, 0, 0xffff_ffff).await, 0, "LOGICAL UNIT RESET: function complete");
    let tags = answered(&mut other, std::time::Duration::from_secs(3)).await;
    assert!(!tags.contains(&second), "the waiting read was aborted: {tags:?}");
    engine.shutdown().await;
}

/// A target with two volumes, LUN 0 and LUN 1, of known NAA identifiers.
async fn start_two() -> (Engine, SocketAddr) {
    let toml = format!(
        "[[volume]]\nname = \"v\"\nbackend = \"memory\"\nsize = \"4MiB\"\nwwn = \"{V_WWN}\"\n\
         [[volume]]\nname = \"w\"\nbackend = \"memory\"\nsize = \"4MiB\"\nwwn = \"{W_WWN}\"\n\
         [[target]]\niqn = \"{TARGET}\"\nportals = [\"127.0.0.1:0\"]\nluns = {{ 0 = \"v\", 1 = \"w\" }}\n"
    );
    let engine = Engine::new();
    engine.apply(EngineConfig::from_toml(&toml).unwrap()).await.unwrap();
    let addr = *engine.portals().await.values().next().unwrap();
    (engine, addr)
}

const V_WWN: &str = "6001405aaaaaaaaaaaaaaaaaaaaaaaaa";
const W_WWN: &str = "6001405bbbbbbbbbbbbbbbbbbbbbbbbb";

/// EXTENDED COPY(LID1) of `blocks` blocks from LBA 0 of target
/// descriptor `src` to LBA 0 of `dst`, over descriptors for `wwns`.
fn xcopy(wwns: &[&str], src: u16, dst: u16, blocks: u16) -> ([u8; 16], Vec<u8>) {
    let mut targets = Vec::new();
    for w in wwns {
        let naa: Vec<u8> = (0..16).map(|k| u8::from_str_radix(&w[2 * k..2 * k + 2], 16).unwrap()).collect();
        let mut d = vec![0u8; 32];
        d[0] = 0xe4;
        d[4..8].copy_from_slice(&[0x01, 0x03, 0x00, 0x10]);
        d[8..24].copy_from_slice(&naa);
        d[30] = 2; // 512-byte blocks
        targets.extend(d);
    }
    let mut seg = vec![0x02, 0, 0, 24];
    seg.extend_from_slice(&src.to_be_bytes());
    seg.extend_from_slice(&dst.to_be_bytes());
    seg.extend_from_slice(&[0, 0]);
    seg.extend_from_slice(&blocks.to_be_bytes());
    seg.extend_from_slice(&0u64.to_be_bytes());
    seg.extend_from_slice(&0u64.to_be_bytes());
    let mut list = vec![0u8; 16];
    list[2..4].copy_from_slice(&(targets.len() as u16).to_be_bytes());
    list[8..12].copy_from_slice(&(seg.len() as u32).to_be_bytes());
    list.extend(targets);
    list.extend(seg);
    let mut cdb = [0u8; 16];
    cdb[0] = 0x83;
    cdb[10..14].copy_from_slice(&(list.len() as u32).to_be_bytes());
    (cdb, list)
}

#[tokio::test]
async fn extended_copy_obeys_the_reservations_of_both_units() {
    let (_engine, addr) = start_two().await;
    let mut holder = login(addr, HOLDER).await;
    let mut copier = login(addr, STRANGER).await;
    let reserve_w = |pr_type: u8| (pr_out(0x01, pr_type), params(0x1, 0));
    // The holder registers on LUN 1 ("w") and holds Write Exclusive.
    assert_eq!(holder.command_ok(1, &pr_out(0x06, 0), 0, &params(0, 0x1)).await.status, GOOD);
    let (cdb, p) = reserve_w(1);
    assert_eq!(holder.command_ok(1, &cdb, 0, &p).await.status, GOOD);

    // Sent to LUN 0, which nobody reserved: copying into LUN 1 conflicts...
    let (cdb, list) = xcopy(&[V_WWN, W_WWN], 0, 1, 8);
    assert_eq!(copier.command_ok(0, &cdb, 0, &list).await.status, CONFLICT);
    // ...reading from it does not (Write Exclusive lets others read)...
    let (cdb, list) = xcopy(&[V_WWN, W_WWN], 1, 0, 8);
    assert_eq!(copier.command_ok(0, &cdb, 0, &list).await.status, GOOD);
    // ...until the reservation becomes Exclusive Access.
    let (cdb, p) = (pr_out(0x02, 1), params(0x1, 0));
    assert_eq!(holder.command_ok(1, &cdb, 0, &p).await.status, GOOD);
    let (cdb, p) = reserve_w(3);
    assert_eq!(holder.command_ok(1, &cdb, 0, &p).await.status, GOOD);
    let (cdb, list) = xcopy(&[V_WWN, W_WWN], 1, 0, 8);
    assert_eq!(copier.command_ok(0, &cdb, 0, &list).await.status, CONFLICT);
    // The holder itself may copy both ways.
    let (cdb, list) = xcopy(&[V_WWN, W_WWN], 1, 0, 8);
    assert_eq!(holder.command_ok(0, &cdb, 0, &list).await.status, GOOD);
    let (cdb, list) = xcopy(&[V_WWN, W_WWN], 0, 1, 8);
    assert_eq!(holder.command_ok(0, &cdb, 0, &list).await.status, GOOD);
    // Within one unit nothing changes: LUN 0 to LUN 0 is fine for the copier.
    let (cdb, list) = xcopy(&[V_WWN], 0, 0, 8);
    let r = copier.command_ok(0, &cdb, 0, &list).await;
    assert_eq!(r.status, GOOD, "{:?}", r.sense);
}
