//! The node's service layer as the dashboard and the REST API see it.
//!
//! Both front doors — Leptos server functions in this crate and the REST API
//! in `server/` — call this trait, so each rule (role checks, validation,
//! audit) is written once, in its implementation in `server/`.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::ApiError;
use crate::model::*;

/// How a request proves who it is.
#[derive(Clone)]
pub enum Credential {
    /// The value of the session cookie.
    Session(String),
    /// An API token from `Authorization: Bearer`.
    Bearer(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Session(_) => f.write_str("Session(<redacted>)"),
            Credential::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// Where a request came from, for throttling and the audit log.
#[derive(Clone, Debug, Default)]
pub struct RequestOrigin {
    pub address: Option<String>,
}

/// How a caller proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// A login session (the dashboard, or `POST /api/v1/login`).
    Session,
    /// An API token.
    Token,
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    /// The client's address, for the audit log.
    pub source: Option<String>,
    pub auth: AuthMethod,
}

impl Caller {
    /// Fails with 403 unless the caller's role grants `needed`.
    pub fn require(&self, needed: Role, what: &str) -> Result<(), ApiError> {
        if self.role.allows(needed) {
            Ok(())
        } else {
            Err(ApiError::forbidden(what))
        }
    }

    pub fn me(&self) -> Me {
        Me { username: self.username.clone(), role: self.role }
    }
}

/// A new login session: the cookie value (shown to the client only) and who it is.
#[derive(Clone)]
pub struct NewSession {
    pub token: String,
    pub max_age_seconds: i64,
    pub me: Me,
}

/// Every operation of the node service. Each method checks the caller's role.
#[async_trait]
pub trait NodeService: Send + Sync + 'static {
    /// Checks a password, applies throttling and lockout, and opens a session.
    async fn login(&self, req: LoginRequest, origin: RequestOrigin) -> Result<NewSession, ApiError>;
    /// Ends the session behind `session_token` (no error if it is already gone).
    async fn logout(&self, caller: &Caller, session_token: &str) -> Result<(), ApiError>;
    /// Resolves a cookie or bearer token to a caller (401 when unknown, expired or disabled).
    async fn authenticate(&self, credential: Credential, origin: RequestOrigin) -> Result<Caller, ApiError>;

    async fn list_users(&self, caller: &Caller) -> Result<Vec<UserView>, ApiError>;
    async fn create_user(&self, caller: &Caller, new: NewUser) -> Result<UserView, ApiError>;
    async fn update_user(&self, caller: &Caller, username: &str, patch: UserPatch) -> Result<UserView, ApiError>;
    async fn delete_user(&self, caller: &Caller, username: &str) -> Result<(), ApiError>;

    async fn create_token(&self, caller: &Caller, new: NewToken) -> Result<CreatedToken, ApiError>;
    async fn list_tokens(&self, caller: &Caller) -> Result<Vec<TokenView>, ApiError>;
    async fn revoke_token(&self, caller: &Caller, id: i64) -> Result<(), ApiError>;

    async fn audit(&self, caller: &Caller, page: u32, per_page: u32) -> Result<AuditPage, ApiError>;
    async fn overview(&self, caller: &Caller) -> Result<NodeOverview, ApiError>;
}

/// The service as it is shared: through Leptos context and axum state.
pub type SharedService = Arc<dyn NodeService>;

/// The name of the session cookie over plain HTTP.
pub const SESSION_COOKIE: &str = "portico_session";
/// The name of the session cookie over TLS.
pub const SECURE_SESSION_COOKIE: &str = "__Host-portico_session";

/// Block storage operations as the dashboard and the REST API see them.
/// Every change is a [`Command`](crate::model::storage::Command) run through
/// `execute`; the implementation in `server/` checks roles, validates,
/// applies it to the engine and audits it.
#[async_trait]
pub trait StorageService: Send + Sync + 'static {
    async fn execute(&self, caller: &Caller, command: crate::model::storage::Command) -> Result<(), ApiError>;
    async fn volumes(&self, caller: &Caller) -> Result<Vec<crate::model::storage::VolumeView>, ApiError>;
    async fn target_groups(&self, caller: &Caller) -> Result<Vec<crate::model::storage::TargetGroupView>, ApiError>;
    async fn target_group(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<crate::model::storage::TargetGroupView, ApiError>;
    async fn chap_users(&self, caller: &Caller) -> Result<Vec<crate::model::storage::ChapUserView>, ApiError>;
    async fn nodes(&self, caller: &Caller) -> Result<Vec<crate::model::storage::NodeView>, ApiError>;
    /// The nodes' names only: without asking each member where it stands.
    async fn node_names(&self, caller: &Caller) -> Result<Vec<String>, ApiError>;
    /// Each node with its iSCSI addresses, also without asking the members.
    async fn node_choices(&self, caller: &Caller) -> Result<Vec<crate::model::storage::NodeChoice>, ApiError>;
    /// CHAP on discovery sessions.
    async fn discovery(&self, caller: &Caller) -> Result<crate::model::discovery::DiscoverySettings, ApiError>;
    async fn connections(
        &self,
        caller: &Caller,
        group: &str,
    ) -> Result<Vec<crate::model::storage::ConnectionView>, ApiError>;
    async fn volume_activity(
        &self,
        caller: &Caller,
        volume: &str,
    ) -> Result<crate::model::storage::VolumeActivity, ApiError>;
    /// A planned switchover: moves the primary of `volume`, and with it the
    /// Active/Optimized path of its LUN, to `node`, which keeps an in-sync
    /// copy (operators and admins).
    async fn move_primary(&self, caller: &Caller, volume: &str, node: &str) -> Result<(), ApiError>;
    /// The moves of a volume's primary, newest first.
    async fn volume_moves(
        &self,
        caller: &Caller,
        volume: &str,
    ) -> Result<Vec<crate::model::storage::VolumeMove>, ApiError>;
    /// The moves of the primaries of a target group's volumes, newest first.
    async fn group_moves(
        &self,
        caller: &Caller,
        group: &str,
    ) -> Result<Vec<crate::model::storage::VolumeMove>, ApiError>;
    /// The path state of each LUN through each target of a group, now.
    async fn group_paths(
        &self,
        caller: &Caller,
        group: &str,
    ) -> Result<Vec<crate::model::storage::TargetPaths>, ApiError>;
    /// Reservations of every volume this node serves.
    async fn reservations(&self, caller: &Caller) -> Result<Vec<crate::model::storage::VolumeReservations>, ApiError>;
    /// A join token for a new node (admins).
    async fn create_join_token(&self, caller: &Caller) -> Result<crate::model::storage::CreatedJoinToken, ApiError>;
    /// Removes a node that holds nothing from the cluster (admins).
    async fn remove_node(&self, caller: &Caller, name: &str) -> Result<(), ApiError>;
    /// The join tokens that may still be used (admins).
    async fn join_tokens(&self, caller: &Caller) -> Result<Vec<crate::model::storage::JoinTokenView>, ApiError>;
    /// Revokes an unused join token (admins).
    async fn revoke_join_token(&self, caller: &Caller, id: &str) -> Result<(), ApiError>;
}

pub type SharedStorage = Arc<dyn StorageService>;
