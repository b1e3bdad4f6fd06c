//! A read-only snapshot of a unit's reservations for the dashboard and the
//! REST API: what READ FULL STATUS (SPC-4 §6.15.5) tells an initiator, in
//! plain values.

use super::{isid_hex, PrState, PrType};

/// The reservations of one logical unit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReservationStatus {
    /// PRGENERATION: bumped by every change of registrations.
    pub generation: u32,
    /// Whether the state persists through power loss (APTPL).
    pub persistent: bool,
    pub registrations: Vec<RegistrationStatus>,
    /// The persistent reservation's type, if one is held.
    pub reservation: Option<&'static str>,
    /// The initiator holding an SPC-2 RESERVE, if any.
    pub spc2_holder: Option<String>,
}

/// One registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationStatus {
    pub initiator: String,
    /// 12 hex digits; `None`: every ISID of the initiator (a name-only TransportID).
    pub isid: Option<String>,
    /// `None`: registered through every target port (ALL_TG_PT).
    pub relative_target_port: Option<u16>,
    pub key: u64,
    /// Whether this registration holds the persistent reservation.
    pub holder: bool,
}

impl PrType {
    /// The type's name, as the API spells it.
    pub(super) fn name(self) -> &'static str {
        match self {
            PrType::WriteExclusive => "write-exclusive",
            PrType::ExclusiveAccess => "exclusive-access",
            PrType::WriteExclusiveRegistrantsOnly => "write-exclusive-registrants-only",
            PrType::ExclusiveAccessRegistrantsOnly => "exclusive-access-registrants-only",
            PrType::WriteExclusiveAllRegistrants => "write-exclusive-all-registrants",
            PrType::ExclusiveAccessAllRegistrants => "exclusive-access-all-registrants",
        }
    }
}

impl PrState {
    pub(crate) fn status(&self) -> ReservationStatus {
        let holder = self.holder_registration();
        let all = self.reservation.as_ref().is_some_and(|r| r.pr_type.all_registrants());
        ReservationStatus {
            generation: self.generation,
            persistent: self.aptpl,
            registrations: self
                .registrations
                .iter()
                .map(|r| RegistrationStatus {
                    initiator: r.initiator.name.to_string(),
                    isid: r.initiator.isid.as_ref().map(isid_hex),
                    relative_target_port: r.target_port,
                    key: r.key,
                    holder: all || holder.is_some_and(|h| std::ptr::eq(h, r)),
                })
                .collect(),
            reservation: self.reservation.as_ref().map(|r| r.pr_type.name()),
            spc2_holder: self.spc2_holder.as_ref().map(|id| id.initiator_name.to_string()),
        }
    }
}
