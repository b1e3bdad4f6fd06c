//! Per-I_T-nexus state that is not tied to one logical unit (SAM-5 §4.6).
//!
//! That is the pending REPORTED LUNS DATA HAS CHANGED unit attention
//! (SPC-4 §6.33, SAM-5 §5.14), since the inventory belongs to the nexus's
//! LUN map, not to any unit in it; the units the nexus has used, so that
//! dropping the nexus is its I_T nexus loss for each of them (SAM-5 §6.3.4);
//! and the mailbox through which a unit asks the transport to abort the
//! nexus's tasks (a LOGICAL UNIT RESET from another nexus, SAM-5 §6.3.3, or
//! PREEMPT AND ABORT, SPC-4 §5.13.11.2.6).
//!
//! A nexus also carries its [`Privileges`]: whether its initiator may send
//! the commands whose effect reaches every other host of the target.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Weak};

use tokio::sync::Notify;

use super::{LogicalUnit, Nexus, NexusId};

/// Requests to abort this nexus's tasks on some units.
#[derive(Debug, Default)]
pub struct AbortMailbox {
    /// The units (by address, compared only) whose tasks are to be aborted.
    units: std::sync::Mutex<Vec<usize>>,
    notify: Notify,
}

impl AbortMailbox {
    pub(crate) fn request(&self, lu: &LogicalUnit) {
        let addr = lu as *const LogicalUnit as usize;
        let mut units = self.units.lock().unwrap_or_else(|e| e.into_inner());
        if !units.contains(&addr) {
            units.push(addr);
        }
        drop(units);
        self.notify.notify_one();
    }

    /// Waits for requests, then returns the units to abort tasks on.
    pub async fn requested(&self) -> Vec<usize> {
        self.notify.notified().await;
        std::mem::take(&mut *self.units.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether `lu` is the unit at `addr`.
    pub fn is(addr: usize, lu: &Arc<LogicalUnit>) -> bool {
        Arc::as_ptr(lu) as usize == addr
    }
}

/// Commands one initiator may send that change what every other host
/// sees. The defaults are what a cautious administrator chooses:
///
/// * TARGET COLD RESET (RFC 7143 §11.5.1) closes every session of the
///   target: refused (task management response "function authorization
///   failed"). TARGET WARM RESET, which Linux sends in error recovery, and
///   LOGICAL UNIT RESET stay allowed.
/// * SET TARGET PORT GROUPS (SPC-4 §6.38) is explicit ALUA, how Linux
///   dm-multipath (scsi_dh_alua) and Windows MPIO activate a standby path
///   when the active one fails: allowed. Where it is not, INQUIRY reports
///   implicit ALUA only (TPGS 01b) and the command is not supported.
/// * Software write protection (SWP in the Control mode page, SPC-4
///   §7.5.8) would make the volume read-only for every host: not changeable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Privileges {
    pub target_cold_reset: bool,
    pub set_target_port_groups: bool,
    pub software_write_protect: bool,
}

impl Default for Privileges {
    fn default() -> Self {
        Privileges { target_cold_reset: false, set_target_port_groups: true, software_write_protect: false }
    }
}

impl Privileges {
    fn bits(self) -> u8 {
        u8::from(self.target_cold_reset)
            | u8::from(self.set_target_port_groups) << 1
            | u8::from(self.software_write_protect) << 2
    }

    fn from_bits(b: u8) -> Self {
        Privileges {
            target_cold_reset: b & 1 != 0,
            set_target_port_groups: b & 2 != 0,
            software_write_protect: b & 4 != 0,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct NexusState {
    /// REPORTED LUNS DATA HAS CHANGED is pending for this nexus.
    pub(crate) luns_changed: bool,
    units: Vec<Weak<LogicalUnit>>,
}

impl Nexus {
    /// State for a freshly logged-in nexus with the default privileges.
    pub fn new(id: NexusId) -> Self {
        Nexus::with_privileges(id, Privileges::default())
    }

    /// State for a freshly logged-in nexus.
    pub fn with_privileges(id: NexusId, privileges: Privileges) -> Self {
        Nexus {
            id,
            state: std::sync::Mutex::new(NexusState::default()),
            aborts: Arc::default(),
            privileges: AtomicU8::new(privileges.bits()),
        }
    }

    /// What this nexus's initiator may do to every host.
    pub fn privileges(&self) -> Privileges {
        Privileges::from_bits(self.privileges.load(Ordering::Relaxed))
    }

    /// Changes the privileges live (the configuration changed).
    pub fn set_privileges(&self, p: Privileges) {
        self.privileges.store(p.bits(), Ordering::Relaxed);
    }

    /// Raises REPORTED LUNS DATA HAS CHANGED for this nexus: the next command
    /// to any of its logical units (other than INQUIRY, REPORT LUNS or
    /// REQUEST SENSE rules) reports it; REPORT LUNS clears it.
    pub fn report_luns_changed(&self) {
        self.lock().luns_changed = true;
    }

    /// Remembers that this nexus has addressed `lu`; true the first time.
    pub(crate) fn note_unit(&self, lu: &Arc<LogicalUnit>) -> bool {
        let mut st = self.lock();
        if st.units.iter().any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(lu))) {
            return false;
        }
        st.units.retain(|w| w.strong_count() > 0);
        st.units.push(Arc::downgrade(lu));
        lu.attach(&self.id, &self.aborts);
        true
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, NexusState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Nexus {
    fn drop(&mut self) {
        let units = std::mem::take(&mut self.state.get_mut().unwrap_or_else(|e| e.into_inner()).units);
        for lu in units.iter().filter_map(Weak::upgrade) {
            lu.forget_nexus(&self.id);
        }
    }
}
