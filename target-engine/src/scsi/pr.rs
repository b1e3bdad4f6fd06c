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
//! Unit attentions about registrations go to every nexus of the unit that
//! they cover, including those registered by another initiator's SPEC_I_PT
//! or ALL_TG_PT; a nexus the unit has not seen yet gets POWER ON, RESET
//! first, which implies them.

use std::sync::Arc;

use bytes::Bytes;

use super::cdb::{Cdb, PrInAction, PrOutAction};
use super::sense::{Field, SenseReason, UnitAttention};
use super::ua::UaTable;
use super::NexusId;

/// The PROTOCOL IDENTIFIER of iSCSI TransportIDs (SPC-4 §7.6.4.6).
const PROTOCOL_ISCSI: u8 = 0x05;

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

/// An initiator port: iSCSI name and ISID (SAM-5 §4.6). Without an ISID it
/// stands for every initiator port of that name (TransportID format 00b).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct InitiatorPort {
    pub name: Arc<str>,
    pub isid: Option<[u8; 6]>,
}

impl InitiatorPort {
    /// The initiator port of `id`.
    fn of(id: &NexusId) -> InitiatorPort {
        InitiatorPort { name: Arc::clone(&id.initiator_name), isid: Some(id.isid) }
    }

    fn same_name(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// Whether the initiator port of `id` is this one (or one of these).
    fn takes_in(&self, id: &NexusId) -> bool {
        self.same_name(&id.initiator_name) && self.isid.is_none_or(|i| i == id.isid)
    }

    /// Whether every port `other` stands for is one this stands for.
    fn covers(&self, other: &InitiatorPort) -> bool {
        self.same_name(&other.name) && (self.isid.is_none() || self.isid == other.isid)
    }

    /// Whether some port is both one of these and one of `other`'s.
    fn overlaps(&self, other: &InitiatorPort) -> bool {
        self.same_name(&other.name) && (self.isid.is_none() || other.isid.is_none() || self.isid == other.isid)
    }

    /// Its iSCSI TransportID (SPC-4 §7.6.4.6): format 01b (name + ",i,0x" +
    /// ISID) with an ISID, 00b (name only) without.
    pub(super) fn transport_id(&self) -> Vec<u8> {
        let (format, mut text) = match &self.isid {
            Some(isid) => (0x40, format!("{},i,0x{}", self.name, isid_hex(isid)).into_bytes()),
            None => (0x00, self.name.as_bytes().to_vec()),
        };
        // NUL-terminated, padded to a multiple of four and at least 20 bytes.
        text.push(0);
        while text.len() % 4 != 0 || text.len() < 20 {
            text.push(0);
        }
        let mut t = vec![format | PROTOCOL_ISCSI, 0];
        t.extend_from_slice(&(text.len() as u16).to_be_bytes());
        t.extend_from_slice(&text);
        t
    }
}

/// An ISID as 12 lowercase hex digits.
pub(super) fn isid_hex(isid: &[u8; 6]) -> String {
    isid.iter().map(|b| format!("{b:02x}")).collect()
}

/// An ISID from at most 12 hex digits.
pub(super) fn parse_isid(hex: &str) -> Option<[u8; 6]> {
    if hex.is_empty() || hex.len() > 12 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let v = u64::from_str_radix(hex, 16).ok()?.to_be_bytes();
    Some([v[2], v[3], v[4], v[5], v[6], v[7]])
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
#[derive(Debug, Default)]
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

/// Reads the iSCSI TransportID (SPC-4 §7.6.4.6) at the start of `b`: the
/// initiator port it names and its length, or the offset of the wrong field
/// (a length that runs past `b` is the ADDITIONAL LENGTH's fault).
fn parse_transport_id(b: &[u8]) -> Result<(InitiatorPort, usize), usize> {
    let &[first, _, l0, l1, ..] = b else { return Err(0) };
    let format = first >> 6;
    if first & 0x0f != PROTOCOL_ISCSI || format > 1 {
        return Err(0);
    }
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    if len == 0 || len % 4 != 0 {
        return Err(2);
    }
    let body = b.get(4..4 + len).ok_or(2usize)?;
    let end = body.iter().position(|&c| c == 0).ok_or(4usize)?;
    let text = std::str::from_utf8(&body[..end]).map_err(|_| 4usize)?;
    let (name, isid) = if format == 0 {
        (text, None)
    } else {
        // ASCII lowercasing keeps byte offsets.
        let at = text.to_ascii_lowercase().find(",i,0x").ok_or(4usize)?;
        (&text[..at], Some(parse_isid(&text[at + 5..]).ok_or(4usize)?))
    };
    if name.is_empty() || name.contains(',') {
        return Err(4);
    }
    Ok((InitiatorPort { name: Arc::from(name), isid }, 4 + len))
}

/// The TransportIDs filling `list`, which starts at byte `base` of the
/// parameter list, each with its offset there.
fn parse_transport_ids(list: &[u8], base: usize) -> Result<Vec<(InitiatorPort, usize)>, SenseReason> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < list.len() {
        let (port, len) = parse_transport_id(&list[at..]).map_err(|off| bad_param(base + at + off))?;
        out.push((port, base + at));
        at += len;
    }
    Ok(out)
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
    /// returns whether any was removed.
    fn preempt(&mut self, doomed: impl Fn(&Registration) -> bool, ua: &mut UaTable) -> bool {
        let (victims, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.registrations).into_iter().partition(doomed);
        self.registrations = kept;
        for v in &victims {
            self.notify(ua, UnitAttention::RegistrationsPreempted, |n| v.takes_in(n));
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
        let data = &data[..data.len().min(param_len as usize)];
        if action == PrOutAction::RegisterAndMove {
            return self.register_and_move(id, data, ua);
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
            PrOutAction::Register => return self.register(id, false, &p, ua),
            PrOutAction::RegisterAndIgnore => return self.register(id, true, &p, ua),
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
                match self.reservation.as_ref().map(|r| r.pr_type) {
                    Some(old) if old.all_registrants() => {
                        if sa_key == 0 {
                            // Everyone else loses; the preempter reserves anew.
                            self.preempt(|r| !r.takes_in(id), ua);
                            self.reservation = Some(Reservation { holder: Holder::of(id), pr_type: t });
                        } else {
                            self.preempt(|r| r.key == sa_key && !r.takes_in(id), ua);
                        }
                    }
                    Some(_) if self.holder_registration().map(|r| r.key) == Some(sa_key) => {
                        self.preempt(|r| r.key == sa_key && !r.takes_in(id), ua);
                        self.reservation = Some(Reservation { holder: Holder::of(id), pr_type: t });
                    }
                    _ => {
                        if sa_key == 0 {
                            return Err(bad_param(8));
                        }
                        if !self.preempt(|r| r.key == sa_key && !r.takes_in(id), ua) {
                            return Err(SenseReason::ReservationConflict);
                        }
                    }
                }
                self.generation = self.generation.wrapping_add(1);
            }
            PrOutAction::Register | PrOutAction::RegisterAndIgnore | PrOutAction::RegisterAndMove => {
                unreachable!("handled above")
            }
        }
        Ok(())
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
                let mut new = vec![mine];
                for (initiator, at) in parse_transport_ids(p.transport_ids, 28)? {
                    let reg = Registration { initiator, target_port, key: p.sa_key };
                    // Table 67, footnote b; naming one port twice, or the sender, is as bad.
                    if self.registrations.iter().chain(&new).any(|r| r.overlaps(&reg)) {
                        return Err(bad_param(at));
                    }
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
        pr.reserve_out(id, a, 0, p.len() as u32, &Bytes::copy_from_slice(p), &mut UaTable::default())
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
        assert!(text.contains("IQN.2026-11.TEST:INIT3\0"));
        // SPEC_I_PT naming a registered port: INVALID FIELD IN PARAMETER LIST, nothing changes.
        let before = pr.reserve_in(PrInAction::ReadFullStatus);
        let p = spec_i_pt(5, 0, &[tid(&b.initiator_name, Some(b.isid))]);
        assert!(matches!(
            send(&mut pr, &d, PrOutAction::Register, &p),
            Err(SenseReason::InvalidFieldInParameterList(_))
        ));
        // ... or the sender itself, or one port twice.
        let p = spec_i_pt(5, 0, &[tid(&d.initiator_name, None)]);
        assert!(matches!(
            send(&mut pr, &d, PrOutAction::Register, &p),
            Err(SenseReason::InvalidFieldInParameterList(_))
        ));
        let e = tid("iqn.2026-11.test:init5", Some([1, 2, 3, 4, 5, 6]));
        let p = spec_i_pt(5, 0, &[e.clone(), e]);
        assert!(matches!(
            send(&mut pr, &d, PrOutAction::Register, &p),
            Err(SenseReason::InvalidFieldInParameterList(_))
        ));
        assert_eq!(pr.reserve_in(PrInAction::ReadFullStatus), before);
        // Only REGISTER may carry SPEC_I_PT, and not from a registered nexus.
        let p = spec_i_pt(5, 0, &[]);
        for (who, action) in [(&d, PrOutAction::RegisterAndIgnore), (&a, PrOutAction::Reserve)] {
            assert_eq!(
                send(&mut pr, who, action, &p),
                Err(SenseReason::InvalidFieldInParameterList(Field::bit(20, 3)))
            );
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
        assert!(matches!(
            send(&mut pr, &a, PrOutAction::Register, &cut),
            Err(SenseReason::InvalidFieldInParameterList(_))
        ));
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
                matches!(
                    send(&mut pr, &a, PrOutAction::Register, &p),
                    Err(SenseReason::InvalidFieldInParameterList(_))
                ),
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
        assert_eq!(
            pr.registrations.iter().find(|r| r.takes_in(&a)).map(|r| (r.key, r.target_port)),
            Some((0x32, None))
        );
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

    proptest::proptest! {
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
}
