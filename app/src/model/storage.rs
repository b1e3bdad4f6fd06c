//! Block storage objects as the API and the dashboard see them: nodes and
//! their interfaces, volumes, target groups with their targets, LUNs and ACL
//! rules, and CHAP users. Secrets never appear in a view type.

use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use utoipa::ToSchema;

use super::discovery::DiscoverySettings;
use super::privileges::{PrivilegeSettings, PrivilegesView};
use super::session_settings::{SessionSettings, SessionView};

/// A network interface of a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct InterfaceView {
    pub name: String,
    pub addresses: Vec<String>,
    /// Traffic carried, e.g. `iscsi`, `management`.
    pub traffic_types: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct NodeView {
    pub name: String,
    /// `online`, `offline` or `maintenance`.
    pub state: String,
    pub is_local: bool,
    pub last_heartbeat: String,
    pub interfaces: Vec<InterfaceView>,
    /// Its id in the cluster's Raft (none until it has been admitted).
    #[serde(default)]
    pub raft_id: Option<u64>,
    /// `leader`, `follower` (a voter) or `learner`, as the answering node
    /// sees the membership; none if it is not (or no longer) a member.
    #[serde(default)]
    pub raft_role: Option<String>,
    /// The address it serves the cluster channel on.
    #[serde(default)]
    pub cluster_addr: Option<String>,
    /// What its engine could not bring up, and why, as it reported it.
    #[serde(default)]
    pub engine_problems: Vec<crate::model::NodeProblem>,
    /// The last log entry it applied, as it answered just now (none if it
    /// did not answer within 1 s: down, or cut off).
    #[serde(default)]
    pub applied_index: Option<u64>,
    /// How long ago it last answered the leader's heartbeat, in
    /// milliseconds, as the leader tells (0 for the leader itself).
    #[serde(default)]
    pub last_contact_ms: Option<u64>,
}

/// A new join token, as its creator sees it (this once): the answer to
/// `POST /api/v1/cluster/join-tokens`.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct CreatedJoinToken {
    /// `FINGERPRINT.ID.SECRET`: give it to the new node (`PORTICO_JOIN_TOKEN`).
    pub token: String,
    pub expires_at: String,
    /// The command that joins a node with it.
    pub command: String,
}

/// A join token that has not been used and has not expired (its secret is
/// never shown again). `GET /api/v1/cluster/join-tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct JoinTokenView {
    /// The token's public part: 16 hex digits, the middle of the token.
    pub id: String,
    pub created_at: String,
    pub created_by: String,
    pub expires_at: String,
}

impl std::fmt::Debug for CreatedJoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedJoinToken").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct InterfacePatch {
    pub name: String,
    pub traffic_types: Vec<String>,
}

/// Body of `PATCH /api/v1/nodes/{name}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct NodePatch {
    #[serde(default)]
    pub interfaces: Vec<InterfacePatch>,
    /// `true` puts the node into maintenance: its targets stop (their
    /// sessions end) and nothing new is placed on it; `false` takes it out
    /// (it is online again once the leader sees it answer).
    #[serde(default)]
    pub maintenance: Option<bool>,
}

/// A size as bytes or as text with a unit ("1GiB", "500MiB", "2TiB").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(untagged)]
pub enum SizeInput {
    Bytes(u64),
    Text(String),
}

/// "1 GiB", "512 MiB", "1.5 TiB".
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if (v - v.round()).abs() < 0.05 {
        format!("{} {}", v.round() as u64, UNITS[i])
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct VolumeView {
    pub name: String,
    pub size: u64,
    pub block_size: u32,
    pub replicas: u8,
    pub wwn: String,
    pub serial: String,
    pub thin: bool,
    pub iops_limit: Option<u64>,
    pub mbps_limit: Option<u64>,
    /// `healthy`; `degraded` (a copy is out of sync), `resyncing` (one is
    /// catching up), `suspended` (writes wait for copies in sync) or
    /// `offline` (its primary's engine does not serve it).
    pub state: String,
    /// The target group it is attached to, and as which LUN.
    pub attached_to: Option<String>,
    pub lun: Option<u8>,
    pub created_at: String,
    /// Who decides whether writes are cached.
    pub write_cache: WriteCache,
    /// The write cache (WCE) initiators see now; absent while the engine
    /// does not serve the volume.
    pub wce: Option<bool>,
    /// The node that holds its data (its primary copy, when it has several).
    pub node: String,
    /// Its other copies, on other nodes.
    #[serde(default)]
    pub copies: Vec<VolumeCopy>,
    /// Where its primary returns after a failover (failback), if it keeps
    /// a copy there: the node it was created on, or where an operator or an
    /// initiator last moved it.
    #[serde(default)]
    pub preferred_node: Option<String>,
    /// Whether the primary returns to the preferred node on its own.
    #[serde(default)]
    pub auto_failback: bool,
}

/// One move of a volume's primary, as its timeline lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct VolumeMove {
    pub volume: String,
    /// When the cluster committed it (RFC 3339, UTC).
    pub at: String,
    /// `failover`, `switchover` or `failback`.
    pub kind: String,
    pub from_node: String,
    pub to_node: String,
    /// The volume's epoch from then on.
    pub epoch: u64,
    /// Why: the node that went offline, who asked for it, or failback.
    pub cause: String,
    /// How long I/O was held, in milliseconds, as the controller measured
    /// it when it proposed the move: from the old primary's demotion (a
    /// hand-over), or from the last time the leader heard from the failed
    /// node (a failover; the election of a new leader, if the failed node
    /// led, comes on top). Absent for moves recorded before it was kept.
    #[serde(default)]
    pub held_ms: Option<u64>,
}

/// A copy of a replicated volume on another node than its primary's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct VolumeCopy {
    pub node: String,
    /// Whether the cluster counts it as holding every acknowledged write.
    pub in_sync: bool,
    /// What the primary's engine says of it now (`in-sync`, `reconciling`
    /// after a promotion, `failing`, `out-of-sync`, `resyncing`,
    /// `catching-up`); absent when the primary could not be asked.
    pub link: Option<String>,
    /// While it resyncs: bytes copied and left, and bytes a second.
    pub copied_bytes: u64,
    pub left_bytes: u64,
    pub resync_rate: u64,
}

/// Everything the volumes page draws, in one answer: the volumes, and the
/// nodes the new-volume form offers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VolumesPageData {
    pub volumes: Vec<VolumeView>,
    pub nodes: Vec<String>,
}

/// Who decides whether a volume caches writes (the Caching mode page's WCE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum WriteCache {
    /// Every write is on stable storage before it is acknowledged (WCE off).
    #[default]
    WriteThrough,
    /// Writes are durable on FUA or SYNCHRONIZE CACHE only (WCE on).
    WriteBack,
    /// WCE starts on and the initiator may change it; its choice is kept.
    Initiator,
}

impl WriteCache {
    pub const ALL: [WriteCache; 3] = [WriteCache::WriteThrough, WriteCache::WriteBack, WriteCache::Initiator];

    pub fn as_str(self) -> &'static str {
        match self {
            WriteCache::WriteThrough => "write-through",
            WriteCache::WriteBack => "write-back",
            WriteCache::Initiator => "initiator",
        }
    }

    pub fn parse(s: &str) -> Option<WriteCache> {
        WriteCache::ALL.into_iter().find(|w| w.as_str() == s)
    }

    /// What a node's power cut costs under this policy, for forms and tables.
    pub fn meaning(self) -> &'static str {
        match self {
            WriteCache::WriteThrough => "durable before acknowledged: nothing is lost on a power cut",
            WriteCache::WriteBack => {
                "only for initiators that flush (Linux, Windows) or hardware with power protection: \
                 writes not yet flushed are lost on a power cut"
            }
            WriteCache::Initiator => "the initiator turns the write cache on or off; its choice is kept",
        }
    }
}

/// Body of `POST /api/v1/volumes`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct NewVolume {
    pub name: String,
    pub size: SizeInput,
    #[serde(default = "default_block_size")]
    pub block_size: u32,
    #[serde(default = "default_replicas")]
    pub replicas: u8,
    /// Default: write-through.
    #[serde(default)]
    pub write_cache: WriteCache,
    /// The node that holds the volume's data; absent: the online node with
    /// the most room for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

fn default_block_size() -> u32 {
    512
}

fn default_replicas() -> u8 {
    1
}

/// Body of `POST /api/v1/volumes/{name}/primary`: a planned switchover to
/// the node that is to hold the volume's primary, and so its LUN's
/// Active/Optimized path. It must keep an in-sync copy and be online.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PrimaryMove {
    pub node: String,
}

/// Body of `PATCH /api/v1/volumes/{name}`: grow, set limits (0 removes a limit).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct VolumePatch {
    #[serde(default)]
    pub size: Option<SizeInput>,
    #[serde(default)]
    pub iops_limit: Option<u64>,
    #[serde(default)]
    pub mbps_limit: Option<u64>,
    /// Applied live; initiators see MODE PARAMETERS CHANGED if WCE changes.
    #[serde(default)]
    pub write_cache: Option<WriteCache>,
    /// The number of copies (1–3), changed online: a new copy goes on
    /// another online node and is resynced in full there; a copy taken away
    /// is an out-of-sync one first.
    #[serde(default)]
    pub replicas: Option<u8>,
    /// Whether the primary returns to its preferred node on its own after
    /// a failover (on by default).
    #[serde(default)]
    pub auto_failback: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ChapMode {
    None,
    OneWay,
    Mutual,
}

impl ChapMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ChapMode::None => "none",
            ChapMode::OneWay => "one-way",
            ChapMode::Mutual => "mutual",
        }
    }

    pub fn parse(s: &str) -> Option<ChapMode> {
        match s {
            "none" => Some(ChapMode::None),
            "one-way" => Some(ChapMode::OneWay),
            "mutual" => Some(ChapMode::Mutual),
            _ => None,
        }
    }
}

/// CHAP of a target group: which CHAP users authenticate whom (no secrets).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct ChapSetting {
    pub mode: ChapMode,
    /// The CHAP user initiators log in as.
    #[serde(default)]
    pub user: Option<String>,
    /// For mutual CHAP: the CHAP user the target answers as.
    #[serde(default)]
    pub mutual_user: Option<String>,
}

impl Default for ChapSetting {
    fn default() -> Self {
        ChapSetting { mode: ChapMode::None, user: None, mutual_user: None }
    }
}

/// The prefix of the IQNs Portico gives its targets; the suffix is the
/// administrator's (by default `<group>.<node>`).
pub const IQN_PREFIX: &str = "iqn.2026-11.local.portico";

/// A target as requested: the node it runs on and its portals.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct TargetSpec {
    pub node: String,
    /// "ip:port" or "ip" (port 3260).
    pub portals: Vec<String>,
    /// Optional IQN; default `iqn.2026-11.local.portico:<group>.<node>`.
    #[serde(default)]
    pub iqn: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct TargetView {
    pub node: String,
    pub iqn: String,
    pub portals: Vec<String>,
    /// The ALUA target port group id of this target.
    pub tpg: u16,
    /// The state of the path through this target to each LUN of the group.
    pub paths: Vec<PathView>,
}

/// The ALUA state of one path (a target's port group, for one LUN).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum PathState {
    /// Initiators send I/O here.
    ActiveOptimized,
    /// Serves I/O by sending it to the node of the Active/Optimized path
    /// (a group whose other paths are set so); takes over when that path fails.
    ActiveNonOptimized,
    /// Takes over when the Active/Optimized path fails.
    Standby,
}

impl PathState {
    pub fn label(self) -> &'static str {
        match self {
            PathState::ActiveOptimized => "Active/Optimized",
            PathState::ActiveNonOptimized => "Active/Non-optimized",
            PathState::Standby => "Standby",
        }
    }
}

/// The state of a group's paths other than each LUN's Active/Optimized one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum OtherPaths {
    /// They refuse reads and writes until they take over (what PRODUCT.md
    /// promises, and what every multipath stack handles).
    #[default]
    Standby,
    /// They serve reads and writes by sending each to the node of the
    /// Active/Optimized path, one network hop more: for initiators that
    /// send I/O down every path.
    ActiveNonOptimized,
}

impl OtherPaths {
    pub fn as_str(self) -> &'static str {
        match self {
            OtherPaths::Standby => "standby",
            OtherPaths::ActiveNonOptimized => "active-non-optimized",
        }
    }

    pub fn parse(s: &str) -> Option<OtherPaths> {
        match s {
            "standby" => Some(OtherPaths::Standby),
            "active-non-optimized" => Some(OtherPaths::ActiveNonOptimized),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            OtherPaths::Standby => "Standby",
            OtherPaths::ActiveNonOptimized => "Active/Non-optimized",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct PathView {
    pub lun: u8,
    pub state: PathState,
}

/// The path states through one target of a group, as they are now: what
/// `GET /api/v1/target-groups/{name}/paths` answers for each target, and what
/// the group page refreshes while it is open (a failover, switchover or
/// failback moves a LUN's Active/Optimized path on its own).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct TargetPaths {
    pub iqn: String,
    /// The state of the path through this target to each LUN of the group.
    pub paths: Vec<PathView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct LunView {
    pub lun: u8,
    pub volume: String,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct AclRuleView {
    pub initiator: String,
    pub alias: Option<String>,
    /// `None`: every LUN of the group.
    pub luns: Option<Vec<u8>>,
    /// This initiator's own CHAP users (one-way or mutual), which replace
    /// the group's for it; null: the group's CHAP.
    pub chap: Option<ChapSetting>,
    /// Privileges this initiator has unlike the group's; null: the group's.
    pub privileges: Option<PrivilegeSettings>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct TargetGroupView {
    pub name: String,
    /// `running` or `stopped`.
    pub state: String,
    pub acl_enabled: bool,
    pub chap: ChapSetting,
    /// The state of each LUN's paths other than its Active/Optimized one.
    pub other_paths: OtherPaths,
    /// What the group's targets offer in login negotiation.
    pub session: SessionView,
    /// Which commands that reach every host its initiators may send.
    pub privileges: PrivilegesView,
    pub targets: Vec<TargetView>,
    pub luns: Vec<LunView>,
    pub acl: Vec<AclRuleView>,
    pub created_at: String,
}

/// Body of `POST /api/v1/target-groups`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct NewTargetGroup {
    pub name: String,
    #[serde(default)]
    pub targets: Vec<TargetSpec>,
    #[serde(default)]
    pub acl_enabled: bool,
    #[serde(default)]
    pub chap: ChapSetting,
    /// Standby unless given.
    #[serde(default)]
    pub other_paths: OtherPaths,
}

/// Body of `PATCH /api/v1/target-groups/{name}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct TargetGroupPatch {
    #[serde(default)]
    pub acl_enabled: Option<bool>,
    #[serde(default)]
    pub chap: Option<ChapSetting>,
    #[serde(default)]
    pub other_paths: Option<OtherPaths>,
}

/// Body of `POST /api/v1/target-groups/{name}/luns`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct NewLun {
    pub volume: String,
    #[serde(default)]
    pub lun: Option<u8>,
}

/// A node a target may be placed on, with the addresses of its interfaces
/// that carry iSCSI (where a portal can be bound).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeChoice {
    pub name: String,
    pub iscsi_addresses: Vec<String>,
}

/// Everything the target-groups page draws, in one answer: the groups, and
/// the nodes (by name) and CHAP users the new-group form offers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupsPageData {
    pub groups: Vec<TargetGroupView>,
    pub nodes: Vec<String>,
    pub chap_users: Vec<String>,
}

/// Everything the group page draws, in one answer: the group and what its
/// forms offer to choose from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupPageData {
    pub group: TargetGroupView,
    pub chap_users: Vec<String>,
    pub nodes: Vec<NodeChoice>,
    /// Volumes attached to no group.
    pub free_volumes: Vec<String>,
}

/// Body of `POST /api/v1/target-groups/{name}/acl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct NewAclRule {
    pub initiator: String,
    #[serde(default)]
    pub alias: Option<String>,
    /// Omitted or null: all LUNs.
    #[serde(default)]
    pub luns: Option<Vec<u8>>,
    /// This initiator's own CHAP users, one-way or mutual; omitted or null:
    /// the group's CHAP. Applies while the group's ACL is on.
    #[serde(default)]
    pub chap: Option<ChapSetting>,
    /// Privileges unlike the group's; omitted or null: the group's.
    #[serde(default)]
    pub privileges: Option<PrivilegeSettings>,
}

/// Body of `PATCH /api/v1/target-groups/{name}/acl/{initiator}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct AclPatch {
    #[serde(default)]
    pub alias: Option<String>,
    /// `Some(None)` (JSON null) means all LUNs.
    #[serde(default, with = "double_option")]
    #[cfg_attr(feature = "ssr", schema(value_type = Option<Vec<u8>>))]
    pub luns: Option<Option<Vec<u8>>>,
    /// The initiator's own CHAP users; null: back to the group's CHAP.
    #[serde(default, with = "double_option")]
    #[cfg_attr(feature = "ssr", schema(value_type = Option<ChapSetting>))]
    pub chap: Option<Option<ChapSetting>>,
    /// Privileges unlike the group's; null: back to the group's.
    #[serde(default, with = "double_option")]
    #[cfg_attr(feature = "ssr", schema(value_type = Option<PrivilegeSettings>))]
    pub privileges: Option<Option<PrivilegeSettings>>,
}

mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize>(v: &Option<Option<T>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(inner) => inner.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct ChapUserView {
    pub name: String,
    pub description: Option<String>,
    /// What uses it: target groups by name, `discovery`, and ACL rules as
    /// `GROUP/acl/INITIATOR`. While anything does, it cannot be deleted.
    pub used_by: Vec<String>,
    pub created_at: String,
}

/// Body of `POST /api/v1/chap-users`.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct NewChapUser {
    pub name: String,
    /// 12–16 characters. Never shown again.
    pub secret: String,
    #[serde(default)]
    pub description: Option<String>,
}

impl std::fmt::Debug for NewChapUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewChapUser")
            .field("name", &self.name)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// Body of `PATCH /api/v1/chap-users/{name}`.
#[derive(Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct ChapUserPatch {
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

impl std::fmt::Debug for ChapUserPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChapUserPatch").field("description", &self.description).finish_non_exhaustive()
    }
}

/// A live iSCSI connection to one of a group's targets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct ConnectionView {
    pub initiator: String,
    pub address: String,
    pub target: String,
    pub portal: String,
    pub since: String,
}

/// A change to block storage. Each is validated and applied in one place on
/// the server (`server/src/storage`), which also audits it; the cluster will
/// replicate these values between nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    CreateVolume(NewVolume),
    UpdateVolume { name: String, patch: VolumePatch },
    DeleteVolume { name: String },
    CreateChapUser(NewChapUser),
    UpdateChapUser { name: String, patch: ChapUserPatch },
    DeleteChapUser { name: String },
    CreateTargetGroup(NewTargetGroup),
    UpdateTargetGroup { name: String, patch: TargetGroupPatch },
    DeleteTargetGroup { name: String, force: bool },
    SetGroupRunning { name: String, running: bool },
    AddTarget { group: String, target: TargetSpec },
    RemoveTarget { group: String, iqn: String, force: bool },
    AttachVolume { group: String, lun: NewLun },
    DetachLun { group: String, lun: u8 },
    AddAclRule { group: String, rule: NewAclRule },
    UpdateAclRule { group: String, initiator: String, patch: AclPatch },
    DeleteAclRule { group: String, initiator: String },
    UpdateNode { name: String, patch: NodePatch },
    SetDiscovery(DiscoverySettings),
    SetGroupSession { group: String, settings: SessionSettings },
    SetGroupPrivileges { group: String, privileges: PrivilegeSettings },
}

impl Command {
    pub fn action(&self) -> &'static str {
        match self {
            Command::CreateVolume(_) => "volume.create",
            Command::UpdateVolume { .. } => "volume.update",
            Command::DeleteVolume { .. } => "volume.delete",
            Command::CreateChapUser(_) => "chap-user.create",
            Command::UpdateChapUser { .. } => "chap-user.update",
            Command::DeleteChapUser { .. } => "chap-user.delete",
            Command::CreateTargetGroup(_) => "target-group.create",
            Command::UpdateTargetGroup { .. } => "target-group.update",
            Command::DeleteTargetGroup { .. } => "target-group.delete",
            Command::SetGroupRunning { running: true, .. } => "target-group.start",
            Command::SetGroupRunning { running: false, .. } => "target-group.stop",
            Command::AddTarget { .. } => "target.add",
            Command::RemoveTarget { .. } => "target.remove",
            Command::AttachVolume { .. } => "lun.attach",
            Command::DetachLun { .. } => "lun.detach",
            Command::AddAclRule { .. } => "acl.add",
            Command::UpdateAclRule { .. } => "acl.update",
            Command::DeleteAclRule { .. } => "acl.delete",
            Command::UpdateNode { .. } => "node.update",
            Command::SetDiscovery(_) => "discovery.update",
            Command::SetGroupSession { .. } => "target-group.session",
            Command::SetGroupPrivileges { .. } => "target-group.privileges",
        }
    }

    /// What the command is about, for the audit log.
    pub fn object(&self) -> String {
        let short = |s: &str| s.chars().take(100).collect::<String>();
        match self {
            Command::CreateVolume(v) => format!("volume/{}", short(&v.name)),
            Command::UpdateVolume { name, .. } | Command::DeleteVolume { name } => format!("volume/{}", short(name)),
            Command::CreateChapUser(u) => format!("chap-user/{}", short(&u.name)),
            Command::UpdateChapUser { name, .. } | Command::DeleteChapUser { name } => {
                format!("chap-user/{}", short(name))
            }
            Command::CreateTargetGroup(g) => format!("target-group/{}", short(&g.name)),
            Command::UpdateTargetGroup { name, .. }
            | Command::DeleteTargetGroup { name, .. }
            | Command::SetGroupRunning { name, .. } => {
                format!("target-group/{}", short(name))
            }
            Command::AddTarget { group, target } => {
                format!("target-group/{}/target@{}", short(group), short(&target.node))
            }
            Command::RemoveTarget { group, iqn, .. } => format!("target-group/{}/target/{}", short(group), short(iqn)),
            Command::AttachVolume { group, lun } => format!("target-group/{}/lun/{}", short(group), short(&lun.volume)),
            Command::DetachLun { group, lun } => format!("target-group/{}/lun/{lun}", short(group)),
            Command::AddAclRule { group, rule } => {
                format!("target-group/{}/acl/{}", short(group), short(&rule.initiator))
            }
            Command::UpdateAclRule { group, initiator, .. } | Command::DeleteAclRule { group, initiator } => {
                format!("target-group/{}/acl/{}", short(group), short(initiator))
            }
            Command::UpdateNode { name, .. } => format!("node/{}", short(name)),
            Command::SetDiscovery(_) => "iscsi/discovery".to_string(),
            Command::SetGroupSession { group, .. } | Command::SetGroupPrivileges { group, .. } => {
                format!("target-group/{}", short(group))
            }
        }
    }
}

/// An iSCSI name in its normal form, or a message saying how to write one.
/// The rule is the engine's own (`target_engine::iscsi::name`), so a name
/// the API accepts is one the engine accepts, in the same form.
pub fn normalize_iscsi_name(name: &str) -> Result<String, String> {
    target_engine::iscsi::name::normalize(name.trim()).map_err(|e| e.to_string())
}

/// CHAP secrets: 12–16 printable ASCII characters (RFC 7143 §12.1.3 asks for
/// at least 12; many initiators accept at most 16).
pub fn check_chap_secret(secret: &str) -> Result<(), String> {
    let n = secret.chars().count();
    if !(12..=16).contains(&n) {
        return Err("A CHAP secret has 12 to 16 characters.".into());
    }
    if !secret.chars().all(|c| c.is_ascii_graphic()) {
        return Err("Use printable characters without spaces.".into());
    }
    Ok(())
}

/// Names of volumes, groups and CHAP users: 1–63 of a-z, 0-9, '-', '_', '.', starting with a letter or digit.
pub fn check_object_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err("Use 1 to 63 characters.".into());
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err("Start with a lower-case letter or a digit.".into());
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')) {
        return Err("Use lower-case letters, digits, '-', '_' and '.'.".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(format_size(1 << 30), "1 GiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
    }

    #[test]
    fn iscsi_names_follow_the_engine_rule() {
        assert_eq!(
            normalize_iscsi_name("IQN.2026-11.Local.Portico:Demo").as_deref(),
            Ok("iqn.2026-11.local.portico:demo")
        );
        assert!(normalize_iscsi_name("eui.0123456789ABCDEF").is_ok());
        assert!(normalize_iscsi_name("iqn.2026-13.com.x").unwrap_err().contains("yyyy-mm"));
        assert!(normalize_iscsi_name("iqn.2026-11.com.x:a b").is_err());
        assert!(normalize_iscsi_name("target1").is_err());
    }

    #[test]
    fn chap_secrets() {
        assert!(check_chap_secret("alicesecret1").is_ok());
        assert!(check_chap_secret("short").is_err());
        assert!(check_chap_secret("seventeen-chars!!").is_err());
        assert!(check_chap_secret("with space 12").is_err());
    }

    #[test]
    fn object_names() {
        assert!(check_object_name("vol1").is_ok());
        assert!(check_object_name("db-01.data").is_ok());
        assert!(check_object_name("Vol").is_err());
        assert!(check_object_name("-x").is_err());
        assert!(check_object_name("").is_err());
    }
}

/// One sample of a volume's activity, averaged over the sampling interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct VolumeSample {
    /// RFC 3339, UTC: the end of the interval.
    pub time: String,
    /// SCSI commands per second.
    pub iops: f64,
    /// Megabytes (10^6 bytes) per second.
    pub read_mbps: f64,
    pub write_mbps: f64,
}

/// A volume's recent activity, oldest sample first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct VolumeActivity {
    pub volume: String,
    pub interval_seconds: u32,
    pub samples: Vec<VolumeSample>,
    /// Totals since the engine opened the volume.
    pub commands: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub errors: u64,
}

/// A volume's SCSI reservations as its engine holds them (SPC-4 §5.13):
/// what clustered hosts (ESXi, Windows failover clusters, pacemaker) have
/// registered and reserved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct VolumeReservations {
    pub volume: String,
    /// Bumped by every change of registrations (PRGENERATION).
    pub generation: u32,
    /// Whether the state survives a restart (the initiators asked for APTPL).
    pub persistent: bool,
    pub registrations: Vec<RegistrationView>,
    /// The persistent reservation's type, e.g. `write-exclusive-registrants-only`.
    pub reservation: Option<String>,
    /// The initiator holding an old-style RESERVE(6)/(10), if any.
    pub spc2_holder: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct RegistrationView {
    pub initiator: String,
    /// 12 hex digits; absent: every session of the initiator.
    pub isid: Option<String>,
    /// Absent: registered through every target port.
    pub relative_target_port: Option<u16>,
    /// The reservation key, 16 hex digits.
    pub key: String,
    pub holder: bool,
}

/// A reservation type's name for people.
pub fn reservation_label(kind: &str) -> &'static str {
    match kind {
        "write-exclusive" => "Write Exclusive",
        "exclusive-access" => "Exclusive Access",
        "write-exclusive-registrants-only" => "Write Exclusive, registrants only",
        "exclusive-access-registrants-only" => "Exclusive Access, registrants only",
        "write-exclusive-all-registrants" => "Write Exclusive, all registrants",
        "exclusive-access-all-registrants" => "Exclusive Access, all registrants",
        _ => "unknown type",
    }
}
