//! Reservations: persistent ones (SPC-4 §5.13: PERSISTENT RESERVE IN
//! §6.15, PERSISTENT RESERVE OUT §6.16), the older RESERVE(6)/RELEASE(6)
//! kind (SPC-2 §5.5), and the conflict check the unit runs before every
//! command (SPC-4 table 45, SBC-3 table 13, SPC-2 table 10).
//!
//! Scope is the logical unit. A registration (§5.13.7) is held for an
//! initiator port (iSCSI name + ISID, names compared without regard to
//! ASCII case) on one target port (its relative target port identifier) or,
//! with ALL_TG_PT, on every target port; an I_T nexus ([`NexusId`]) is
//! registered when a registration covers both its ports. Target names and
//! portal group tags play no part, so the state needs nothing but what a
//! nexus and a TransportID carry. Registrations never overlap: at most one
//! covers any nexus, and READ KEYS and READ FULL STATUS (§6.15.5: ALL_TG_PT,
//! relative target port identifier 0 for all ports, TransportID) list each
//! once. REPORT CAPABILITIES (§6.15.4) sets SIP_C, ATP_C and PTPL_C.
//!
//! * REGISTER with SPEC_I_PT (§6.16.3, tables 67 and 215) also registers
//!   every initiator port named by an iSCSI TransportID (§7.6.4.6: format
//!   00b, name only, stands for every ISID of that name; 01b is name +
//!   ",i,0x" + ISID), on the sender's target port or, with ALL_TG_PT, on
//!   all. It is all or nothing: a list running past the parameter list is
//!   PARAMETER LIST LENGTH ERROR; a truncated or malformed TransportID, or a
//!   named port already registered (table 67, footnote b), is INVALID FIELD
//!   IN PARAMETER LIST, and nothing changes. SPEC_I_PT from a registered
//!   nexus, or with any other service action (REGISTER AND IGNORE EXISTING
//!   KEY included, table 69), is INVALID FIELD IN PARAMETER LIST.
//! * ALL_TG_PT only shapes a new registration (other service actions ignore
//!   it); a registered nexus changes or removes its registration as it is.
//!   When the sender's initiator port is registered through other target
//!   ports already, REGISTER with ALL_TG_PT conflicts and REGISTER AND
//!   IGNORE EXISTING KEY takes those registrations over.
//! * REGISTER AND MOVE (§5.13.8, parameter list §6.16.4) registers the
//!   I_T nexus named by a TransportID and a relative target port identifier
//!   with the service action reservation key (or re-keys its registration),
//!   moves the reservation there with its type, and with UNREG unregisters
//!   the sender. As table 70 says, an unregistered sender, a non-holder, a
//!   wrong key and an all-registrants reservation get RESERVATION CONFLICT;
//!   no reservation, INVALID FIELD IN CDB; a zero service action key or the
//!   sender's own initiator port, INVALID FIELD IN PARAMETER LIST (so does
//!   a destination whose registration is the sender's, or port 0). Whether
//!   the target port exists is not checked: the state does not know the
//!   unit's ports.
//! * The reservation holder is an initiator port on one target port (the
//!   nexus that reserved, or a REGISTER AND MOVE destination); for the
//!   all-registrants types every registered nexus holds it.
//!
//! With APTPL (§5.13.5) the last REGISTER's (or REGISTER AND MOVE's) bit
//! decides whether the state survives a restart; saving it is
//! [`super::aptpl`]'s job. PREEMPT AND ABORT preempts like PREEMPT; the
//! unit then has the preempted nexuses' tasks aborted through their
//! transports (`LogicalUnit::abort_tasks_where`, §5.13.11.2.6).
//!
//! Resources are bounded whatever a parameter list says: a unit keeps at
//! most [`MAX_REGISTRATIONS`] registrations and one SPEC_I_PT list names at
//! most [`MAX_SPEC_I_PT`] initiator ports; beyond either the command is
//! INSUFFICIENT REGISTRATION RESOURCES and nothing changes. New
//! registrations are checked for overlap through an index by initiator
//! name, so a long list costs linear time.
//!
//! Unit attentions about registrations go to every nexus of the unit that
//! they cover, including those registered by another initiator's SPEC_I_PT
//! or ALL_TG_PT; a nexus the unit has not seen yet gets POWER ON, RESET
//! first, which implies them.

use std::collections::HashMap;

use bytes::Bytes;

use super::cdb::{Cdb, PrInAction, PrOutAction};
use super::sense::{Field, SenseReason, UnitAttention};
use super::ua::UaTable;
use super::NexusId;

mod status;
mod transport_id;

pub use status::{RegistrationStatus, ReservationStatus};

pub(super) use transport_id::{isid_hex, parse_isid, InitiatorPort};
use transport_id::{parse_transport_id, parse_transport_ids};

/// Registrations one unit keeps (a 64-host cluster with 8 paths each needs 512).
pub(crate) const MAX_REGISTRATIONS: usize = 1024;
/// Initiator ports one REGISTER with SPEC_I_PT may name.
pub(crate) const MAX_SPEC_I_PT: usize = 256;

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

/// One registration (SPC-4 §5.13.7): a reservation key for an initiator
/// port on one target port or on all of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Registration {
    pub initiator: InitiatorPort,
    /// The relative target port identifier; `None` for all target ports (ALL_TG_PT).
    pub target_port: Option<u16>,
    pub key: u64,
}

impl Registration {
    /// Whether `id` is registered by this.
    pub(super) fn takes_in(&self, id: &NexusId) -> bool {
        self.initiator.takes_in(id) && self.target_port.is_none_or(|p| p == id.relative_target_port)
    }

    /// Whether this registers every nexus of `port` on target port `target_port`.
    fn covers(&self, port: &InitiatorPort, target_port: u16) -> bool {
        self.initiator.covers(port) && self.target_port.is_none_or(|p| p == target_port)
    }

    /// Whether some nexus is registered both by this and by `other`.
    fn overlaps(&self, other: &Registration) -> bool {
        self.initiator.overlaps(&other.initiator)
            && (self.target_port.is_none() || other.target_port.is_none() || self.target_port == other.target_port)
    }
}

/// The registrations of a unit by initiator name (in its normal form, so
/// case does not matter), for overlap checks in time linear in a list.
struct RegistrationIndex {
    /// For each name, the (ISID, target port) of its registrations.
    by_name: HashMap<String, Vec<PortPair>>,
}

/// An ISID (or any) and a relative target port identifier (or all).
type PortPair = (Option<[u8; 6]>, Option<u16>);

impl RegistrationIndex {
    fn of<'a>(regs: impl Iterator<Item = &'a Registration>) -> Self {
        let mut index = RegistrationIndex { by_name: HashMap::new() };
        for r in regs {
            index.add(r);
        }
        index
    }

    fn add(&mut self, r: &Registration) {
        self.by_name.entry(r.initiator.name.to_ascii_lowercase()).or_default().push((r.initiator.isid, r.target_port));
    }

    /// Whether some registration in the index shares a nexus with `r`.
    fn overlaps(&self, r: &Registration) -> bool {
        let Some(same_name) = self.by_name.get(&r.initiator.name.to_ascii_lowercase()) else { return false };
        same_name.iter().any(|&(isid, port)| {
            (isid.is_none() || r.initiator.isid.is_none() || isid == r.initiator.isid)
                && (port.is_none() || r.target_port.is_none() || port == r.target_port)
        })
    }
}

/// The I_T nexus that holds a reservation: an initiator port (or, moved
/// there by a name-only TransportID, every port of that name) on one target port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Holder {
    pub initiator: InitiatorPort,
    pub target_port: u16,
}

impl Holder {
    fn of(id: &NexusId) -> Holder {
        Holder { initiator: InitiatorPort::of(id), target_port: id.relative_target_port }
    }

    fn is(&self, id: &NexusId) -> bool {
        self.initiator.takes_in(id) && self.target_port == id.relative_target_port
    }
}

#[derive(Clone, Debug)]
pub(super) struct Reservation {
    /// The holder; for all-registrants types every registrant holds it.
    pub holder: Holder,
    pub pr_type: PrType,
}

/// Registrations and the reservation of one logical unit.
#[derive(Debug, Default, Clone)]
pub(crate) struct PrState {
    pub(super) generation: u32,
    /// In registration order; no two overlap.
    pub(super) registrations: Vec<Registration>,
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

/// INVALID FIELD IN PARAMETER LIST pointing at byte `at`.
fn bad_param(at: usize) -> SenseReason {
    SenseReason::InvalidFieldInParameterList(Field::byte(u16::try_from(at).unwrap_or(u16::MAX)))
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().expect("4 bytes"))
}

/// The basic PERSISTENT RESERVE OUT parameter list (SPC-4 §6.16.3).
struct Params<'a> {
    key: u64,
    sa_key: u64,
    spec_i_pt: bool,
    all_tg_pt: bool,
    aptpl: bool,
    /// The TransportIDs with SPEC_I_PT (from byte 28), else empty.
    transport_ids: &'a [u8],
}

impl PrState {
    /// The registration `id` is registered by.
    fn registration_of(&self, id: &NexusId) -> Option<usize> {
        self.registrations.iter().position(|r| r.takes_in(id))
    }

    fn registered(&self, id: &NexusId) -> bool {
        self.registration_of(id).is_some()
    }

    fn holds(&self, id: &NexusId) -> bool {
        match &self.reservation {
            Some(r) if r.pr_type.all_registrants() => self.registered(id),
            Some(r) => r.holder.is(id),
            None => false,
        }
    }

    /// The registration of the reservation's holder.
    fn holder_registration(&self) -> Option<&Registration> {
        let h = &self.reservation.as_ref()?.holder;
        self.registrations.iter().find(|r| r.covers(&h.initiator, h.target_port))
    }

    /// Raises `ua` for every nexus of the unit `pick` selects (a nexus the
    /// unit has not seen yet starts with POWER ON, RESET, which implies it).
    fn notify(&self, table: &mut UaTable, ua: UnitAttention, pick: impl Fn(&NexusId) -> bool) {
        table.raise_where(ua, pick);
    }

    /// Whether the saved state `aptpl` hands back keeps the rules: nonzero
    /// keys, registrations that do not overlap, a registered holder.
    pub(super) fn validate(&self) -> Result<(), String> {
        for (i, r) in self.registrations.iter().enumerate() {
            if r.key == 0 {
                return Err(format!("zero key for {}", r.initiator.name));
            }
            if self.registrations[..i].iter().any(|o| o.overlaps(r)) {
                return Err(format!("overlapping registrations for {}", r.initiator.name));
            }
        }
        match &self.reservation {
            Some(r) if !r.pr_type.all_registrants() && self.holder_registration().is_none() => {
                Err(format!("reservation holder {} is not registered", r.holder.initiator.name))
            }
            Some(_) if self.registrations.is_empty() => Err("reservation without registrations".into()),
            _ => Ok(()),
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
                    | Cdb::Release
            );
            if holder != id && !allowed {
                return Err(SenseReason::ReservationConflict);
            }
        }
        let Some(r) = &self.reservation else { return Ok(()) };
        if self.holds(id) || (r.pr_type.registrants_have_access() && self.registered(id)) {
            return Ok(());
        }
        match access(cdb) {
            Access::Always => Ok(()),
            Access::Read if r.pr_type.others_may_read() => Ok(()),
            _ => Err(SenseReason::ReservationConflict),
        }
    }

    /// Takes the persistent part of `next` (worked out from a copy of this
    /// state by [`Self::reserve_out`]); the SPC-2 reservation stays as it
    /// is now, since PERSISTENT RESERVE OUT never changes it.
    pub(crate) fn commit(&mut self, next: PrState) {
        let spc2 = self.spc2_holder.take();
        *self = next;
        self.spc2_holder = spc2;
    }

    /// RESERVE(6): refused while persistent reservations are in use or
    /// another nexus holds the unit.
    pub fn reserve6(&mut self, id: &NexusId) -> Result<(), SenseReason> {
        if !self.registrations.is_empty() || self.reservation.is_some() {
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

    /// Drops registration `i`, releasing a reservation it alone backed (SPC-4 §5.13.11.2.3).
    fn unregister(&mut self, i: usize, ua: &mut UaTable) {
        self.registrations.remove(i);
        let Some(t) = self.reservation.as_ref().map(|r| r.pr_type) else { return };
        let released =
            if t.all_registrants() { self.registrations.is_empty() } else { self.holder_registration().is_none() };
        if released {
            self.reservation = None;
            if t.registrants_have_access() {
                self.notify(ua, UnitAttention::ReservationsReleased, |n| self.registered(n));
            }
        }
    }

    /// Removes the registrations `doomed` picks, telling their nexuses;
    /// returns them.
    fn preempt(&mut self, doomed: impl Fn(&Registration) -> bool, ua: &mut UaTable) -> Vec<Registration> {
        let (victims, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.registrations).into_iter().partition(doomed);
        self.registrations = kept;
        for v in &victims {
            self.notify(ua, UnitAttention::RegistrationsPreempted, |n| v.takes_in(n));
        }
        victims
    }

    /// PERSISTENT RESERVE OUT with its parameter list. Returns the
    /// registrations PREEMPT or PREEMPT AND ABORT removed (whose nexuses'
    /// tasks PREEMPT AND ABORT also aborts, §5.13.11.2.6); empty otherwise.
    pub(super) fn reserve_out(
        &mut self,
        id: &NexusId,
        action: PrOutAction,
        pr_type: u8,
        param_len: u32,
        data: &Bytes,
        ua: &mut UaTable,
    ) -> Result<Vec<Registration>, SenseReason> {
        let data = &data[..data.len().min(param_len as usize)];
        if action == PrOutAction::RegisterAndMove {
            return self.register_and_move(id, data, ua).map(|()| Vec::new());
        }
        if data.len() < 24 {
            return Err(SenseReason::ParameterListLength);
        }
        let flags = data[20];
        let spec_i_pt = flags & 0x08 != 0;
        let transport_ids: &[u8] = if spec_i_pt {
            // SPC-4 §6.16.3: only REGISTER may name other initiator ports.
            if action != PrOutAction::Register || param_len < 28 {
                return Err(SenseReason::InvalidFieldInParameterList(Field::bit(20, 3)));
            }
            let len = data.get(24..28).map(be32).ok_or(SenseReason::ParameterListLength)?;
            data.get(28..).and_then(|rest| rest.get(..len as usize)).ok_or(SenseReason::ParameterListLength)?
        } else {
            if param_len != 24 {
                return Err(SenseReason::ParameterListLength);
            }
            &[]
        };
        let p = Params {
            key: be64(&data[0..8]),
            sa_key: be64(&data[8..16]),
            spec_i_pt,
            // Ignored by every other service action (SPC-4 §6.16.3).
            all_tg_pt: flags & 0x04 != 0,
            aptpl: flags & 0x01 != 0,
            transport_ids,
        };
        match action {
            PrOutAction::Register => return self.register(id, false, &p, ua).map(|()| Vec::new()),
            PrOutAction::RegisterAndIgnore => return self.register(id, true, &p, ua).map(|()| Vec::new()),
            _ => {}
        }
        // Every other action needs a registration under the given key.
        let Some(mine) = self.registration_of(id) else { return Err(SenseReason::ReservationConflict) };
        if self.registrations[mine].key != p.key {
            return Err(SenseReason::ReservationConflict);
        }
        let typed = || PrType::from_field(pr_type).ok_or(SenseReason::InvalidFieldInCdb(Field::byte(2)));
        match action {
            PrOutAction::Reserve => {
                let t = typed()?;
                match &self.reservation {
                    None => self.reservation = Some(Reservation { holder: Holder::of(id), pr_type: t }),
                    Some(r) if self.holds(id) && r.pr_type == t => {}
                    Some(_) => return Err(SenseReason::ReservationConflict),
                }
            }
            PrOutAction::Release => {
                let Some(r) = &self.reservation else { return Ok(Vec::new()) };
                if !self.holds(id) {
                    return Ok(Vec::new());
                }
                if PrType::from_field(pr_type) != Some(r.pr_type) {
                    return Err(SenseReason::InvalidRelease);
                }
                let notify = r.pr_type.registrants_have_access();
                self.reservation = None;
                if notify {
                    self.notify(ua, UnitAttention::ReservationsReleased, |n| n != id && self.registered(n));
                }
            }
            PrOutAction::Clear => {
                self.notify(ua, UnitAttention::ReservationsPreempted, |n| n != id && self.registered(n));
                self.registrations.clear();
                self.reservation = None;
                self.generation = self.generation.wrapping_add(1);
            }
            PrOutAction::Preempt | PrOutAction::PreemptAndAbort => {
                let t = typed()?;
                let sa_key = p.sa_key;
                let preempted = match self.reservation.as_ref().map(|r| r.pr_type) {
                    Some(old) if old.all_registrants() => {
                        if sa_key == 0 {
                            // Everyone else loses; the preempter reserves anew.
                            let gone = self.preempt(|r| !r.takes_in(id), ua);
                            self.reservation = Some(Reservation { holder: Holder::of(id), pr_type: t });
                            gone
                        } else {
                            self.preempt(|r| r.key == sa_key && !r.takes_in(id), ua)
                        }
                    }
                    Some(_) if self.holder_registration().map(|r| r.key) == Some(sa_key) => {
                        let gone = self.preempt(|r| r.key == sa_key && !r.takes_in(id), ua);
                        self.reservation = Some(Reservation { holder: Holder::of(id), pr_type: t });
                        gone
                    }
                    _ => {
                        if sa_key == 0 {
                            return Err(bad_param(8));
                        }
                        let gone = self.preempt(|r| r.key == sa_key && !r.takes_in(id), ua);
                        if gone.is_empty() {
                            return Err(SenseReason::ReservationConflict);
                        }
                        gone
                    }
                };
                self.generation = self.generation.wrapping_add(1);
                return Ok(preempted);
            }
            PrOutAction::Register | PrOutAction::RegisterAndIgnore | PrOutAction::RegisterAndMove => {
                unreachable!("handled above")
            }
        }
        Ok(Vec::new())
    }

    /// REGISTER and REGISTER AND IGNORE EXISTING KEY (SPC-4 §5.13.7,
    /// tables 67 to 69).
    fn register(&mut self, id: &NexusId, ignore: bool, p: &Params, ua: &mut UaTable) -> Result<(), SenseReason> {
        match self.registration_of(id) {
            Some(i) => {
                if !ignore && self.registrations[i].key != p.key {
                    return Err(SenseReason::ReservationConflict);
                }
                if p.spec_i_pt {
                    // Table 67, footnote c.
                    return Err(SenseReason::InvalidFieldInParameterList(Field::bit(20, 3)));
                }
                // ALL_TG_PT only shapes a new registration.
                if p.sa_key == 0 {
                    self.unregister(i, ua);
                } else {
                    self.registrations[i].key = p.sa_key;
                }
                self.generation = self.generation.wrapping_add(1);
            }
            None if !ignore && p.key != 0 => return Err(SenseReason::ReservationConflict),
            // Nothing to do, SPEC_I_PT or not.
            None if p.sa_key == 0 => {}
            None => {
                let target_port = (!p.all_tg_pt).then_some(id.relative_target_port);
                let port = InitiatorPort::of(id);
                // With ALL_TG_PT the sender's initiator port may be registered
                // through other target ports: as if the command came through
                // each (§6.16.3), REGISTER AND IGNORE EXISTING KEY takes those
                // registrations over and REGISTER (key zero) conflicts.
                let absorbed =
                    |r: &Registration| ignore && r.initiator.isid == port.isid && r.initiator.same_name(&port.name);
                let mine = Registration { initiator: port.clone(), target_port, key: p.sa_key };
                if self.registrations.iter().any(|r| !absorbed(r) && r.overlaps(&mine)) {
                    return Err(SenseReason::ReservationConflict);
                }
                let named = parse_transport_ids(p.transport_ids, 28, MAX_SPEC_I_PT)?;
                let kept = self.registrations.iter().filter(|r| !absorbed(r)).count();
                if kept + 1 + named.len() > MAX_REGISTRATIONS {
                    return Err(SenseReason::InsufficientRegistrationResources);
                }
                let mut index = RegistrationIndex::of(self.registrations.iter().filter(|r| !absorbed(r)));
                index.add(&mine);
                let mut new = vec![mine];
                for (initiator, at) in named {
                    let reg = Registration { initiator, target_port, key: p.sa_key };
                    // Table 67, footnote b; naming one port twice, or the sender, is as bad.
                    if index.overlaps(&reg) {
                        return Err(bad_param(at));
                    }
                    index.add(&reg);
                    new.push(reg);
                }
                self.registrations.retain(|r| !absorbed(r));
                self.registrations.extend(new);
                self.generation = self.generation.wrapping_add(1);
            }
        }
        // SPC-4 §5.13.5: the most recent REGISTER's APTPL applies to the whole state.
        self.aptpl = p.aptpl;
        Ok(())
    }

    /// REGISTER AND MOVE (SPC-4 §5.13.8, table 70) with its parameter list
    /// (§6.16.4), `data` already cut to the parameter list length.
    fn register_and_move(&mut self, id: &NexusId, data: &[u8], ua: &mut UaTable) -> Result<(), SenseReason> {
        if data.len() < 24 {
            return Err(SenseReason::ParameterListLength);
        }
        let (key, sa_key) = (be64(&data[0..8]), be64(&data[8..16]));
        let unreg = data[17] & 0x02 != 0;
        let aptpl = data[17] & 0x01 != 0;
        let target_port = u16::from_be_bytes([data[18], data[19]]);
        let tid_len = be32(&data[20..24]) as usize;
        let tid = data[24..].get(..tid_len).ok_or(SenseReason::ParameterListLength)?;

        let Some(mine) = self.registration_of(id) else { return Err(SenseReason::ReservationConflict) };
        let Some(r) = &self.reservation else {
            return Err(SenseReason::InvalidFieldInCdb(Field::bit(1, 4)));
        };
        let pr_type = r.pr_type;
        if pr_type.all_registrants() || !r.holder.is(id) || self.registrations[mine].key != key {
            return Err(SenseReason::ReservationConflict);
        }
        if sa_key == 0 {
            return Err(bad_param(8));
        }
        let (dest, len) = parse_transport_id(tid).map_err(|off| bad_param(24 + off))?;
        if len != tid.len() {
            return Err(bad_param(20));
        }
        if target_port == 0 {
            return Err(bad_param(18));
        }
        // Not to the sender's own initiator port.
        if dest.overlaps(&InitiatorPort::of(id)) {
            return Err(bad_param(24));
        }
        // Registered already: only the key changes. A registration shared
        // with the sender, or one that would overlap others, cannot be made.
        let existing = match self.registrations.iter().position(|r| r.covers(&dest, target_port)) {
            Some(j) if j == mine => return Err(bad_param(24)),
            Some(j) => Some(j),
            None => None,
        };
        let reg = Registration { initiator: dest.clone(), target_port: Some(target_port), key: sa_key };
        if existing.is_none() && self.registrations.iter().any(|r| r.overlaps(&reg)) {
            return Err(bad_param(24));
        }
        if existing.is_none() && self.registrations.len() >= MAX_REGISTRATIONS {
            return Err(SenseReason::InsufficientRegistrationResources);
        }
        match existing {
            Some(j) => self.registrations[j].key = sa_key,
            None => self.registrations.push(reg),
        }
        self.reservation = Some(Reservation { holder: Holder { initiator: dest, target_port }, pr_type });
        if unreg {
            // `mine` still indexes the sender's registration: the new one went to the end.
            self.unregister(mine, ua);
        }
        self.aptpl = aptpl;
        self.generation = self.generation.wrapping_add(1);
        Ok(())
    }

    /// PERSISTENT RESERVE IN parameter data (before allocation-length cutting).
    pub fn reserve_in(&self, action: PrInAction) -> Vec<u8> {
        let mut d = self.generation.to_be_bytes().to_vec();
        d.extend_from_slice(&[0; 4]);
        match action {
            PrInAction::ReadKeys => {
                for r in &self.registrations {
                    d.extend_from_slice(&r.key.to_be_bytes());
                }
            }
            PrInAction::ReadReservation => {
                if let Some(r) = &self.reservation {
                    // All-registrants reservations report key 0 (SPC-4 §6.15.3.3).
                    let key =
                        if r.pr_type.all_registrants() { 0 } else { self.holder_registration().map_or(0, |h| h.key) };
                    d.extend_from_slice(&key.to_be_bytes());
                    d.extend_from_slice(&[0; 5]);
                    d.push(r.pr_type as u8);
                    d.extend_from_slice(&[0; 2]);
                }
            }
            PrInAction::ReportCapabilities => {
                // LENGTH 8; SIP_C, ATP_C, PTPL_C; TMV with every type, PTPL_A
                // as last registered (SPC-4 §6.15.4).
                return vec![0x00, 0x08, 0x0d, 0x80 | u8::from(self.aptpl), 0xea, 0x01, 0x00, 0x00];
            }
            PrInAction::ReadFullStatus => {
                // One descriptor per registration (SPC-4 §6.15.5).
                let holder = self.reservation.as_ref().filter(|r| !r.pr_type.all_registrants()).map(|r| &r.holder);
                let pr_type = self.reservation.as_ref().map_or(0, |r| r.pr_type as u8);
                for reg in &self.registrations {
                    let holds =
                        self.reservation.is_some() && holder.is_none_or(|h| reg.covers(&h.initiator, h.target_port));
                    let tid = reg.initiator.transport_id();
                    d.extend_from_slice(&reg.key.to_be_bytes());
                    d.extend_from_slice(&[0; 4]);
                    d.push((u8::from(reg.target_port.is_none()) << 1) | u8::from(holds));
                    d.push(if holds { pr_type } else { 0 });
                    d.extend_from_slice(&[0; 4]);
                    d.extend_from_slice(&reg.target_port.unwrap_or(0).to_be_bytes());
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

#[cfg(test)]
mod tests;
