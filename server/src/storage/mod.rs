//! Block storage management: volumes, target groups (with their session
//! parameters and privileges), targets, LUNs, ACL rules, CHAP users,
//! discovery CHAP and nodes.
//!
//! Every change is a typed [`Command`] handed to [`Storage::execute`], the
//! one place that checks the caller's role, then:
//! 1. decides what is random or local ([`proposal::decide`]);
//! 2. tries it (the dry run): applies it in a transaction that is never
//!    committed, checks this node's caps and space, derives the engine's
//!    configuration and has the engine run it; if the engine refuses, the
//!    caller gets the engine's reason and nothing is proposed;
//! 3. proposes it to the cluster ([`crate::cluster`]), which commits it and
//!    applies it to the state database on every node;
//! 4. audits it.
//!
//! If the cluster does not commit the change, the engine goes back to the
//! stored configuration.

mod chap_usage;
pub mod columns;
pub(crate) mod commands;
pub mod degraded;
mod discovery;
pub mod engine_config;
mod failover;
mod forwarding;
mod membership;
pub mod nodes;
pub mod paths;
mod placement;
pub mod portal_watch;
mod privileges;
pub mod proposal;
pub mod quotas;
mod rebuild;
pub mod replicated;
mod replication;
pub mod secret_box;
mod session_settings;
pub mod stats;
mod views;
pub mod volume_files;

use std::path::PathBuf;

use portico_app::error::ApiError;
use portico_app::model::discovery::DiscoverySettings;
use portico_app::model::storage::*;
use portico_app::model::{AuditResult, EngineStatus, NodeProblem, Role, StorageCapacity};
use portico_app::service::Caller;
use sqlx::SqlitePool;
use target_engine::config::BackendKind;
use target_engine::engine::Engine;

pub use portico_app::model::storage::Command;
use proposal::{Change, Here};
use secret_box::SecretBox;

use crate::cluster::{Cluster, ClusterOptions, ClusterStatus};
use crate::service::{write_audit, AuditRecord};

/// The block storage service of one node.
pub struct Storage {
    pool: SqlitePool,
    engine: Engine,
    secrets: SecretBox,
    data_dir: PathBuf,
    node_id: i64,
    node_name: String,
    limits: quotas::Limits,
    /// What of the stored configuration the engine does not run, and why.
    problems: std::sync::Mutex<Vec<degraded::Problem>>,
    /// The configuration the engine was last set from, as derived (before
    /// anything was left out): a change applied here that derives the same
    /// needs nothing of the engine.
    derived: std::sync::Mutex<Option<target_engine::config::EngineConfig>>,
    /// The engine status this node last reported to the cluster.
    reported: std::sync::Arc<std::sync::Mutex<Option<Vec<NodeProblem>>>>,
    /// Commands run one at a time: derive + apply + commit is one step.
    apply_lock: tokio::sync::Mutex<()>,
    activity: std::sync::Arc<stats::ActivityLog>,
    /// The cluster every change goes through.
    cluster: Cluster,
    /// What this node sees of the other nodes' iSCSI portals.
    portals: portal_watch::PortalWatch,
    /// Where the engine listens for replication streams, when not at the
    /// node's replication address (`--replication-listen`).
    replication_listen: Option<std::net::SocketAddr>,
}

/// Ends a dry run's transaction now. Dropped, it would roll back only when
/// its connection is next used, holding the database's write lock until
/// then, in the way of the commit that follows.
async fn discard(tx: commands::Tx<'_>) {
    if let Err(e) = tx.rollback().await {
        tracing::warn!(error = %e, "cannot roll back a dry run");
    }
}

fn db_error(e: sqlx::Error) -> ApiError {
    tracing::error!(error = %e, "database error");
    ApiError::internal()
}

/// A volume file problem as the caller sees it: leftovers of an earlier
/// volume are a conflict on the name; anything else is the node's failure,
/// told as it is (paths and the system's reason, nothing secret).
fn file_error(e: volume_files::VolumeFileError) -> ApiError {
    match e {
        volume_files::VolumeFileError::Leftovers { .. } => {
            let mut api = ApiError::conflict(format!("{e}. Remove or move them first."));
            api.fields.insert("name".into(), "Files of an earlier volume with this name are in the way.".into());
            api
        }
        _ => {
            tracing::error!(error = %e, "volume files");
            ApiError::new(500, format!("{e}; nothing was changed."))
        }
    }
}

/// Registers (or refreshes) this node and its interfaces' addresses through
/// the cluster, as any other change. Returns the node's id.
async fn register_node(
    cluster: &Cluster,
    pool: &SqlitePool,
    name: &str,
    secrets: &SecretBox,
    replication_addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<i64> {
    let member = proposal::Membership {
        raft_id: Some(cluster.node_id()),
        cluster_addr: cluster.cluster_address().map(|(a, _)| a.to_string()),
        replication_addr: replication_addr.map(|a| a.to_string()),
        cert_key: cluster.key_fingerprint(),
    };
    let change =
        Change::RegisterNode { name: name.to_string(), interfaces: nodes::local_interface_addresses(), member };
    let limits = quotas::Limits::default();
    let here = Here { node_id: 0, secrets, limits: &limits, data_dir: std::path::Path::new("") };
    let proposal = proposal::decide(change, &here).map_err(|e| anyhow::anyhow!(e.message))?;
    match cluster.propose(proposal).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) | Err(e) => anyhow::bail!("cannot register this node: {}", e.message),
    }
    let (id,): (i64,) = sqlx::query_as("SELECT id FROM nodes WHERE name = ?").bind(name).fetch_one(pool).await?;
    Ok(id)
}

impl Storage {
    /// The engine configuration the stored state gives this node, with its
    /// own listening address for replication.
    async fn derive(
        &self,
        conn: &mut sqlx::SqliteConnection,
    ) -> Result<target_engine::config::EngineConfig, engine_config::DeriveError> {
        let mut config = engine_config::derive(conn, self.node_id, &self.data_dir, &self.secrets).await?;
        if let (Some(node), Some(listen)) = (config.replication.as_mut(), self.replication_listen) {
            node.listen = listen;
        }
        Ok(config)
    }

    /// Registers this node and its interfaces, and brings the stored
    /// configuration back up in the engine.
    pub async fn start(
        pool: SqlitePool,
        engine: Engine,
        data_dir: PathBuf,
        node_name: String,
        limits: quotas::Limits,
        cluster_options: ClusterOptions,
    ) -> anyhow::Result<Self> {
        // A joining node gets the cluster's key as it joins: the cluster first.
        let cluster = Cluster::start(&data_dir, pool.clone(), &cluster_options).await?;
        let secrets = SecretBox::open_or_create(&data_dir)?;
        crate::data_dir::private_dir(&volume_files::volumes_dir(&data_dir))?;
        replication::install_key(&data_dir)?;
        let marks = replication::ClusterMarks { cluster: cluster.clone(), pool: pool.clone() };
        if !engine.set_control_plane(std::sync::Arc::new(marks)) {
            anyhow::bail!("the engine has a control plane already");
        }
        let node_id = register_node(&cluster, &pool, &node_name, &secrets, cluster_options.replication_addr).await?;
        let forwarder = forwarding::ClusterForwarder { cluster: cluster.clone(), pool: pool.clone(), node_id };
        if !engine.set_unit_forwarder(std::sync::Arc::new(forwarder)) {
            anyhow::bail!("the engine forwards reservation commands already");
        }
        if let Some(guard) = cluster.stream_guard()? {
            if !engine.set_stream_guard(std::sync::Arc::new(guard)) {
                anyhow::bail!("the engine's replication streams have a guard already");
            }
        }
        let activity = std::sync::Arc::new(stats::ActivityLog::default());
        stats::spawn_sampler(engine.clone(), std::sync::Arc::downgrade(&activity));
        let storage = Storage {
            pool,
            engine,
            secrets,
            data_dir,
            node_id,
            node_name,
            limits,
            problems: Default::default(),
            derived: Default::default(),
            reported: Default::default(),
            apply_lock: Default::default(),
            portals: Default::default(),
            activity,
            cluster,
            replication_listen: cluster_options.replication_listen,
        };
        let index = *storage.cluster.applied().borrow();
        let mut conn = storage.pool.acquire().await?;
        let config = storage.derive(&mut conn).await;
        drop(conn);
        // Whatever cannot come up is left out and shown; the node serves the rest.
        let problems = match config {
            Ok(config) => {
                storage.engine_at(index).await;
                storage.set_derived(config.clone());
                for v in &config.volumes {
                    // Images an older version created readable by others.
                    if let Some(image) = &v.path {
                        if let Err(e) = crate::data_dir::private_file(image) {
                            tracing::warn!(image = %image.display(), error = %e, "cannot make the image private");
                        }
                    }
                }
                match degraded::apply(&storage.engine, config, |_| true).await {
                    Ok(problems) => problems,
                    Err(e) => vec![degraded::Problem::node("configuration", format!("the engine refused it: {e}"))],
                }
            }
            Err(e) => vec![degraded::Problem::node("configuration", format!("it cannot be read: {e}"))],
        };
        for p in &problems {
            tracing::warn!(object = %p.object, reason = %p.reason, "not served");
        }
        let targets = storage.engine.config().await.targets.len();
        tracing::info!(targets, left_out = problems.len(), "engine configured from the database");
        storage.set_problems(problems);
        // Copies taken from this node while it was down, or before it stopped.
        storage.let_go_of_dropped_copies().await;
        Ok(storage)
    }

    fn problems(&self) -> Vec<degraded::Problem> {
        self.problems.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_problems(&self, problems: Vec<degraded::Problem>) {
        let report: Vec<NodeProblem> =
            problems.iter().map(|p| NodeProblem { object: p.object.clone(), reason: p.reason.clone() }).collect();
        *self.problems.lock().unwrap_or_else(|e| e.into_inner()) = problems;
        self.report_engine(report);
    }

    /// Tells the cluster what this node's engine left out, when that
    /// changed since the last report (every node shows every node's).
    fn report_engine(&self, problems: Vec<NodeProblem>) {
        {
            let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
            if reported.as_ref() == Some(&problems) {
                return;
            }
            *reported = Some(problems.clone());
        }
        let (cluster, name, reported) = (self.cluster.clone(), self.node_name.clone(), self.reported.clone());
        tokio::spawn(async move {
            let proposal = proposal::Proposal::now(Change::ReportEngine { name, problems });
            if let Ok(Err(e)) | Err(e) = cluster.propose(proposal).await {
                tracing::warn!(error = %e.message, "cannot report this node's engine status; the next change tries again");
                *reported.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
        });
    }

    /// Names of the volumes left out of the engine.
    fn offline_volumes(&self) -> std::collections::BTreeSet<String> {
        degraded::left_out(&self.problems())
            .into_iter()
            .filter_map(|p| match p {
                degraded::Piece::Volume(name) => Some(name),
                degraded::Piece::Portal(_) => None,
            })
            .collect()
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// This node's part in the cluster.
    pub fn cluster(&self) -> Cluster {
        self.cluster.clone()
    }

    /// Where this node stands in the cluster.
    pub fn cluster_status(&self) -> ClusterStatus {
        self.cluster.status()
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Runs one command: role, validation, database, volume files, engine,
    /// audit. A new volume's image is created before the engine opens it and
    /// removed again if the change does not go through; a deleted volume's
    /// image is removed before the commit (so a failure keeps the volume) and
    /// its other files after it.
    pub async fn execute(&self, caller: &Caller, command: Command) -> Result<(), ApiError> {
        let action = command.action();
        let object = command.object();
        self.authorize(caller, Role::Operator, "change storage objects", action, &object).await?;
        let _one_at_a_time = self.apply_lock.lock().await;
        let here = self.here();
        let primary = match &command {
            Command::CreateVolume(v) => match self.place_volume(v).await {
                Ok(node) => Some(node),
                Err(e) => return self.failed(caller, action, &object, e).await,
            },
            _ => None,
        };
        let copies = match self.place_new_copies(&command, primary.as_ref()).await {
            Ok(copies) => copies,
            Err(e) => return self.failed(caller, action, &object, e).await,
        };
        let mut proposal = match proposal::decide(Change::Storage(command), &here) {
            Ok(proposal) => proposal,
            Err(e) => return self.failed(caller, action, &object, e).await,
        };
        if let Some(node) = &primary {
            proposal.decided.node_id = Some(node.id);
        }
        proposal.decided.copies = copies.iter().map(|c| c.id).collect();
        // A change that takes space on other nodes is theirs to judge.
        let concerned = match self.nodes_concerned(&proposal).await {
            Ok(nodes) => nodes,
            Err(e) => return self.failed(caller, action, &object, e).await,
        };
        let mut notes = Vec::new();
        for node in concerned.iter().filter(|n| n.id != self.node_id) {
            match self.dry_run_on(node, &proposal).await {
                Ok(note) => notes.extend(note),
                Err(e) => return self.failed(caller, action, &object, e).await,
            }
        }
        let concerns_here = concerned.is_empty() || concerned.iter().any(|n| n.id == self.node_id);
        // The dry run reads, then writes: it takes the write lock at once,
        // so that another connection's write cannot fail it midway.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)?;
        let mut effects = match commands::apply(proposal.clone(), &mut tx).await {
            Ok(effects) => effects,
            Err(e) => {
                discard(tx).await;
                return self.failed(caller, action, &object, e).await;
            }
        };
        let judged = match concerns_here {
            true => proposal::check_here(&proposal, &mut tx, &here).await,
            false => Ok(None),
        };
        // The image of a volume placed elsewhere is made there, when its
        // engine takes the committed change.
        if !concerns_here {
            effects.create_image = None;
        }
        match judged {
            Ok(note) => notes.extend(note),
            Err(e) => {
                discard(tx).await;
                return self.failed(caller, action, &object, e).await;
            }
        }
        if !notes.is_empty() {
            notes.dedup();
            effects.detail = Some(match effects.detail.take() {
                Some(detail) => format!("{detail}; {}", notes.join("; ")),
                None => notes.join("; "),
            })
        }
        if let Some((name, size)) = &effects.create_image {
            if let Err(e) = volume_files::create(&self.data_dir, name, *size) {
                discard(tx).await;
                return self.failed(caller, action, &object, file_error(e)).await;
            }
        }
        let undo_create = || {
            if let Some((name, _)) = &effects.create_image {
                if let Err(e) = volume_files::remove_image(&self.data_dir, name) {
                    tracing::error!(error = %e, "cannot remove the image of a volume that was not created");
                }
            }
        };
        let config = self.derive(&mut tx).await.map_err(|e| {
            tracing::error!(error = %e, "cannot derive the engine configuration");
            ApiError::internal()
        });
        let config = match config {
            Ok(config) => config,
            Err(e) => {
                discard(tx).await;
                undo_create();
                return Err(e);
            }
        };
        // Pieces left out before may stay out; anything new that fails refuses the change.
        let known = degraded::left_out(&self.problems());
        let derived = config.clone();
        let problems = match degraded::apply(&self.engine, config, |p| known.contains(p)).await {
            Ok(problems) => problems,
            Err(e) => {
                discard(tx).await;
                undo_create();
                let message = format!("The iSCSI engine refused the change: {e}");
                return self.failed(caller, action, &object, ApiError::conflict(message)).await;
            }
        };
        if let Some(name) = &effects.remove_volume {
            if let Err(e) = volume_files::check_removable(&self.data_dir, name) {
                discard(tx).await;
                self.restore_engine().await;
                return self.failed(caller, action, &object, file_error(e)).await;
            }
        }
        // The dry run went through: the engine runs the change. Now the
        // cluster agrees on it, or the engine goes back to what is stored.
        discard(tx).await;
        let applied = match self.cluster.propose(proposal).await {
            Ok(Ok(applied)) => applied,
            Ok(Err(e)) | Err(e) => {
                undo_create();
                self.restore_engine().await;
                return self.failed(caller, action, &object, e).await;
            }
        };
        self.set_problems(problems);
        self.set_derived(derived);
        self.let_go_of_dropped_copies().await;
        if let Some(name) = &applied.remove_volume {
            let removed = volume_files::remove_image(&self.data_dir, name)
                .and_then(|_| volume_files::remove_rest(&self.data_dir, name));
            if let Err(e) = removed {
                let message = format!(
                    "The volume {name} is deleted, but {e}. Remove it before creating a volume with this name."
                );
                return self.failed(caller, action, &object, ApiError::new(500, message)).await;
            }
        }
        self.audit(caller, action, &object, AuditResult::Success, effects.detail).await;
        Ok(())
    }

    /// What only this node knows, for deciding and checking a proposal.
    fn here(&self) -> Here<'_> {
        Here { node_id: self.node_id, secrets: &self.secrets, limits: &self.limits, data_dir: &self.data_dir }
    }

    /// Lets `caller` on only with `role`; a refusal is audited as denied.
    async fn authorize(
        &self,
        caller: &Caller,
        role: Role,
        what: &str,
        action: &'static str,
        object: &str,
    ) -> Result<(), ApiError> {
        if let Err(e) = caller.require(role, what) {
            self.audit(caller, action, object, AuditResult::Denied, Some(format!("role {}", caller.role))).await;
            return Err(e);
        }
        Ok(())
    }

    /// Audits a refused or failed command and returns its error.
    async fn failed<T>(&self, caller: &Caller, action: &'static str, object: &str, e: ApiError) -> Result<T, ApiError> {
        self.audit(caller, action, object, AuditResult::Failure, Some(e.message.clone())).await;
        Err(e)
    }

    /// Keeps this node's engine on what the cluster has applied: changes
    /// other nodes made (through the leader) reach this node's log, and its
    /// engine runs its part of them. Ends with the storage.
    pub fn follow_applied_changes(self: &std::sync::Arc<Self>) {
        let mut applied = self.cluster.applied();
        // What was applied since `start` derived counts too.
        applied.mark_changed();
        let storage = std::sync::Arc::downgrade(self);
        tokio::spawn(async move {
            while applied.changed().await.is_ok() {
                let Some(storage) = storage.upgrade() else { return };
                // A change in progress here holds the lock, and its engine
                // step is the newest state already.
                let _one_at_a_time = storage.apply_lock.lock().await;
                let index = *applied.borrow_and_update();
                if storage.follow_stored(false).await {
                    storage.engine_at(index).await;
                }
            }
        });
    }

    /// The engine runs what the cluster had applied up to `index`: the
    /// lease learns it, and whether that state marks this node offline.
    async fn engine_at(&self, index: u64) {
        let state: Result<Option<(String,)>, _> =
            sqlx::query_as("SELECT state FROM nodes WHERE id = ?").bind(self.node_id).fetch_optional(&self.pool).await;
        match &state {
            Ok(row) => self.cluster.marked_offline_here(row.as_ref().is_some_and(|(s,)| s == "offline")),
            Err(e) => tracing::warn!(error = %e, "cannot read this node's state; the lease keeps what it knew"),
        }
        self.cluster.engine_brought_to(index);
        // A node in maintenance does not lead the cluster: it hands the
        // leadership over (and again if it is elected meanwhile).
        if matches!(&state, Ok(Some((s,))) if s == "maintenance") && self.cluster.status().role == "leader" {
            let cluster = self.cluster.clone();
            tokio::spawn(async move { cluster.step_down().await });
        }
    }

    /// Brings the engine back to the stored configuration.
    async fn restore_engine(&self) {
        self.follow_stored(true).await;
    }

    /// Brings the engine to the stored configuration, leaving out what
    /// fails (a committed change is never refused here). Unless `always`,
    /// nothing is done when the stored configuration derives as it did the
    /// last time the engine was set from it and nothing of it is left out.
    /// False if the engine could not be brought there.
    async fn follow_stored(&self, always: bool) -> bool {
        let Ok(mut conn) = self.pool.acquire().await else { return false };
        let config = match self.derive(&mut conn).await {
            Ok(config) => config,
            Err(e) => {
                tracing::error!(error = %e, "cannot derive the stored engine configuration");
                return false;
            }
        };
        let before = self.derived.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // Unchanged, and the engine runs all of it: nothing to do. Pieces
        // left out are tried again, as every change here tries them.
        if !always && before.as_ref() == Some(&config) && self.problems().is_empty() {
            drop(conn);
            self.let_go_of_dropped_copies().await;
            return true;
        }
        drop(conn);
        self.make_images_placed_here(before.as_ref(), &config);
        self.set_derived(config.clone());
        match degraded::apply(&self.engine, config, |_| true).await {
            Ok(problems) => self.set_problems(problems),
            Err(e) => {
                tracing::error!(error = %e, "the engine cannot return to the stored configuration");
                return false;
            }
        }
        self.let_go_of_dropped_copies().await;
        true
    }

    /// Removes the files of the copies the cluster took from this node (a
    /// volume deleted, a copy taken away or rebuilt elsewhere), as applied
    /// here, also while this node was down (migration 0013): once this node
    /// holds no copy of the volume and its engine has let go. A failure is
    /// logged and tried again at the next change.
    async fn let_go_of_dropped_copies(&self) {
        // Other nodes' copies are theirs to remove.
        let _ =
            sqlx::query("DELETE FROM dropped_copies WHERE node_id <> ?").bind(self.node_id).execute(&self.pool).await;
        let rows: Result<Vec<(String,)>, _> = sqlx::query_as("SELECT volume FROM dropped_copies WHERE node_id = ?")
            .bind(self.node_id)
            .fetch_all(&self.pool)
            .await;
        let Ok(rows) = rows else { return };
        if rows.is_empty() {
            return;
        }
        let served: std::collections::BTreeSet<String> = self
            .engine
            .config()
            .await
            .volumes
            .into_iter()
            .filter(|v| v.backend == BackendKind::File)
            .map(|v| v.name)
            .collect();
        for (name,) in rows {
            let here: Result<Option<(i64,)>, _> = sqlx::query_as(
                "SELECT id FROM volumes WHERE name = ?1 AND (node_id = ?2 \
                 OR id IN (SELECT volume_id FROM volume_copies WHERE node_id = ?2))",
            )
            .bind(&name)
            .bind(self.node_id)
            .fetch_optional(&self.pool)
            .await;
            match here {
                // Held here again (a new volume of that name): its files stay.
                Ok(Some(_)) => {}
                Ok(None) if served.contains(&name) => continue,
                Ok(None) => {
                    let removed = volume_files::remove_image(&self.data_dir, &name)
                        .and_then(|_| volume_files::remove_rest(&self.data_dir, &name));
                    match removed {
                        Ok(()) => {
                            tracing::info!(volume = %name, "removed the files of a copy this node no longer keeps")
                        }
                        Err(e) => {
                            tracing::error!(volume = %name, error = %e, "cannot remove the files of a copy gone from here");
                            continue;
                        }
                    }
                }
                Err(_) => continue,
            }
            let _ = sqlx::query("DELETE FROM dropped_copies WHERE volume = ? AND node_id = ?")
                .bind(&name)
                .bind(self.node_id)
                .execute(&self.pool)
                .await;
        }
    }

    /// Makes the images of volumes that another node placed here since the
    /// engine was last set. Only a volume new to this node gets an image:
    /// one whose image went missing later stays out of the engine, a problem
    /// the node reports, rather than coming back empty.
    fn make_images_placed_here(
        &self,
        before: Option<&target_engine::config::EngineConfig>,
        config: &target_engine::config::EngineConfig,
    ) {
        let Some(before) = before else { return };
        let is_file = |v: &&target_engine::config::VolumeConfig| v.backend == BackendKind::File;
        for v in config.volumes.iter().filter(is_file) {
            if before.volumes.iter().filter(is_file).any(|b| b.name == v.name) {
                continue;
            }
            if volume_files::image_path(&self.data_dir, &v.name).symlink_metadata().is_ok() {
                continue;
            }
            match volume_files::create(&self.data_dir, &v.name, v.size.0) {
                Ok(()) => tracing::info!(volume = %v.name, "made the image of a volume placed on this node"),
                Err(e) => {
                    tracing::error!(volume = %v.name, error = %e, "cannot make the image of a volume placed on this node")
                }
            }
        }
    }

    fn set_derived(&self, config: target_engine::config::EngineConfig) {
        *self.derived.lock().unwrap_or_else(|e| e.into_inner()) = Some(config);
    }

    async fn audit(
        &self,
        caller: &Caller,
        action: &'static str,
        object: &str,
        result: AuditResult,
        detail: Option<String>,
    ) {
        let mut r = AuditRecord::by(caller, action, object, result);
        r.detail = detail;
        write_audit(&self.pool, r).await;
    }

    /// The engine's state for the overview.
    pub async fn engine_status(&self) -> EngineStatus {
        let config = self.engine.config().await;
        let problems: Vec<NodeProblem> =
            self.problems().into_iter().map(|p| NodeProblem { object: p.object, reason: p.reason }).collect();
        EngineStatus {
            state: if problems.is_empty() { "running" } else { "degraded" }.into(),
            targets: config.targets.len() as u32,
            portals: self.engine.portals().await.len() as u32,
            sessions: self.engine.sessions().iter().filter(|s| !s.discovery).count() as u32,
            problems,
        }
    }

    /// This node's figures for `/metrics`, read now. The caller has been
    /// authorised by the HTTP layer (a token, or the separate metrics address).
    pub async fn metrics_snapshot(&self) -> anyhow::Result<crate::metrics::Snapshot> {
        let sessions = self.engine.sessions();
        let mut target_sessions = std::collections::BTreeMap::<String, u64>::new();
        for target in self.engine.config().await.targets {
            target_sessions.insert(target.iqn, 0);
        }
        for s in sessions.iter().filter(|s| !s.discovery) {
            *target_sessions.entry(s.target.clone()).or_default() += 1;
        }
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT name, state, engine_problems FROM nodes ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        let mut nodes = Vec::with_capacity(rows.len());
        for (name, state, problems) in rows {
            let problems: Vec<NodeProblem> = columns::json(format!("engine status of {name}"), &problems)?;
            nodes.push(crate::metrics::NodeState { name, state, engine_problems: problems.len() as u64 });
        }
        let status = self.cluster.status();
        Ok(crate::metrics::Snapshot {
            node: self.node_name.clone(),
            volumes: self.engine.volume_stats().await,
            target_sessions,
            discovery_sessions: sessions.iter().filter(|s| s.discovery).count() as u64,
            logins_in_progress: self.engine.logins_in_progress() as u64,
            replication: self.engine.replication().await,
            nodes,
            raft_role: status.role,
            raft_term: status.term,
            raft_applied_index: status.applied_index,
        })
    }

    /// The space of this node's volumes, measured now.
    pub async fn capacity(&self) -> Result<StorageCapacity, ApiError> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        quotas::capacity(&mut conn, self.node_id, &self.data_dir, &self.limits).await
    }

    fn read(caller: &Caller) -> Result<(), ApiError> {
        caller.require(Role::Viewer, "see storage objects")
    }

    /// Volumes as stored, with the write cache their initiators see now;
    /// one the engine does not serve reads as offline; a replicated one
    /// with its replicas as its primary sees them.
    async fn volume_views(&self, name: Option<&str>) -> Result<Vec<VolumeView>, ApiError> {
        let mut volumes = views::volumes(&self.pool, name).await.map_err(db_error)?;
        self.add_replication_reports(&mut volumes).await?;
        let offline = self.offline_volumes();
        let wce: std::collections::BTreeMap<String, bool> =
            self.engine.write_caches().await.into_iter().map(|(n, _, wce)| (n, wce)).collect();
        for v in volumes.iter_mut() {
            if offline.contains(&v.name) {
                v.state = "offline".into();
            }
            v.wce = wce.get(&v.name).copied();
        }
        Ok(volumes)
    }

    pub async fn volumes(&self, caller: &Caller) -> Result<Vec<VolumeView>, ApiError> {
        Self::read(caller)?;
        self.volume_views(None).await
    }

    pub async fn volume(&self, caller: &Caller, name: &str) -> Result<VolumeView, ApiError> {
        Self::read(caller)?;
        self.volume_views(Some(name)).await?.pop().ok_or_else(|| ApiError::not_found(format!("The volume {name}")))
    }

    /// The timeline of the moves of a volume's primary, newest first.
    pub async fn volume_moves(&self, caller: &Caller, name: &str) -> Result<Vec<VolumeMove>, ApiError> {
        self.volume(caller, name).await?;
        views::moves(&self.pool, Some(name), None).await.map_err(db_error)
    }

    /// The timeline of the moves of the primaries of a group's volumes.
    pub async fn group_moves(&self, caller: &Caller, group: &str) -> Result<Vec<VolumeMove>, ApiError> {
        self.target_group(caller, group).await?;
        views::moves(&self.pool, None, Some(group)).await.map_err(db_error)
    }

    /// The path state of each LUN through each target of a group, as the
    /// engine is told (the same rule, `paths::path_state`): what the group
    /// page refreshes while a failover or failback may move a path.
    pub async fn group_paths(&self, caller: &Caller, group: &str) -> Result<Vec<TargetPaths>, ApiError> {
        Self::read(caller)?;
        views::group_paths(&self.pool, group)
            .await
            .map_err(db_error)?
            .ok_or_else(|| ApiError::not_found(format!("The target group {group}")))
    }

    pub async fn target_groups(&self, caller: &Caller) -> Result<Vec<TargetGroupView>, ApiError> {
        Self::read(caller)?;
        views::target_groups(&self.pool, None).await.map_err(db_error)
    }

    pub async fn target_group(&self, caller: &Caller, name: &str) -> Result<TargetGroupView, ApiError> {
        Self::read(caller)?;
        views::target_groups(&self.pool, Some(name))
            .await
            .map_err(db_error)?
            .pop()
            .ok_or_else(|| ApiError::not_found(format!("The target group {name}")))
    }

    pub async fn chap_users(&self, caller: &Caller) -> Result<Vec<ChapUserView>, ApiError> {
        Self::read(caller)?;
        views::chap_users(&self.pool).await.map_err(db_error)
    }

    /// CHAP on discovery sessions (user names only, never secrets).
    pub async fn discovery(&self, caller: &Caller) -> Result<DiscoverySettings, ApiError> {
        Self::read(caller)?;
        discovery::read(&self.pool).await.map_err(db_error)
    }

    pub async fn nodes(&self, caller: &Caller) -> Result<Vec<NodeView>, ApiError> {
        Self::read(caller)?;
        let statuses = self.cluster.member_statuses().await;
        views::nodes(&self.pool, self.node_id, None, &self.cluster.status(), &statuses).await.map_err(db_error)
    }

    /// Each node with the addresses of its interfaces that carry iSCSI, for
    /// a target's portals: read from the cluster state only (no member is
    /// asked where it stands, so a node that is down costs nothing).
    pub async fn node_choices(&self, caller: &Caller) -> Result<Vec<NodeChoice>, ApiError> {
        Self::read(caller)?;
        let no_statuses = std::collections::BTreeMap::new();
        let nodes = views::nodes(&self.pool, self.node_id, None, &self.cluster.status(), &no_statuses)
            .await
            .map_err(db_error)?;
        Ok(nodes
            .into_iter()
            .map(|n| NodeChoice {
                iscsi_addresses: n
                    .interfaces
                    .iter()
                    .filter(|i| i.traffic_types.iter().any(|t| t == "iscsi"))
                    .flat_map(|i| i.addresses.iter().cloned())
                    .collect(),
                name: n.name,
            })
            .collect())
    }

    pub async fn node_names(&self, caller: &Caller) -> Result<Vec<String>, ApiError> {
        Self::read(caller)?;
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM nodes ORDER BY name").fetch_all(&self.pool).await.map_err(db_error)?;
        Ok(rows.into_iter().map(|(n,)| n).collect())
    }

    pub async fn node(&self, caller: &Caller, name: &str) -> Result<NodeView, ApiError> {
        Self::read(caller)?;
        let statuses = self.cluster.member_statuses().await;
        views::nodes(&self.pool, self.node_id, Some(name), &self.cluster.status(), &statuses)
            .await
            .map_err(db_error)?
            .pop()
            .ok_or_else(|| ApiError::not_found(format!("The node {name}")))
    }

    /// The volume's recent IOPS and throughput.
    pub async fn volume_activity(&self, caller: &Caller, name: &str) -> Result<VolumeActivity, ApiError> {
        self.volume(caller, name).await?;
        Ok(self.activity.activity(name))
    }

    /// The reservations of every volume this node serves.
    pub async fn reservations(&self, caller: &Caller) -> Result<Vec<VolumeReservations>, ApiError> {
        Self::read(caller)?;
        Ok(self.engine.reservations().await.into_iter().map(|(volume, s)| views::reservations(volume, s)).collect())
    }

    /// One volume's reservations.
    pub async fn volume_reservations(&self, caller: &Caller, name: &str) -> Result<VolumeReservations, ApiError> {
        self.volume(caller, name).await?;
        let found = self.engine.reservations().await.into_iter().find(|(v, _)| v == name);
        // A volume the engine does not serve (yet) has no reservations.
        Ok(views::reservations(name.to_string(), found.map(|(_, s)| s).unwrap_or_default()))
    }

    /// Live iSCSI sessions on this node's targets of the group.
    pub async fn connections(&self, caller: &Caller, group: &str) -> Result<Vec<ConnectionView>, ApiError> {
        let g = self.target_group(caller, group).await?;
        let iqns: std::collections::HashSet<&str> = g.targets.iter().map(|t| t.iqn.as_str()).collect();
        Ok(self
            .engine
            .sessions()
            .into_iter()
            .filter(|s| !s.discovery && iqns.contains(s.target.as_str()))
            .map(|s| ConnectionView {
                initiator: s.initiator,
                address: s.address,
                target: s.target,
                portal: s.portal,
                since: crate::db::rfc3339(time::OffsetDateTime::from(s.since)),
            })
            .collect())
    }
}

#[async_trait::async_trait]
impl portico_app::service::StorageService for Storage {
    async fn execute(&self, caller: &Caller, command: Command) -> Result<(), ApiError> {
        Storage::execute(self, caller, command).await
    }

    async fn volumes(&self, caller: &Caller) -> Result<Vec<VolumeView>, ApiError> {
        Storage::volumes(self, caller).await
    }

    async fn target_groups(&self, caller: &Caller) -> Result<Vec<TargetGroupView>, ApiError> {
        Storage::target_groups(self, caller).await
    }

    async fn target_group(&self, caller: &Caller, name: &str) -> Result<TargetGroupView, ApiError> {
        Storage::target_group(self, caller, name).await
    }

    async fn chap_users(&self, caller: &Caller) -> Result<Vec<ChapUserView>, ApiError> {
        Storage::chap_users(self, caller).await
    }

    async fn nodes(&self, caller: &Caller) -> Result<Vec<NodeView>, ApiError> {
        Storage::nodes(self, caller).await
    }

    async fn discovery(&self, caller: &Caller) -> Result<DiscoverySettings, ApiError> {
        Storage::discovery(self, caller).await
    }

    async fn connections(&self, caller: &Caller, group: &str) -> Result<Vec<ConnectionView>, ApiError> {
        Storage::connections(self, caller, group).await
    }

    async fn volume_activity(&self, caller: &Caller, volume: &str) -> Result<VolumeActivity, ApiError> {
        Storage::volume_activity(self, caller, volume).await
    }

    async fn reservations(&self, caller: &Caller) -> Result<Vec<VolumeReservations>, ApiError> {
        Storage::reservations(self, caller).await
    }

    async fn move_primary(&self, caller: &Caller, volume: &str, node: &str) -> Result<(), ApiError> {
        Storage::move_primary(self, caller, volume, node).await
    }

    async fn volume_moves(&self, caller: &Caller, volume: &str) -> Result<Vec<VolumeMove>, ApiError> {
        Storage::volume_moves(self, caller, volume).await
    }

    async fn group_moves(&self, caller: &Caller, group: &str) -> Result<Vec<VolumeMove>, ApiError> {
        Storage::group_moves(self, caller, group).await
    }

    async fn group_paths(&self, caller: &Caller, group: &str) -> Result<Vec<TargetPaths>, ApiError> {
        Storage::group_paths(self, caller, group).await
    }

    async fn create_join_token(&self, caller: &Caller) -> Result<CreatedJoinToken, ApiError> {
        Storage::create_join_token(self, caller).await
    }

    async fn join_tokens(&self, caller: &Caller) -> Result<Vec<JoinTokenView>, ApiError> {
        Storage::join_tokens(self, caller).await
    }

    async fn remove_node(&self, caller: &Caller, name: &str) -> Result<(), ApiError> {
        Storage::remove_node(self, caller, name).await
    }

    async fn revoke_join_token(&self, caller: &Caller, id: &str) -> Result<(), ApiError> {
        Storage::revoke_join_token(self, caller, id).await
    }
    async fn node_names(&self, caller: &Caller) -> Result<Vec<String>, ApiError> {
        Storage::node_names(self, caller).await
    }
    async fn node_choices(&self, caller: &Caller) -> Result<Vec<NodeChoice>, ApiError> {
        Storage::node_choices(self, caller).await
    }
}
