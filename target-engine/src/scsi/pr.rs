//! Reservations: persistent ones (SPC-4 §5.13: PERSISTENT RESERVE IN
//! §6.15, PERSISTENT RESERVE OUT §6.16), the older RESERVE(6)/RELEASE(6)
//! kind (SPC-2 §5.5), and the conflict check the unit runs before every
//! command (SPC-4 table 45, SBC-3 table 13, SPC-2 table 10).
//!
//! Scope is the logical unit; registrations are per I_T nexus (no
//! ALL_TG_PT, no SPEC_I_PT). With APTPL (§5.13.5) the last REGISTER's bit
//! decides whether the state survives a restart; saving it is
//! [`super::aptpl`]'s job.
//! PREEMPT AND ABORT preempts like PREEMPT; aborting the preempted nexuses'
//! tasks is left to the transport.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::cdb::{Cdb, PrInAction, PrOutAction};
use super::sense::{Field, SenseReason, UnitAttention};
use super::ua::UaTable;
use super::NexusId;

/// Reservation types (SPC-4 table 171).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PrType {
    WriteExclusive = 1,
    ExclusiveAccess = 3,
    WriteExclusiveRegistrantsOnly = 5,
    ExclusiveAccessRegistrantsOnly = 6,
    WriteExclusiveAllRegistrants = 7,
    ExclusiveAccessAllRegistrants = 8,
}

impl PrType {
    pub(super) fn from_field(t: u8) -> Option<PrType> {
        Some(match t {
            1 => PrType::WriteExclusive,
            3 => PrType::ExclusiveAccess,
            5 => PrType::WriteExclusiveRegistrantsOnly,
            6 => PrType::ExclusiveAccessRegistrantsOnly,
            7 => PrType::WriteExclusiveAllRegistrants,
            8 => PrType::ExclusiveAccessAllRegistrants,
            _ => return None,
        })
    }

    /// Every registrant holds an all-registrants reservation.
    fn all_registrants(self) -> bool {
        matches!(self, PrType::WriteExclusiveAllRegistrants | PrType::ExclusiveAccessAllRegistrants)
    }

    /// Registrants get full access under registrants-only and all-registrants types.
    fn registrants_have_access(self) -> bool {
        !matches!(self, PrType::WriteExclusive | PrType::ExclusiveAccess)
    }

    /// Others may still read under the write-exclusive types.
    fn others_may_read(self) -> bool {
        matches!(
            self,
            PrType::WriteExclusive | PrType::WriteExclusiveRegistrantsOnly | PrType::WriteExclusiveAllRegistrants
        )
    }
}

#[derive(Clone, Debug)]
pub(super) struct Reservation {
    /// The holder; for all-registrants types every registrant holds it.
    pub holder: NexusId,
    pub pr_type: PrType,
}

/// Registrations and the reservation of one logical unit.
#[derive(Debug, Default)]
pub(crate) struct PrState {
    pub(super) generation: u32,
    pub(super) keys: BTreeMap<NexusId, u64>,
    pub(super) reservation: Option<Reservation>,
    /// ACTIVATE PERSIST THROUGH POWER LOSS, from the last REGISTER.
    pub(super) aptpl: bool,
    /// The holder of an SPC-2 RESERVE(6) reservation.
    spc2_holder: Option<NexusId>,
}

/// How a command fares under a reservation it does not hold.
enum Access {
    Always,
    Read,
    Write,
}

fn access(cdb: &Cdb) -> Access {
    match cdb {
        Cdb::Inquiry { .. }
        | Cdb::ReportLuns { .. }
        | Cdb::RequestSense { .. }
        | Cdb::ReportSupportedOpcodes { .. }
        | Cdb::ReportSupportedTmfs { .. }
        | Cdb::ReportTargetPortGroups { .. }
        | Cdb::PersistentReserveIn { .. }
        | Cdb::PersistentReserveOut { .. }
        | Cdb::TestUnitReady
        | Cdb::ReadCapacity10
        | Cdb::ReadCapacity16 { .. }
        | Cdb::GetLbaStatus { .. } => Access::Always,
        Cdb::Read { .. }
        | Cdb::Verify { .. }
        | Cdb::PreFetch { .. }
        | Cdb::ModeSense { .. }
        | Cdb::ReadDefectData { .. }
        | Cdb::ReceiveCopyResults { .. } => Access::Read,
        _ => Access::Write,
    }
}

impl PrState {
    fn holds(&self, id: &NexusId) -> bool {
        match &self.reservation {
            Some(r) if r.pr_type.all_registrants() => self.keys.contains_key(id),
            Some(r) => &r.holder == id,
            None => false,
        }
    }

    /// RESERVATION CONFLICT unless `id` may run `cdb` under the current reservation.
    pub fn check(&self, id: &NexusId, cdb: &Cdb) -> Result<(), SenseReason> {
        if let Some(holder) = &self.spc2_holder {
            let allowed = matches!(
                cdb,
                Cdb::Inquiry { .. }
                    | Cdb::ReportLuns { .. }
                    | Cdb::RequestSense { .. }
                    | Cdb::ReportSupportedOpcodes { .. }
                    | Cdb::ReportSupportedTmfs { .. }
                    | Cdb::PersistentReserveIn { .. }
                    | Cdb::Release6
            );
            if holder != id && !allowed {
                return Err(SenseReason::ReservationConflict);
            }
        }
        let Some(r) = &self.reservation else { return Ok(()) };
        if self.holds(id) || (r.pr_type.registrants_have_access() && self.keys.contains_key(id)) {
            return Ok(());
        }
        match access(cdb) {
            Access::Always => Ok(()),
            Access::Read if r.pr_type.others_may_read() => Ok(()),
            _ => Err(SenseReason::ReservationConflict),
        }
    }

    /// RESERVE(6): refused while persistent reservations are in use or
    /// another nexus holds the unit.
    pub fn reserve6(&mut self, id: &NexusId) -> Result<(), SenseReason> {
        if !self.keys.is_empty() || self.reservation.is_some() {
            return Err(SenseReason::ReservationConflict);
        }
        match &self.spc2_holder {
            Some(h) if h != id => Err(SenseReason::ReservationConflict),
            _ => {
                self.spc2_holder = Some(id.clone());
                Ok(())
            }
        }
    }

    /// RELEASE(6): only the holder's release does anything.
    pub fn release6(&mut self, id: &NexusId) {
        if self.spc2_holder.as_ref() == Some(id) {
            self.spc2_holder = None;
        }
    }

    /// A LOGICAL UNIT RESET or the holder's I_T nexus loss ends an SPC-2
    /// reservation (SPC-2 §5.5.1); persistent reservations survive both.
    pub fn drop_spc2(&mut self, lost: Option<&NexusId>) {
        if lost.is_none() || self.spc2_holder.as_ref() == lost {
            self.spc2_holder = None;
        }
    }

    /// Drops `id`'s registration, releasing a reservation it alone held.
    fn unregister(&mut self, id: &NexusId, ua: &mut UaTable) {
        self.keys.remove(id);
        let Some(r) = &self.reservation else { return };
        let released = if r.pr_type.all_registrants() { self.keys.is_empty() } else { &r.holder == id };
        if released {
            let notify = r.pr_type.registrants_have_access();
            self.reservation = None;
            if notify {
                for other in self.keys.keys() {
                    ua.raise(other, UnitAttention::ReservationsReleased);
                }
            }
        }
    }

    /// Removes every registration with `key` except `keep`'s, telling each
    /// removed nexus; returns whether any was removed.
    fn preempt_key(&mut self, key: u64, keep: &NexusId, ua: &mut UaTable) -> bool {
        let victims: Vec<NexusId> =
            self.keys.iter().filter(|(id, k)| **k == key && *id != keep).map(|(id, _)| id.clone()).collect();
        for v in &victims {
            self.keys.remove(v);
            ua.raise(v, UnitAttention::RegistrationsPreempted);
        }
        !victims.is_empty()
    }

    /// PERSISTENT RESERVE OUT with its parameter list.
    pub fn reserve_out(
        &mut self,
        id: &NexusId,
        action: PrOutAction,
        pr_type: u8,
        param_len: u32,
        data: &Bytes,
        ua: &mut UaTable,
    ) -> Result<(), SenseReason> {
        if param_len != 24 || data.len() < 24 {
            return Err(SenseReason::ParameterListLength);
        }
        let key = u64::from_be_bytes(data[0..8].try_into().expect("8 bytes"));
        let sa_key = u64::from_be_bytes(data[8..16].try_into().expect("8 bytes"));
        let flags = data[20];
        if flags & 0x08 != 0 {
            return Err(SenseReason::InvalidFieldInParameterList(Field::bit(20, 3)));
            // SPEC_I_PT
        }
        if flags & 0x04 != 0 {
            return Err(SenseReason::InvalidFieldInParameterList(Field::bit(20, 2)));
            // ALL_TG_PT
        }
        let aptpl = flags & 0x01 != 0;
        let mine = self.keys.get(id).copied();
        if action == PrOutAction::RegisterAndIgnore || action == PrOutAction::Register {
            if action == PrOutAction::Register && mine.unwrap_or(0) != key {
                return Err(SenseReason::ReservationConflict);
            }
            if sa_key == 0 {
                if mine.is_some() {
                    self.unregister(id, ua);
                    self.generation = self.generation.wrapping_add(1);
                }
            } else {
                self.keys.insert(id.clone(), sa_key);
                self.generation = self.generation.wrapping_add(1);
            }
            // SPC-4 §5.13.5: the most recent REGISTER's APTPL applies to the whole state.
            self.aptpl = aptpl;
            return Ok(());
        }
        // Every other action needs a registration under the given key.
        if mine != Some(key) {
            return Err(SenseReason::ReservationConflict);
        }
        let typed = || PrType::from_field(pr_type).ok_or(SenseReason::InvalidFieldInCdb(Field::byte(2)));
        match action {
            PrOutAction::Reserve => {
                let t = typed()?;
                match &self.reservation {
                    None => self.reservation = Some(Reservation { holder: id.clone(), pr_type: t }),
                    Some(r) if self.holds(id) && r.pr_type == t => {}
                    Some(_) => return Err(SenseReason::ReservationConflict),
                }
            }
            PrOutAction::Release => {
                let Some(r) = &self.reservation else { return Ok(()) };
                if !self.holds(id) {
                    return Ok(());
                }
                if PrType::from_field(pr_type) != Some(r.pr_type) {
                    return Err(SenseReason::InvalidRelease);
                }
                let notify = r.pr_type.registrants_have_access();
                self.reservation = None;
                if notify {
                    for other in self.keys.keys().filter(|k| *k != id) {
                        ua.raise(other, UnitAttention::ReservationsReleased);
                    }
                }
            }
            PrOutAction::Clear => {
                for other in self.keys.keys().filter(|k| *k != id) {
                    ua.raise(other, UnitAttention::ReservationsPreempted);
                }
                self.keys.clear();
                self.reservation = None;
                self.generation = self.generation.wrapping_add(1);
            }
            PrOutAction::Preempt | PrOutAction::PreemptAndAbort => {
                let t = typed()?;
                match self.reservation.clone() {
                    Some(r) if r.pr_type.all_registrants() => {
                        if sa_key == 0 {
                            // Everyone else loses; the preempter reserves anew.
                            let others: Vec<NexusId> = self.keys.keys().filter(|k| *k != id).cloned().collect();
                            for o in others {
                                self.keys.remove(&o);
                                ua.raise(&o, UnitAttention::RegistrationsPreempted);
                            }
                            self.reservation = Some(Reservation { holder: id.clone(), pr_type: t });
                        } else {
                            self.preempt_key(sa_key, id, ua);
                        }
                    }
                    Some(r) if self.keys.get(&r.holder) == Some(&sa_key) => {
                        self.preempt_key(sa_key, id, ua);
                        self.reservation = Some(Reservation { holder: id.clone(), pr_type: t });
                    }
                    _ => {
                        if sa_key == 0 {
                            return Err(SenseReason::InvalidFieldInParameterList(Field::byte(8)));
                        }
                        if !self.preempt_key(sa_key, id, ua) {
                            return Err(SenseReason::ReservationConflict);
                        }
                    }
                }
                self.generation = self.generation.wrapping_add(1);
            }
            PrOutAction::Register | PrOutAction::RegisterAndIgnore => unreachable!("handled above"),
        }
        Ok(())
    }

    /// PERSISTENT RESERVE IN parameter data (before allocation-length cutting).
    pub fn reserve_in(&self, action: PrInAction) -> Vec<u8> {
        let mut d = self.generation.to_be_bytes().to_vec();
        d.extend_from_slice(&[0; 4]);
        match action {
            PrInAction::ReadKeys => {
                for k in self.keys.values() {
                    d.extend_from_slice(&k.to_be_bytes());
                }
            }
            PrInAction::ReadReservation => {
                if let Some(r) = &self.reservation {
                    // All-registrants reservations report key 0 (SPC-4 §6.15.3.3).
                    let key =
                        if r.pr_type.all_registrants() { 0 } else { self.keys.get(&r.holder).copied().unwrap_or(0) };
                    d.extend_from_slice(&key.to_be_bytes());
                    d.extend_from_slice(&[0; 5]);
                    d.push(r.pr_type as u8);
                    d.extend_from_slice(&[0; 2]);
                }
            }
            PrInAction::ReportCapabilities => {
                // LENGTH 8, PTPL_C, TMV with every type, PTPL_A as last
                // registered; no SIP_C/ATP_C.
                return vec![0x00, 0x08, 0x01, 0x80 | u8::from(self.aptpl), 0xea, 0x01, 0x00, 0x00];
            }
            PrInAction::ReadFullStatus => {
                for (id, key) in &self.keys {
                    let tid = transport_id(id);
                    d.extend_from_slice(&key.to_be_bytes());
                    d.extend_from_slice(&[0; 4]);
                    let (holder, scope_type) = match &self.reservation {
                        Some(r) if self.holds(id) => (0x01, r.pr_type as u8),
                        _ => (0, 0),
                    };
                    d.push(holder);
                    d.push(scope_type);
                    d.extend_from_slice(&[0; 4]);
                    d.extend_from_slice(&id.relative_target_port.to_be_bytes());
                    d.extend_from_slice(&(tid.len() as u32).to_be_bytes());
                    d.extend_from_slice(&tid);
                }
            }
        }
        let n = (d.len() - 8) as u32;
        d[4..8].copy_from_slice(&n.to_be_bytes());
        d
    }
}

/// An iSCSI TransportID with ISID (SPC-4 §7.6.4.6, format 01b).
fn transport_id(id: &NexusId) -> Vec<u8> {
    let isid: String = id.isid.iter().map(|b| format!("{b:02x}")).collect();
    let mut name = format!("{},i,0x{}", id.initiator_name, isid).into_bytes();
    name.push(0);
    while !name.len().is_multiple_of(4) {
        name.push(0);
    }
    let mut t = vec![0x40 | 0x05, 0];
    t.extend_from_slice(&(name.len() as u16).to_be_bytes());
    t.extend_from_slice(&name);
    t
}

#[cfg(test)]
mod tests {
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
        pr.reserve_out(id, a, t, 24, &params(key, sa_key), &mut UaTable::default())
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
        assert!(pr.check(&b, &Cdb::Release6).is_ok());
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
}
