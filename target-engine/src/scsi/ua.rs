//! Unit attention conditions per I_T nexus for one logical unit
//! (SAM-5 §5.14, SPC-4 §4.5.6).
//!
//! A nexus the unit has never seen starts with POWER ON, RESET pending, so
//! every initiator learns once that it is talking to a fresh unit. A reset
//! condition supersedes everything queued before it (it tells the initiator
//! to rediscover all state anyway); other conditions queue in order, once each.

use std::collections::{HashMap, VecDeque};

use super::sense::UnitAttention;
use super::NexusId;

#[derive(Debug, Default)]
pub(crate) struct UaTable {
    pending: HashMap<NexusId, VecDeque<UnitAttention>>,
}

fn is_reset(ua: UnitAttention) -> bool {
    matches!(ua, UnitAttention::PowerOnReset | UnitAttention::BusDeviceReset)
}

fn push(q: &mut VecDeque<UnitAttention>, ua: UnitAttention) {
    if is_reset(ua) {
        q.clear();
    } else if q.contains(&ua) || q.front().is_some_and(|&f| f == UnitAttention::PowerOnReset) {
        // Already pending, or implied by a pending power-on.
        return;
    }
    q.push_back(ua);
}

impl UaTable {
    fn entry(&mut self, id: &NexusId) -> &mut VecDeque<UnitAttention> {
        self.pending.entry(id.clone()).or_insert_with(|| VecDeque::from([UnitAttention::PowerOnReset]))
    }

    /// Reports and clears the oldest pending condition for `id`.
    pub fn take(&mut self, id: &NexusId) -> Option<UnitAttention> {
        self.entry(id).pop_front()
    }

    /// Raises `ua` for every nexus the unit has seen (unseen ones will get
    /// POWER ON, RESET, which implies it).
    pub fn raise_all(&mut self, ua: UnitAttention) {
        for q in self.pending.values_mut() {
            push(q, ua);
        }
    }

    /// Raises `ua` for every nexus the unit has seen that `pick` selects.
    pub fn raise_where(&mut self, ua: UnitAttention, pick: impl Fn(&NexusId) -> bool) {
        for (id, q) in self.pending.iter_mut() {
            if pick(id) {
                push(q, ua);
            }
        }
    }

    /// Raises `ua` for every nexus except `except`.
    pub fn raise_others(&mut self, except: &NexusId, ua: UnitAttention) {
        for (id, q) in self.pending.iter_mut() {
            if id != except {
                push(q, ua);
            }
        }
    }

    /// Raises `ua` for one nexus.
    pub fn raise(&mut self, id: &NexusId, ua: UnitAttention) {
        push(self.entry(id), ua);
    }

    /// An empty table that knows the same nexuses: what a change worked out
    /// away from the unit's lock raises goes here, to be [`Self::merge`]d
    /// into the real table once the change is committed.
    pub fn scratch(&self) -> UaTable {
        UaTable { pending: self.pending.keys().map(|id| (id.clone(), VecDeque::new())).collect() }
    }

    /// Raises what `scratch` collected for every nexus still known here
    /// (one that appeared since gets POWER ON, RESET, which implies it).
    pub fn merge(&mut self, scratch: UaTable) {
        for (id, raised) in scratch.pending {
            if let Some(q) = self.pending.get_mut(&id) {
                for ua in raised {
                    push(q, ua);
                }
            }
        }
    }

    /// A unit that takes the place of `old` for the same logical unit (the
    /// volume reopened as primary or replica after a move): every nexus
    /// `old` knew keeps what was pending for it there, and gets `ua` too,
    /// instead of the POWER ON, RESET a new unit reports.
    pub fn carry_over(&mut self, old: &UaTable, ua: UnitAttention) {
        for (id, q) in &old.pending {
            let mut q = q.clone();
            push(&mut q, ua);
            self.pending.insert(id.clone(), q);
        }
    }

    /// Forgets a nexus (after I_T nexus loss); if it returns it starts afresh.
    pub fn forget(&mut self, id: &NexusId) {
        self.pending.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    pub(crate) fn nexus_id(n: u8) -> NexusId {
        NexusId {
            initiator_name: Arc::from(format!("iqn.2026-11.test:init{n}")),
            isid: [0x80, 0, 0, 0, 0, n],
            target_name: Arc::from("iqn.2026-11.test:target"),
            tpgt: 1,
            relative_target_port: 1,
            target_port_group: 1,
        }
    }

    #[test]
    fn a_unit_in_the_place_of_another_reports_the_state_change_not_a_power_on() {
        let (a, b) = (nexus_id(1), nexus_id(2));
        let mut old = UaTable::default();
        assert_eq!(old.take(&a), Some(UnitAttention::PowerOnReset));
        old.entry(&b);
        let mut new = UaTable::default();
        new.carry_over(&old, UnitAttention::AsymmetricAccessStateChanged);
        assert_eq!(new.take(&a), Some(UnitAttention::AsymmetricAccessStateChanged));
        assert_eq!(new.take(&a), None);
        assert_eq!(new.take(&b), Some(UnitAttention::PowerOnReset), "never addressed: the power-on implies it");
        assert_eq!(new.take(&b), None);
        assert_eq!(new.take(&nexus_id(3)), Some(UnitAttention::PowerOnReset), "a nexus never seen starts afresh");
    }

    #[test]
    fn first_sight_reports_power_on_once() {
        let mut t = UaTable::default();
        let a = nexus_id(1);
        assert_eq!(t.take(&a), Some(UnitAttention::PowerOnReset));
        assert_eq!(t.take(&a), None);
    }

    #[test]
    fn raise_all_and_others_queue_in_order_once() {
        let mut t = UaTable::default();
        let (a, b) = (nexus_id(1), nexus_id(2));
        t.take(&a);
        t.take(&b);
        t.raise_all(UnitAttention::CapacityChanged);
        t.raise_all(UnitAttention::CapacityChanged);
        t.raise_others(&a, UnitAttention::ModeParametersChanged);
        assert_eq!(t.take(&a), Some(UnitAttention::CapacityChanged));
        assert_eq!(t.take(&a), None);
        assert_eq!(t.take(&b), Some(UnitAttention::CapacityChanged));
        assert_eq!(t.take(&b), Some(UnitAttention::ModeParametersChanged));
        assert_eq!(t.take(&b), None);
    }

    #[test]
    fn reset_supersedes_queued_conditions() {
        let mut t = UaTable::default();
        let a = nexus_id(1);
        t.take(&a);
        t.raise_all(UnitAttention::CapacityChanged);
        t.raise_all(UnitAttention::BusDeviceReset);
        assert_eq!(t.take(&a), Some(UnitAttention::BusDeviceReset));
        assert_eq!(t.take(&a), None);
        t.forget(&a);
        assert_eq!(t.take(&a), Some(UnitAttention::PowerOnReset));
    }
}
