//! The state of a unit that outlives the process, in a small TOML file next
//! to the volume, restored when the unit is opened again:
//!
//! * persist through power loss (SPC-4 §5.13.5): when the last REGISTER set
//!   APTPL, the registrations and the persistent reservation;
//! * reservations made without APTPL are kept too, marked `aptpl = false`,
//!   so that a unit opened anew while the node runs (a replica promoted,
//!   another placement) has them, and are dropped when the node starts;
//! * the mode parameters (WCE, D_SENSE, SWP), whose changes are all saved
//!   (see [`super::mode`]).
//!
//! The file is rewritten after every change of either, before the command
//! that made it returns GOOD: written to a temporary name, synced, then
//! renamed over the old one, so a crash leaves either the old or the new
//! state. When nothing is left to keep (no registrations, mode parameters
//! at their initial values) the file is removed. SPC-2 reservations are never
//! persisted.
//!
//! Each registration is saved as its initiator port (name, and ISID unless
//! it was registered by a name-only TransportID) and its target port (a
//! relative target port identifier, or `all_target_ports`). Files written
//! before registrations could cover all target ports also name the nexus's
//! target, TPGT and target port group; those are ignored on loading.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::cdb::PrOutAction;
use super::lu::LogicalUnit;
use super::mode::{self, ModeState, UnitShape, WriteCache};
use super::pr::{isid_hex, parse_isid, Holder, InitiatorPort, PrState, PrType, Registration, Reservation};
use super::sense::{SenseReason, UnitAttention};
use super::Nexus;

#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Snapshot {
    /// Absent when only mode parameters are kept (no APTPL).
    #[serde(default)]
    generation: Option<u32>,
    /// `false` for reservations made without APTPL: kept for another copy
    /// of the volume taking over, never across a restart (absent: `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aptpl: Option<bool>,
    #[serde(default, rename = "registration")]
    registrations: Vec<SavedRegistration>,
    #[serde(default)]
    reservation: Option<Held>,
    #[serde(default)]
    mode: Option<SavedMode>,
}

#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct SavedMode {
    wce: bool,
    d_sense: bool,
    swp: bool,
}

/// What a unit takes back when it is opened: its reservations if they were
/// kept with APTPL, and its mode parameters (WCE as saved; the policy
/// decides whether it applies).
#[derive(Debug, Default)]
pub(crate) struct Saved {
    pub pr: Option<PrState>,
    pub mode: Option<ModeState>,
}

/// An initiator port on one target port or all of them.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Port {
    initiator: String,
    /// The ISID as 12 hex digits; absent for every ISID of the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    isid: Option<String>,
    /// Absent with `all_target_ports`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    relative_target_port: Option<u16>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    all_target_ports: bool,
}

#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct SavedRegistration {
    #[serde(flatten)]
    port: Port,
    /// The reservation key, as 16 hex digits (TOML integers are signed).
    key: String,
}

#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Held {
    holder: Port,
    pr_type: u8,
}

fn port(initiator: &InitiatorPort, target_port: Option<u16>) -> Port {
    Port {
        initiator: initiator.name.to_string(),
        isid: initiator.isid.as_ref().map(isid_hex),
        relative_target_port: target_port,
        all_target_ports: target_port.is_none(),
    }
}

/// The initiator port and target port (`None`: all) `p` names.
fn ports(p: &Port) -> Result<(InitiatorPort, Option<u16>), String> {
    let bad = || format!("bad port {p:?}");
    if p.initiator.is_empty() {
        return Err(bad());
    }
    let isid = match &p.isid {
        Some(hex) if hex.len() == 12 => Some(parse_isid(hex).ok_or_else(bad)?),
        Some(_) => return Err(bad()),
        None => None,
    };
    let target_port = match (p.all_target_ports, p.relative_target_port) {
        (true, _) => None,
        (false, Some(rtp)) if rtp != 0 => Some(rtp),
        (false, _) => return Err(bad()),
    };
    let name = crate::iscsi::name::normalize(&p.initiator).map_err(|_| bad())?;
    Ok((InitiatorPort { name: Arc::from(name), isid }, target_port))
}

fn snapshot(pr: &PrState, mode: Option<&ModeState>) -> Snapshot {
    let kept = (pr.aptpl || !pr.registrations.is_empty()).then_some(pr);
    Snapshot {
        generation: kept.map(|pr| pr.generation),
        aptpl: kept.filter(|pr| !pr.aptpl).map(|_| false),
        registrations: kept
            .iter()
            .flat_map(|pr| &pr.registrations)
            .map(|r| SavedRegistration { port: port(&r.initiator, r.target_port), key: format!("{:016x}", r.key) })
            .collect(),
        reservation: kept
            .and_then(|pr| pr.reservation.as_ref())
            .map(|r| Held { holder: port(&r.holder.initiator, Some(r.holder.target_port)), pr_type: r.pr_type as u8 }),
        mode: mode.map(|m| SavedMode { wce: m.wce, d_sense: m.d_sense, swp: m.swp }),
    }
}

/// The reservations a saved file describes (with APTPL set), or why they cannot be read.
fn restore(s: &Snapshot) -> Result<PrState, String> {
    let mut pr = PrState::default();
    pr.generation = s.generation.unwrap_or(0);
    pr.aptpl = s.aptpl.unwrap_or(true);
    for r in &s.registrations {
        let (initiator, target_port) = ports(&r.port)?;
        let key = u64::from_str_radix(&r.key, 16).map_err(|e| format!("bad key {:?}: {e}", r.key))?;
        pr.registrations.push(Registration { initiator, target_port, key });
    }
    if let Some(h) = &s.reservation {
        let (initiator, target_port) = ports(&h.holder)?;
        let target_port = target_port.ok_or_else(|| format!("holder on all target ports {:?}", h.holder))?;
        let pr_type = PrType::from_field(h.pr_type).ok_or_else(|| format!("bad type {}", h.pr_type))?;
        pr.reservation = Some(Reservation { holder: Holder { initiator, target_port }, pr_type });
    }
    pr.validate()?;
    Ok(pr)
}

/// Reads the state saved at `path`; nothing if there is no file. Reservations
/// made without APTPL are dropped (this is a restart) unless `warm`.
pub(crate) fn load_as(path: &Path, warm: bool) -> std::io::Result<Saved> {
    let mut saved = load(path)?;
    if !warm && saved.pr.as_ref().is_some_and(|pr| !pr.aptpl) {
        saved.pr = None;
    }
    Ok(saved)
}

/// Reads everything saved at `path`; nothing if there is no file.
pub(crate) fn load(path: &Path) -> std::io::Result<Saved> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Saved::default()),
        Err(e) => return Err(e),
    };
    parse(&text).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// The state a saved file's text describes.
fn parse(text: &str) -> std::io::Result<Saved> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let snap: Snapshot = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    let pr = if snap.generation.is_some() { Some(restore(&snap).map_err(bad)?) } else { None };
    let mode = snap.mode.map(|m| ModeState { wce: m.wce, d_sense: m.d_sense, swp: m.swp });
    Ok(Saved { pr, mode })
}

/// What [`write`] should leave at the path: the file's text, or `None` (no
/// file) when neither the reservations (none registered, no APTPL) nor the
/// mode parameters (as a unit under `policy` starts) need keeping. Cheap,
/// so it runs under the unit's lock; the writing does not.
pub(crate) fn render(pr: &PrState, mode: &ModeState, policy: WriteCache) -> std::io::Result<Option<String>> {
    let mode = (*mode != ModeState::initial(policy)).then_some(mode);
    if !pr.aptpl && pr.registrations.is_empty() && mode.is_none() {
        return Ok(None);
    }
    toml::to_string(&snapshot(pr, mode)).map(Some).map_err(std::io::Error::other)
}

/// Saves `pr` at `path` if APTPL is set, else removes any saved state.
#[cfg(test)]
pub(crate) fn save(path: &Path, pr: &PrState) -> std::io::Result<()> {
    let policy = WriteCache::default();
    write(path, render(pr, &ModeState::initial(policy), policy)?.as_deref())
}

/// Puts `text` at `path` durably (a temporary file, synced, renamed over
/// the old one), or removes the file when `text` is `None`. Blocking I/O:
/// callers on the async runtime run it on the blocking pool.
pub(crate) fn write(path: &Path, text: Option<&str>) -> std::io::Result<()> {
    let Some(text) = text else {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the rename itself durable; not every filesystem allows it.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Changing what is saved: each change of a unit's saved state runs alone
/// (`state_changes`), is worked out on a copy away from the unit's lock,
/// is written on the blocking pool, and only then committed; a save that
/// fails changes nothing and the command does not end GOOD.
impl LogicalUnit {
    /// Keeps the unit's state in the file at `path` (none for a volume with
    /// nowhere to keep it) and takes back what was saved there, under the
    /// write-cache `policy`. Call once, right after opening the unit.
    pub fn open_state(&self, path: Option<PathBuf>, policy: WriteCache) -> std::io::Result<()> {
        self.open_state_as(path, policy, false)
    }

    /// As [`LogicalUnit::open_state`] for a unit opened anew while the node
    /// runs (another placement, a replica promoted): reservations made
    /// without APTPL are kept too, since the volume did not restart.
    pub fn reopen_state(&self, path: Option<PathBuf>, policy: WriteCache) -> std::io::Result<()> {
        self.open_state_as(path, policy, true)
    }

    fn open_state_as(&self, path: Option<PathBuf>, policy: WriteCache, warm: bool) -> std::io::Result<()> {
        let saved = match &path {
            Some(p) => load_as(p, warm)?,
            None => Saved::default(),
        };
        if let Some(p) = path {
            self.state_file.set(p).map_err(|_| std::io::Error::other("the unit's state file is set already"))?;
        }
        let mut st = self.state();
        if let Some(pr) = saved.pr {
            st.pr = pr;
        }
        let mut mode = saved.mode.unwrap_or(ModeState::initial(policy));
        mode.wce = policy.wce(saved.mode.map(|m| m.wce));
        st.mode = mode;
        st.write_cache = policy;
        Ok(())
    }

    /// The unit's state as it is saved and sent to other copies.
    pub fn saved_state(&self) -> std::io::Result<Option<String>> {
        let st = self.state();
        render(&st.pr, &st.mode, st.write_cache)
    }

    /// Writes `pr` and `mode` to every other copy of the volume (a
    /// replicated backend's replicas), then to the unit's state file, if it
    /// has one: this node keeps on disk only a state the other copies have
    /// (CLUSTER.md §6, rule 6), so a change that could not be replicated
    /// fails whole and does not come back when the unit reopens. The local
    /// file may fail only where it is not `needed` (reservations without
    /// APTPL, kept there for a reopened unit alone); the other copies never.
    async fn save(&self, pr: &PrState, mode: &ModeState, policy: WriteCache, needed: bool) -> std::io::Result<()> {
        let text = render(pr, mode, policy)?;
        self.backend.replicate_state(text.clone().map(Bytes::from)).await.map_err(std::io::Error::other).inspect_err(
            |e| tracing::error!(volume = %self.spec.name, "cannot save the unit's state on the replicas: {e}"),
        )?;
        if let Some(path) = self.state_file.get() {
            let path = path.clone();
            let local = text.clone();
            let saved = tokio::task::spawn_blocking(move || write(&path, local.as_deref()))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match saved {
                Err(e) if needed => {
                    tracing::error!(volume = %self.spec.name, "cannot save the unit's state: {e}");
                    return Err(e);
                }
                Err(e) => tracing::warn!(volume = %self.spec.name, "cannot keep the reservations on disk: {e}"),
                Ok(()) => {}
            }
        }
        Ok(())
    }

    /// Takes the saved state another copy sent (this node is a replica):
    /// reservations with APTPL and mode parameters, as the primary has them,
    /// so that READ KEYS and READ RESERVATION answer the same here.
    pub fn take_replicated_state(&self, text: Option<&str>, policy: WriteCache) -> std::io::Result<()> {
        let saved = match text {
            Some(t) => parse(t)?,
            None => Saved::default(),
        };
        let mut st = self.state();
        st.pr.commit(saved.pr.unwrap_or_default());
        let mut mode = saved.mode.unwrap_or(ModeState::initial(policy));
        mode.wce = policy.wce(saved.mode.map(|m| m.wce));
        st.mode = mode;
        Ok(())
    }

    /// PERSISTENT RESERVE OUT (SPC-4 §6.16) sent by `nexus`. A save that
    /// fails answers INSUFFICIENT REGISTRATION RESOURCES (as LIO does).
    /// Once committed, PREEMPT AND ABORT aborts the preempted nexuses'
    /// tasks (SPC-4 §5.13.11.2.6).
    pub(crate) async fn persistent_reserve_out(
        &self,
        nexus: &Nexus,
        action: PrOutAction,
        pr_type: u8,
        param_len: u32,
        data: &Bytes,
    ) -> Result<(), SenseReason> {
        let _one_at_a_time = self.state_changes.lock().await;
        // Only the copy that serves the volume changes its state: a replica
        // answers as its media commands do (NOT READY, transitioning).
        self.backend.serving().map_err(super::sbc::write_error)?;
        let (mut next, mut raised, mode, policy, was_aptpl) = {
            let st = self.state();
            (st.pr.clone(), st.ua.scratch(), st.mode, st.write_cache, st.pr.aptpl)
        };
        let preempted = next.reserve_out(&nexus.id, action, pr_type, param_len, data, &mut raised)?;
        // With APTPL the state must be on disk; without, on the volume's
        // other copies (which take over with it), and on disk if it can.
        self.save(&next, &mode, policy, next.aptpl || was_aptpl)
            .await
            .map_err(|_| SenseReason::InsufficientRegistrationResources)?;
        {
            let mut st = self.state();
            st.pr.commit(next);
            st.ua.merge(raised);
        }
        if action == PrOutAction::PreemptAndAbort && !preempted.is_empty() {
            self.abort_tasks_where(|id| id != &nexus.id && preempted.iter().any(|r| r.takes_in(id)));
        }
        Ok(())
    }

    /// MODE SELECT (SPC-4 §6.9) with its parameter list: the new values are
    /// saved, then the other nexuses get MODE PARAMETERS CHANGED (§7.5.1).
    /// A save that fails is INTERNAL TARGET FAILURE and changes nothing.
    pub(crate) async fn mode_select(
        &self,
        nexus: &Nexus,
        unit: &UnitShape,
        ten: bool,
        data: &[u8],
    ) -> Result<(), SenseReason> {
        let _one_at_a_time = self.state_changes.lock().await;
        // Only the copy that serves the volume changes its state: a replica
        // answers as its media commands do (NOT READY, transitioning).
        self.backend.serving().map_err(super::sbc::write_error)?;
        let (current, pr, policy) = {
            let st = self.state();
            (st.mode, st.pr.clone(), st.write_cache)
        };
        let next = mode::select(&current, unit, ten, data)?;
        if next == current {
            return Ok(());
        }
        self.save(&pr, &next, policy, true).await.map_err(|_| SenseReason::InternalFailure)?;
        let mut st = self.state();
        st.mode = next;
        st.ua.raise_others(&nexus.id, UnitAttention::ModeParametersChanged);
        Ok(())
    }

    /// Applies a new write-cache policy live. When WCE changes, every nexus
    /// gets MODE PARAMETERS CHANGED. The policy is the administrator's: it
    /// applies even if the saved state cannot be written (that is logged).
    /// Returns whether WCE changed.
    pub async fn set_write_cache(&self, policy: WriteCache) -> bool {
        let _one_at_a_time = self.state_changes.lock().await;
        let (mut next, pr, old) = {
            let st = self.state();
            (st.mode, st.pr.clone(), st.write_cache)
        };
        if old == policy {
            return false;
        }
        // Under the initiator policy WCE starts at 1 (SBC-3's default).
        next.wce = policy.wce(None);
        let _ = self.save(&pr, &next, policy, true).await;
        let mut st = self.state();
        let changed = st.mode.wce != next.wce;
        st.mode = next;
        st.write_cache = policy;
        if changed {
            st.ua.raise_all(UnitAttention::ModeParametersChanged);
        }
        changed
    }

    /// The write-cache policy and the WCE initiators see now.
    pub fn write_cache(&self) -> (WriteCache, bool) {
        let st = self.state();
        (st.write_cache, st.mode.wce)
    }

    /// RESERVE(6) or RELEASE(6) (SPC-2 §7.21, §7.17), in turn with the
    /// other changes so that neither slips between a copy and its commit.
    pub(crate) async fn spc2_reservation(&self, nexus: &Nexus, reserve: bool) -> Result<(), SenseReason> {
        let _one_at_a_time = self.state_changes.lock().await;
        let mut st = self.state();
        if reserve {
            st.pr.reserve6(&nexus.id)
        } else {
            st.pr.release6(&nexus.id);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::cdb::{PrInAction, PrOutAction};
    use crate::scsi::testkit::nexus_id;
    use crate::scsi::ua::UaTable;
    use crate::scsi::NexusId;
    use bytes::Bytes;

    fn register(pr: &mut PrState, id: &NexusId, key: u64, aptpl: bool) {
        let mut p = vec![0u8; 24];
        p[8..16].copy_from_slice(&key.to_be_bytes());
        p[20] = u8::from(aptpl);
        pr.reserve_out(id, PrOutAction::RegisterAndIgnore, 0, 24, &Bytes::from(p), &mut UaTable::default()).unwrap();
    }

    #[test]
    fn saved_state_comes_back_and_clearing_aptpl_removes_it() {
        let dir = std::env::temp_dir().join(format!("portico-aptpl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vol.img.pr.toml");
        let (a, b) = (nexus_id(1), nexus_id(2));
        let mut pr = PrState::default();
        register(&mut pr, &a, 0xfeed_0000_0000_0001, true);
        register(&mut pr, &b, 2, true);
        let mut p = vec![0u8; 24];
        p[0..8].copy_from_slice(&0xfeed_0000_0000_0001u64.to_be_bytes());
        pr.reserve_out(&a, PrOutAction::Reserve, 3, 24, &Bytes::from(p), &mut UaTable::default()).unwrap();
        save(&path, &pr).unwrap();

        let back = load(&path).unwrap().pr.expect("saved");
        assert_eq!(back.reserve_in(PrInAction::ReadKeys), pr.reserve_in(PrInAction::ReadKeys));
        assert_eq!(back.reserve_in(PrInAction::ReadReservation), pr.reserve_in(PrInAction::ReadReservation));
        assert_eq!(back.reserve_in(PrInAction::ReportCapabilities)[3] & 0x01, 1, "PTPL_A");

        // Without APTPL the registrations are kept for a reopened unit only.
        register(&mut pr, &b, 2, false);
        save(&path, &pr).unwrap();
        assert!(load_as(&path, false).unwrap().pr.is_none());
        let warm = load_as(&path, true).unwrap().pr.expect("kept for a reopen");
        assert!(!warm.aptpl);
        assert_eq!(warm.reserve_in(PrInAction::ReadKeys), pr.reserve_in(PrInAction::ReadKeys));
        // Nothing registered, nothing kept: the file goes.
        save(&path, &PrState::default()).unwrap();
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("portico-aptpl-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.pr.toml");
        std::fs::write(&path, "generation = 1\n[[registration]]\ninitiator='i'\nisid='zz'\ntarget='t'\ntpgt=1\nrelative_target_port=1\ntarget_port_group=1\nkey='1'\n").unwrap();
        assert!(load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn out(pr: &mut PrState, id: &NexusId, action: PrOutAction, pr_type: u8, p: &[u8]) {
        let data = Bytes::copy_from_slice(p);
        pr.reserve_out(id, action, pr_type, p.len() as u32, &data, &mut UaTable::default()).unwrap();
    }

    #[test]
    fn spec_i_pt_all_tg_pt_and_moved_state_round_trips() {
        let dir = std::env::temp_dir().join(format!("portico-aptpl-rt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vol.img.pr.toml");
        let (a, b, c, d) = (nexus_id(1), nexus_id(2), nexus_id(3), nexus_id(4));
        let mut pr = PrState::default();
        // a on all target ports, with c (every ISID) named by SPEC_I_PT.
        let c_tid = InitiatorPort { name: c.initiator_name.clone(), isid: None }.transport_id();
        let mut p = vec![0u8; 24];
        p[8..16].copy_from_slice(&0x11u64.to_be_bytes());
        p[20] = 0x08 | 0x04 | 0x01;
        p.extend_from_slice(&(c_tid.len() as u32).to_be_bytes());
        p.extend_from_slice(&c_tid);
        out(&mut pr, &a, PrOutAction::Register, 0, &p);
        register(&mut pr, &b, 0x22, true);
        let mut p = vec![0u8; 24];
        p[0..8].copy_from_slice(&0x11u64.to_be_bytes());
        out(&mut pr, &a, PrOutAction::Reserve, 1, &p);
        // Moved to d on target port 3.
        let d_tid = InitiatorPort { name: d.initiator_name.clone(), isid: Some(d.isid) }.transport_id();
        let mut p = vec![0u8; 24];
        p[0..8].copy_from_slice(&0x11u64.to_be_bytes());
        p[8..16].copy_from_slice(&0x44u64.to_be_bytes());
        p[17] = 0x01;
        p[18..20].copy_from_slice(&3u16.to_be_bytes());
        p[20..24].copy_from_slice(&(d_tid.len() as u32).to_be_bytes());
        p.extend_from_slice(&d_tid);
        out(&mut pr, &a, PrOutAction::RegisterAndMove, 0, &p);

        let text = toml::to_string(&snapshot(&pr, None)).unwrap();
        assert_eq!(toml::from_str::<Snapshot>(&text).unwrap(), snapshot(&pr, None));
        assert!(text.contains("all_target_ports = true"), "{text}");
        save(&path, &pr).unwrap();
        let back = load(&path).unwrap().pr.expect("saved");
        for action in [
            PrInAction::ReadKeys,
            PrInAction::ReadReservation,
            PrInAction::ReadFullStatus,
            PrInAction::ReportCapabilities,
        ] {
            assert_eq!(back.reserve_in(action), pr.reserve_in(action), "{action:?}");
        }
        let write = crate::scsi::cdb::Cdb::decode(&[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap();
        let d3 = NexusId { relative_target_port: 3, ..d.clone() };
        let c9 = NexusId { isid: [0x80, 0, 0, 0, 9, 9], ..c.clone() };
        assert!(back.check(&d3, &write).is_ok());
        assert!(back.check(&d, &write).is_err());
        assert!(back.check(&NexusId { relative_target_port: 5, ..a.clone() }, &write).is_err());
        assert_eq!(back.registrations, pr.registrations);
        assert!(back.registrations.iter().any(|r| r.initiator.name == c9.initiator_name && r.initiator.isid.is_none()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_from_before_all_target_ports_still_load() {
        let dir = std::env::temp_dir().join(format!("portico-aptpl-old-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.pr.toml");
        let port = "initiator = 'iqn.2026-11.test:init1'\nisid = '800000000001'\ntarget = 'iqn.2026-11.test:target'\n\
                    tpgt = 1\nrelative_target_port = 1\ntarget_port_group = 1\n";
        let text = format!(
            "generation = 4\n[[registration]]\n{port}key = '0000000000000011'\n\
             [reservation]\npr_type = 1\n[reservation.holder]\n{port}"
        );
        std::fs::write(&path, text).unwrap();
        let back = load(&path).unwrap().pr.expect("saved");
        assert_eq!(back.generation, 4);
        let write = crate::scsi::cdb::Cdb::decode(&[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap();
        assert!(back.check(&nexus_id(1), &write).is_ok());
        assert!(back.check(&nexus_id(2), &write).is_err());
        assert_eq!(&back.reserve_in(PrInAction::ReadReservation)[8..16], &0x11u64.to_be_bytes());
        // A registration with neither a target port nor all of them is refused.
        std::fs::write(&path, "generation = 1\n[[registration]]\ninitiator = 'i'\nkey = '1'\n").unwrap();
        assert!(load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
