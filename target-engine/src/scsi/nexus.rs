//! Per-I_T-nexus state that is not tied to one logical unit (SAM-5 §4.6).
//!
//! That is the pending REPORTED LUNS DATA HAS CHANGED unit attention
//! (SPC-4 §6.33, SAM-5 §5.14), since the inventory belongs to the nexus's
//! LUN map, not to any unit in it; and the units the nexus has used, so that
//! dropping the nexus is its I_T nexus loss for each of them (SAM-5 §6.3.4).

use std::sync::{Arc, Weak};

use super::{LogicalUnit, Nexus, NexusId};

#[derive(Debug, Default)]
pub(crate) struct NexusState {
    /// REPORTED LUNS DATA HAS CHANGED is pending for this nexus.
    pub(crate) luns_changed: bool,
    units: Vec<Weak<LogicalUnit>>,
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

    /// Remembers that this nexus has addressed `lu`; true the first time.
    pub(crate) fn note_unit(&self, lu: &Arc<LogicalUnit>) -> bool {
        let mut st = self.lock();
        if st.units.iter().any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(lu))) {
            return false;
        }
        st.units.retain(|w| w.strong_count() > 0);
        st.units.push(Arc::downgrade(lu));
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
