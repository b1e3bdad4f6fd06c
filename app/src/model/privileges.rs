//! Commands one initiator may send that change what every other host of
//! the target sees (TARGET COLD RESET, SET TARGET PORT GROUPS, MODE SELECT
//! of SWP), allowed or refused per target group and, overriding it, per ACL
//! rule. A privilege left out of a group takes the engine's default (the
//! cautious choice); one left out of an ACL rule takes the group's.

use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use utoipa::ToSchema;

/// One of the privileges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privilege {
    TargetColdReset,
    SetTargetPortGroups,
    SoftwareWriteProtect,
}

impl Privilege {
    pub const ALL: [Privilege; 3] =
        [Privilege::TargetColdReset, Privilege::SetTargetPortGroups, Privilege::SoftwareWriteProtect];

    /// Its name in the API.
    pub fn field(self) -> &'static str {
        match self {
            Privilege::TargetColdReset => "target_cold_reset",
            Privilege::SetTargetPortGroups => "set_target_port_groups",
            Privilege::SoftwareWriteProtect => "software_write_protect",
        }
    }

    /// The command it allows.
    pub fn command(self) -> &'static str {
        match self {
            Privilege::TargetColdReset => "TARGET COLD RESET",
            Privilege::SetTargetPortGroups => "SET TARGET PORT GROUPS",
            Privilege::SoftwareWriteProtect => "MODE SELECT of SWP",
        }
    }

    /// What the command does to the other hosts.
    pub fn effect(self) -> &'static str {
        match self {
            Privilege::TargetColdReset => "closes every session of the target, other hosts' included",
            Privilege::SetTargetPortGroups => {
                "moves a LUN's active path for every host (explicit ALUA; multipath uses it to fail over); refused, INQUIRY reports implicit ALUA only"
            }
            Privilege::SoftwareWriteProtect => "makes the volume read-only for every host",
        }
    }
}

/// Privileges as chosen; a privilege left out (or null) is inherited.
/// Body of `PUT /api/v1/target-groups/{name}/privileges`, which replaces
/// them all, and the `privileges` of an ACL rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PrivilegeSettings {
    /// TARGET COLD RESET: closes every session of the target, other hosts' too.
    #[serde(default)]
    pub target_cold_reset: Option<bool>,
    /// SET TARGET PORT GROUPS (explicit ALUA), which multipath uses to
    /// activate a standby path; refused, INQUIRY reports implicit ALUA only.
    #[serde(default)]
    pub set_target_port_groups: Option<bool>,
    /// Setting SWP in the Control mode page: makes the volume read-only for every host.
    #[serde(default)]
    pub software_write_protect: Option<bool>,
}

impl PrivilegeSettings {
    pub fn is_empty(&self) -> bool {
        *self == PrivilegeSettings::default()
    }

    /// The chosen value of `p`, if one was chosen.
    pub fn get(&self, p: Privilege) -> Option<bool> {
        match p {
            Privilege::TargetColdReset => self.target_cold_reset,
            Privilege::SetTargetPortGroups => self.set_target_port_groups,
            Privilege::SoftwareWriteProtect => self.software_write_protect,
        }
    }

    pub fn set(&mut self, p: Privilege, value: Option<bool>) {
        match p {
            Privilege::TargetColdReset => self.target_cold_reset = value,
            Privilege::SetTargetPortGroups => self.set_target_port_groups = value,
            Privilege::SoftwareWriteProtect => self.software_write_protect = value,
        }
    }
}

/// Every privilege with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct PrivilegeValues {
    pub target_cold_reset: bool,
    pub set_target_port_groups: bool,
    pub software_write_protect: bool,
}

impl PrivilegeValues {
    pub fn get(&self, p: Privilege) -> bool {
        match p {
            Privilege::TargetColdReset => self.target_cold_reset,
            Privilege::SetTargetPortGroups => self.set_target_port_groups,
            Privilege::SoftwareWriteProtect => self.software_write_protect,
        }
    }

    /// These values with the ones chosen in `over` in their place.
    pub fn with(self, over: &PrivilegeSettings) -> PrivilegeValues {
        PrivilegeValues {
            target_cold_reset: over.target_cold_reset.unwrap_or(self.target_cold_reset),
            set_target_port_groups: over.set_target_port_groups.unwrap_or(self.set_target_port_groups),
            software_write_protect: over.software_write_protect.unwrap_or(self.software_write_protect),
        }
    }
}

/// A group's privileges as the API shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct PrivilegesView {
    /// What the administrator chose (null: the default).
    pub settings: PrivilegeSettings,
    /// What the group's initiators may do, unless their ACL rule says otherwise.
    pub effective: PrivilegeValues,
    /// The engine's defaults.
    pub defaults: PrivilegeValues,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_values_replace_inherited_ones_and_only_those() {
        let group =
            PrivilegeValues { target_cold_reset: false, set_target_port_groups: true, software_write_protect: false };
        let rule = PrivilegeSettings { target_cold_reset: Some(true), ..Default::default() };
        let mine = group.with(&rule);
        assert!(mine.get(Privilege::TargetColdReset));
        assert!(mine.get(Privilege::SetTargetPortGroups), "not chosen: the group's");
        assert!(!mine.get(Privilege::SoftwareWriteProtect));
        let mut s = PrivilegeSettings::default();
        for p in Privilege::ALL {
            s.set(p, Some(true));
            assert_eq!(s.get(p), Some(true), "{}", p.field());
        }
    }
}
