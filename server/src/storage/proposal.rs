//! A change as the cluster agrees on it (CLUSTER.md §0). Whatever is random,
//! local or time-dependent is decided once, by the node that proposes, and
//! travels inside the [`Proposal`]: the time, a new volume's WWN, serial and
//! node, the sealed form of a CHAP secret. Applying the same proposals to two
//! empty databases therefore gives the same rows, byte for byte
//! ([`commands::apply`](super::commands::apply) reads nothing else).
//!
//! A CHAP secret never travels in the clear: [`decide`] validates it, seals
//! it and blanks it in the command.
//!
//! What can only be checked on one node (this node's caps and the space
//! under its volumes) is [`check_here`]: it runs on the proposing node,
//! inside the transaction the proposal was tried in, before anything is
//! committed. Applying the proposal never checks it again.

use std::collections::BTreeMap;
use std::path::Path;

use portico_app::error::{ApiError, FieldErrors};
use portico_app::model::storage::{check_chap_secret, Command};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::commands::{self, Tx};
use super::quotas::{self, Counted, Limits};
use super::secret_box::SecretBox;

/// What the cluster agrees on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Change {
    /// A storage command from the API or the dashboard.
    Storage(Command),
    /// A node and its network interfaces, as the node itself reports them
    /// when it starts. Traffic types an operator chose are kept.
    RegisterNode {
        name: String,
        interfaces: BTreeMap<String, Vec<String>>,
        #[serde(default)]
        member: Membership,
    },
    /// The leader saw a node stop answering (offline) or answer steadily
    /// again (online). Only such transitions enter the log.
    SetNodeState { name: String, online: bool },
    /// What a node's engine could not bring up, as the node reports it
    /// when that changes.
    ReportEngine { name: String, problems: Vec<portico_app::model::NodeProblem> },
    /// A change to the dashboard's users or API tokens.
    Users(UserChange),
    /// A node an admin removed from the cluster (after its Raft
    /// membership ended): its row and interfaces go.
    RemoveNode { name: String },
    /// A join token: its public id and the SHA-256 of its secret. The
    /// secret itself never enters the log.
    CreateJoinToken { id: String, secret_hash: String, expires_at: String, created_by: String },
    /// An unused join token an admin revoked.
    RevokeJoinToken { id: String },
    /// A node that showed a valid join token: it gets the next Raft id and
    /// the token is spent, and the key its certificate request carried is
    /// pinned as its own (`cert_key`, see `cluster::certs`).
    AdmitNode { token_id: String, name: String, cluster_addr: String, cert_key: String },
    /// Audit records a node wrote, shared with the cluster in the order it
    /// wrote them. `origin` is the node's Raft id.
    ShareAudit { origin: u64, node: String, records: Vec<SharedAuditRecord> },
    /// A volume's primary marks one of its other copies out of sync (it
    /// missed writes) or back in sync (resynced), if the volume's epoch is
    /// still `epoch`: a compare-and-set (CLUSTER.md §2).
    MarkCopy { volume: String, epoch: u64, node_id: i64, in_sync: bool },
    /// The leader replaces a volume's copy on node `from`, gone too long,
    /// with a new one on node `to`, out of sync until its primary has
    /// resynced it (see `storage::rebuild`).
    ReplaceCopy { volume: String, from: i64, to: i64 },
    /// The controller moves a volume's primary to node `to`, if the volume
    /// is still at `epoch` (a compare-and-set, CLUSTER.md §3): `to` keeps an
    /// in-sync copy and is online. The epoch goes up, which fences the old
    /// primary; its copy stays, out of sync, and is resynced from the new
    /// primary when its node is back. `cause` says why, for the audit
    /// record and the volume's timeline.
    Promote {
        volume: String,
        epoch: u64,
        to: i64,
        cause: PromoteCause,
        /// How long I/O was held before the move was proposed, for the
        /// timeline: from the old primary's demotion, or (a failover) from
        /// the last time the leader heard from its node.
        #[serde(default)]
        held_ms: Option<u64>,
    },
}

/// Why the controller moved a volume's primary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PromoteCause {
    /// The old primary's node stopped answering the cluster.
    NodeOffline { node: String },
    /// An operator asked for the move (a planned switchover).
    /// `handed_over`: the old primary demoted first, and everything it
    /// admitted completed and settled on every in-sync copy, so its own
    /// copy stays in sync.
    Planned { by: String, handed_over: bool },
    /// The controller returned the primary to the volume's preferred node,
    /// online and in sync for the hold time (a hand-over, as planned).
    Failback { handed_over: bool },
    /// The old primary's node stayed in the cluster, but the other nodes
    /// could not reach any of its iSCSI portals (a switch failure): it
    /// handed over to a node that initiators can reach.
    PortalsDown { node: String, handed_over: bool },
    /// The old primary's own copy failed a write that in-sync copies may
    /// have done (a disk error): it stopped serving and asked for the move;
    /// its copy is out of sync until it is resynced.
    OwnCopyFailed { node: String },
}

impl PromoteCause {
    /// The kind of move, as the timeline lists it.
    pub fn kind(&self) -> &'static str {
        match self {
            PromoteCause::NodeOffline { .. }
            | PromoteCause::PortalsDown { .. }
            | PromoteCause::OwnCopyFailed { .. } => "failover",
            PromoteCause::Planned { .. } => "switchover",
            PromoteCause::Failback { .. } => "failback",
        }
    }

    /// The old primary handed over with everything settled.
    pub fn handed_over(&self) -> bool {
        matches!(
            self,
            PromoteCause::Planned { handed_over: true, .. }
                | PromoteCause::Failback { handed_over: true }
                | PromoteCause::PortalsDown { handed_over: true, .. }
        )
    }
}

impl std::fmt::Display for PromoteCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PromoteCause::NodeOffline { node } => write!(f, "{node} went offline"),
            PromoteCause::Planned { by, .. } => write!(f, "a planned switchover asked for by {by}"),
            PromoteCause::Failback { .. } => write!(f, "failback to the preferred node"),
            PromoteCause::PortalsDown { node, .. } => {
                write!(f, "no other node could reach {node}'s iSCSI portals (a network or switch failure)")
            }
            PromoteCause::OwnCopyFailed { node } => {
                write!(f, "{node}'s copy failed a write (a disk error): it stopped serving and handed over")
            }
        }
    }
}

/// One audit record as its node shares it: `seq` is its id in that node's
/// own log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedAuditRecord {
    pub seq: i64,
    pub time: String,
    pub user: String,
    pub action: String,
    pub object: String,
    pub result: String,
    pub source: Option<String>,
    pub detail: Option<String>,
}

/// Users and API tokens change through the cluster, so that every node has
/// the same (passwords and tokens only as hashes).
#[derive(Clone, Serialize, Deserialize)]
pub enum UserChange {
    Create {
        username: String,
        password_hash: String,
        role: String,
    },
    SetRole {
        username: String,
        role: String,
    },
    SetEnabled {
        username: String,
        enabled: bool,
    },
    SetPassword {
        username: String,
        password_hash: String,
    },
    Delete {
        username: String,
    },
    CreateToken {
        user_id: i64,
        name: String,
        token_hash: String,
        /// When it stops working (decided by the proposing node).
        #[serde(default)]
        expires_at: Option<String>,
        #[serde(default)]
        read_only: bool,
    },
    /// `owner`: only if the token is this user's (none: any, for admins).
    RevokeToken {
        id: i64,
        owner: Option<i64>,
    },
}

impl std::fmt::Debug for UserChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hashes stay out of logs all the same.
        match self {
            UserChange::Create { username, role, .. } => write!(f, "Create({username}, {role})"),
            UserChange::SetRole { username, role } => write!(f, "SetRole({username}, {role})"),
            UserChange::SetEnabled { username, enabled } => write!(f, "SetEnabled({username}, {enabled})"),
            UserChange::SetPassword { username, .. } => write!(f, "SetPassword({username})"),
            UserChange::Delete { username } => write!(f, "Delete({username})"),
            UserChange::CreateToken { user_id, name, .. } => write!(f, "CreateToken({user_id}, {name})"),
            UserChange::RevokeToken { id, .. } => write!(f, "RevokeToken({id})"),
        }
    }
}

impl UserChange {
    fn action(&self) -> &'static str {
        match self {
            UserChange::Create { .. } => "user.create",
            UserChange::SetRole { .. } | UserChange::SetEnabled { .. } | UserChange::SetPassword { .. } => {
                "user.update"
            }
            UserChange::Delete { .. } => "user.delete",
            UserChange::CreateToken { .. } => "token.create",
            UserChange::RevokeToken { .. } => "token.revoke",
        }
    }

    fn object(&self) -> String {
        match self {
            UserChange::Create { username, .. }
            | UserChange::SetRole { username, .. }
            | UserChange::SetEnabled { username, .. }
            | UserChange::SetPassword { username, .. }
            | UserChange::Delete { username } => format!("user/{username}"),
            UserChange::CreateToken { user_id, .. } => format!("token/of-user-{user_id}"),
            UserChange::RevokeToken { id, .. } => format!("token/{id}"),
        }
    }
}

/// A node's place in the cluster, as it registers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Its Raft id.
    pub raft_id: Option<u64>,
    /// The address it serves the cluster channel on (IP:PORT).
    pub cluster_addr: Option<String>,
    /// The address it takes replication streams on (IP:PORT).
    #[serde(default)]
    pub replication_addr: Option<String>,
    /// The fingerprint of its cluster key (`cluster::certs`): pinned by
    /// the first registration that gives one, never changed by another.
    #[serde(default)]
    pub cert_key: Option<String>,
}

impl Change {
    pub fn action(&self) -> &'static str {
        match self {
            Change::Storage(c) => c.action(),
            Change::RegisterNode { .. } => "node.register",
            Change::CreateJoinToken { .. } => "cluster.join_token.create",
            Change::RevokeJoinToken { .. } => "cluster.join_token.revoke",
            Change::RemoveNode { .. } => "node.remove",
            Change::Users(u) => u.action(),
            Change::ReportEngine { .. } => "node.engine_status",
            Change::SetNodeState { online: true, .. } => "node.online",
            Change::SetNodeState { online: false, .. } => "node.offline",
            Change::AdmitNode { .. } => "cluster.node.admit",
            Change::ShareAudit { .. } => "audit.share",
            Change::MarkCopy { in_sync: true, .. } => "volume.copy.in_sync",
            Change::MarkCopy { in_sync: false, .. } => "volume.copy.out_of_sync",
            Change::ReplaceCopy { .. } => "volume.copy.rebuild",
            Change::Promote {
                cause:
                    PromoteCause::NodeOffline { .. } | PromoteCause::PortalsDown { .. } | PromoteCause::OwnCopyFailed { .. },
                ..
            } => "volume.failover",
            Change::Promote { cause: PromoteCause::Planned { .. }, .. } => "volume.switchover",
            Change::Promote { cause: PromoteCause::Failback { .. }, .. } => "volume.failback",
        }
    }

    pub fn object(&self) -> String {
        match self {
            Change::Storage(c) => c.object(),
            Change::RegisterNode { name, .. }
            | Change::AdmitNode { name, .. }
            | Change::SetNodeState { name, .. }
            | Change::RemoveNode { name }
            | Change::ReportEngine { name, .. }
            | Change::ShareAudit { node: name, .. } => {
                format!("node/{name}")
            }
            Change::CreateJoinToken { id, .. } | Change::RevokeJoinToken { id } => format!("join-token/{id}"),
            Change::Users(u) => u.object(),
            Change::MarkCopy { volume, .. } | Change::ReplaceCopy { volume, .. } | Change::Promote { volume, .. } => {
                format!("volume/{volume}")
            }
        }
    }
}

/// The values a change needs that are not in the change itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Decided {
    /// When it was proposed, RFC 3339 UTC: every time stamp the change writes.
    pub at: String,
    /// A new volume's NAA identifier (32 hex digits).
    pub wwn: Option<String>,
    /// A new volume's unit serial number.
    pub serial: Option<String>,
    /// The node that holds a new volume (its primary copy).
    pub node_id: Option<i64>,
    /// The nodes that hold a new volume's other copies.
    #[serde(default)]
    pub copies: Vec<i64>,
    /// A CHAP secret sealed with the cluster's key; its clear text is
    /// blanked in the command.
    pub sealed_secret: Option<Vec<u8>>,
}

/// A change and everything decided for it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Proposal {
    pub change: Change,
    pub decided: Decided,
}

impl Proposal {
    /// A change that needs nothing decided but the time: now.
    pub fn now(change: Change) -> Self {
        Proposal { change, decided: Decided { at: crate::db::now(), ..Default::default() } }
    }
}

/// What the proposing node knows that others do not.
pub struct Here<'a> {
    pub node_id: i64,
    pub secrets: &'a SecretBox,
    pub limits: &'a Limits,
    pub data_dir: &'a Path,
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

/// Decides what `change` leaves open, on the proposing node. A CHAP secret
/// is checked here (the only place that sees it in the clear), with the
/// other fields of a new CHAP user so that one answer names every mistake.
pub fn decide(change: Change, here: &Here<'_>) -> Result<Proposal, ApiError> {
    let mut decided = Decided { at: crate::db::now(), ..Default::default() };
    let change = match change {
        Change::Storage(Command::CreateVolume(v)) => {
            decided.wwn = Some(new_wwn());
            decided.serial = Some(format!("PRT{}", random_hex(8).to_uppercase()));
            decided.node_id = Some(here.node_id);
            Change::Storage(Command::CreateVolume(v))
        }
        Change::Storage(Command::CreateChapUser(mut u)) => {
            let mut errors = FieldErrors::default();
            errors.check("name", commands::check_chap_name(&u.name));
            errors.check("secret", check_chap_secret(&u.secret));
            errors.check("description", commands::check_description(u.description.as_deref()));
            errors.into_result()?;
            decided.sealed_secret = Some(here.secrets.seal(&u.secret));
            u.secret = String::new();
            Change::Storage(Command::CreateChapUser(u))
        }
        Change::Storage(Command::UpdateChapUser { name, mut patch }) => {
            if let Some(secret) = patch.secret.take() {
                check_chap_secret(&secret).map_err(|m| commands::field("secret", m))?;
                decided.sealed_secret = Some(here.secrets.seal(&secret));
            }
            Change::Storage(Command::UpdateChapUser { name, patch })
        }
        other => other,
    };
    Ok(Proposal { change, decided })
}

/// This node's caps and space, checked after `proposal` was applied in `tx`
/// and before it is committed. Returns a note for the audit (a thin
/// volume's over-provisioning).
pub async fn check_here(proposal: &Proposal, tx: &mut Tx<'_>, here: &Here<'_>) -> Result<Option<String>, ApiError> {
    let limits = here.limits;
    // The node that takes the new copy judges its own disk.
    if let Change::ReplaceCopy { .. } = &proposal.change {
        return space(tx, here.node_id, here).await;
    }
    let Change::Storage(command) = &proposal.change else { return Ok(None) };
    match command {
        Command::CreateVolume(_) => {
            quotas::ensure_within(tx, limits, Counted::Volumes).await?;
            // Run on each node that takes a copy, for its own disk.
            let node = match proposal.decided.copies.contains(&here.node_id) {
                true => here.node_id,
                false => proposal.decided.node_id.unwrap_or(here.node_id),
            };
            space(tx, node, here).await
        }
        // Run on each node with a copy, old (grown) or new, for its own disk.
        Command::UpdateVolume { patch, .. }
            if patch.size.is_some() || proposal.decided.copies.contains(&here.node_id) =>
        {
            space(tx, here.node_id, here).await
        }
        Command::CreateTargetGroup(_) => {
            quotas::ensure_within(tx, limits, Counted::TargetGroups).await?;
            quotas::ensure_within(tx, limits, Counted::Targets).await?;
            Ok(None)
        }
        Command::AddTarget { .. } => {
            quotas::ensure_within(tx, limits, Counted::Targets).await?;
            Ok(None)
        }
        Command::AttachVolume { group, .. } => {
            let (gid, _) = commands::group_id(tx, group).await?;
            quotas::ensure_within(tx, limits, Counted::Luns(gid)).await?;
            Ok(None)
        }
        Command::AddAclRule { group, .. } => {
            let (gid, _) = commands::group_id(tx, group).await?;
            quotas::ensure_within(tx, limits, Counted::AclRules(gid)).await?;
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// The provisioned space of a node's volumes against its ceiling.
async fn space(tx: &mut Tx<'_>, node_id: i64, here: &Here<'_>) -> Result<Option<String>, ApiError> {
    let capacity = quotas::capacity(tx, node_id, here.data_dir, here.limits).await?;
    quotas::check_provision(&capacity, 0)
}
