//! Asymmetric logical unit access (SPC-4 §5.16): the access state of each
//! target port group that exports a logical unit, the check each command
//! passes before it runs (§5.16.2.4), REPORT TARGET PORT GROUPS (§6.27) and
//! SET TARGET PORT GROUPS (§6.38).
//!
//! The unit keeps one [`AluaTable`]: for every target port group, its state,
//! its PREF bit, and the relative target port identifiers of the ports in it
//! that export the unit. We support implicit and explicit transitions
//! (TPGS 11b); a transition is instantaneous, so TRANSITIONING is only seen
//! when the engine sets it on purpose.
//!
//! In a cluster the table also lists the port groups of other nodes that
//! export the unit ([`AluaTable::set_peer_groups`]), so that REPORT TARGET
//! PORT GROUPS gives the same answer through every port (SPC-4 §5.16.2.1:
//! the groups are those of the logical unit, not of one target). Their
//! states are the cluster's to set: SET TARGET PORT GROUPS naming one is
//! refused. A unit whose data is on another node ([`check_remote`])
//! refuses, through a standby port, media access and every command whose
//! answer would come from state that lives with the data; through an
//! active/non-optimized port it sends them to the node that serves the
//! data ([`forwarded`], `super::forward`).

use std::collections::{BTreeMap, BTreeSet};

use super::cdb::Cdb;
use super::sense::{Field, SenseReason};

/// Seconds an application client should allow an implicit transition in a
/// cluster before it times out (the IMPLICIT TRANSITION TIME, SPC-4 §6.27).
pub const CLUSTER_TRANSITION_TIME: u8 = 15;

/// An asymmetric access state (SPC-4 table 203, the ASYMMETRIC ACCESS STATE field).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AluaState {
    #[default]
    ActiveOptimized,
    ActiveNonOptimized,
    Standby,
    Unavailable,
    Transitioning,
}

impl AluaState {
    /// The ASYMMETRIC ACCESS STATE code.
    pub fn code(self) -> u8 {
        match self {
            AluaState::ActiveOptimized => 0x0,
            AluaState::ActiveNonOptimized => 0x1,
            AluaState::Standby => 0x2,
            AluaState::Unavailable => 0x3,
            AluaState::Transitioning => 0xf,
        }
    }

    /// The states SET TARGET PORT GROUPS may request (§6.38: TRANSITIONING
    /// is never requested; OFFLINE and LBA DEPENDENT are not supported).
    fn from_set_code(code: u8) -> Option<AluaState> {
        Some(match code {
            0x0 => AluaState::ActiveOptimized,
            0x1 => AluaState::ActiveNonOptimized,
            0x2 => AluaState::Standby,
            0x3 => AluaState::Unavailable,
            _ => return None,
        })
    }
}

impl std::fmt::Display for AluaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AluaState::ActiveOptimized => "active-optimized",
            AluaState::ActiveNonOptimized => "active-non-optimized",
            AluaState::Standby => "standby",
            AluaState::Unavailable => "unavailable",
            AluaState::Transitioning => "transitioning",
        })
    }
}

impl std::str::FromStr for AluaState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "active-optimized" => AluaState::ActiveOptimized,
            "active-non-optimized" => AluaState::ActiveNonOptimized,
            "standby" => AluaState::Standby,
            "unavailable" => AluaState::Unavailable,
            "transitioning" => AluaState::Transitioning,
            _ => return Err(format!("unknown ALUA state {s:?}")),
        })
    }
}

/// Whether `cdb` may run through a target port group in `state`.
///
/// SPC-4 §5.16.2.4.2–.6: both active states allow everything. STANDBY
/// allows INQUIRY, REPORT LUNS, REQUEST SENSE, MODE SENSE/SELECT, the
/// persistent reservation commands, and REPORT/SET TARGET PORT GROUPS
/// (LOG, DIAGNOSTIC and BUFFER commands are not implemented); TEST UNIT
/// READY is not in the list, which is how multipath path checkers notice a
/// standby path. UNAVAILABLE allows INQUIRY, REPORT LUNS, REQUEST SENSE and
/// REPORT/SET TARGET PORT GROUPS; TRANSITIONING the same without SET.
/// REPORT SUPPORTED OPERATION CODES and TASK MANAGEMENT FUNCTIONS describe
/// the device server, not the medium, and are allowed everywhere, as LIO does.
pub fn check(state: AluaState, cdb: &Cdb) -> Result<(), SenseReason> {
    let always = allowed_in_every_state(cdb);
    match state {
        AluaState::ActiveOptimized | AluaState::ActiveNonOptimized => Ok(()),
        _ if always => Ok(()),
        AluaState::Standby => match cdb {
            Cdb::ModeSense { .. }
            | Cdb::ModeSelect { .. }
            | Cdb::PersistentReserveIn { .. }
            | Cdb::PersistentReserveOut { .. }
            | Cdb::SetTargetPortGroups { .. } => Ok(()),
            _ => Err(SenseReason::AluaStandby),
        },
        AluaState::Unavailable => match cdb {
            Cdb::SetTargetPortGroups { .. } => Ok(()),
            _ => Err(SenseReason::AluaUnavailable),
        },
        AluaState::Transitioning => Err(SenseReason::AluaTransitioning),
    }
}

/// What a unit whose data is on another node answers beside the ALUA
/// check: INQUIRY, REPORT LUNS, REQUEST SENSE, REPORT TARGET PORT GROUPS,
/// the device server's own reports, MODE SENSE (its parameters are the
/// configured ones) and SET TARGET PORT GROUPS (which only takes standby
/// or unavailable for such a unit). The other commands are the node
/// holding the data's to answer: with `forwarding`, those [`forwarded`]
/// through a port in `state` go there (`super::forward`); the rest get the
/// Standby refusal, LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY
/// STATE, which every multipath initiator takes as "use another path".
pub fn check_remote(cdb: &Cdb, forwarding: bool, state: AluaState) -> Result<(), SenseReason> {
    if answered_by_every_node(cdb) || (forwarding && forwarded(cdb, state)) {
        Ok(())
    } else {
        Err(SenseReason::AluaStandby)
    }
}

/// The commands a node that does not serve the unit answers itself: they
/// describe the unit, the device server and the port groups.
pub fn answered_by_every_node(cdb: &Cdb) -> bool {
    allowed_in_every_state(cdb) || matches!(cdb, Cdb::ModeSense { .. } | Cdb::SetTargetPortGroups { .. })
}

/// Whether a node that does not serve the unit sends `cdb`, come through
/// a port in `state`, to the node that does: the reservation commands
/// always (a standby port takes them), and through an active/non-optimized
/// port every command it does not answer itself.
pub fn forwarded(cdb: &Cdb, state: AluaState) -> bool {
    cdb.is_persistent_reservation_command() || (state == AluaState::ActiveNonOptimized && !answered_by_every_node(cdb))
}

/// The commands every access state allows: they describe the unit and the
/// device server, not the medium.
fn allowed_in_every_state(cdb: &Cdb) -> bool {
    matches!(
        cdb,
        Cdb::Inquiry { .. }
            | Cdb::ReportLuns { .. }
            | Cdb::RequestSense { .. }
            | Cdb::ReportTargetPortGroups { .. }
            | Cdb::ReportSupportedOpcodes { .. }
            | Cdb::ReportSupportedTmfs { .. }
    )
}

/// Why a group's state last changed (the STATUS CODE field, SPC-4 table 205).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum StatusCode {
    #[default]
    None = 0,
    BySetTargetPortGroups = 1,
    Implicit = 2,
}

#[derive(Clone, Debug, Default)]
struct Group {
    state: AluaState,
    preferred: bool,
    status: StatusCode,
    /// Relative target port identifiers of the ports in the group.
    ports: BTreeSet<u16>,
    /// A group on another node, whose state the cluster sets.
    peer: bool,
}

/// The target port groups exporting one unit and their states.
#[derive(Debug, Default)]
pub(crate) struct AluaTable {
    groups: BTreeMap<u16, Group>,
}

/// Supported states for the descriptor's second byte: T_SUP, U_SUP,
/// S_SUP, AN_SUP, AO_SUP (no OFFLINE, no LBA DEPENDENT).
const SUPPORTED_STATES: u8 = 0x80 | 0x08 | 0x04 | 0x02 | 0x01;

impl AluaTable {
    /// The state of `tpg`; a group the table does not know is active/optimized.
    pub fn state(&self, tpg: u16) -> AluaState {
        self.groups.get(&tpg).map(|g| g.state).unwrap_or_default()
    }

    /// Makes sure relative target port `rtp` of group `tpg` is listed.
    pub fn add_port(&mut self, tpg: u16, rtp: u16) {
        self.groups.entry(tpg).or_default().ports.insert(rtp);
    }

    /// Replaces the set of this node's ports (group, relative port)
    /// exporting the unit; groups that remain keep their state, new ones
    /// start active/optimized. Peer groups stay.
    pub fn set_ports(&mut self, ports: &[(u16, u16)]) {
        let mut groups: BTreeMap<u16, Group> = BTreeMap::new();
        for &(tpg, rtp) in ports {
            let g = groups.entry(tpg).or_insert_with(|| {
                let mut g = self.groups.get(&tpg).filter(|g| !g.peer).cloned().unwrap_or_default();
                g.ports.clear();
                g
            });
            g.ports.insert(rtp);
        }
        for (&tpg, g) in &self.groups {
            if g.peer && !groups.contains_key(&tpg) {
                groups.insert(tpg, g.clone());
            }
        }
        self.groups = groups;
    }

    /// Replaces the port groups on other nodes, each (group, its one
    /// relative port, state); a group of this node's keeps its own.
    /// Returns whether any peer group came, went or changed state.
    pub fn set_peer_groups(&mut self, peers: &[(u16, u16, AluaState)]) -> bool {
        let before: BTreeMap<u16, (AluaState, StatusCode)> =
            self.groups.iter().filter(|(_, g)| g.peer).map(|(&t, g)| (t, (g.state, g.status))).collect();
        self.groups.retain(|_, g| !g.peer);
        for &(tpg, rtp, state) in peers {
            if self.groups.contains_key(&tpg) {
                continue;
            }
            // A group seen for the first time has made no transition, as on
            // the node whose group it is (see `set_initial_state`).
            let status = match before.get(&tpg) {
                Some(&(old, status)) if old == state => status,
                Some(_) => StatusCode::Implicit,
                None => StatusCode::None,
            };
            let g = Group { state, preferred: false, status, ports: BTreeSet::from([rtp]), peer: true };
            self.groups.insert(tpg, g);
        }
        let after: BTreeMap<u16, AluaState> =
            self.groups.iter().filter(|(_, g)| g.peer).map(|(&t, g)| (t, g.state)).collect();
        after != before.into_iter().map(|(t, (state, _))| (t, state)).collect()
    }

    /// Sets the state `tpg` starts in when the unit is opened: no
    /// transition, so its status code stays "none" (as every other node
    /// reports the group when it first lists it).
    pub fn set_initial_state(&mut self, tpg: u16, state: AluaState) {
        let g = self.groups.entry(tpg).or_default();
        g.state = state;
        g.status = StatusCode::None;
    }

    /// Sets `tpg`'s state by the target's own decision (an implicit
    /// transition); returns whether it changed.
    pub fn set_state(&mut self, tpg: u16, state: AluaState) -> bool {
        let g = self.groups.entry(tpg).or_default();
        let changed = g.state != state;
        if changed {
            g.state = state;
            g.status = StatusCode::Implicit;
        }
        changed
    }

    /// Sets the PREF bit on group `preferred` only (none: on no group),
    /// among the groups listed now.
    pub fn prefer_only(&mut self, preferred: Option<u16>) {
        for (tpg, g) in self.groups.iter_mut() {
            g.preferred = Some(*tpg) == preferred;
        }
    }

    /// REPORT TARGET PORT GROUPS parameter data (SPC-4 §6.27.2), in the
    /// length-only format or, when `extended`, the extended header format
    /// whose RETURN DATA LENGTH also counts the four header bytes after it.
    /// This node's active groups are shown TRANSITIONING while
    /// `transitioning`: the unit's primary is handing over, has lost its
    /// lease, or is reconciling its copies after a promotion (commands
    /// then end NOT READY, 04h/0Ah, or wait). In a cluster the IMPLICIT
    /// TRANSITION TIME is [`CLUSTER_TRANSITION_TIME`]: what a failover may
    /// take (CLUSTER.md §3: 3 s of lease, 4 s until the node is offline, an
    /// election); alone, transitions are immediate (0: not given).
    pub fn report(&self, extended: bool, transitioning: bool) -> Vec<u8> {
        let mut d = vec![0u8; if extended { 8 } else { 4 }];
        if extended {
            d[4] = 0x10; // FORMAT TYPE 001b
            d[5] = if self.has_peers() { CLUSTER_TRANSITION_TIME } else { 0 };
        }
        for (&id, g) in &self.groups {
            let active = matches!(g.state, AluaState::ActiveOptimized | AluaState::ActiveNonOptimized);
            let state = if transitioning && active && !g.peer { AluaState::Transitioning } else { g.state };
            d.push((u8::from(g.preferred) << 7) | state.code());
            d.push(SUPPORTED_STATES);
            d.extend_from_slice(&id.to_be_bytes());
            d.push(0);
            d.push(g.status as u8);
            d.push(0);
            d.push(g.ports.len().min(255) as u8);
            for &rtp in g.ports.iter().take(255) {
                d.extend_from_slice(&[0, 0]);
                d.extend_from_slice(&rtp.to_be_bytes());
            }
        }
        let n = (d.len() - 4) as u32;
        d[..4].copy_from_slice(&n.to_be_bytes());
        d
    }

    /// Whether port groups of other nodes export the unit (a cluster).
    pub fn has_peers(&self) -> bool {
        self.groups.values().any(|g| g.peer)
    }

    /// SET TARGET PORT GROUPS in a cluster, where the states are the
    /// cluster's: the one group the parameter list asks to be active
    /// (active/optimized or active/non-optimized: the cluster has one
    /// active group per unit), if it is not the active one already. The
    /// whole list is checked first: every descriptor names a state that may
    /// be requested and a group of the unit; at most one group is asked to
    /// be active, and the active group is not asked to stop being active
    /// unless another takes its place. Otherwise INVALID FIELD IN PARAMETER
    /// LIST, pointing at the descriptor.
    pub fn requested_active(&self, data: &[u8]) -> Result<Option<u16>, SenseReason> {
        if data.len() < 4 && !data.is_empty() {
            return Err(SenseReason::ParameterListLength);
        }
        let body = data.get(4..).unwrap_or(&[]);
        if !body.len().is_multiple_of(4) {
            return Err(SenseReason::ParameterListLength);
        }
        let mut active: Option<u16> = None;
        let mut left: Option<usize> = None;
        for (i, desc) in body.chunks_exact(4).enumerate() {
            let at = |delta: usize| u16::try_from(4 + 4 * i + delta).unwrap_or(u16::MAX);
            let state = AluaState::from_set_code(desc[0] & 0x0f)
                .ok_or(SenseReason::InvalidFieldInParameterList(Field::bit(at(0), 3)))?;
            let tpg = u16::from_be_bytes([desc[2], desc[3]]);
            let Some(group) = self.groups.get(&tpg) else {
                return Err(SenseReason::InvalidFieldInParameterList(Field::byte(at(2))));
            };
            if matches!(state, AluaState::ActiveOptimized | AluaState::ActiveNonOptimized) {
                if active.is_some_and(|a| a != tpg) {
                    return Err(SenseReason::InvalidFieldInParameterList(Field::bit(at(0), 3)));
                }
                active = Some(tpg);
            } else if group.state == AluaState::ActiveOptimized {
                left.get_or_insert(i);
            }
        }
        let current = self.groups.iter().find(|(_, g)| g.state == AluaState::ActiveOptimized).map(|(&t, _)| t);
        match (active, left) {
            (None, Some(i)) => {
                let at = u16::try_from(4 + 4 * i).unwrap_or(u16::MAX);
                Err(SenseReason::InvalidFieldInParameterList(Field::bit(at, 3)))
            }
            (Some(tpg), _) if Some(tpg) == current => Ok(None),
            (wanted, _) => Ok(wanted),
        }
    }

    /// SET TARGET PORT GROUPS with its parameter list (SPC-4 §6.38.2); the
    /// whole list is checked before any state changes. A peer group's state
    /// is not this node's to set, and neither is an active state when the
    /// unit's data is on another node (`active_allowed` false): both are
    /// an INVALID FIELD IN PARAMETER LIST. Returns whether any group
    /// changed state.
    pub fn set_from_parameters(&mut self, data: &[u8], active_allowed: bool) -> Result<bool, SenseReason> {
        if data.len() < 4 && !data.is_empty() {
            return Err(SenseReason::ParameterListLength);
        }
        let body = data.get(4..).unwrap_or(&[]);
        if !body.len().is_multiple_of(4) {
            return Err(SenseReason::ParameterListLength);
        }
        // One entry per known group however long the list (the last
        // descriptor for a group wins); byte offsets past 65535 are
        // reported as 65535, the largest a sense key specific field holds.
        let mut wanted = BTreeMap::new();
        for (i, desc) in body.chunks_exact(4).enumerate() {
            let at = |delta: usize| u16::try_from(4 + 4 * i + delta).unwrap_or(u16::MAX);
            let state = AluaState::from_set_code(desc[0] & 0x0f)
                .ok_or(SenseReason::InvalidFieldInParameterList(Field::bit(at(0), 3)))?;
            if !active_allowed && matches!(state, AluaState::ActiveOptimized | AluaState::ActiveNonOptimized) {
                return Err(SenseReason::InvalidFieldInParameterList(Field::bit(at(0), 3)));
            }
            let tpg = u16::from_be_bytes([desc[2], desc[3]]);
            if self.groups.get(&tpg).is_none_or(|g| g.peer) {
                return Err(SenseReason::InvalidFieldInParameterList(Field::byte(at(2))));
            }
            wanted.insert(tpg, state);
        }
        let mut changed = false;
        for (tpg, state) in wanted {
            let g = self.groups.get_mut(&tpg).expect("checked above");
            if g.state != state {
                g.state = state;
                changed = true;
            }
            g.status = StatusCode::BySetTargetPortGroups;
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::cdb::{Extent, PageControl, PrInAction};

    const EXT: Extent = Extent { lba: 0, blocks: 1, len_field: 7 };

    fn all_kinds() -> Vec<(Cdb, [bool; 3])> {
        // Allowed in [standby, unavailable, transitioning].
        vec![
            (Cdb::Inquiry { evpd: false, page: 0, alloc_len: 36 }, [true, true, true]),
            (Cdb::ReportLuns { select: 0, alloc_len: 16 }, [true, true, true]),
            (Cdb::RequestSense { descriptor: false, alloc_len: 18 }, [true, true, true]),
            (Cdb::ReportTargetPortGroups { extended: false, alloc_len: 16 }, [true, true, true]),
            (Cdb::SetTargetPortGroups { param_len: 8 }, [true, true, false]),
            (
                Cdb::ModeSense {
                    ten: false,
                    dbd: false,
                    llbaa: false,
                    pc: PageControl::Current,
                    page: 0x3f,
                    subpage: 0,
                    alloc_len: 255,
                },
                [true, false, false],
            ),
            (Cdb::ModeSelect { ten: false, pf: true, sp: false, param_len: 0 }, [true, false, false]),
            (Cdb::PersistentReserveIn { action: PrInAction::ReadKeys, alloc_len: 8 }, [true, false, false]),
            (Cdb::TestUnitReady, [false, false, false]),
            (Cdb::ReadCapacity10, [false, false, false]),
            (Cdb::Read { ext: EXT, fua: false }, [false, false, false]),
            (Cdb::Write { ext: EXT, fua: false }, [false, false, false]),
            (Cdb::SynchronizeCache { ext: EXT }, [false, false, false]),
            (Cdb::Reserve, [false, false, false]),
        ]
    }

    #[test]
    fn active_states_allow_everything() {
        for (cdb, _) in all_kinds() {
            assert_eq!(check(AluaState::ActiveOptimized, &cdb), Ok(()));
            assert_eq!(check(AluaState::ActiveNonOptimized, &cdb), Ok(()));
        }
    }

    #[test]
    fn inaccessible_states_follow_spc4() {
        let states = [
            (AluaState::Standby, SenseReason::AluaStandby),
            (AluaState::Unavailable, SenseReason::AluaUnavailable),
            (AluaState::Transitioning, SenseReason::AluaTransitioning),
        ];
        for (cdb, allowed) in all_kinds() {
            for (i, (state, reason)) in states.iter().enumerate() {
                let want = if allowed[i] { Ok(()) } else { Err(reason.clone()) };
                assert_eq!(check(*state, &cdb), want, "{cdb:?} in {state:?}");
            }
        }
    }

    #[test]
    fn not_ready_codes() {
        let c = SenseReason::AluaStandby.code();
        assert_eq!((c.key as u8, c.asc, c.ascq), (0x02, 0x04, 0x0b));
        let c = SenseReason::AluaUnavailable.code();
        assert_eq!((c.asc, c.ascq), (0x04, 0x0c));
        let c = SenseReason::AluaTransitioning.code();
        assert_eq!((c.asc, c.ascq), (0x04, 0x0a));
    }

    #[test]
    fn report_lists_groups_ports_and_states() {
        let mut t = AluaTable::default();
        t.set_ports(&[(1, 1), (2, 2), (2, 3)]);
        t.set_state(2, AluaState::Standby);
        t.prefer_only(Some(1));
        let d = t.report(false, false);
        assert_eq!(u32::from_be_bytes(d[0..4].try_into().unwrap()) as usize, d.len() - 4);
        assert_eq!(&d[4..12], &[0x80, SUPPORTED_STATES, 0, 1, 0, 0, 0, 1]);
        assert_eq!(&d[12..16], &[0, 0, 0, 1]);
        assert_eq!(&d[16..24], &[0x02, SUPPORTED_STATES, 0, 2, 0, 2, 0, 2]);
        assert_eq!(&d[24..32], &[0, 0, 0, 2, 0, 0, 0, 3]);
        let e = t.report(true, false);
        assert_eq!(e[4], 0x10);
        assert_eq!(&e[8..], &d[4..]);
        assert_eq!(u32::from_be_bytes(e[0..4].try_into().unwrap()) as usize, e.len() - 4);
        // The PREF bit moves to one group, or none; no group is added for it.
        t.prefer_only(Some(2));
        let d = t.report(false, false);
        assert_eq!((d[4], d[16]), (0x00, 0x82));
        t.prefer_only(Some(9));
        assert_eq!(
            t.report(false, false),
            d.iter().enumerate().map(|(i, b)| if i == 16 { 0x02 } else { *b }).collect::<Vec<u8>>()
        );
        // A group whose ports all went away is no longer listed; the others keep their state.
        t.set_ports(&[(2, 2)]);
        assert_eq!(t.state(2), AluaState::Standby);
        assert_eq!(t.report(false, false).len(), 4 + 12);
    }

    #[test]
    fn a_primary_handing_over_reports_its_group_transitioning() {
        let mut t = AluaTable::default();
        t.set_ports(&[(1, 1)]);
        t.set_initial_state(1, AluaState::ActiveOptimized);
        assert_eq!(t.report(true, false)[5], 0, "alone: transitions are immediate");
        t.set_peer_groups(&[(2, 2, AluaState::Standby)]);
        let d = t.report(true, true);
        assert_eq!(d[5], CLUSTER_TRANSITION_TIME);
        assert_eq!((d[8] & 0x0f, d[8 + 12] & 0x0f), (0xf, 0x2), "this node's group transitioning, the peer's as it is");
        assert_eq!(t.report(true, false)[8] & 0x0f, 0x0);
    }

    #[test]
    fn in_a_cluster_set_target_port_groups_names_the_one_group_to_activate() {
        let mut t = AluaTable::default();
        t.set_ports(&[(1, 1)]);
        t.set_initial_state(1, AluaState::Standby);
        t.set_peer_groups(&[(2, 2, AluaState::ActiveOptimized), (3, 3, AluaState::Standby)]);
        assert!(t.has_peers());
        let list = |descs: &[(u8, u16)]| {
            let mut d = vec![0u8; 4];
            for &(state, tpg) in descs {
                d.extend_from_slice(&[state, 0]);
                d.extend_from_slice(&tpg.to_be_bytes());
            }
            d
        };
        assert_eq!(t.requested_active(&list(&[(0, 1)])), Ok(Some(1)), "this node's group");
        assert_eq!(t.requested_active(&list(&[(1, 3), (2, 2)])), Ok(Some(3)), "another node's, the active one standby");
        assert_eq!(t.requested_active(&list(&[(0, 2)])), Ok(None), "active already");
        assert_eq!(t.requested_active(&list(&[(2, 3)])), Ok(None), "a standby group standby: nothing to do");
        let bad = |byte: u16, bit| Err(SenseReason::InvalidFieldInParameterList(Field::bit(byte, bit)));
        assert_eq!(t.requested_active(&list(&[(2, 2)])), bad(4, 3), "the active group cannot just stop");
        assert_eq!(t.requested_active(&list(&[(0, 1), (0, 3)])), bad(8, 3), "two active groups");
        assert_eq!(t.requested_active(&list(&[(0xe, 1)])), bad(4, 3), "offline is not requested");
        assert_eq!(
            t.requested_active(&list(&[(0, 9)])),
            Err(SenseReason::InvalidFieldInParameterList(Field::byte(6))),
            "no such group"
        );
        assert_eq!(t.requested_active(&[0, 0]), Err(SenseReason::ParameterListLength));
    }

    #[test]
    fn set_target_port_groups_checks_the_whole_list_first() {
        let mut t = AluaTable::default();
        t.set_ports(&[(1, 1), (2, 2)]);
        let bad = [0, 0, 0, 0, 0x02, 0, 0, 1, 0x0f, 0, 0, 2];
        assert!(matches!(t.set_from_parameters(&bad, true), Err(SenseReason::InvalidFieldInParameterList(_))));
        assert_eq!(t.state(1), AluaState::ActiveOptimized);
        let unknown = [0, 0, 0, 0, 0x02, 0, 0, 9];
        assert!(t.set_from_parameters(&unknown, true).is_err());
        assert_eq!(t.set_from_parameters(&[0, 0, 0, 0, 0x02, 0, 0, 2], true), Ok(true));
        assert_eq!(t.state(2), AluaState::Standby);
        assert_eq!(t.report(false, false)[4 + 12 + 5], 1, "status: altered by SET TARGET PORT GROUPS");
        assert_eq!(t.set_from_parameters(&[0, 0, 0, 0, 0x02, 0, 0, 2], true), Ok(false));
        assert_eq!(t.set_from_parameters(&[], true), Ok(false));
    }

    #[test]
    fn set_target_port_groups_with_a_huge_list_points_past_the_u16_range() {
        let mut t = AluaTable::default();
        t.set_ports(&[(1, 1), (2, 2)]);
        // 20,000 valid descriptors, then one naming an unknown group at byte 80,004.
        let mut list = vec![0u8; 4];
        for _ in 0..20_000 {
            list.extend_from_slice(&[0x02, 0, 0, 2]);
        }
        list.extend_from_slice(&[0x02, 0, 0, 9]);
        assert_eq!(
            t.set_from_parameters(&list, true),
            Err(SenseReason::InvalidFieldInParameterList(Field::byte(u16::MAX)))
        );
        list.truncate(list.len() - 4);
        assert_eq!(t.set_from_parameters(&list, true), Ok(true));
        assert_eq!(t.state(2), AluaState::Standby);
    }

    #[test]
    fn peer_groups_are_reported_beside_ours_and_are_not_ours_to_set() {
        let mut t = AluaTable::default();
        t.set_ports(&[(2, 2)]);
        t.set_initial_state(2, AluaState::Standby);
        assert!(t.set_peer_groups(&[(1, 1, AluaState::ActiveOptimized), (3, 3, AluaState::Standby)]));
        let d = t.report(false, false);
        assert_eq!(u32::from_be_bytes(d[0..4].try_into().unwrap()) as usize, 3 * 12);
        assert_eq!(&d[4..10], &[0x00, SUPPORTED_STATES, 0, 1, 0, 0], "no transition yet");
        assert_eq!(&d[16..22], &[0x02, SUPPORTED_STATES, 0, 2, 0, 0]);
        assert_eq!(&d[28..32], &[0x02, SUPPORTED_STATES, 0, 3]);
        assert_eq!(&d[36..40], &[0, 0, 0, 3], "the peer group's one port");
        // The same peers again change nothing; our own ports keep the peers.
        assert!(!t.set_peer_groups(&[(1, 1, AluaState::ActiveOptimized), (3, 3, AluaState::Standby)]));
        t.set_ports(&[(2, 2)]);
        assert_eq!(t.report(false, false), d);
        // A peer's state is the cluster's: SET TARGET PORT GROUPS naming it is refused whole.
        let list = [0, 0, 0, 0, 0x00, 0, 0, 2, 0x02, 0, 0, 1];
        assert_eq!(t.set_from_parameters(&list, true), Err(SenseReason::InvalidFieldInParameterList(Field::byte(10))));
        assert_eq!(t.state(2), AluaState::Standby);
        // Where the data is elsewhere, our group may not become active.
        let list = [0, 0, 0, 0, 0x00, 0, 0, 2];
        assert_eq!(
            t.set_from_parameters(&list, false),
            Err(SenseReason::InvalidFieldInParameterList(Field::bit(4, 3)))
        );
        assert_eq!(t.set_from_parameters(&[0, 0, 0, 0, 0x03, 0, 0, 2], false), Ok(true));
        // A peer's new state is an implicit change; a peer gone is no longer listed.
        assert!(t.set_peer_groups(&[(1, 1, AluaState::Standby)]));
        assert_eq!(t.state(1), AluaState::Standby);
        assert_eq!(t.report(false, false)[4 + 5], StatusCode::Implicit as u8);
        assert_eq!(t.report(false, false).len(), 4 + 2 * 12);
        // Our own group is never replaced by a peer of the same number.
        assert!(t.set_peer_groups(&[(2, 9, AluaState::ActiveOptimized)]));
        assert_eq!(t.state(2), AluaState::Unavailable);
    }

    #[test]
    fn a_remote_unit_answers_only_what_needs_no_data() {
        for (cdb, [standby, ..]) in all_kinds() {
            let allowed = check_remote(&cdb, false, AluaState::Standby).is_ok();
            let stateful = matches!(
                cdb,
                Cdb::ModeSelect { .. } | Cdb::PersistentReserveIn { .. } | Cdb::PersistentReserveOut { .. }
            );
            assert_eq!(allowed, standby && !stateful, "{cdb:?}");
            if !allowed {
                assert_eq!(check_remote(&cdb, false, AluaState::Standby), Err(SenseReason::AluaStandby));
            }
            // Without a forwarder, an active/non-optimized port answers no more.
            assert_eq!(check_remote(&cdb, false, AluaState::ActiveNonOptimized).is_ok(), allowed, "{cdb:?}");
            // With forwarding, through a standby port the reservation
            // commands go to the node that holds the data; MODE SELECT is
            // still refused.
            let reservation = matches!(cdb, Cdb::PersistentReserveIn { .. } | Cdb::PersistentReserveOut { .. });
            assert_eq!(check_remote(&cdb, true, AluaState::Standby).is_ok(), allowed || reservation, "{cdb:?}");
            assert_eq!(forwarded(&cdb, AluaState::Standby), reservation, "{cdb:?}");
            // Through an active/non-optimized port, every command the node
            // does not answer itself goes there.
            assert!(check_remote(&cdb, true, AluaState::ActiveNonOptimized).is_ok(), "{cdb:?}");
            assert_eq!(forwarded(&cdb, AluaState::ActiveNonOptimized), !answered_by_every_node(&cdb), "{cdb:?}");
        }
        let read = Cdb::Read { ext: crate::scsi::cdb::Extent { lba: 0, blocks: 1, len_field: 0 }, fua: false };
        assert!(forwarded(&read, AluaState::ActiveNonOptimized));
        assert!(!forwarded(&read, AluaState::Standby));
    }

    #[test]
    fn states_parse_from_config_names() {
        for s in [
            AluaState::ActiveOptimized,
            AluaState::ActiveNonOptimized,
            AluaState::Standby,
            AluaState::Unavailable,
            AluaState::Transitioning,
        ] {
            assert_eq!(s.to_string().parse::<AluaState>(), Ok(s));
        }
        assert!("offline".parse::<AluaState>().is_err());
    }
}
