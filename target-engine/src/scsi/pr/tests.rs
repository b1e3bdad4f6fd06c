//! Unit tests of the reservation state machine against SPC-4's tables.

use std::sync::Arc;

use super::*;
use crate::scsi::cdb::Extent;
use crate::scsi::testkit::nexus_id;

fn params(key: u64, sa_key: u64) -> Bytes {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    Bytes::from(p)
}

fn out(pr: &mut PrState, id: &NexusId, a: PrOutAction, t: u8, key: u64, sa_key: u64) -> Result<(), SenseReason> {
    pr.reserve_out(id, a, t, 24, &params(key, sa_key), &mut UaTable::default()).map(drop)
}

const READ: Cdb = Cdb::Read { ext: Extent { lba: 0, blocks: 1, len_field: 7 }, fua: false };
const WRITE: Cdb = Cdb::Write { ext: Extent { lba: 0, blocks: 1, len_field: 7 }, fua: false };

#[test]
fn register_reserve_release() {
    let (a, b) = (nexus_id(1), nexus_id(2));
    let mut pr = PrState::default();
    assert_eq!(out(&mut pr, &a, PrOutAction::Register, 0, 5, 0x11), Err(SenseReason::ReservationConflict));
    out(&mut pr, &a, PrOutAction::Register, 0, 0, 0x11).unwrap();
    out(&mut pr, &b, PrOutAction::RegisterAndIgnore, 0, 0, 0x22).unwrap();
    assert_eq!(out(&mut pr, &b, PrOutAction::Reserve, 1, 0x99, 0), Err(SenseReason::ReservationConflict));
    out(&mut pr, &a, PrOutAction::Reserve, 1, 0x11, 0).unwrap();
    assert_eq!(out(&mut pr, &b, PrOutAction::Reserve, 1, 0x22, 0), Err(SenseReason::ReservationConflict));
    // Write Exclusive: others may read, not write.
    assert!(pr.check(&b, &READ).is_ok());
    assert_eq!(pr.check(&b, &WRITE), Err(SenseReason::ReservationConflict));
    assert!(pr.check(&a, &WRITE).is_ok());
    assert_eq!(out(&mut pr, &a, PrOutAction::Release, 3, 0x11, 0), Err(SenseReason::InvalidRelease));
    out(&mut pr, &a, PrOutAction::Release, 1, 0x11, 0).unwrap();
    assert!(pr.check(&b, &WRITE).is_ok());
    let keys = pr.reserve_in(PrInAction::ReadKeys);
    assert_eq!(u32::from_be_bytes(keys[4..8].try_into().unwrap()), 16);
    assert_eq!(u32::from_be_bytes(keys[0..4].try_into().unwrap()), 2);
}

#[test]
fn registrants_only_and_ownership() {
    let (a, b, c) = (nexus_id(1), nexus_id(2), nexus_id(3));
    let mut pr = PrState::default();
    out(&mut pr, &a, PrOutAction::RegisterAndIgnore, 0, 0, 1).unwrap();
    out(&mut pr, &b, PrOutAction::RegisterAndIgnore, 0, 0, 2).unwrap();
    out(&mut pr, &a, PrOutAction::Reserve, 6, 1, 0).unwrap();
    assert!(pr.check(&b, &WRITE).is_ok());
    assert_eq!(pr.check(&c, &READ), Err(SenseReason::ReservationConflict));
    // The holder unregistering releases a registrants-only reservation.
    out(&mut pr, &a, PrOutAction::Register, 0, 1, 0).unwrap();
    assert!(pr.check(&c, &WRITE).is_ok());
    // All-registrants: the reservation stays while any registrant does.
    out(&mut pr, &a, PrOutAction::RegisterAndIgnore, 0, 0, 1).unwrap();
    out(&mut pr, &a, PrOutAction::Reserve, 8, 1, 0).unwrap();
    out(&mut pr, &a, PrOutAction::Register, 0, 1, 0).unwrap();
    assert_eq!(pr.check(&c, &READ), Err(SenseReason::ReservationConflict));
    let rr = pr.reserve_in(PrInAction::ReadReservation);
    assert_eq!(&rr[4..8], &[0, 0, 0, 16]);
    assert_eq!(rr[8 + 13], 8);
    out(&mut pr, &b, PrOutAction::Release, 8, 2, 0).unwrap();
    assert!(pr.check(&c, &WRITE).is_ok());
}

#[test]
fn preempt_and_clear() {
    let (a, b) = (nexus_id(1), nexus_id(2));
    let mut pr = PrState::default();
    out(&mut pr, &a, PrOutAction::RegisterAndIgnore, 0, 0, 1).unwrap();
    out(&mut pr, &b, PrOutAction::RegisterAndIgnore, 0, 0, 2).unwrap();
    out(&mut pr, &a, PrOutAction::Reserve, 3, 1, 0).unwrap();
    let mut ua = UaTable::default();
    let _ = ua.take(&a);
    pr.reserve_out(&b, PrOutAction::Preempt, 3, 24, &params(2, 1), &mut ua).unwrap();
    assert_eq!(ua.take(&a), Some(UnitAttention::RegistrationsPreempted));
    assert!(pr.check(&b, &WRITE).is_ok());
    assert_eq!(pr.check(&a, &READ), Err(SenseReason::ReservationConflict));
    out(&mut pr, &b, PrOutAction::Clear, 0, 2, 0).unwrap();
    assert!(pr.check(&a, &WRITE).is_ok());
    assert_eq!(pr.reserve_in(PrInAction::ReadKeys)[4..8], [0, 0, 0, 0]);
}

#[test]
fn spc2_reservations() {
    let (a, b) = (nexus_id(1), nexus_id(2));
    let mut pr = PrState::default();
    pr.reserve6(&a).unwrap();
    pr.reserve6(&a).unwrap();
    assert_eq!(pr.reserve6(&b), Err(SenseReason::ReservationConflict));
    assert_eq!(pr.check(&b, &READ), Err(SenseReason::ReservationConflict));
    assert!(pr.check(&b, &Cdb::Release).is_ok());
    pr.release6(&b);
    assert!(pr.check(&a, &WRITE).is_ok());
    pr.drop_spc2(Some(&b));
    assert_eq!(pr.check(&b, &READ), Err(SenseReason::ReservationConflict));
    pr.drop_spc2(Some(&a));
    pr.reserve6(&b).unwrap();
    pr.drop_spc2(None);
    out(&mut pr, &a, PrOutAction::Register, 0, 0, 1).unwrap();
    assert_eq!(pr.reserve6(&b), Err(SenseReason::ReservationConflict));
}

#[test]
fn unsupported_flags_and_lengths() {
    let a = nexus_id(1);
    let mut pr = PrState::default();
    let mut p = params(0, 1).to_vec();
    p[20] = 0x08; // SPEC_I_PT
    assert!(matches!(
        pr.reserve_out(&a, PrOutAction::Register, 0, 24, &Bytes::from(p), &mut UaTable::default()),
        Err(SenseReason::InvalidFieldInParameterList(_))
    ));
    assert_eq!(
        pr.reserve_out(&a, PrOutAction::Register, 0, 16, &params(0, 1), &mut UaTable::default()),
        Err(SenseReason::ParameterListLength)
    );
    let full = {
        out(&mut pr, &a, PrOutAction::Register, 0, 0, 7).unwrap();
        pr.reserve_in(PrInAction::ReadFullStatus)
    };
    let tid_len = u32::from_be_bytes(full[8 + 20..8 + 24].try_into().unwrap()) as usize;
    assert_eq!(full.len(), 8 + 24 + tid_len);
    assert!(String::from_utf8_lossy(&full).contains("iqn.2026-11.test:init1,i,0x800000000001"));
}

/// `id` seen through relative target port `port`.
fn via(id: &NexusId, port: u16) -> NexusId {
    NexusId { relative_target_port: port, ..id.clone() }
}

fn tid(name: &str, isid: Option<[u8; 6]>) -> Vec<u8> {
    InitiatorPort { name: Arc::from(name), isid }.transport_id()
}

/// A REGISTER parameter list with SPEC_I_PT and `tids`.
fn spec_i_pt(sa_key: u64, flags: u8, tids: &[Vec<u8>]) -> Vec<u8> {
    let list: Vec<u8> = tids.concat();
    let mut p = params(0, sa_key).to_vec();
    p[20] = 0x08 | flags;
    p.extend_from_slice(&(list.len() as u32).to_be_bytes());
    p.extend_from_slice(&list);
    p
}

/// A REGISTER AND MOVE parameter list.
fn move_params(key: u64, sa_key: u64, unreg: bool, port: u16, tid: &[u8]) -> Vec<u8> {
    let mut p = params(key, sa_key).to_vec();
    p[17] = u8::from(unreg) << 1;
    p[18..20].copy_from_slice(&port.to_be_bytes());
    p[20..24].copy_from_slice(&(tid.len() as u32).to_be_bytes());
    p.extend_from_slice(tid);
    p
}

fn send(pr: &mut PrState, id: &NexusId, a: PrOutAction, p: &[u8]) -> Result<(), SenseReason> {
    pr.reserve_out(id, a, 0, p.len() as u32, &Bytes::copy_from_slice(p), &mut UaTable::default()).map(drop)
}

fn key_count(pr: &PrState) -> u32 {
    u32::from_be_bytes(pr.reserve_in(PrInAction::ReadKeys)[4..8].try_into().unwrap()) / 8
}

#[test]
fn register_and_move_is_decoded() {
    let c = Cdb::decode(&[0x5f, 0x07, 0, 0, 0, 0, 0, 0, 40, 0]).unwrap();
    assert_eq!(c, Cdb::PersistentReserveOut { action: PrOutAction::RegisterAndMove, pr_type: 0, param_len: 40 });
    let c = Cdb::decode(&[0x5f, 0x06, 0, 0, 0, 0, 0, 0, 24, 0]).unwrap();
    assert!(matches!(c, Cdb::PersistentReserveOut { action: PrOutAction::RegisterAndIgnore, .. }));
    assert!(Cdb::decode(&[0x5f, 0x08, 0, 0, 0, 0, 0, 0, 24, 0]).is_err());
}

#[test]
fn spec_i_pt_registers_the_named_initiator_ports() {
    let (a, b, c, d) = (nexus_id(1), nexus_id(2), nexus_id(3), nexus_id(4));
    let mut pr = PrState::default();
    // b by initiator port (01b), c by name only (00b), in upper case.
    let p = spec_i_pt(0x77, 0, &[tid(&b.initiator_name, Some(b.isid)), tid("IQN.2026-11.TEST:INIT3", None)]);
    send(&mut pr, &a, PrOutAction::Register, &p).unwrap();
    assert_eq!(key_count(&pr), 3);
    assert_eq!(pr.generation, 1);
    assert!(pr.registered(&b) && pr.registered(&c));
    // Any ISID of c, but only b's own ISID, and only on target port 1.
    let c_other = NexusId { isid: [0x80, 0, 0, 0, 9, 9], ..c.clone() };
    let b_other = NexusId { isid: [0x80, 0, 0, 0, 9, 9], ..b.clone() };
    assert!(pr.registered(&c_other));
    assert!(!pr.registered(&b_other) && !pr.registered(&via(&b, 2)));
    out(&mut pr, &a, PrOutAction::Reserve, 5, 0x77, 0).unwrap();
    for id in [&a, &b, &c, &c_other] {
        assert!(pr.check(id, &WRITE).is_ok());
    }
    assert_eq!(pr.check(&d, &WRITE), Err(SenseReason::ReservationConflict));
    assert_eq!(pr.check(&b_other, &WRITE), Err(SenseReason::ReservationConflict));
    // The registered nexuses act under the key they were given.
    out(&mut pr, &b, PrOutAction::Register, 0, 0x77, 0x78).unwrap();
    out(&mut pr, &c_other, PrOutAction::Release, 5, 0x77, 0).unwrap();
    // Full status: one descriptor per registration, with its TransportID.
    let full = pr.reserve_in(PrInAction::ReadFullStatus);
    let text = String::from_utf8_lossy(&full);
    assert!(text.contains("iqn.2026-11.test:init2,i,0x800000000002"));
    // Names are kept in their normal form (RFC 3722 folds case).
    assert!(text.contains("iqn.2026-11.test:init3\0"));
    // SPEC_I_PT naming a registered port: INVALID FIELD IN PARAMETER LIST, nothing changes.
    let before = pr.reserve_in(PrInAction::ReadFullStatus);
    let p = spec_i_pt(5, 0, &[tid(&b.initiator_name, Some(b.isid))]);
    assert!(matches!(send(&mut pr, &d, PrOutAction::Register, &p), Err(SenseReason::InvalidFieldInParameterList(_))));
    // ... or the sender itself, or one port twice.
    let p = spec_i_pt(5, 0, &[tid(&d.initiator_name, None)]);
    assert!(matches!(send(&mut pr, &d, PrOutAction::Register, &p), Err(SenseReason::InvalidFieldInParameterList(_))));
    let e = tid("iqn.2026-11.test:init5", Some([1, 2, 3, 4, 5, 6]));
    let p = spec_i_pt(5, 0, &[e.clone(), e]);
    assert!(matches!(send(&mut pr, &d, PrOutAction::Register, &p), Err(SenseReason::InvalidFieldInParameterList(_))));
    assert_eq!(pr.reserve_in(PrInAction::ReadFullStatus), before);
    // Only REGISTER may carry SPEC_I_PT, and not from a registered nexus.
    let p = spec_i_pt(5, 0, &[]);
    for (who, action) in [(&d, PrOutAction::RegisterAndIgnore), (&a, PrOutAction::Reserve)] {
        assert_eq!(send(&mut pr, who, action, &p), Err(SenseReason::InvalidFieldInParameterList(Field::bit(20, 3))));
    }
    let mut p = spec_i_pt(5, 0, &[]);
    p[0..8].copy_from_slice(&0x77u64.to_be_bytes());
    assert_eq!(
        send(&mut pr, &a, PrOutAction::Register, &p),
        Err(SenseReason::InvalidFieldInParameterList(Field::bit(20, 3)))
    );
    assert_eq!(pr.reserve_in(PrInAction::ReadFullStatus), before);
}

#[test]
fn spec_i_pt_with_a_bad_list_changes_nothing() {
    let (a, b) = (nexus_id(1), nexus_id(2));
    let mut pr = PrState::default();
    let good = spec_i_pt(9, 0, &[tid(&b.initiator_name, Some(b.isid)), tid("iqn.2026-11.test:init3", None)]);
    // The list ends before the TRANSPORTID PARAMETER DATA LENGTH says.
    for cut in [28, 29, 40, good.len() - 4, good.len() - 1] {
        assert_eq!(send(&mut pr, &a, PrOutAction::Register, &good[..cut]), Err(SenseReason::ParameterListLength));
    }
    // Data-Out shorter than the parameter list length.
    let short = Bytes::copy_from_slice(&good[..good.len() - 8]);
    assert_eq!(
        pr.reserve_out(&a, PrOutAction::Register, 0, good.len() as u32, &short, &mut UaTable::default()),
        Err(SenseReason::ParameterListLength)
    );
    // A TRANSPORTID PARAMETER DATA LENGTH that cuts the second TransportID short.
    let mut cut = good.clone();
    let tpdl = u32::from_be_bytes(cut[24..28].try_into().unwrap()) - 4;
    cut[24..28].copy_from_slice(&tpdl.to_be_bytes());
    assert!(matches!(send(&mut pr, &a, PrOutAction::Register, &cut), Err(SenseReason::InvalidFieldInParameterList(_))));
    // Odd lengths, other protocols and formats, a name without its NUL.
    let first = tid(&b.initiator_name, Some(b.isid));
    let mut odd = first.clone();
    odd[3] -= 1;
    let mut fc = first.clone();
    fc[0] = 0x01;
    let mut fmt = first.clone();
    fmt[0] = 0x85;
    let mut no_nul = vec![0x05, 0, 0, 8];
    no_nul.extend_from_slice(b"iqn.abcd");
    let mut no_isid = vec![0x45, 0, 0, 20];
    no_isid.extend_from_slice(b"iqn.2026-11.test:x\0\0");
    let mut bad_isid = vec![0x45, 0, 0, 24];
    bad_isid.extend_from_slice(b"iqn.2026-11.t,i,0xzz\0\0\0\0");
    for t in [odd, fc, fmt, no_nul, no_isid, bad_isid, vec![0x05, 0], vec![0x05, 0, 0, 0]] {
        let p = spec_i_pt(9, 0, std::slice::from_ref(&t));
        assert!(
            matches!(send(&mut pr, &a, PrOutAction::Register, &p), Err(SenseReason::InvalidFieldInParameterList(_))),
            "{t:?}"
        );
    }
    assert_eq!(key_count(&pr), 0);
    assert_eq!(pr.generation, 0);
    assert!(!pr.registered(&a));
    send(&mut pr, &a, PrOutAction::Register, &good).unwrap();
    assert_eq!(key_count(&pr), 3);
}

#[test]
fn all_tg_pt_registers_every_target_port() {
    let (a, b) = (nexus_id(1), nexus_id(2));
    let a2 = via(&a, 2);
    let mut pr = PrState::default();
    let mut p = params(0, 0x11).to_vec();
    p[20] = 0x04;
    send(&mut pr, &a, PrOutAction::Register, &p).unwrap();
    out(&mut pr, &b, PrOutAction::Register, 0, 0, 0x22).unwrap();
    assert!(pr.registered(&a2) && pr.registered(&via(&a, 7)));
    assert!(!pr.registered(&via(&b, 2)));
    assert_eq!(key_count(&pr), 2);
    // Through port 2 `a` is registered under the same key: it may reserve.
    out(&mut pr, &a2, PrOutAction::Reserve, 6, 0x11, 0).unwrap();
    assert!(pr.check(&a, &WRITE).is_ok());
    assert_eq!(pr.check(&via(&b, 2), &READ), Err(SenseReason::ReservationConflict));
    let full = pr.reserve_in(PrInAction::ReadFullStatus);
    // First descriptor: ALL_TG_PT and R_HOLDER, type 6, RELATIVE TARGET PORT IDENTIFIER 0.
    assert_eq!(&full[8 + 12..8 + 14], &[0x03, 6]);
    assert_eq!(&full[8 + 18..8 + 20], &[0, 0]);
    let next = 8 + 24 + u32::from_be_bytes(full[8 + 20..8 + 24].try_into().unwrap()) as usize;
    assert_eq!(&full[next + 12..next + 14], &[0, 0]);
    assert_eq!(&full[next + 18..next + 20], &[0, 1]);
    // Unregistering through port 1 ends the registration on every port,
    // and with it the reservation of the port 2 nexus.
    let mut ua = UaTable::default();
    let _ = ua.take(&b);
    out(&mut pr, &b, PrOutAction::Register, 0, 0x22, 0x22).unwrap();
    pr.reserve_out(&a, PrOutAction::Register, 0, 24, &params(0x11, 0), &mut ua).unwrap();
    assert!(!pr.registered(&a2));
    assert!(pr.reservation.is_none());
    assert_eq!(ua.take(&b), Some(UnitAttention::ReservationsReleased));
    // An initiator port registered on one port: REGISTER with ALL_TG_PT from
    // another conflicts, REGISTER AND IGNORE EXISTING KEY takes it over.
    out(&mut pr, &a, PrOutAction::Register, 0, 0, 0x31).unwrap();
    let mut p = params(0, 0x32).to_vec();
    p[20] = 0x04;
    assert_eq!(send(&mut pr, &a2, PrOutAction::Register, &p), Err(SenseReason::ReservationConflict));
    send(&mut pr, &a2, PrOutAction::RegisterAndIgnore, &p).unwrap();
    assert_eq!(key_count(&pr), 2);
    assert_eq!(pr.registrations.iter().find(|r| r.takes_in(&a)).map(|r| (r.key, r.target_port)), Some((0x32, None)));
}

#[test]
fn register_and_move_hands_the_reservation_over() {
    let (a, b, c) = (nexus_id(1), nexus_id(2), nexus_id(3));
    let b2 = via(&b, 2);
    let mut pr = PrState::default();
    out(&mut pr, &a, PrOutAction::Register, 0, 0, 0x11).unwrap();
    out(&mut pr, &c, PrOutAction::Register, 0, 0, 0x33).unwrap();
    out(&mut pr, &a, PrOutAction::Reserve, 1, 0x11, 0).unwrap();
    let gen = pr.generation;
    // To b on target port 2, which was not registered; a stays registered.
    let p = move_params(0x11, 0x22, false, 2, &tid(&b.initiator_name, Some(b.isid)));
    send(&mut pr, &a, PrOutAction::RegisterAndMove, &p).unwrap();
    assert_eq!(pr.generation, gen + 1);
    assert!(pr.registered(&b2) && !pr.registered(&b));
    assert!(pr.check(&b2, &WRITE).is_ok());
    assert_eq!(pr.check(&a, &WRITE), Err(SenseReason::ReservationConflict));
    assert!(pr.check(&a, &READ).is_ok());
    let rr = pr.reserve_in(PrInAction::ReadReservation);
    assert_eq!(&rr[8..16], &0x22u64.to_be_bytes());
    assert_eq!(rr[8 + 13], 1);
    assert_eq!(key_count(&pr), 3);
    // b moves it on to c, which keeps its registration with the new key, and
    // unregisters itself.
    let p = move_params(0x22, 0x34, true, 1, &tid(&c.initiator_name, Some(c.isid)));
    send(&mut pr, &b2, PrOutAction::RegisterAndMove, &p).unwrap();
    assert!(!pr.registered(&b2));
    assert!(pr.holds(&c));
    assert_eq!(pr.reservation.as_ref().map(|r| r.pr_type), Some(PrType::WriteExclusive));
    let rr = pr.reserve_in(PrInAction::ReadReservation);
    assert_eq!(&rr[8..16], &0x34u64.to_be_bytes());
    assert_eq!(key_count(&pr), 2);
    assert_eq!(pr.check(&b2, &WRITE), Err(SenseReason::ReservationConflict));
}

#[test]
fn register_and_move_refusals() {
    let (a, b, c) = (nexus_id(1), nexus_id(2), nexus_id(3));
    let to_c = tid(&c.initiator_name, Some(c.isid));
    let mut pr = PrState::default();
    let p = move_params(0x11, 0x22, false, 1, &to_c);
    // Unregistered sender.
    assert_eq!(send(&mut pr, &a, PrOutAction::RegisterAndMove, &p), Err(SenseReason::ReservationConflict));
    out(&mut pr, &a, PrOutAction::Register, 0, 0, 0x11).unwrap();
    out(&mut pr, &b, PrOutAction::Register, 0, 0, 0x22).unwrap();
    // No reservation.
    assert_eq!(
        send(&mut pr, &a, PrOutAction::RegisterAndMove, &p),
        Err(SenseReason::InvalidFieldInCdb(Field::bit(1, 4)))
    );
    out(&mut pr, &a, PrOutAction::Reserve, 3, 0x11, 0).unwrap();
    let before = pr.reserve_in(PrInAction::ReadFullStatus);
    // A registered non-holder, and the holder with the wrong key.
    let from_b = move_params(0x22, 0x22, false, 1, &to_c);
    assert_eq!(send(&mut pr, &b, PrOutAction::RegisterAndMove, &from_b), Err(SenseReason::ReservationConflict));
    let wrong_key = move_params(0x12, 0x22, false, 1, &to_c);
    assert_eq!(send(&mut pr, &a, PrOutAction::RegisterAndMove, &wrong_key), Err(SenseReason::ReservationConflict));
    // Zero service action key, the sender's own initiator port, port 0.
    let bad = [
        move_params(0x11, 0, false, 1, &to_c),
        move_params(0x11, 0x22, false, 2, &tid(&a.initiator_name, Some(a.isid))),
        move_params(0x11, 0x22, false, 1, &tid(&a.initiator_name, None)),
        move_params(0x11, 0x22, false, 0, &to_c),
    ];
    for p in &bad {
        assert!(matches!(
            send(&mut pr, &a, PrOutAction::RegisterAndMove, p),
            Err(SenseReason::InvalidFieldInParameterList(_))
        ));
    }
    // A TRANSPORTID LENGTH beyond the parameter list, or cutting the TransportID.
    let mut long = p.clone();
    long[20..24].copy_from_slice(&((to_c.len() + 4) as u32).to_be_bytes());
    assert_eq!(send(&mut pr, &a, PrOutAction::RegisterAndMove, &long), Err(SenseReason::ParameterListLength));
    assert_eq!(send(&mut pr, &a, PrOutAction::RegisterAndMove, &p[..20]), Err(SenseReason::ParameterListLength));
    let mut cut = p.clone();
    cut[20..24].copy_from_slice(&((to_c.len() - 4) as u32).to_be_bytes());
    assert!(matches!(
        send(&mut pr, &a, PrOutAction::RegisterAndMove, &cut),
        Err(SenseReason::InvalidFieldInParameterList(_))
    ));
    assert_eq!(pr.reserve_in(PrInAction::ReadFullStatus), before);
    // All-registrants reservations do not move.
    out(&mut pr, &a, PrOutAction::Release, 3, 0x11, 0).unwrap();
    out(&mut pr, &a, PrOutAction::Reserve, 7, 0x11, 0).unwrap();
    assert_eq!(send(&mut pr, &a, PrOutAction::RegisterAndMove, &p), Err(SenseReason::ReservationConflict));
}

#[test]
fn report_capabilities_bits() {
    let mut pr = PrState::default();
    let caps = pr.reserve_in(PrInAction::ReportCapabilities);
    assert_eq!(caps.len(), 8);
    assert_eq!(&caps[0..2], &[0, 8]);
    // SIP_C, ATP_C and PTPL_C; no CRH, no RLR_C.
    assert_eq!(caps[2], 0x08 | 0x04 | 0x01);
    // TMV, ALLOW COMMANDS 000b, PTPL_A clear.
    assert_eq!(caps[3], 0x80);
    // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX; EX_AC_AR.
    assert_eq!(&caps[4..6], &[0xea, 0x01]);
    let mut p = params(0, 1).to_vec();
    p[20] = 0x01;
    send(&mut pr, &nexus_id(1), PrOutAction::Register, &p).unwrap();
    assert_eq!(pr.reserve_in(PrInAction::ReportCapabilities)[3], 0x81);
}

#[test]
fn spec_i_pt_lists_and_registrations_are_capped() {
    let mut pr = PrState::default();
    let a = nexus_id(1);
    // One TransportID too many: nothing is registered, not even the sender.
    let many: Vec<Vec<u8>> = (0..=MAX_SPEC_I_PT).map(|k| tid(&format!("iqn.2026-11.test:many{k}"), None)).collect();
    let p = spec_i_pt(7, 0, &many);
    assert_eq!(send(&mut pr, &a, PrOutAction::Register, &p), Err(SenseReason::InsufficientRegistrationResources));
    assert!(pr.registrations.is_empty());
    // Exactly the cap is fine, and it is checked in linear time.
    let p = spec_i_pt(7, 0, &many[..MAX_SPEC_I_PT]);
    send(&mut pr, &a, PrOutAction::Register, &p).unwrap();
    assert_eq!(pr.registrations.len(), MAX_SPEC_I_PT + 1);
    // Fill the unit up to its cap with registrations of their own.
    let mut k = 0u32;
    while pr.registrations.len() < MAX_REGISTRATIONS {
        let mut id = nexus_id(2);
        id.initiator_name = Arc::from(format!("iqn.2026-11.test:filler{k}"));
        out(&mut pr, &id, PrOutAction::Register, 0, 0, 9).unwrap();
        k += 1;
    }
    let mut one_more = nexus_id(3);
    one_more.initiator_name = Arc::from("iqn.2026-11.test:one-more");
    assert_eq!(
        out(&mut pr, &one_more, PrOutAction::Register, 0, 0, 9),
        Err(SenseReason::InsufficientRegistrationResources)
    );
    assert_eq!(pr.registrations.len(), MAX_REGISTRATIONS);
    // A registered nexus may still change or drop its key.
    out(&mut pr, &a, PrOutAction::Register, 0, 7, 8).unwrap();
}

#[test]
fn transport_ids_must_carry_iscsi_names() {
    let mut pr = PrState::default();
    let a = nexus_id(1);
    for bad in ["not-a-name", "iqn.2026-11.test:a b", "iqn.2026-11.test:\u{1b}[2J"] {
        let p = spec_i_pt(7, 0, &[tid(bad, None)]);
        assert!(matches!(
            send(&mut pr, &a, PrOutAction::Register, &p),
            Err(SenseReason::InvalidFieldInParameterList(_))
        ));
    }
    assert!(pr.registrations.is_empty());
}

proptest::proptest! {
    /// Whatever SPEC_I_PT list arrives, the registrations stay within their
    /// cap and never overlap.
    #[test]
    fn spec_i_pt_lists_keep_the_rules(
        names in proptest::collection::vec((0u8..40, proptest::option::of(0u8..4)), 0..80),
        all_tg_pt in proptest::prelude::any::<bool>(),
    ) {
        let mut pr = PrState::default();
        let tids: Vec<Vec<u8>> = names
            .iter()
            .map(|(n, isid)| tid(&format!("iqn.2026-11.test:p{n}"), isid.map(|i| [0x80, 0, 0, 0, 0, i])))
            .collect();
        let p = spec_i_pt(5, if all_tg_pt { 0x04 } else { 0 }, &tids);
        let _ = send(&mut pr, &nexus_id(1), PrOutAction::Register, &p);
        proptest::prop_assert!(pr.validate().is_ok());
        proptest::prop_assert!(pr.registrations.len() <= MAX_REGISTRATIONS);
    }

    #[test]
    fn odd_parameter_lists_never_panic(
        action in 0usize..8,
        head in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
        param_len in 0u32..160,
    ) {
        let actions = [
            PrOutAction::Register,
            PrOutAction::Reserve,
            PrOutAction::Release,
            PrOutAction::Clear,
            PrOutAction::Preempt,
            PrOutAction::PreemptAndAbort,
            PrOutAction::RegisterAndIgnore,
            PrOutAction::RegisterAndMove,
        ];
        let mut pr = PrState::default();
        let a = nexus_id(1);
        out(&mut pr, &a, PrOutAction::Register, 0, 0, 1).unwrap();
        out(&mut pr, &a, PrOutAction::Reserve, 1, 1, 0).unwrap();
        let mut data = head;
        data.extend(tail);
        let _ = pr.reserve_out(&a, actions[action], 1, param_len, &Bytes::from(data), &mut UaTable::default());
        proptest::prop_assert!(pr.validate().is_ok());
    }
}
