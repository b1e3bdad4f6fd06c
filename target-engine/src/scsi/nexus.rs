//! Per-I_T-nexus state that is not tied to one logical unit (SAM-5 §4.6).
//!
//! Today that is the pending REPORTED LUNS DATA HAS CHANGED unit attention
//! (SPC-4 §6.33, SAM-5 §5.14): the inventory belongs to the nexus's LUN map,
//! not to any unit in it.

use super::{Nexus, NexusId};

#[derive(Debug, Default)]
pub(crate) struct NexusState {
    /// REPORTED LUNS DATA HAS CHANGED is pending for this nexus.
    pub(crate) luns_changed: bool,
}

impl Nexus {
    /// State for a freshly logged-in nexus.
    pub fn new(id: NexusId) -> Self {
        Nexus { id, state: std::sync::Mutex::new(NexusState::default()) }
    }

    /// Raises REPORTED LUNS DATA HAS CHANGED for this nexus: the next command
    /// to any of its logical units (other than INQUIRY, REPORT LUNS or
    /// REQUEST SENSE rules) reports it; REPORT LUNS clears it.
    pub fn report_luns_changed(&self) {
        self.lock().luns_changed = true;
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, NexusState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
