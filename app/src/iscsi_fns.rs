//! Server functions of the iSCSI settings: discovery CHAP, a group's
//! session parameters and privileges, and an ACL rule's own CHAP and
//! privileges. Each reads its form's text fields (empty: the default, or
//! for an ACL rule the group's), builds one storage command and hands it to
//! the shared [`StorageService`](crate::service::StorageService).

use leptos::prelude::*;
use leptos::server_fn::codec::Json;

use crate::error::ApiError;
use crate::model::discovery::DiscoverySettings;
#[cfg(feature = "ssr")]
use crate::model::privileges::{Privilege, PrivilegeSettings};
#[cfg(feature = "ssr")]
use crate::model::session_settings::{DigestPolicy, SessionSettings};
#[cfg(feature = "ssr")]
use crate::model::storage::{AclPatch, Command};
#[cfg(feature = "ssr")]
use crate::storage_fns::{chap, opt, own_chap, ssr};

/// Reads the text fields of a settings form, collecting a message per field.
#[cfg(feature = "ssr")]
#[derive(Default)]
struct FormFields(crate::error::FieldErrors);

#[cfg(feature = "ssr")]
impl FormFields {
    /// Empty: not chosen; else a whole number.
    fn number(&mut self, field: &str, text: String) -> Option<u64> {
        let parsed = opt(text)?.parse::<u64>();
        if parsed.is_err() {
            self.0.check(field, Err("A whole number, or empty for the default.".into()));
        }
        parsed.ok()
    }

    /// Empty: not chosen; else `yes` or `no`.
    fn yes_no(&mut self, field: &str, text: &str) -> Option<bool> {
        match text {
            "" => None,
            "yes" => Some(true),
            "no" => Some(false),
            _ => {
                self.0.check(field, Err("Choose yes, no, or the default.".into()));
                None
            }
        }
    }

    /// Empty: inherited; else `allow` or `refuse`.
    fn allow_refuse(&mut self, field: &str, text: &str) -> Option<bool> {
        match text {
            "" => None,
            "allow" => Some(true),
            "refuse" => Some(false),
            _ => {
                self.0.check(field, Err("Choose allow, refuse, or inherit.".into()));
                None
            }
        }
    }

    fn digest(&mut self, field: &str, text: &str) -> Option<DigestPolicy> {
        if text.is_empty() {
            return None;
        }
        let parsed = DigestPolicy::parse(text);
        if parsed.is_none() {
            self.0.check(field, Err("Choose none, crc32c, either, or the default.".into()));
        }
        parsed
    }

    fn privileges(
        &mut self,
        target_cold_reset: &str,
        set_target_port_groups: &str,
        software_write_protect: &str,
    ) -> PrivilegeSettings {
        let mut p = PrivilegeSettings::default();
        for (privilege, text) in
            Privilege::ALL.into_iter().zip([target_cold_reset, set_target_port_groups, software_write_protect])
        {
            p.set(privilege, self.allow_refuse(privilege.field(), text));
        }
        p
    }

    fn done(self) -> Result<(), ApiError> {
        self.0.into_result().map_err(ssr::failed)
    }
}

/// The discovery settings with the names of the CHAP users to choose from:
/// one call, so that the page is drawn from one answer.
#[server(prefix = "/rpc", endpoint = "iscsi/discovery", input = Json)]
pub async fn get_discovery_with_chap_users() -> Result<(DiscoverySettings, Vec<String>), ApiError> {
    let go = async {
        let (s, c) = ssr::storage().await?;
        let discovery = s.discovery(&c).await?;
        let users = s.chap_users(&c).await?.into_iter().map(|u| u.name).collect();
        Ok((discovery, users))
    };
    go.await.map_err(ssr::failed)
}

#[server(prefix = "/rpc", endpoint = "iscsi/discovery/set", input = Json)]
pub async fn set_discovery(chap_mode: String, chap_user: String, mutual_user: String) -> Result<(), ApiError> {
    let chap = chap(&chap_mode, chap_user, mutual_user).map_err(ssr::failed)?;
    ssr::run(Command::SetDiscovery(DiscoverySettings { chap })).await
}

#[allow(clippy::too_many_arguments)]
#[server(prefix = "/rpc", endpoint = "storage/groups/session", input = Json)]
pub async fn set_group_session(
    group: String,
    max_recv_data_segment_length: String,
    max_burst_length: String,
    first_burst_length: String,
    immediate_data: String,
    initial_r2t: String,
    header_digest: String,
    data_digest: String,
    nop_in_interval: String,
    nop_in_timeout: String,
) -> Result<(), ApiError> {
    let mut f = FormFields::default();
    let settings = SessionSettings {
        max_recv_data_segment_length: f.number("max_recv_data_segment_length", max_recv_data_segment_length),
        max_burst_length: f.number("max_burst_length", max_burst_length),
        first_burst_length: f.number("first_burst_length", first_burst_length),
        immediate_data: f.yes_no("immediate_data", &immediate_data),
        initial_r2t: f.yes_no("initial_r2t", &initial_r2t),
        header_digest: f.digest("header_digest", &header_digest),
        data_digest: f.digest("data_digest", &data_digest),
        nop_in_interval: f.number("nop_in_interval", nop_in_interval),
        nop_in_timeout: f.number("nop_in_timeout", nop_in_timeout),
    };
    f.done()?;
    ssr::run(Command::SetGroupSession { group, settings }).await
}

#[server(prefix = "/rpc", endpoint = "storage/groups/privileges", input = Json)]
pub async fn set_group_privileges(
    group: String,
    target_cold_reset: String,
    set_target_port_groups: String,
    software_write_protect: String,
) -> Result<(), ApiError> {
    let mut f = FormFields::default();
    let privileges = f.privileges(&target_cold_reset, &set_target_port_groups, &software_write_protect);
    f.done()?;
    ssr::run(Command::SetGroupPrivileges { group, privileges }).await
}

/// An ACL rule's own CHAP (mode `group`: the group's) and privileges (each
/// empty: the group's), both replaced.
#[allow(clippy::too_many_arguments)]
#[server(prefix = "/rpc", endpoint = "storage/acl/access", input = Json)]
pub async fn set_acl_access(
    group: String,
    initiator: String,
    chap_mode: String,
    chap_user: String,
    mutual_user: String,
    target_cold_reset: String,
    set_target_port_groups: String,
    software_write_protect: String,
) -> Result<(), ApiError> {
    let chap = own_chap(&chap_mode, chap_user, mutual_user).map_err(ssr::failed)?;
    let mut f = FormFields::default();
    let privileges = f.privileges(&target_cold_reset, &set_target_port_groups, &software_write_protect);
    f.done()?;
    let patch = AclPatch {
        chap: Some(chap),
        privileges: Some((!privileges.is_empty()).then_some(privileges)),
        ..Default::default()
    };
    ssr::run(Command::UpdateAclRule { group, initiator, patch }).await
}
