//! The storage changes and how each changes the database: one module per
//! entity. Only [`Storage`](super::Storage) runs them, inside its
//! transaction; nothing else writes these tables.
//!
//! [`apply`] is deterministic: it reads the database and the [`Proposal`],
//! nothing else (no clock, no randomness, no node-local file or setting), so
//! every node that applies the same proposals holds the same rows. A change
//! that is refused (a name already taken) is refused the same way
//! everywhere.

mod acl_rules;
pub mod audit;
mod chap_users;
mod luns;
pub mod members;
mod node_interfaces;
mod target_groups;
mod targets;
pub mod users;
mod volumes;

use portico_app::error::ApiError;
use portico_app::model::storage::*;
use sqlx::{Sqlite, Transaction};

pub(super) use chap_users::check_chap_name;

use super::proposal::{Change, Decided, Proposal};
use super::{discovery, privileges, session_settings};

/// What a command did besides the database: for the audit and the files.
#[derive(Default)]
pub struct Effects {
    pub detail: Option<String>,
    /// A new volume (name, size) whose image is created before the engine opens it.
    pub create_image: Option<(String, u64)>,
    /// A deleted volume whose files go once the engine has let go of it.
    pub remove_volume: Option<String>,
    /// The Raft id a node was admitted with.
    pub raft_id: Option<u64>,
    /// The id of a new row (an API token).
    pub created_id: Option<i64>,
    /// Copies taken from nodes (volume, node id): each node removes its own
    /// files once its engine has let go.
    pub dropped_copies: Vec<(String, i64)>,
}

pub type Tx<'t> = Transaction<'t, Sqlite>;

pub(super) fn db(e: sqlx::Error) -> ApiError {
    if let sqlx::Error::Database(d) = &e {
        if d.is_unique_violation() {
            return ApiError::conflict("That name or value is already in use.");
        }
    }
    tracing::error!(error = %e, "database error");
    ApiError::internal()
}

pub(super) fn field(name: &str, msg: impl Into<String>) -> ApiError {
    ApiError::invalid_field(name, msg)
}

/// Applies one proposal to the database inside the caller's transaction.
pub async fn apply(proposal: Proposal, tx: &mut Tx<'_>) -> Result<Effects, ApiError> {
    let Proposal { change, decided } = proposal;
    let command = match change {
        Change::Storage(command) => command,
        Change::RegisterNode { name, interfaces, member } => {
            return node_interfaces::register(tx, &decided, &name, &interfaces, &member).await
        }
        Change::CreateJoinToken { id, secret_hash, expires_at, created_by } => {
            return members::create_token(tx, &decided, &id, &secret_hash, &expires_at, &created_by).await
        }
        Change::RevokeJoinToken { id } => return members::revoke_token(tx, &id).await,
        Change::RemoveNode { name } => return node_interfaces::remove(tx, &decided, &name).await,
        Change::Users(change) => return users::apply(tx, &decided, change).await,
        Change::ReportEngine { name, problems } => return node_interfaces::report_engine(tx, &name, &problems).await,
        Change::SetNodeState { name, online } => return node_interfaces::set_state(tx, &decided, &name, online).await,
        Change::AdmitNode { token_id, name, cluster_addr, cert_key } => {
            return members::admit(tx, &decided, &token_id, &name, &cluster_addr, &cert_key).await
        }
        Change::ShareAudit { origin, node, records } => return audit::share(tx, origin, &node, &records).await,
        Change::MarkCopy { volume, epoch, node_id, in_sync } => {
            return volumes::mark_copy(tx, &volume, epoch, node_id, in_sync).await
        }
        Change::ReplaceCopy { volume, from, to } => return volumes::replace_copy(tx, &volume, from, to).await,
        Change::Promote { volume, epoch, to, cause, held_ms } => {
            return volumes::promote(tx, &decided.at, &volume, (epoch, to), &cause, held_ms).await
        }
    };
    let d: &Decided = &decided;
    match command {
        Command::CreateVolume(v) => volumes::create(tx, d, v).await,
        Command::UpdateVolume { name, patch } => volumes::update(tx, d, &name, patch).await,
        Command::DeleteVolume { name } => volumes::delete(tx, &name).await,
        Command::CreateChapUser(u) => chap_users::create(tx, d, u).await,
        Command::UpdateChapUser { name, patch } => chap_users::update(tx, d, &name, patch).await,
        Command::DeleteChapUser { name } => chap_users::delete(tx, &name).await,
        Command::CreateTargetGroup(g) => target_groups::create(tx, d, g).await,
        Command::UpdateTargetGroup { name, patch } => target_groups::update(tx, &name, patch).await,
        Command::DeleteTargetGroup { name, force } => target_groups::delete(tx, &name, force).await,
        Command::SetGroupRunning { name, running } => target_groups::set_running(tx, &name, running).await,
        Command::AddTarget { group, target } => {
            let (gid, _) = group_id(tx, &group).await?;
            targets::add(tx, gid, &group, target, "target").await
        }
        Command::RemoveTarget { group, iqn, force } => targets::remove(tx, &group, &iqn, force).await,
        Command::AttachVolume { group, lun } => luns::attach(tx, &group, lun).await,
        Command::DetachLun { group, lun } => luns::detach(tx, &group, lun).await,
        Command::AddAclRule { group, rule } => acl_rules::add(tx, &group, rule).await,
        Command::UpdateAclRule { group, initiator, patch } => acl_rules::update(tx, &group, &initiator, patch).await,
        Command::DeleteAclRule { group, initiator } => acl_rules::delete(tx, &group, &initiator).await,
        Command::UpdateNode { name, patch } => node_interfaces::update(tx, &d.at, &name, patch).await,
        Command::SetDiscovery(settings) => discovery::set(tx, settings).await,
        Command::SetGroupSession { group, settings } => session_settings::set(tx, &group, settings).await,
        Command::SetGroupPrivileges { group, privileges } => privileges::set(tx, &group, privileges).await,
    }
}

pub(super) fn name_taken(kind: &str, name: &str) -> ApiError {
    let mut e = ApiError::conflict(format!("A {kind} named {name} already exists."));
    e.fields.insert("name".into(), "This name is taken.".into());
    e
}

pub(super) fn check_description(d: Option<&str>) -> Result<(), String> {
    match d {
        Some(d) if d.chars().count() > 200 || d.chars().any(char::is_control) => {
            Err("At most 200 characters, one line.".into())
        }
        _ => Ok(()),
    }
}

pub(super) async fn chap_id(tx: &mut Tx<'_>, name: &str) -> Result<i64, ApiError> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT id FROM chap_users WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    row.map(|r| r.0).ok_or_else(|| ApiError::not_found(format!("The CHAP user {name}")))
}

/// Resolves a group's CHAP setting to CHAP user ids, checking it is complete.
pub(super) async fn resolve_chap(tx: &mut Tx<'_>, chap: &ChapSetting) -> Result<(Option<i64>, Option<i64>), ApiError> {
    let user = match (chap.mode, &chap.user) {
        (ChapMode::None, _) => None,
        (_, None) => return Err(field("chap.user", "Choose the CHAP user initiators log in as.")),
        (_, Some(u)) => Some(chap_id(tx, u).await.map_err(|e| field("chap.user", e.message))?),
    };
    let mutual = match (chap.mode, &chap.mutual_user) {
        (ChapMode::Mutual, None) => {
            return Err(field("chap.mutual_user", "Mutual CHAP needs a second CHAP user for the target."))
        }
        (ChapMode::Mutual, Some(u)) => {
            let id = chap_id(tx, u).await.map_err(|e| field("chap.mutual_user", e.message))?;
            if Some(id) == user {
                return Err(field("chap.mutual_user", "The target must answer with a different CHAP user."));
            }
            Some(id)
        }
        _ => None,
    };
    Ok((user, mutual))
}

/// Refuses to place something new on a node in maintenance.
pub(super) async fn ensure_not_in_maintenance(tx: &mut Tx<'_>, node_id: i64, what: &str) -> Result<(), ApiError> {
    let state: Option<(String, String)> = sqlx::query_as("SELECT name, state FROM nodes WHERE id = ?")
        .bind(node_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    match state {
        Some((name, state)) if state == "maintenance" => Err(ApiError::conflict(format!(
            "The node {name} is in maintenance: no new {what} is placed on it. Take it out of maintenance first."
        ))),
        _ => Ok(()),
    }
}

pub(super) async fn group_id(tx: &mut Tx<'_>, name: &str) -> Result<(i64, String), ApiError> {
    sqlx::query_as("SELECT id, state FROM target_groups WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?
        .ok_or_else(|| ApiError::not_found(format!("The target group {name}")))
}

pub(super) async fn volume_row(tx: &mut Tx<'_>, name: &str) -> Result<(i64, i64, i64), ApiError> {
    sqlx::query_as("SELECT id, size, block_size FROM volumes WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?
        .ok_or_else(|| ApiError::not_found(format!("The volume {name}")))
}

/// A proposal that lacks what [`decide`](crate::storage::proposal::decide)
/// fills in: a bug on the proposing node, refused the same way everywhere.
pub(super) fn undecided(what: &str) -> ApiError {
    tracing::error!(what, "a proposal without its decided values");
    ApiError::internal()
}
