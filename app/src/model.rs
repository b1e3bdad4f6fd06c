//! The values the dashboard, the server functions and the REST API exchange.
//!
//! One definition for all three: the REST API serialises exactly these types,
//! and the OpenAPI document is derived from them.

pub mod discovery;
pub mod privileges;
pub mod session_settings;
pub mod storage;

use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use utoipa::ToSchema;

/// What a dashboard user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only access to every page.
    Viewer,
    /// Manages storage objects, but not users.
    Operator,
    /// Everything, users included.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Operator, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// True when this role grants at least what `needed` grants.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The caller, as `GET /api/v1/me` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct Me {
    pub username: String,
    pub role: Role,
}

/// Credentials for `POST /api/v1/login`.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest").field("username", &self.username).finish_non_exhaustive()
    }
}

/// A dashboard user as listed (never with the password).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct UserView {
    pub username: String,
    pub role: Role,
    pub enabled: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC; absent until the first successful login.
    pub last_login_at: Option<String>,
}

/// Body of `POST /api/v1/users`.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub role: Role,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser").field("username", &self.username).field("role", &self.role).finish_non_exhaustive()
    }
}

/// Body of `PATCH /api/v1/users/{username}`: only the fields present change.
#[derive(Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct UserPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl std::fmt::Debug for UserPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserPatch")
            .field("role", &self.role)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("enabled", &self.enabled)
            .finish()
    }
}

/// Body of `POST /api/v1/tokens`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct NewToken {
    pub name: String,
    /// The token stops working this many days after it is made (1 to
    /// 3650); none: it works until it is revoked.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
    /// The token can only read: it acts as a viewer, whatever its owner's
    /// role.
    #[serde(default)]
    pub read_only: bool,
}

/// The longest a token may be made to last, in days.
pub const MAX_TOKEN_DAYS: u32 = 3650;

/// The answer to `POST /api/v1/tokens`: the only time the secret is shown.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct CreatedToken {
    pub id: i64,
    pub name: String,
    /// Send as `Authorization: Bearer <token>`. Shown once, stored hashed.
    pub token: String,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub read_only: bool,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken").field("id", &self.id).field("name", &self.name).finish_non_exhaustive()
    }
}

/// An API token as listed: never the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct TokenView {
    pub id: i64,
    pub name: String,
    pub owner: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    /// When it stops working; none: when it is revoked.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// It acts as a viewer.
    #[serde(default)]
    pub read_only: bool,
}

/// Outcome of an audited action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum AuditResult {
    Success,
    Failure,
    Denied,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Success => "success",
            AuditResult::Failure => "failure",
            AuditResult::Denied => "denied",
        }
    }

    pub fn parse(s: &str) -> AuditResult {
        match s {
            "success" => AuditResult::Success,
            "denied" => AuditResult::Denied,
            _ => AuditResult::Failure,
        }
    }
}

/// One line of the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct AuditEntry {
    /// The record's number among those of its node.
    pub id: i64,
    /// The node that wrote it (the one the request came through).
    pub node: String,
    /// RFC 3339, UTC.
    pub time: String,
    /// Who acted (a username, or the name tried at a failed login).
    pub user: String,
    /// What was done, e.g. `user.create`, `login`, `login.lockout`.
    pub action: String,
    /// What it was done to, e.g. `user/alice`.
    pub object: String,
    pub result: AuditResult,
    /// Where the request came from, when known.
    pub source: Option<String>,
    /// A short explanation (never a secret).
    pub detail: Option<String>,
}

/// One page of the audit log, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub page: u32,
    pub per_page: u32,
    pub total: u64,
}

/// The engine's state as the overview shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct EngineStatus {
    /// `running`, or `degraded` when part of the stored configuration is
    /// not served (see `problems`).
    pub state: String,
    pub targets: u32,
    pub portals: u32,
    pub sessions: u32,
    /// What of the stored configuration this node does not serve, and why.
    #[serde(default)]
    pub problems: Vec<NodeProblem>,
}

/// A part of the stored configuration the node could not bring up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct NodeProblem {
    /// `volume/NAME`, `portal/ADDR`, `target/IQN` or `configuration`.
    pub object: String,
    /// Why, in the words of the engine or the file system.
    pub reason: String,
}

/// The space of this node's volumes. Volumes are thin: the provisioned
/// total may exceed what the images hold plus what is free, up to the
/// node's ceiling if it has one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct StorageCapacity {
    /// The sizes of the volumes, added up.
    pub provisioned_bytes: u64,
    /// What their images hold on disk.
    pub allocated_bytes: u64,
    /// Free space on the file system of the images.
    pub free_bytes: u64,
    /// The ceiling on provisioned / (allocated + free), in percent; none when absent.
    pub max_overprovision_percent: Option<u32>,
}

impl StorageCapacity {
    /// Whether the volumes are promised more than the node has.
    pub fn overprovisioned(&self) -> bool {
        self.provisioned_bytes > self.allocated_bytes.saturating_add(self.free_bytes)
    }
}

/// This node at a glance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct NodeOverview {
    pub node_name: String,
    pub version: String,
    pub started_at: String,
    pub uptime_seconds: u64,
    pub engine: EngineStatus,
    /// The space of the volumes; absent when it cannot be measured.
    pub capacity: Option<StorageCapacity>,
    pub users: u32,
    pub cluster: ClusterHealth,
}

/// The cluster at a glance, as the answering node sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct ClusterHealth {
    pub nodes: u32,
    pub online: u32,
    pub offline: u32,
    pub maintenance: u32,
    /// Nodes whose engine left part of the configuration out.
    pub degraded_engines: u32,
    /// The leader's node name; none while there is no leader.
    pub leader: Option<String>,
}

impl ClusterHealth {
    /// Every node online (or in maintenance, on purpose), every engine
    /// serving all of its part, and a leader.
    pub fn healthy(&self) -> bool {
        self.offline == 0 && self.degraded_engines == 0 && self.leader.is_some()
    }
}

/// Limits shared by the forms and the server's validation.
pub mod limits {
    pub const USERNAME_MAX: usize = 32;
    pub const PASSWORD_MIN: usize = 8;
    pub const PASSWORD_MAX: usize = 128;
    pub const TOKEN_NAME_MAX: usize = 64;
}

/// Checks a username: 1–32 characters, lower-case letters, digits, `.`, `_`,
/// `-`, starting with a letter. Returns the reason when it is not valid.
pub fn check_username(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Enter a user name.".into());
    }
    if name.len() > limits::USERNAME_MAX {
        return Err(format!("At most {} characters.", limits::USERNAME_MAX));
    }
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_lowercase()) {
        return Err("Start with a lower-case letter.".into());
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')) {
        return Err("Use only lower-case letters, digits, '.', '_' and '-'.".into());
    }
    Ok(())
}

/// Checks a new password: 8–128 characters, not only spaces.
pub fn check_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < limits::PASSWORD_MIN {
        return Err(format!("Use at least {} characters.", limits::PASSWORD_MIN));
    }
    if n > limits::PASSWORD_MAX {
        return Err(format!("At most {} characters.", limits::PASSWORD_MAX));
    }
    if password.trim().is_empty() {
        return Err("A password cannot be only spaces.".into());
    }
    Ok(())
}

/// Checks an API token's name: 1–64 printable characters.
pub fn check_token_name(name: &str) -> Result<(), String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err("Give the token a name.".into());
    }
    if trimmed.chars().count() > limits::TOKEN_NAME_MAX {
        return Err(format!("At most {} characters.", limits::TOKEN_NAME_MAX));
    }
    if trimmed.chars().any(|c| c.is_control()) {
        return Err("No control characters.".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_power() {
        assert!(Role::Admin.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Operator));
        assert!(!Role::Operator.allows(Role::Admin));
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn usernames() {
        assert!(check_username("alice").is_ok());
        assert!(check_username("ops-1.b_c").is_ok());
        assert!(check_username("").is_err());
        assert!(check_username("1abc").is_err());
        assert!(check_username("Alice").is_err());
        assert!(check_username("a b").is_err());
        assert!(check_username(&"a".repeat(33)).is_err());
    }

    #[test]
    fn passwords() {
        assert!(check_password("correct horse").is_ok());
        assert!(check_password("short").is_err());
        assert!(check_password("        ").is_err());
        assert!(check_password(&"x".repeat(129)).is_err());
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let u = NewUser { username: "bob".into(), password: "hunter2hunter2".into(), role: Role::Viewer };
        assert!(!format!("{u:?}").contains("hunter2"));
        let p = UserPatch { password: Some("hunter2hunter2".into()), ..Default::default() };
        assert!(!format!("{p:?}").contains("hunter2"));
        let l = LoginRequest { username: "bob".into(), password: "hunter2hunter2".into() };
        assert!(!format!("{l:?}").contains("hunter2"));
        let t =
            CreatedToken { id: 1, name: "ci".into(), token: "ptk_secret".into(), expires_at: None, read_only: false };
        assert!(!format!("{t:?}").contains("ptk_secret"));
    }
}
