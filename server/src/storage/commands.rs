//! The typed storage commands and how each changes the database. Only
//! [`Storage::execute`](super::Storage::execute) runs them, inside its
//! transaction; nothing else writes these tables.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use portico_app::error::{ApiError, FieldErrors};
pub use portico_app::model::storage::Command;
use portico_app::model::storage::*;
use rand::RngCore;
use sqlx::{Sqlite, Transaction};

use super::nodes::{address_matches, TRAFFIC_TYPES};
use super::quotas::{self, Counted, Limits};
use super::secret_box::SecretBox;
use super::{acl_rules, chap_usage, discovery, privileges, session_settings};

/// Largest volume we create: 64 TiB.
const MAX_VOLUME: u64 = 64 << 40;
const DEFAULT_PORT: u16 = 3260;

pub(super) struct Context<'a> {
    pub node_id: i64,
    pub secrets: &'a SecretBox,
    pub limits: &'a Limits,
    pub data_dir: &'a Path,
}

/// What a command did besides the database: for the audit and the files.
#[derive(Default)]
pub(super) struct Effects {
    pub detail: Option<String>,
    /// A new volume (name, size) whose image is created before the engine opens it.
    pub create_image: Option<(String, u64)>,
    /// A deleted volume whose files go once the engine has let go of it.
    pub remove_volume: Option<String>,
}

pub(super) type Tx<'t> = Transaction<'t, Sqlite>;

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

/// Runs one command against the database inside the caller's transaction.
pub async fn apply(command: Command, tx: &mut Tx<'_>, ctx: &Context<'_>) -> Result<Effects, ApiError> {
    match command {
        Command::CreateVolume(v) => create_volume(tx, ctx, v).await,
        Command::UpdateVolume { name, patch } => update_volume(tx, ctx, &name, patch).await,
        Command::DeleteVolume { name } => delete_volume(tx, &name).await,
        Command::CreateChapUser(u) => create_chap_user(tx, ctx, u).await,
        Command::UpdateChapUser { name, patch } => update_chap_user(tx, ctx, &name, patch).await,
        Command::DeleteChapUser { name } => delete_chap_user(tx, &name).await,
        Command::CreateTargetGroup(g) => create_group(tx, ctx, g).await,
        Command::UpdateTargetGroup { name, patch } => update_group(tx, &name, patch).await,
        Command::DeleteTargetGroup { name, force } => delete_group(tx, &name, force).await,
        Command::SetGroupRunning { name, running } => set_running(tx, &name, running).await,
        Command::AddTarget { group, target } => {
            let (gid, _) = group_id(tx, &group).await?;
            quotas::ensure_room(tx, ctx.limits, Counted::Targets(1)).await?;
            add_target(tx, gid, &group, target, "target").await
        }
        Command::RemoveTarget { group, iqn, force } => remove_target(tx, &group, &iqn, force).await,
        Command::AttachVolume { group, lun } => attach(tx, ctx, &group, lun).await,
        Command::DetachLun { group, lun } => detach(tx, &group, lun).await,
        Command::AddAclRule { group, rule } => acl_rules::add(tx, ctx, &group, rule).await,
        Command::UpdateAclRule { group, initiator, patch } => acl_rules::update(tx, &group, &initiator, patch).await,
        Command::DeleteAclRule { group, initiator } => acl_rules::delete(tx, &group, &initiator).await,
        Command::UpdateNode { name, patch } => update_node(tx, &name, patch).await,
        Command::SetDiscovery(settings) => discovery::set(tx, settings).await,
        Command::SetGroupSession { group, settings } => session_settings::set(tx, &group, settings).await,
        Command::SetGroupPrivileges { group, privileges } => privileges::set(tx, &group, privileges).await,
    }
}

/// Bytes from a size given as a number or as text with a unit (the engine's
/// own parser, so the API and `portico engine` read sizes the same way).
fn size_bytes(size: &SizeInput) -> Result<u64, String> {
    match size {
        SizeInput::Bytes(n) => Ok(*n),
        SizeInput::Text(s) => target_engine::config::parse_size(s)
            .ok_or_else(|| format!("{s:?} is not a size: write bytes or a number with KiB, MiB, GiB or TiB.")),
    }
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// A fresh NAA type 6 (IEEE Registered Extended) identifier, 32 hex digits.
fn new_wwn() -> String {
    format!("6{}", &random_hex(16)[1..])
}

async fn create_volume(tx: &mut Tx<'_>, ctx: &Context<'_>, v: NewVolume) -> Result<Effects, ApiError> {
    let mut errors = FieldErrors::default();
    errors.check("name", check_object_name(&v.name));
    let size = size_bytes(&v.size);
    if let Err(msg) = &size {
        errors.check("size", Err(msg.clone()));
    }
    if v.block_size != 512 && v.block_size != 4096 {
        errors.check("block_size", Err("The block size is 512 or 4096 bytes.".into()));
    }
    if let Ok(size) = size {
        if size == 0 || size > MAX_VOLUME {
            errors.check("size", Err("A volume has 1 byte to 64 TiB.".into()));
        } else if size % u64::from(v.block_size.max(1)) != 0 {
            errors
                .check("size", Err(format!("The size must be a multiple of the block size ({} bytes).", v.block_size)));
        }
    }
    let (nodes,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM nodes").fetch_one(&mut **tx).await.map_err(db)?;
    if !(1..=3).contains(&v.replicas) {
        errors.check("replicas", Err("A volume has 1 to 3 replicas.".into()));
    } else if i64::from(v.replicas) > nodes {
        errors.check(
            "replicas",
            Err(format!("{} replicas need {} nodes; the cluster has {nodes}.", v.replicas, v.replicas)),
        );
    }
    errors.into_result()?;
    let size = size.expect("validated");
    quotas::ensure_room(tx, ctx.limits, Counted::Volume).await?;
    let capacity = quotas::capacity(tx, ctx.node_id, ctx.data_dir, ctx.limits).await?;
    let thin = quotas::check_provision(&capacity, size)?;
    let res = sqlx::query(
        "INSERT INTO volumes (name, size, block_size, replicas, wwn, serial, node_id, created_at, write_cache) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&v.name)
    .bind(size as i64)
    .bind(i64::from(v.block_size))
    .bind(i64::from(v.replicas))
    .bind(new_wwn())
    .bind(format!("PRT{}", random_hex(8).to_uppercase()))
    .bind(ctx.node_id)
    .bind(crate::db::now())
    .bind(v.write_cache.as_str())
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    if res.rows_affected() == 0 {
        return Err(name_taken("volume", &v.name));
    }
    let mut detail = format!("{} bytes, {}-byte blocks, {}", size, v.block_size, v.write_cache.as_str());
    if let Some(thin) = thin {
        detail = format!("{detail}; {thin}");
    }
    Ok(Effects { detail: Some(detail), create_image: Some((v.name, size)), ..Default::default() })
}

fn name_taken(kind: &str, name: &str) -> ApiError {
    let mut e = ApiError::conflict(format!("A {kind} named {name} already exists."));
    e.fields.insert("name".into(), "This name is taken.".into());
    e
}

async fn volume_row(tx: &mut Tx<'_>, name: &str) -> Result<(i64, i64, i64), ApiError> {
    sqlx::query_as("SELECT id, size, block_size FROM volumes WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?
        .ok_or_else(|| ApiError::not_found(format!("The volume {name}")))
}

async fn update_volume(
    tx: &mut Tx<'_>,
    ctx: &Context<'_>,
    name: &str,
    patch: VolumePatch,
) -> Result<Effects, ApiError> {
    let (id, size, block_size) = volume_row(tx, name).await?;
    let mut changes = Vec::new();
    if let Some(new) = &patch.size {
        let new = size_bytes(new).map_err(|m| field("size", m))?;
        if new < size as u64 {
            return Err(field("size", "Volumes can only grow: shrinking would destroy data."));
        }
        if new > MAX_VOLUME || new % block_size as u64 != 0 {
            return Err(field("size", format!("Up to 64 TiB, a multiple of the block size ({block_size} bytes).")));
        }
        if new != size as u64 {
            let capacity = quotas::capacity(tx, ctx.node_id, ctx.data_dir, ctx.limits).await?;
            if let Some(thin) = quotas::check_provision(&capacity, new - size as u64)? {
                changes.push(thin);
            }
            sqlx::query("UPDATE volumes SET size = ? WHERE id = ?")
                .bind(new as i64)
                .bind(id)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            changes.push(format!("grown from {size} to {new} bytes"));
        }
    }
    for (column, value) in [("iops_limit", patch.iops_limit), ("mbps_limit", patch.mbps_limit)] {
        if let Some(v) = value {
            let v = if v == 0 { None } else { Some(v as i64) };
            sqlx::query(&format!("UPDATE volumes SET {column} = ? WHERE id = ?"))
                .bind(v)
                .bind(id)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            changes.push(format!("{column} {}", v.map(|v| v.to_string()).unwrap_or_else(|| "none".into())));
        }
    }
    if let Some(policy) = patch.write_cache {
        sqlx::query("UPDATE volumes SET write_cache = ? WHERE id = ?")
            .bind(policy.as_str())
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        changes.push(format!("write cache {}", policy.as_str()));
    }
    if changes.is_empty() {
        return Err(ApiError::new(422, "Nothing to change: give size, iops_limit, mbps_limit or write_cache."));
    }
    Ok(Effects { detail: Some(changes.join("; ")), ..Default::default() })
}

async fn delete_volume(tx: &mut Tx<'_>, name: &str) -> Result<Effects, ApiError> {
    let (id, _, _) = volume_row(tx, name).await?;
    let attached: Option<(String, i64)> = sqlx::query_as(
        "SELECT g.name, l.lun FROM luns l JOIN target_groups g ON g.id = l.group_id WHERE l.volume_id = ?",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    if let Some((group, lun)) = attached {
        return Err(ApiError::conflict(format!(
            "The volume {name} is attached to {group} as LUN {lun}: detach it first."
        )));
    }
    sqlx::query("DELETE FROM volumes WHERE id = ?").bind(id).execute(&mut **tx).await.map_err(db)?;
    Ok(Effects { remove_volume: Some(name.to_string()), ..Default::default() })
}

async fn create_chap_user(tx: &mut Tx<'_>, ctx: &Context<'_>, u: NewChapUser) -> Result<Effects, ApiError> {
    let mut errors = FieldErrors::default();
    errors.check("name", check_chap_name(&u.name));
    errors.check("secret", check_chap_secret(&u.secret));
    errors.check("description", check_description(u.description.as_deref()));
    errors.into_result()?;
    let res = sqlx::query("INSERT INTO chap_users (name, secret, description, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING")
        .bind(&u.name)
        .bind(ctx.secrets.seal(&u.secret))
        .bind(&u.description)
        .bind(crate::db::now())
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    if res.rows_affected() == 0 {
        return Err(name_taken("CHAP user", &u.name));
    }
    Ok(Effects::default())
}

/// CHAP user names go on the wire (CHAP_N): printable ASCII, 1–63.
fn check_chap_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 || !name.chars().all(|c| c.is_ascii_graphic()) {
        return Err("Use 1 to 63 printable characters without spaces.".into());
    }
    Ok(())
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

async fn update_chap_user(
    tx: &mut Tx<'_>,
    ctx: &Context<'_>,
    name: &str,
    patch: ChapUserPatch,
) -> Result<Effects, ApiError> {
    let id = chap_id(tx, name).await?;
    let mut changes = Vec::new();
    if let Some(secret) = &patch.secret {
        check_chap_secret(secret).map_err(|m| field("secret", m))?;
        sqlx::query("UPDATE chap_users SET secret = ? WHERE id = ?")
            .bind(ctx.secrets.seal(secret))
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        changes.push("secret changed");
    }
    if let Some(d) = &patch.description {
        check_description(Some(d)).map_err(|m| field("description", m))?;
        sqlx::query("UPDATE chap_users SET description = ? WHERE id = ?")
            .bind(d)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        changes.push("description changed");
    }
    if changes.is_empty() {
        return Err(ApiError::new(422, "Nothing to change: give secret or description."));
    }
    Ok(Effects { detail: Some(changes.join("; ")), ..Default::default() })
}

async fn delete_chap_user(tx: &mut Tx<'_>, name: &str) -> Result<Effects, ApiError> {
    let id = chap_id(tx, name).await?;
    let users = chap_usage::of(&mut **tx, id).await.map_err(db)?;
    if !users.is_empty() {
        return Err(ApiError::conflict(format!(
            "The CHAP user {name} is used by {}: change their CHAP setting first.",
            users.join(", ")
        )));
    }
    sqlx::query("DELETE FROM chap_users WHERE id = ?").bind(id).execute(&mut **tx).await.map_err(db)?;
    Ok(Effects::default())
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

pub(super) async fn group_id(tx: &mut Tx<'_>, name: &str) -> Result<(i64, String), ApiError> {
    sqlx::query_as("SELECT id, state FROM target_groups WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?
        .ok_or_else(|| ApiError::not_found(format!("The target group {name}")))
}

async fn create_group(tx: &mut Tx<'_>, ctx: &Context<'_>, g: NewTargetGroup) -> Result<Effects, ApiError> {
    check_object_name(&g.name).map_err(|m| field("name", m))?;
    quotas::ensure_room(tx, ctx.limits, Counted::TargetGroup).await?;
    let adding = u32::try_from(g.targets.len()).unwrap_or(u32::MAX);
    quotas::ensure_room(tx, ctx.limits, Counted::Targets(adding)).await?;
    let (user, mutual) = resolve_chap(tx, &g.chap).await?;
    let (gid,): (i64,) = match sqlx::query_as(
        "INSERT INTO target_groups (name, state, acl_enabled, chap_mode, chap_user_id, mutual_chap_user_id, created_at) \
         VALUES (?, 'running', ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING RETURNING id",
    )
    .bind(&g.name)
    .bind(g.acl_enabled)
    .bind(g.chap.mode.as_str())
    .bind(user)
    .bind(mutual)
    .bind(crate::db::now())
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?
    {
        Some(row) => row,
        None => return Err(name_taken("target group", &g.name)),
    };
    for (i, t) in g.targets.into_iter().enumerate() {
        add_target(tx, gid, &g.name, t, &format!("targets[{i}]")).await?;
    }
    Ok(Effects::default())
}

/// Parses "ip:port" or "ip" (port 3260).
fn parse_portal(p: &str) -> Result<SocketAddr, String> {
    if let Ok(sa) = p.parse::<SocketAddr>() {
        return if sa.port() == 0 { Err(format!("{p}: the port cannot be 0.")) } else { Ok(sa) };
    }
    p.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, DEFAULT_PORT)).map_err(|_| format!("{p:?} is not ip:port."))
}

fn sanitize_for_iqn(s: &str) -> String {
    s.to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' })
        .collect()
}

async fn add_target(tx: &mut Tx<'_>, gid: i64, group: &str, t: TargetSpec, at: &str) -> Result<Effects, ApiError> {
    let node: Option<(i64,)> = sqlx::query_as("SELECT id FROM nodes WHERE name = ?")
        .bind(&t.node)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    let Some((node_id,)) = node else {
        return Err(field(&format!("{at}.node"), format!("There is no node named {}.", t.node)));
    };
    let (taken,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM targets WHERE group_id = ? AND node_id = ?")
        .bind(gid)
        .bind(node_id)
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?;
    if taken > 0 {
        return Err(ApiError::conflict(format!(
            "The group {group} already has a target on node {}: one per node.",
            t.node
        )));
    }
    if t.portals.is_empty() {
        return Err(field(&format!("{at}.portals"), "Give at least one portal (ip:port)."));
    }
    let ifaces: Vec<(String, String, String)> =
        sqlx::query_as("SELECT name, addresses, traffic_types FROM interfaces WHERE node_id = ?")
            .bind(node_id)
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
    let mut portals = Vec::new();
    for p in &t.portals {
        let sa = parse_portal(p).map_err(|m| field(&format!("{at}.portals"), m))?;
        let on_iscsi = ifaces.iter().any(|(_, addrs, types)| {
            let addrs: Vec<String> = serde_json::from_str(addrs).unwrap_or_default();
            let types: Vec<String> = serde_json::from_str(types).unwrap_or_default();
            types.iter().any(|t| t == "iscsi") && address_matches(&addrs, sa.ip())
        });
        if !on_iscsi {
            return Err(field(
                &format!("{at}.portals"),
                format!("{} is not an address of an interface of {} that carries iSCSI traffic.", sa.ip(), t.node),
            ));
        }
        if !portals.contains(&sa) {
            portals.push(sa);
        }
    }
    let iqn = match t.iqn {
        Some(iqn) => iqn,
        None => format!("{IQN_PREFIX}:{}.{}", sanitize_for_iqn(group), sanitize_for_iqn(&t.node)),
    };
    let iqn = normalize_iscsi_name(&iqn).map_err(|m| field(&format!("{at}.iqn"), m))?;
    let (tpg,): (i64,) =
        sqlx::query_as("SELECT COALESCE(MAX(tpg), 0) + 1 FROM targets").fetch_one(&mut **tx).await.map_err(db)?;
    let portal_text: Vec<String> = portals.iter().map(ToString::to_string).collect();
    let res = sqlx::query("INSERT INTO targets (group_id, node_id, iqn, portals, tpg) VALUES (?, ?, ?, ?, ?) ON CONFLICT (iqn) DO NOTHING")
        .bind(gid)
        .bind(node_id)
        .bind(&iqn)
        .bind(serde_json::to_string(&portal_text).unwrap_or_default())
        .bind(tpg)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    if res.rows_affected() == 0 {
        return Err(ApiError::conflict(format!("The IQN {iqn} is already used by another target.")));
    }
    Ok(Effects { detail: Some(format!("{iqn} on {} at {}", t.node, portal_text.join(", "))), ..Default::default() })
}

async fn update_group(tx: &mut Tx<'_>, name: &str, patch: TargetGroupPatch) -> Result<Effects, ApiError> {
    let (gid, _) = group_id(tx, name).await?;
    let mut changes = Vec::new();
    if let Some(acl) = patch.acl_enabled {
        sqlx::query("UPDATE target_groups SET acl_enabled = ? WHERE id = ?")
            .bind(acl)
            .bind(gid)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        changes.push(if acl { "ACL on".to_string() } else { "ACL off".to_string() });
    }
    if let Some(chap) = patch.chap {
        let (user, mutual) = resolve_chap(tx, &chap).await?;
        sqlx::query("UPDATE target_groups SET chap_mode = ?, chap_user_id = ?, mutual_chap_user_id = ? WHERE id = ?")
            .bind(chap.mode.as_str())
            .bind(user)
            .bind(mutual)
            .bind(gid)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        changes.push(format!("CHAP {}", chap.mode.as_str()));
    }
    if changes.is_empty() {
        return Err(ApiError::new(422, "Nothing to change: give acl_enabled or chap."));
    }
    Ok(Effects { detail: Some(changes.join("; ")), ..Default::default() })
}

async fn delete_group(tx: &mut Tx<'_>, name: &str, force: bool) -> Result<Effects, ApiError> {
    let (gid, _) = group_id(tx, name).await?;
    let (luns,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM luns WHERE group_id = ?")
        .bind(gid)
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?;
    if luns > 0 && !force {
        return Err(ApiError::conflict(format!(
            "The group {name} has {luns} LUN(s) attached: detach them first, or delete with force."
        )));
    }
    sqlx::query("DELETE FROM target_groups WHERE id = ?").bind(gid).execute(&mut **tx).await.map_err(db)?;
    Ok(Effects { detail: (luns > 0).then(|| format!("forced: {luns} LUN(s) detached")), ..Default::default() })
}

async fn set_running(tx: &mut Tx<'_>, name: &str, running: bool) -> Result<Effects, ApiError> {
    let (gid, _) = group_id(tx, name).await?;
    sqlx::query("UPDATE target_groups SET state = ? WHERE id = ?")
        .bind(if running { "running" } else { "stopped" })
        .bind(gid)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(Effects::default())
}

async fn remove_target(tx: &mut Tx<'_>, group: &str, iqn: &str, force: bool) -> Result<Effects, ApiError> {
    let (gid, _) = group_id(tx, group).await?;
    let target: Option<(i64, i64)> = sqlx::query_as("SELECT id, node_id FROM targets WHERE group_id = ? AND iqn = ?")
        .bind(gid)
        .bind(iqn)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    let Some((tid, node_id)) = target else {
        return Err(ApiError::not_found(format!("The target {iqn} in {group}")));
    };
    // The Active/Optimized path of a LUN is the target on the node that holds
    // the volume's primary replica.
    let (optimized,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM luns l JOIN volumes v ON v.id = l.volume_id WHERE l.group_id = ? AND v.node_id = ?",
    )
    .bind(gid)
    .bind(node_id)
    .fetch_one(&mut **tx)
    .await
    .map_err(db)?;
    if optimized > 0 && !force {
        return Err(ApiError::conflict(format!(
            "{iqn} holds the Active/Optimized path of {optimized} LUN(s): removing it cuts initiators off. Use force to remove it anyway."
        )));
    }
    sqlx::query("DELETE FROM targets WHERE id = ?").bind(tid).execute(&mut **tx).await.map_err(db)?;
    Ok(Effects::default())
}

async fn attach(tx: &mut Tx<'_>, ctx: &Context<'_>, group: &str, new: NewLun) -> Result<Effects, ApiError> {
    let (gid, _) = group_id(tx, group).await?;
    quotas::ensure_room(tx, ctx.limits, Counted::Lun(gid)).await?;
    let (vid, _, _) = volume_row(tx, &new.volume).await.map_err(|e| field("volume", e.message))?;
    let attached: Option<(String, i64)> = sqlx::query_as(
        "SELECT g.name, l.lun FROM luns l JOIN target_groups g ON g.id = l.group_id WHERE l.volume_id = ?",
    )
    .bind(vid)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    if let Some((other, lun)) = attached {
        return Err(ApiError::conflict(format!(
            "The volume {} is already attached to {other} as LUN {lun}.",
            new.volume
        )));
    }
    let used: Vec<(i64,)> =
        sqlx::query_as("SELECT lun FROM luns WHERE group_id = ?").bind(gid).fetch_all(&mut **tx).await.map_err(db)?;
    let used: Vec<u8> = used.into_iter().map(|(l,)| l as u8).collect();
    let lun = match new.lun {
        Some(l) if used.contains(&l) => return Err(ApiError::conflict(format!("LUN {l} is already used in {group}."))),
        Some(l) => l,
        None => (0..=255u8)
            .find(|l| !used.contains(l))
            .ok_or_else(|| ApiError::conflict("All 256 LUN ids of the group are used."))?,
    };
    sqlx::query("INSERT INTO luns (group_id, lun, volume_id) VALUES (?, ?, ?)")
        .bind(gid)
        .bind(i64::from(lun))
        .bind(vid)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(Effects { detail: Some(format!("{} as LUN {lun}", new.volume)), ..Default::default() })
}

async fn detach(tx: &mut Tx<'_>, group: &str, lun: u8) -> Result<Effects, ApiError> {
    let (gid, _) = group_id(tx, group).await?;
    let res = sqlx::query("DELETE FROM luns WHERE group_id = ? AND lun = ?")
        .bind(gid)
        .bind(i64::from(lun))
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    if res.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("LUN {lun} of {group}")));
    }
    Ok(Effects::default())
}

async fn update_node(tx: &mut Tx<'_>, name: &str, patch: NodePatch) -> Result<Effects, ApiError> {
    let node: Option<(i64,)> =
        sqlx::query_as("SELECT id FROM nodes WHERE name = ?").bind(name).fetch_optional(&mut **tx).await.map_err(db)?;
    let (node_id,) = node.ok_or_else(|| ApiError::not_found(format!("The node {name}")))?;
    if patch.interfaces.is_empty() {
        return Err(ApiError::new(422, "Nothing to change: give interfaces with their traffic_types."));
    }
    let mut changes = BTreeMap::new();
    for i in patch.interfaces {
        if let Some(bad) = i.traffic_types.iter().find(|t| !TRAFFIC_TYPES.contains(&t.as_str())) {
            return Err(field(
                "interfaces",
                format!("Unknown traffic type {bad:?}; known: {}.", TRAFFIC_TYPES.join(", ")),
            ));
        }
        let mut types = i.traffic_types.clone();
        types.sort();
        types.dedup();
        let res = sqlx::query("UPDATE interfaces SET traffic_types = ? WHERE node_id = ? AND name = ?")
            .bind(serde_json::to_string(&types).unwrap_or_default())
            .bind(node_id)
            .bind(&i.name)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        if res.rows_affected() == 0 {
            return Err(field("interfaces", format!("{name} has no interface {}.", i.name)));
        }
        changes.insert(i.name, types.join("+"));
    }
    // A portal must stay on an iSCSI interface.
    let portals: Vec<(String, String)> = sqlx::query_as("SELECT iqn, portals FROM targets WHERE node_id = ?")
        .bind(node_id)
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
    let ifaces: Vec<(String, String)> =
        sqlx::query_as("SELECT addresses, traffic_types FROM interfaces WHERE node_id = ?")
            .bind(node_id)
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
    for (iqn, list) in portals {
        let list: Vec<String> = serde_json::from_str(&list).unwrap_or_default();
        for p in list {
            let Ok(sa) = p.parse::<SocketAddr>() else { continue };
            let ok = ifaces.iter().any(|(a, t)| {
                let a: Vec<String> = serde_json::from_str(a).unwrap_or_default();
                let t: Vec<String> = serde_json::from_str(t).unwrap_or_default();
                t.iter().any(|t| t == "iscsi") && address_matches(&a, sa.ip())
            });
            if !ok {
                return Err(ApiError::conflict(format!(
                    "The portal {p} of {iqn} needs an interface carrying iSCSI traffic."
                )));
            }
        }
    }
    let detail = changes.into_iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("; ");
    Ok(Effects { detail: Some(detail), ..Default::default() })
}
