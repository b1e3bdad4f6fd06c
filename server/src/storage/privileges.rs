//! A group's privileges (and an ACL rule's own) between the API, the
//! database and the engine. The engine's `Privileges::default()` is the one
//! source of the defaults; what an administrator chose is stored as a JSON
//! object of the chosen privileges only, so a privilege never chosen
//! follows the engine's default.

use portico_app::error::ApiError;
use portico_app::model::privileges::{Privilege, PrivilegeSettings, PrivilegeValues, PrivilegesView};
use target_engine::config::Privileges;

use super::commands::{db, group_id, Effects, Tx};

/// The engine's defaults.
pub fn defaults() -> PrivilegeValues {
    values(Privileges::default())
}

fn values(p: Privileges) -> PrivilegeValues {
    PrivilegeValues {
        target_cold_reset: p.target_cold_reset,
        set_target_port_groups: p.set_target_port_groups,
        software_write_protect: p.software_write_protect,
    }
}

/// The engine's form of `v`.
pub fn engine(v: PrivilegeValues) -> Privileges {
    Privileges {
        target_cold_reset: v.target_cold_reset,
        set_target_port_groups: v.set_target_port_groups,
        software_write_protect: v.software_write_protect,
    }
}

pub fn view(settings: PrivilegeSettings) -> PrivilegesView {
    let defaults = defaults();
    PrivilegesView { effective: defaults.with(&settings), settings, defaults }
}

/// Stored settings; a damaged value reads as nothing chosen.
pub fn parse(json: &str) -> Result<PrivilegeSettings, super::columns::Damaged> {
    super::columns::json("privileges", json)
}

pub fn to_json(s: &PrivilegeSettings) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "{}".into())
}

/// How an ACL rule's own privileges are stored: NULL when it has none.
pub fn stored_override(s: &PrivilegeSettings) -> Option<String> {
    (!s.is_empty()).then(|| to_json(s))
}

/// "target_cold_reset allowed, software_write_protect refused"; "defaults" when nothing is chosen.
pub fn describe(s: &PrivilegeSettings) -> String {
    let chosen: Vec<String> = Privilege::ALL
        .into_iter()
        .filter_map(|p| s.get(p).map(|on| format!("{} {}", p.field(), if on { "allowed" } else { "refused" })))
        .collect();
    if chosen.is_empty() {
        "defaults".into()
    } else {
        chosen.join(", ")
    }
}

/// Replaces a group's privileges.
pub(super) async fn set(tx: &mut Tx<'_>, group: &str, settings: PrivilegeSettings) -> Result<Effects, ApiError> {
    let (gid, _) = group_id(tx, group).await?;
    sqlx::query("UPDATE target_groups SET privileges = ? WHERE id = ?")
        .bind(to_json(&settings))
        .bind(gid)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(Effects { detail: Some(describe(&settings)), ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_engines_and_nothing_chosen_is_stored_as_nothing() {
        assert_eq!(engine(defaults()), Privileges::default());
        assert!(!defaults().target_cold_reset, "a cautious administrator refuses TARGET COLD RESET");
        assert_eq!(stored_override(&PrivilegeSettings::default()), None);
        let chosen = PrivilegeSettings { target_cold_reset: Some(true), ..Default::default() };
        let stored = stored_override(&chosen).unwrap();
        assert_eq!(parse(&stored).unwrap(), chosen);
        assert_eq!(parse("{}").unwrap(), PrivilegeSettings::default());
        assert_eq!(describe(&chosen), "target_cold_reset allowed");
        assert!(view(chosen).effective.target_cold_reset);
    }
}
