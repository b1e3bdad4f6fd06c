//! The node's service layer: every rule of the dashboard and the REST API,
//! written once. Each operation checks the caller's role, validates its
//! input, changes the database and writes the audit entry.

pub mod audit;
mod auth;
mod refusals;
mod tokens;
mod users;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use portico_app::error::ApiError;
use portico_app::model::*;
use portico_app::service::{Caller, Credential, NewSession, NodeService, RequestOrigin};
use sqlx::SqlitePool;

use crate::cluster::raft::AppliedChange;
use crate::storage::proposal::{Change, Proposal, UserChange};

pub use audit::{write_audit, AuditRecord};
use refusals::RefusalTally;

use crate::secrets::{Argon2Pool, SecretError};
use crate::throttle::{LoginPolicy, LoginThrottle};

/// What the overview shows of block storage: the engine and the space.
pub struct StorageStatus {
    pub engine: EngineStatus,
    /// `None` when it cannot be measured (the reason is in the log).
    pub capacity: Option<StorageCapacity>,
}

/// Reports block storage's state to the overview.
pub type StorageStatusFn =
    Arc<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = StorageStatus> + Send>> + Send + Sync>;

/// The overview's view of a node's block storage.
pub fn storage_status(storage: Arc<crate::storage::Storage>) -> StorageStatusFn {
    Arc::new(move || {
        let storage = storage.clone();
        Box::pin(async move {
            let capacity = storage.capacity().await.ok();
            StorageStatus { engine: storage.engine_status().await, capacity }
        })
    })
}

/// Settings of the service layer.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    pub node_name: String,
    /// How long a login session lasts.
    pub session_lifetime: time::Duration,
    pub login_policy: LoginPolicy,
    /// Password hashes computed at once, and how many more may wait.
    pub hash_concurrency: usize,
    pub hash_queue: usize,
    /// How often refused logins are written to the audit log, counted.
    pub refusal_audit_period: std::time::Duration,
}

impl NodeSettings {
    pub fn new(node_name: impl Into<String>) -> Self {
        NodeSettings {
            node_name: node_name.into(),
            session_lifetime: time::Duration::hours(12),
            login_policy: LoginPolicy::default(),
            hash_concurrency: 2,
            hash_queue: 8,
            refusal_audit_period: std::time::Duration::from_secs(60),
        }
    }
}

/// The service layer of one node.
pub struct Node {
    pool: SqlitePool,
    settings: NodeSettings,
    throttle: LoginThrottle,
    hasher: Argon2Pool,
    refusals: Arc<RefusalTally>,
    started_at: time::OffsetDateTime,
    started: Instant,
    storage_status: StorageStatusFn,
    /// Users and tokens change through the cluster.
    cluster: crate::cluster::Cluster,
}

impl Node {
    /// The service; from inside a Tokio runtime, also the tasks that write
    /// the counted login refusals to the audit log every period and share
    /// the audit log with the cluster.
    pub fn new(
        pool: SqlitePool,
        settings: NodeSettings,
        storage_status: StorageStatusFn,
        cluster: crate::cluster::Cluster,
    ) -> Self {
        let refusals = Arc::new(RefusalTally::default());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let _enter = runtime.enter();
            audit::share_with_cluster(pool.clone(), cluster.clone(), settings.node_name.clone());
            let tally = Arc::downgrade(&refusals);
            let pool = pool.clone();
            let period = settings.refusal_audit_period;
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(tally) = tally.upgrade() else { break };
                    audit::write_audit_batch(&pool, tally.take()).await;
                }
            });
        }
        Node {
            throttle: LoginThrottle::new(settings.login_policy.clone()),
            hasher: Argon2Pool::new(settings.hash_concurrency, settings.hash_queue),
            refusals,
            pool,
            settings,
            started_at: time::OffsetDateTime::now_utc(),
            started: Instant::now(),
            storage_status,
            cluster,
        }
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Writes the login refusals counted so far (at shutdown).
    pub async fn flush_refusals(&self) {
        audit::write_audit_batch(&self.pool, self.refusals.take()).await;
    }

    /// Creates the first admin if there is no user at all. Returns whether it
    /// did. The password is only looked at then: a node that has users
    /// starts whatever `PORTICO_ADMIN_PASSWORD` holds.
    pub async fn ensure_first_admin(&self, password: &str) -> Result<bool, ApiError> {
        let (count,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(&self.pool).await.map_err(db_error)?;
        if count > 0 {
            return Ok(false);
        }
        check_password(password).map_err(|m| ApiError::invalid_field("password", m))?;
        let hash = self.hasher.hash(password.to_string()).await.map_err(hash_error)?;
        self.change_users(UserChange::Create { username: "admin".into(), password_hash: hash, role: "admin".into() })
            .await?;
        self.record(AuditRecord::system(
            "user.create",
            "user/admin",
            AuditResult::Success,
            Some("first start: initial administrator"),
        ))
        .await;
        Ok(true)
    }
}

impl Node {
    /// Commits a change to users or tokens through the cluster and waits
    /// until this node has applied it.
    pub(crate) async fn change_users(&self, change: UserChange) -> Result<AppliedChange, ApiError> {
        self.cluster.propose(Proposal::now(Change::Users(change))).await?
    }
}

/// Logs a database failure (without parameters, which may hold secrets) and hides it.
pub(crate) fn db_error(e: sqlx::Error) -> ApiError {
    tracing::error!(error = %e, "database error");
    ApiError::internal()
}

/// No free turn to hash is the node being busy (503); anything else is internal.
pub(crate) fn hash_error(e: SecretError) -> ApiError {
    match e {
        SecretError::Busy => ApiError::new(503, "The node is busy checking passwords. Try again in a moment."),
        e => internal(e),
    }
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "internal error");
    ApiError::internal()
}

#[async_trait]
impl NodeService for Node {
    async fn login(&self, req: LoginRequest, origin: RequestOrigin) -> Result<NewSession, ApiError> {
        self.login_impl(req, origin).await
    }

    async fn logout(&self, caller: &Caller, session_token: &str) -> Result<(), ApiError> {
        self.logout_impl(caller, session_token).await
    }

    async fn authenticate(&self, credential: Credential, origin: RequestOrigin) -> Result<Caller, ApiError> {
        self.authenticate_impl(credential, origin).await
    }

    async fn list_users(&self, caller: &Caller) -> Result<Vec<UserView>, ApiError> {
        self.list_users_impl(caller).await
    }

    async fn create_user(&self, caller: &Caller, new: NewUser) -> Result<UserView, ApiError> {
        self.create_user_impl(caller, new).await
    }

    async fn update_user(&self, caller: &Caller, username: &str, patch: UserPatch) -> Result<UserView, ApiError> {
        self.update_user_impl(caller, username, patch).await
    }

    async fn delete_user(&self, caller: &Caller, username: &str) -> Result<(), ApiError> {
        self.delete_user_impl(caller, username).await
    }

    async fn create_token(&self, caller: &Caller, new: NewToken) -> Result<CreatedToken, ApiError> {
        self.create_token_impl(caller, new).await
    }

    async fn list_tokens(&self, caller: &Caller) -> Result<Vec<TokenView>, ApiError> {
        self.list_tokens_impl(caller).await
    }

    async fn revoke_token(&self, caller: &Caller, id: i64) -> Result<(), ApiError> {
        self.revoke_token_impl(caller, id).await
    }

    async fn audit(&self, caller: &Caller, page: u32, per_page: u32) -> Result<AuditPage, ApiError> {
        self.audit_impl(caller, page, per_page).await
    }

    async fn overview(&self, caller: &Caller) -> Result<NodeOverview, ApiError> {
        caller.require(Role::Viewer, "see this node")?;
        let (users,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(&self.pool).await.map_err(db_error)?;
        let storage = (self.storage_status)().await;
        let cluster = self.cluster_health().await?;
        Ok(NodeOverview {
            node_name: self.settings.node_name.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: crate::db::rfc3339(self.started_at),
            uptime_seconds: self.started.elapsed().as_secs(),
            engine: storage.engine,
            capacity: storage.capacity,
            users: users as u32,
            cluster,
        })
    }
}

impl Node {
    /// The nodes' states and the leader, for the overview.
    async fn cluster_health(&self) -> Result<portico_app::model::ClusterHealth, ApiError> {
        let rows: Vec<(String, String, Option<i64>, String)> =
            sqlx::query_as("SELECT name, state, raft_id, engine_problems FROM nodes ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
        let leader = self.cluster.status().leader;
        let mut health = portico_app::model::ClusterHealth { nodes: rows.len() as u32, ..Default::default() };
        for (name, state, raft_id, problems) in rows {
            match state.as_str() {
                "online" => health.online += 1,
                "maintenance" => health.maintenance += 1,
                _ => health.offline += 1,
            }
            // An empty JSON list is `[]`; anything longer names a problem.
            if problems.trim() != "[]" {
                health.degraded_engines += 1;
            }
            if leader.is_some() && raft_id.map(|id| id as u64) == leader {
                health.leader = Some(name);
            }
        }
        Ok(health)
    }
}
