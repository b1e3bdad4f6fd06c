//! SCSI device semantics: SPC-4 and SBC-3 over a [`BlockBackend`].
//!
//! This is the contract the iSCSI layer relies on; everything behind it
//! (CDB decoding, sense, unit attentions, each command) lives in submodules.
//!
//! * The transport builds one [`Nexus`] per I_T nexus (SAM-5 §4.6: initiator
//!   port = initiator name + ISID, target port = target name + TPGT) when a
//!   session logs in, and a [`LunMap`] of the logical units that nexus may see
//!   (the target's LUN map filtered by ACL).
//! * Each SCSI command is handed over whole — CDB plus all Data-Out already
//!   collected — to [`execute`], which answers with a [`ScsiResponse`]
//!   (CHECK CONDITION with sense, RESERVATION CONFLICT without, CONDITION
//!   MET for PRE-FETCH). [`expected_data_out`] tells the transport how much
//!   Data-Out a CDB asks for, to reconcile with the Expected Data Transfer
//!   Length.
//! * Task management functions that touch logical units call
//!   [`LogicalUnit::reset`]; aborting running tasks is the transport's job.
//! * Dropping a [`Nexus`] when its session ends is its I_T nexus loss: each
//!   unit it used forgets its unit attentions and SPC-2 reservation.
//!
//! Inside, a command goes: LUN lookup → [`cdb::Cdb::decode`] (checked
//! against the CDB usage data in `opcodes`) → unit attention (`ua`) →
//! pre-execution checks (ALUA access state in `alua`, reservations in `pr`,
//! write protection) → the
//! command (`spc`, `sbc`, `thin`, `mode`, `inquiry`) → one mapping of
//! [`SenseReason`] to sense data (`sense`).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::backend::BlockBackend;

/// SCSI status codes (SAM-5 §5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ScsiStatus {
    Good = 0x00,
    CheckCondition = 0x02,
    ConditionMet = 0x04,
    Busy = 0x08,
    ReservationConflict = 0x18,
    TaskSetFull = 0x28,
    AcaActive = 0x30,
    TaskAborted = 0x40,
}

/// SAM task attribute, from the iSCSI SCSI Command PDU's ATTR field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskAttr {
    Untagged,
    Simple,
    Ordered,
    HeadOfQueue,
    Aca,
}

/// Identity of one I_T nexus.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NexusId {
    /// iSCSI initiator name (IQN or EUI), as sent in the login.
    pub initiator_name: Arc<str>,
    /// ISID of the session, the initiator port is `"<name>,i,0x<isid>"`.
    pub isid: [u8; 6],
    /// Target name (IQN).
    pub target_name: Arc<str>,
    /// Target portal group tag of the portal group the session logged in through.
    pub tpgt: u16,
    /// Relative target port identifier (SPC-4 §7.8.6.5), unique per target port in the engine.
    pub relative_target_port: u16,
    /// Target port group (ALUA) the target port belongs to.
    pub target_port_group: u16,
}

/// One I_T nexus as the SCSI layer sees it: its identity plus the state SPC-4
/// keeps per nexus that is not tied to one logical unit.
#[derive(Debug)]
pub struct Nexus {
    pub id: NexusId,
    pub(crate) state: std::sync::Mutex<nexus::NexusState>,
    /// Where the units it uses ask for its tasks to be aborted.
    pub aborts: Arc<nexus::AbortMailbox>,
    /// [`Privileges`] as bits, changed live.
    privileges: std::sync::atomic::AtomicU8,
}

/// One SCSI command as received from the transport.
#[derive(Clone, Debug)]
pub struct ScsiCommand {
    /// LUN decoded from the 8-byte LUN field (SAM-5 §4.7, flat or peripheral addressing).
    pub lun: u64,
    /// The CDB, including any additional CDB bytes from the AHS.
    pub cdb: Bytes,
    pub attr: TaskAttr,
    /// All Data-Out for a write-type command, already assembled.
    pub data_out: Bytes,
    /// Expected Data Transfer Length for a read-type command (from the PDU).
    pub expected_in_len: u32,
}

/// What the transport sends back: status, Data-In and sense data.
///
/// `data_in` may be longer than the initiator's expected length; the
/// transport truncates and reports the residual.
#[derive(Clone, Debug)]
pub struct ScsiResponse {
    pub status: ScsiStatus,
    pub data_in: Bytes,
    /// Sense data (fixed or descriptor format), empty unless CHECK CONDITION.
    pub sense: Bytes,
}

/// The logical units one nexus may address, by LUN.
pub type LunMap = BTreeMap<u64, Arc<LogicalUnit>>;

/// Static description of a logical unit, from the engine configuration.
#[derive(Clone, Debug)]
pub struct LuSpec {
    /// Volume name (used in logs and counters).
    pub name: String,
    /// NAA IEEE Registered Extended identifier (16 bytes, NAA type 6), stable for the volume's life.
    pub naa: [u8; 16],
    /// Unit serial number (VPD 80h), stable for the volume's life.
    pub serial: String,
    /// 512 or 4096.
    pub block_size: u32,
    pub read_only: bool,
    /// Whether the unit takes reservations (PERSISTENT RESERVE IN/OUT,
    /// RESERVE/RELEASE); without them those commands are not supported.
    pub reservations: bool,
    /// The unit's data is on another node: it is exported here through
    /// standby port groups, which answer what needs no data, or through
    /// active/non-optimized ones, which send the rest to the node that
    /// serves it ([`alua::check_remote`]).
    pub remote: bool,
}

pub mod alua;
pub mod cdb;
pub mod forward;
mod inquiry;
mod latency;
mod lu;
mod mode;
pub mod nexus;
mod opcodes;
mod pr;
mod sbc;
pub mod sense;
mod spc;
#[cfg(any(test, feature = "test-util"))]
pub mod testkit;
#[cfg(test)]
mod tests;
mod thin;
mod ua;
mod unit_state;
#[cfg(test)]
mod write_cache_tests;
mod xcopy;

pub use alua::AluaState;
pub use latency::{LatencyHistogram, BUCKET_BOUNDS_MICROS};
pub use lu::{LogicalUnit, LuCounters};
pub use mode::WriteCache;
pub use nexus::Privileges;
pub use pr::{RegistrationStatus, ReservationStatus};
pub use sense::SenseReason;
/// Puts a small file in place durably (temporary name, sync, rename), or
/// removes it for `None`; see [`unit_state`].
pub(crate) use unit_state::write as save_file;

/// Runs one command on behalf of `nexus` against the units in `luns`.
///
/// Never fails: every error becomes CHECK CONDITION with sense data.
pub async fn execute(luns: &LunMap, nexus: &Nexus, cmd: ScsiCommand) -> ScsiResponse {
    lu::dispatch(luns, nexus, cmd).await
}

/// How many bytes of Data-Out `cdb` asks for when sent to `lun`, so the
/// transport can report a residual when the Expected Data Transfer Length
/// differs (RFC 7143 §11.4.5) and drop Data-Out beyond it.
///
/// `None` when the LUN or the CDB is unknown or invalid (the command then
/// fails in [`execute`]), and for commands whose Data-Out must have exactly
/// the size the CDB implies (COMPARE AND WRITE, WRITE SAME): hand those their
/// Data-Out whole, the unit rejects a wrong size itself.
pub fn expected_data_out(luns: &LunMap, lun: u64, cdb: &[u8]) -> Option<u64> {
    let lu = luns.get(&lun)?;
    let cdb = cdb::Cdb::decode(cdb).ok()?;
    (!cdb.data_out_exact()).then(|| cdb.data_out_len(lu.spec.block_size))
}

/// Bytes of Data-In reading the medium for `cdb` produces on `lun`, at most
/// the Block Limits page's MAXIMUM TRANSFER LENGTH (longer reads are refused
/// before anything is read); 0 for other commands and unknown LUNs. The
/// transport budgets a command's memory by the larger of this and its
/// Expected Data Transfer Length.
pub fn media_data_in(luns: &LunMap, lun: u64, cdb: &[u8]) -> u64 {
    let Some(lu) = luns.get(&lun) else { return 0 };
    cdb::Cdb::decode(cdb)
        .map(|c| c.media_data_in_len(lu.spec.block_size).min(u64::from(inquiry::MAX_TRANSFER_BYTES)))
        .unwrap_or(0)
}

/// Bytes of Data-Out `cdb` asks for on a unit with `block_size`-byte blocks
/// (0 for commands without Data-Out); `None` if the CDB does not decode.
pub fn data_out_len(cdb: &[u8], block_size: u32) -> Option<u64> {
    cdb::Cdb::decode(cdb).ok().map(|c| c.data_out_len(block_size))
}

#[allow(unused_imports)]
use BlockBackend as _;
