//! Persist through power loss (SPC-4 §5.13.5): when the last REGISTER set
//! APTPL, the registrations and the persistent reservation of a unit are
//! kept in a small TOML file (next to the volume) and restored when the unit
//! is opened again.
//!
//! The file is rewritten after every PERSISTENT RESERVE OUT that changes
//! anything while APTPL is set: written to a temporary name, synced, then
//! renamed over the old one, so a crash leaves either the old or the new
//! state. When APTPL is cleared the file is removed. SPC-2 reservations are
//! never persisted.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use super::pr::{PrState, PrType, Reservation};
use super::NexusId;

#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Snapshot {
    generation: u32,
    #[serde(default, rename = "registration")]
    registrations: Vec<Registration>,
    #[serde(default)]
    reservation: Option<Held>,
}

#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Port {
    initiator: String,
    /// The ISID as 12 hex digits.
    isid: String,
    target: String,
    tpgt: u16,
    relative_target_port: u16,
    target_port_group: u16,
}

#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Registration {
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

fn port(id: &NexusId) -> Port {
    Port {
        initiator: id.initiator_name.to_string(),
        isid: id.isid.iter().map(|b| format!("{b:02x}")).collect(),
        target: id.target_name.to_string(),
        tpgt: id.tpgt,
        relative_target_port: id.relative_target_port,
        target_port_group: id.target_port_group,
    }
}

fn nexus(p: &Port) -> Option<NexusId> {
    if p.isid.len() != 12 {
        return None;
    }
    let mut isid = [0u8; 6];
    for (i, b) in isid.iter_mut().enumerate() {
        *b = u8::from_str_radix(p.isid.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(NexusId {
        initiator_name: Arc::from(p.initiator.as_str()),
        isid,
        target_name: Arc::from(p.target.as_str()),
        tpgt: p.tpgt,
        relative_target_port: p.relative_target_port,
        target_port_group: p.target_port_group,
    })
}

fn snapshot(pr: &PrState) -> Snapshot {
    Snapshot {
        generation: pr.generation,
        registrations: pr
            .keys
            .iter()
            .map(|(id, k)| Registration { port: port(id), key: format!("{k:016x}") })
            .collect(),
        reservation: pr.reservation.as_ref().map(|r| Held { holder: port(&r.holder), pr_type: r.pr_type as u8 }),
    }
}

/// The state a saved file describes (with APTPL set), or why it cannot be read.
fn restore(s: &Snapshot) -> Result<PrState, String> {
    let mut pr = PrState::default();
    pr.generation = s.generation;
    pr.aptpl = true;
    for r in &s.registrations {
        let id = nexus(&r.port).ok_or_else(|| format!("bad port {:?}", r.port))?;
        let key = u64::from_str_radix(&r.key, 16).map_err(|e| format!("bad key {:?}: {e}", r.key))?;
        pr.keys.insert(id, key);
    }
    if let Some(h) = &s.reservation {
        let holder = nexus(&h.holder).ok_or_else(|| format!("bad holder {:?}", h.holder))?;
        let pr_type = PrType::from_field(h.pr_type).ok_or_else(|| format!("bad type {}", h.pr_type))?;
        pr.reservation = Some(Reservation { holder, pr_type });
    }
    Ok(pr)
}

/// Reads the state saved at `path`; `Ok(None)` if there is none.
pub(crate) fn load(path: &Path) -> std::io::Result<Option<PrState>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {m}", path.display()));
    let snap: Snapshot = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    restore(&snap).map(Some).map_err(bad)
}

/// Saves `pr` at `path` if APTPL is set, else removes any saved state.
pub(crate) fn save(path: &Path, pr: &PrState) -> std::io::Result<()> {
    if !pr.aptpl {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let text = toml::to_string(&snapshot(pr)).map_err(std::io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::cdb::{PrInAction, PrOutAction};
    use crate::scsi::testkit::nexus_id;
    use crate::scsi::ua::UaTable;
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

        let back = load(&path).unwrap().expect("saved");
        assert_eq!(back.reserve_in(PrInAction::ReadKeys), pr.reserve_in(PrInAction::ReadKeys));
        assert_eq!(back.reserve_in(PrInAction::ReadReservation), pr.reserve_in(PrInAction::ReadReservation));
        assert_eq!(back.reserve_in(PrInAction::ReportCapabilities)[3] & 0x01, 1, "PTPL_A");

        register(&mut pr, &b, 2, false);
        save(&path, &pr).unwrap();
        assert!(load(&path).unwrap().is_none());
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
}
