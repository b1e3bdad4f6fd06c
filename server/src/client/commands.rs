//! The client subcommands, one per API action, and the call each makes.

use clap::{Subcommand, ValueEnum};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use portico_app::model::discovery::DiscoverySettings;
use portico_app::model::privileges::PrivilegeSettings;
use portico_app::model::session_settings::SessionSettings;
use portico_app::model::storage::{
    AclPatch, ChapMode, ChapSetting, ChapUserPatch, InterfacePatch, NewAclRule, NewChapUser, NewLun, NewTargetGroup,
    NewVolume, NodePatch, SizeInput, TargetGroupPatch, TargetSpec, VolumePatch, WriteCache,
};
use portico_app::model::{NewToken, NewUser, Role, UserPatch};
use serde_json::{json, Map, Value};

use super::http::{Api, CallError};
use super::output::{Answer, Column};
use super::Connection;

/// One path segment, escaped (IQNs and names may hold `:` or `.`).
fn seg(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

fn body<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("the API's model types serialise")
}

/// A family of actions, with how to reach the node.
#[derive(Debug, clap::Args)]
pub struct Family<A: Subcommand> {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub action: A,
}

/// One action without a family, with how to reach the node.
#[derive(Debug, clap::Args)]
pub struct Single<A: clap::Args> {
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub args: A,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Volumes: list, create, resize, limit, delete.
    Volume(Family<VolumeAction>),
    /// Target groups with their targets, LUNs, ACL, session parameters and privileges.
    TargetGroup(Family<GroupAction>),
    /// CHAP users (secrets are never shown).
    ChapUser(Family<ChapAction>),
    /// Discovery: who may ask a portal for the targets.
    Discovery(Family<DiscoveryAction>),
    /// The cluster's nodes.
    Node(Family<NodeAction>),
    /// The cluster itself: its Raft state and join tokens.
    Cluster(Family<ClusterAction>),
    /// Dashboard users (admins only).
    User(Family<UserAction>),
    /// API tokens.
    Token(Family<TokenAction>),
    /// The audit log, newest first.
    Audit(Single<AuditArgs>),
    /// The node's overview: engine, capacity, who is signed in.
    Overview(Single<NoArgs>),
    /// Who the token acts as, and with which role.
    Whoami(Single<NoArgs>),
}

impl ClientCommand {
    pub fn connection(&self) -> &Connection {
        match self {
            ClientCommand::Volume(f) => &f.connection,
            ClientCommand::TargetGroup(f) => &f.connection,
            ClientCommand::ChapUser(f) => &f.connection,
            ClientCommand::Discovery(f) => &f.connection,
            ClientCommand::Node(f) => &f.connection,
            ClientCommand::Cluster(f) => &f.connection,
            ClientCommand::User(f) => &f.connection,
            ClientCommand::Token(f) => &f.connection,
            ClientCommand::Audit(s) => &s.connection,
            ClientCommand::Overview(s) => &s.connection,
            ClientCommand::Whoami(s) => &s.connection,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Page number, from 1 (the newest entries).
    #[arg(long, default_value_t = 1)]
    page: u32,
    /// Entries per page, 1–200.
    #[arg(long, default_value_t = 50)]
    per_page: u32,
}

#[derive(Debug, clap::Args)]
pub struct NoArgs {}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CacheChoice {
    WriteThrough,
    WriteBack,
    Initiator,
}

impl From<CacheChoice> for WriteCache {
    fn from(c: CacheChoice) -> Self {
        match c {
            CacheChoice::WriteThrough => WriteCache::WriteThrough,
            CacheChoice::WriteBack => WriteCache::WriteBack,
            CacheChoice::Initiator => WriteCache::Initiator,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum VolumeAction {
    /// Every volume.
    List,
    /// One volume, every field.
    Show { name: String },
    /// A new volume (thin: space is taken as it is written).
    Create {
        name: String,
        /// Such as 10GiB, 500MiB or a number of bytes.
        #[arg(long)]
        size: String,
        #[arg(long, default_value_t = 512)]
        block_size: u32,
        /// Copies on different nodes, 1–3.
        #[arg(long, default_value_t = 1)]
        replicas: u8,
        #[arg(long, value_enum, default_value = "write-through")]
        write_cache: CacheChoice,
    },
    /// Change the size (grow only), the limits or the write cache.
    Update {
        name: String,
        #[arg(long)]
        size: Option<String>,
        /// Commands a second; 0 removes the limit.
        #[arg(long)]
        iops_limit: Option<u64>,
        /// MB a second; 0 removes the limit.
        #[arg(long)]
        mbps_limit: Option<u64>,
        #[arg(long, value_enum)]
        write_cache: Option<CacheChoice>,
    },
    /// Delete a volume that no group exports; its data is gone.
    Delete { name: String },
    /// Recent IOPS and throughput.
    Activity { name: String },
    /// Persistent reservations held on the volume.
    Reservations { name: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ChapChoice {
    None,
    OneWay,
    Mutual,
}

/// CHAP as a group, an ACL rule or discovery asks for it.
#[derive(Debug, clap::Args)]
pub struct ChapArgs {
    /// `none`, `one-way` (the initiator proves itself) or `mutual` (both do).
    #[arg(long = "chap", value_enum)]
    pub mode: Option<ChapChoice>,
    /// The CHAP user the initiator logs in as.
    #[arg(long = "chap-user", value_name = "USER")]
    pub user: Option<String>,
    /// The CHAP user the target answers as (mutual CHAP).
    #[arg(long = "chap-mutual-user", value_name = "USER")]
    pub mutual_user: Option<String>,
}

impl ChapArgs {
    fn setting(&self) -> Option<ChapSetting> {
        let mode = match self.mode? {
            ChapChoice::None => ChapMode::None,
            ChapChoice::OneWay => ChapMode::OneWay,
            ChapChoice::Mutual => ChapMode::Mutual,
        };
        Some(ChapSetting { mode, user: self.user.clone(), mutual_user: self.mutual_user.clone() })
    }
}

#[derive(Debug, Subcommand)]
pub enum GroupAction {
    /// Every target group.
    List,
    /// One group with its targets, LUNs and ACL.
    Show { name: String },
    /// A new target group, with a target on each node given.
    Create {
        name: String,
        /// A target: NODE=PORTAL[,PORTAL…], such as n1=10.0.0.5:3260 (repeat for each node).
        #[arg(long = "target", value_name = "NODE=PORTALS")]
        targets: Vec<String>,
        /// Only initiators in the ACL may log in.
        #[arg(long)]
        acl: bool,
        #[command(flatten)]
        chap: ChapArgs,
    },
    /// Turn the ACL on or off, or change the group's CHAP.
    Update {
        name: String,
        #[arg(long, value_name = "on|off", value_parser = on_off)]
        acl: Option<bool>,
        #[command(flatten)]
        chap: ChapArgs,
    },
    /// Delete a group; its volumes stay.
    Delete {
        name: String,
        /// Also when initiators are logged in (their sessions end).
        #[arg(long)]
        force: bool,
    },
    /// Let initiators log in again.
    Start { name: String },
    /// End the group's sessions and refuse logins; the configuration stays.
    Stop { name: String },
    /// The group's targets, one per node.
    #[command(subcommand)]
    Target(TargetAction),
    /// The volumes the group exports.
    #[command(subcommand)]
    Lun(LunAction),
    /// Which initiators may log in, and to which LUNs.
    #[command(subcommand)]
    Acl(AclAction),
    /// Initiators logged in now.
    Connections { name: String },
    /// iSCSI session parameters offered to new sessions.
    #[command(subcommand)]
    Session(SettingsAction),
    /// SCSI privileges of the group's initiators.
    #[command(subcommand)]
    Privileges(SettingsAction),
}

#[derive(Debug, Subcommand)]
pub enum TargetAction {
    /// The group's targets.
    List { group: String },
    /// A target for the group on another node.
    Add {
        group: String,
        #[arg(long)]
        node: String,
        /// IP:PORT or IP (port 3260); repeat for each.
        #[arg(long = "portal", required = true)]
        portals: Vec<String>,
        #[arg(long)]
        iqn: Option<String>,
    },
    /// Remove a target; its sessions end.
    Remove { group: String, iqn: String },
}

#[derive(Debug, Subcommand)]
pub enum LunAction {
    /// The group's LUNs.
    List { group: String },
    /// Export a volume through every target of the group.
    Attach {
        group: String,
        volume: String,
        /// The LUN number; default the lowest free one.
        #[arg(long)]
        lun: Option<u8>,
    },
    /// Stop exporting a LUN.
    Detach { group: String, lun: u8 },
}

#[derive(Debug, Subcommand)]
pub enum AclAction {
    /// The group's ACL rules.
    List { group: String },
    /// Let an initiator in.
    Add {
        group: String,
        initiator: String,
        #[arg(long)]
        alias: Option<String>,
        /// The LUNs it may see, such as 0,1; default all.
        #[arg(long, value_delimiter = ',')]
        luns: Option<Vec<u8>>,
        #[command(flatten)]
        chap: ChapArgs,
        /// A privilege unlike the group's, KEY=VALUE (such as target_cold_reset=false); repeat for each.
        #[arg(long = "privilege", value_name = "KEY=VALUE")]
        privileges: Vec<String>,
    },
    /// Change an initiator's LUNs, alias or CHAP.
    Update {
        group: String,
        initiator: String,
        #[arg(long)]
        alias: Option<String>,
        /// The LUNs it may see, such as 0,1, or `all`.
        #[arg(long, value_parser = lun_list)]
        luns: Option<LunList>,
        #[command(flatten)]
        chap: ChapArgs,
        /// Back to the group's CHAP.
        #[arg(long, conflicts_with = "mode")]
        group_chap: bool,
        /// Privileges unlike the group's, KEY=VALUE (all of them: those not
        /// named follow the group); repeat for each.
        #[arg(long = "privilege", value_name = "KEY=VALUE")]
        privileges: Vec<String>,
        /// Back to the group's privileges.
        #[arg(long, conflicts_with = "privileges")]
        group_privileges: bool,
    },
    /// Take an initiator out of the ACL.
    Remove { group: String, initiator: String },
}

#[derive(Debug, Subcommand)]
pub enum SettingsAction {
    /// The settings, what is offered now and the defaults.
    Show { group: String },
    /// KEY=VALUE for each setting to change; VALUE `default` goes back to the default.
    Set {
        group: String,
        #[arg(required = true, value_name = "KEY=VALUE")]
        values: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChapAction {
    /// Every CHAP user and what uses it.
    List,
    /// A new CHAP user.
    Create {
        name: String,
        /// Read the secret (12–16 characters) from this environment variable.
        #[arg(long, value_name = "VAR", default_value = "PORTICO_CHAP_SECRET")]
        secret_env: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// A new secret or description.
    Update {
        name: String,
        /// Set a new secret, read from this environment variable.
        #[arg(long, value_name = "VAR")]
        secret_env: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a CHAP user that nothing uses.
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum DiscoveryAction {
    /// Who may use discovery now.
    Show,
    /// Open discovery, or require CHAP for it.
    Set {
        #[command(flatten)]
        chap: ChapArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeAction {
    /// Every node of the cluster.
    List,
    /// One node with its interfaces and engine state.
    Show { name: String },
    /// Maintenance, or the traffic each interface carries.
    Update {
        name: String,
        #[arg(long, value_name = "on|off", value_parser = on_off)]
        maintenance: Option<bool>,
        /// IFACE=TYPE[,TYPE…], such as eth1=iscsi,replication (repeat for each).
        #[arg(long = "interface", value_name = "IFACE=TYPES")]
        interfaces: Vec<String>,
    },
    /// Remove a node from the cluster.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum ClusterAction {
    /// The Raft leader, term and members, as the node answering sees them.
    Status,
    /// A single-use token for `portico serve --join` (admins only).
    JoinToken,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleChoice {
    Admin,
    Operator,
    Viewer,
}

impl From<RoleChoice> for Role {
    fn from(r: RoleChoice) -> Self {
        match r {
            RoleChoice::Admin => Role::Admin,
            RoleChoice::Operator => Role::Operator,
            RoleChoice::Viewer => Role::Viewer,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Every user.
    List,
    /// A new user.
    Create {
        username: String,
        #[arg(long, value_enum)]
        role: RoleChoice,
        /// Read the password from this environment variable.
        #[arg(long, value_name = "VAR", default_value = "PORTICO_USER_PASSWORD")]
        password_env: String,
    },
    /// A new role or password; enable or disable.
    Update {
        username: String,
        #[arg(long, value_enum)]
        role: Option<RoleChoice>,
        /// Set a new password, read from this environment variable.
        #[arg(long, value_name = "VAR")]
        password_env: Option<String>,
        #[arg(long, value_name = "on|off", value_parser = on_off)]
        enabled: Option<bool>,
    },
    /// Delete a user; their sessions and tokens end.
    Delete { username: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Your tokens (an admin sees everyone's).
    List,
    /// Prints the token once; it is stored hashed.
    Create {
        name: String,
    },
    Revoke {
        id: i64,
    },
}

fn on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("{s:?}: give on or off")),
    }
}

/// `all`, or LUN numbers.
#[derive(Debug, Clone)]
pub enum LunList {
    All,
    Some(Vec<u8>),
}

fn lun_list(s: &str) -> Result<LunList, String> {
    if s == "all" {
        return Ok(LunList::All);
    }
    s.split(',')
        .map(|n| n.trim().parse::<u8>().map_err(|_| format!("{n:?} is not a LUN number (0–255)")))
        .collect::<Result<Vec<_>, _>>()
        .map(LunList::Some)
}

fn secret_from(var: &str, what: &str) -> Result<String, CallError> {
    std::env::var(var).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
        CallError::Usage(format!(
            "set the {what} in the environment variable {var} (it is not taken on the command line)"
        ))
    })
}

fn size(s: &str) -> SizeInput {
    match s.parse::<u64>() {
        Ok(n) => SizeInput::Bytes(n),
        Err(_) => SizeInput::Text(s.to_string()),
    }
}

/// `NODE=PORTAL[,PORTAL…]`.
fn target_spec(s: &str) -> Result<TargetSpec, CallError> {
    let (node, portals) =
        s.split_once('=').ok_or_else(|| CallError::Usage(format!("--target {s}: give NODE=PORTAL[,PORTAL…]")))?;
    Ok(TargetSpec { node: node.to_string(), portals: portals.split(',').map(str::to_string).collect(), iqn: None })
}

/// `IFACE=TYPE[,TYPE…]`.
fn interface(s: &str) -> Result<InterfacePatch, CallError> {
    let (name, types) =
        s.split_once('=').ok_or_else(|| CallError::Usage(format!("--interface {s}: give IFACE=TYPE[,TYPE…]")))?;
    let traffic_types = types.split(',').filter(|t| !t.is_empty()).map(str::to_string).collect();
    Ok(InterfacePatch { name: name.to_string(), traffic_types })
}

/// KEY=VALUE pairs as a JSON object, checked against the keys of `known`
/// (the settings type serialised), so a misspelt key is an error here and
/// not silently ignored. A value is read as JSON (numbers, true, false) or
/// else as text; `default` is null.
fn settings(values: &[String], known: Value) -> Result<Value, CallError> {
    let known = known.as_object().cloned().unwrap_or_default();
    let mut out = Map::new();
    for pair in values {
        let (key, value) = pair.split_once('=').ok_or_else(|| CallError::Usage(format!("{pair:?}: give KEY=VALUE")))?;
        if !known.contains_key(key) {
            let keys: Vec<&str> = known.keys().map(String::as_str).collect();
            return Err(CallError::Usage(format!("{key:?} is not a setting; the settings are {}", keys.join(", "))));
        }
        let value = match value {
            "default" => Value::Null,
            v => serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string())),
        };
        out.insert(key.to_string(), value);
    }
    Ok(Value::Object(out))
}

/// `KEY=VALUE` privileges as the API's settings; none given is `None`.
fn privilege_settings(values: &[String]) -> Result<Option<PrivilegeSettings>, CallError> {
    if values.is_empty() {
        return Ok(None);
    }
    let json = settings(values, body(&PrivilegeSettings::default()))?;
    serde_json::from_value(json).map(Some).map_err(|e| CallError::Usage(format!("--privilege: {e}")))
}

const VOLUMES: &[Column] = &[
    ("NAME", "name"),
    ("SIZE", "size"),
    ("REPLICAS", "replicas"),
    ("STATE", "state"),
    ("GROUP", "attached_to"),
    ("LUN", "lun"),
    ("CACHE", "write_cache"),
];
const GROUPS: &[Column] = &[("NAME", "name"), ("STATE", "state"), ("ACL", "acl_enabled"), ("CHAP", "chap.mode")];
const TARGETS: &[Column] = &[("NODE", "node"), ("IQN", "iqn"), ("PORTALS", "portals"), ("TPG", "tpg")];
const LUNS: &[Column] = &[("LUN", "lun"), ("VOLUME", "volume"), ("SIZE", "size")];
const ACL: &[Column] = &[("INITIATOR", "initiator"), ("ALIAS", "alias"), ("LUNS", "luns"), ("CHAP", "chap.mode")];
const CONNECTIONS: &[Column] = &[
    ("INITIATOR", "initiator"),
    ("ADDRESS", "address"),
    ("TARGET", "target"),
    ("PORTAL", "portal"),
    ("SINCE", "since"),
];
const CHAP_USERS: &[Column] = &[("NAME", "name"), ("DESCRIPTION", "description"), ("USED BY", "used_by")];
const NODES: &[Column] = &[
    ("NAME", "name"),
    ("STATE", "state"),
    ("RAFT", "raft_role"),
    ("CLUSTER ADDRESS", "cluster_addr"),
    ("LAST HEARTBEAT", "last_heartbeat"),
];
const USERS: &[Column] =
    &[("USER", "username"), ("ROLE", "role"), ("ENABLED", "enabled"), ("LAST LOGIN", "last_login_at")];
const TOKENS: &[Column] =
    &[("ID", "id"), ("NAME", "name"), ("OWNER", "owner"), ("CREATED", "created_at"), ("LAST USED", "last_used_at")];
const AUDIT: &[Column] = &[
    ("TIME", "time"),
    ("USER", "user"),
    ("ACTION", "action"),
    ("OBJECT", "object"),
    ("RESULT", "result"),
    ("DETAIL", "detail"),
];

/// Makes the call a subcommand stands for.
pub async fn execute(api: &Api, command: ClientCommand) -> Result<Answer, CallError> {
    match command {
        ClientCommand::Volume(f) => volume(api, f.action).await,
        ClientCommand::TargetGroup(f) => group(api, f.action).await,
        ClientCommand::ChapUser(f) => chap_user(api, f.action).await,
        ClientCommand::Discovery(f) => discovery(api, f.action).await,
        ClientCommand::Node(f) => node(api, f.action).await,
        ClientCommand::Cluster(f) => cluster(api, f.action).await,
        ClientCommand::User(f) => user(api, f.action).await,
        ClientCommand::Token(f) => token(api, f.action).await,
        ClientCommand::Audit(Single { args: AuditArgs { page, per_page }, .. }) => {
            let json = api.get(&format!("/api/v1/audit?page={page}&per_page={per_page}")).await?;
            Ok(Answer { json, view: super::output::View::Rows { within: Some("entries"), columns: AUDIT } })
        }
        ClientCommand::Overview(_) => Ok(Answer::record(api.get("/api/v1/overview").await?)),
        ClientCommand::Whoami(_) => Ok(Answer::record(api.get("/api/v1/me").await?)),
    }
}

async fn volume(api: &Api, action: VolumeAction) -> Result<Answer, CallError> {
    Ok(match action {
        VolumeAction::List => Answer::rows(api.get("/api/v1/volumes").await?, VOLUMES),
        VolumeAction::Show { name } => Answer::record(api.get(&format!("/api/v1/volumes/{}", seg(&name))).await?),
        VolumeAction::Create { name, size: s, block_size, replicas, write_cache } => {
            let new =
                NewVolume { name: name.clone(), size: size(&s), block_size, replicas, write_cache: write_cache.into() };
            let json = api.post("/api/v1/volumes", body(&new)).await?;
            Answer::done(json, format!("Created the volume {name}."))
        }
        VolumeAction::Update { name, size: s, iops_limit, mbps_limit, write_cache } => {
            let patch = VolumePatch {
                size: s.as_deref().map(size),
                iops_limit,
                mbps_limit,
                write_cache: write_cache.map(Into::into),
            };
            let json = api.patch(&format!("/api/v1/volumes/{}", seg(&name)), body(&patch)).await?;
            Answer::done(json, format!("Changed the volume {name}."))
        }
        VolumeAction::Delete { name } => {
            let json = api.delete(&format!("/api/v1/volumes/{}", seg(&name))).await?;
            Answer::done(json, format!("Deleted the volume {name}."))
        }
        VolumeAction::Activity { name } => {
            Answer::record(api.get(&format!("/api/v1/volumes/{}/activity", seg(&name))).await?)
        }
        VolumeAction::Reservations { name } => {
            Answer::record(api.get(&format!("/api/v1/volumes/{}/reservations", seg(&name))).await?)
        }
    })
}

async fn group(api: &Api, action: GroupAction) -> Result<Answer, CallError> {
    let path = |g: &str| format!("/api/v1/target-groups/{}", seg(g));
    Ok(match action {
        GroupAction::List => Answer::rows(api.get("/api/v1/target-groups").await?, GROUPS),
        GroupAction::Show { name } => Answer::record(api.get(&path(&name)).await?),
        GroupAction::Create { name, targets, acl, chap } => {
            let new = NewTargetGroup {
                name: name.clone(),
                targets: targets.iter().map(|t| target_spec(t)).collect::<Result<_, _>>()?,
                acl_enabled: acl,
                chap: chap.setting().unwrap_or_default(),
            };
            let json = api.post("/api/v1/target-groups", body(&new)).await?;
            Answer::done(json, format!("Created the target group {name}."))
        }
        GroupAction::Update { name, acl, chap } => {
            let patch = TargetGroupPatch { acl_enabled: acl, chap: chap.setting() };
            let json = api.patch(&path(&name), body(&patch)).await?;
            Answer::done(json, format!("Changed the target group {name}."))
        }
        GroupAction::Delete { name, force } => {
            let json = api.delete(&format!("{}?force={force}", path(&name))).await?;
            Answer::done(json, format!("Deleted the target group {name}."))
        }
        GroupAction::Start { name } => {
            let json = api.post(&format!("{}/start", path(&name)), json!({})).await?;
            Answer::done(json, format!("Started the target group {name}."))
        }
        GroupAction::Stop { name } => {
            let json = api.post(&format!("{}/stop", path(&name)), json!({})).await?;
            Answer::done(json, format!("Stopped the target group {name}: its targets refuse logins."))
        }
        GroupAction::Target(TargetAction::List { group }) => Answer {
            json: api.get(&path(&group)).await?,
            view: super::output::View::Rows { within: Some("targets"), columns: TARGETS },
        },
        GroupAction::Target(TargetAction::Add { group, node, portals, iqn }) => {
            let spec = TargetSpec { node: node.clone(), portals, iqn };
            let json = api.post(&format!("{}/targets", path(&group)), body(&spec)).await?;
            Answer::done(json, format!("Added a target on {node} to {group}."))
        }
        GroupAction::Target(TargetAction::Remove { group, iqn }) => {
            let json = api.delete(&format!("{}/targets/{}", path(&group), seg(&iqn))).await?;
            Answer::done(json, format!("Removed the target {iqn} from {group}."))
        }
        GroupAction::Lun(LunAction::List { group }) => {
            Answer::rows(api.get(&format!("{}/luns", path(&group))).await?, LUNS)
        }
        GroupAction::Lun(LunAction::Attach { group, volume, lun }) => {
            let json =
                api.post(&format!("{}/luns", path(&group)), body(&NewLun { volume: volume.clone(), lun })).await?;
            let number = json.get("lun").map(super::output::cell).unwrap_or_else(|| "?".into());
            Answer::done(json, format!("Attached {volume} to {group} as LUN {number}."))
        }
        GroupAction::Lun(LunAction::Detach { group, lun }) => {
            let json = api.delete(&format!("{}/luns/{lun}", path(&group))).await?;
            Answer::done(json, format!("Detached LUN {lun} from {group}."))
        }
        GroupAction::Acl(AclAction::List { group }) => {
            Answer::rows(api.get(&format!("{}/acl", path(&group))).await?, ACL)
        }
        GroupAction::Acl(AclAction::Add { group, initiator, alias, luns, chap, privileges }) => {
            let privileges = privilege_settings(&privileges)?;
            let rule = NewAclRule { initiator: initiator.clone(), alias, luns, chap: chap.setting(), privileges };
            let json = api.post(&format!("{}/acl", path(&group)), body(&rule)).await?;
            Answer::done(json, format!("{initiator} may log in to {group}."))
        }
        GroupAction::Acl(AclAction::Update {
            group,
            initiator,
            alias,
            luns,
            chap,
            group_chap,
            privileges,
            group_privileges,
        }) => {
            let privileges = if group_privileges { Some(None) } else { privilege_settings(&privileges)?.map(Some) };
            let patch = AclPatch {
                alias,
                luns: luns.map(|l| match l {
                    LunList::All => None,
                    LunList::Some(v) => Some(v),
                }),
                chap: if group_chap { Some(None) } else { chap.setting().map(Some) },
                privileges,
            };
            let json = api.patch(&format!("{}/acl/{}", path(&group), seg(&initiator)), body(&patch)).await?;
            Answer::done(json, format!("Changed the ACL rule of {initiator} in {group}."))
        }
        GroupAction::Acl(AclAction::Remove { group, initiator }) => {
            let json = api.delete(&format!("{}/acl/{}", path(&group), seg(&initiator))).await?;
            Answer::done(json, format!("{initiator} may no longer log in to {group}."))
        }
        GroupAction::Connections { name } => {
            Answer::rows(api.get(&format!("{}/connections", path(&name))).await?, CONNECTIONS)
        }
        GroupAction::Session(SettingsAction::Show { group }) => {
            Answer::record(api.get(&format!("{}/session", path(&group))).await?)
        }
        GroupAction::Session(SettingsAction::Set { group, values }) => {
            let settings = settings(&values, body(&SessionSettings::default()))?;
            let json = api.put(&format!("{}/session", path(&group)), settings).await?;
            Answer::done(json, format!("Changed the session parameters of {group}; new sessions get them."))
        }
        GroupAction::Privileges(SettingsAction::Show { group }) => {
            Answer::record(api.get(&format!("{}/privileges", path(&group))).await?)
        }
        GroupAction::Privileges(SettingsAction::Set { group, values }) => {
            let settings = settings(&values, body(&PrivilegeSettings::default()))?;
            let json = api.put(&format!("{}/privileges", path(&group)), settings).await?;
            Answer::done(json, format!("Changed the privileges of {group}."))
        }
    })
}

async fn chap_user(api: &Api, action: ChapAction) -> Result<Answer, CallError> {
    Ok(match action {
        ChapAction::List => Answer::rows(api.get("/api/v1/chap-users").await?, CHAP_USERS),
        ChapAction::Create { name, secret_env, description } => {
            let new = NewChapUser { name: name.clone(), secret: secret_from(&secret_env, "CHAP secret")?, description };
            let json = api.post("/api/v1/chap-users", body(&new)).await?;
            Answer::done(json, format!("Created the CHAP user {name}."))
        }
        ChapAction::Update { name, secret_env, description } => {
            let secret = secret_env.map(|v| secret_from(&v, "new CHAP secret")).transpose()?;
            let patch = ChapUserPatch { secret, description };
            let json = api.patch(&format!("/api/v1/chap-users/{}", seg(&name)), body(&patch)).await?;
            Answer::done(json, format!("Changed the CHAP user {name}."))
        }
        ChapAction::Delete { name } => {
            let json = api.delete(&format!("/api/v1/chap-users/{}", seg(&name))).await?;
            Answer::done(json, format!("Deleted the CHAP user {name}."))
        }
    })
}

async fn discovery(api: &Api, action: DiscoveryAction) -> Result<Answer, CallError> {
    Ok(match action {
        DiscoveryAction::Show => Answer::record(api.get("/api/v1/iscsi/discovery").await?),
        DiscoveryAction::Set { chap } => {
            let chap = chap.setting().ok_or_else(|| CallError::Usage("give --chap none, one-way or mutual".into()))?;
            let json = api.put("/api/v1/iscsi/discovery", body(&DiscoverySettings { chap })).await?;
            Answer::done(json, "Changed who may use discovery.")
        }
    })
}

async fn node(api: &Api, action: NodeAction) -> Result<Answer, CallError> {
    Ok(match action {
        NodeAction::List => Answer::rows(api.get("/api/v1/nodes").await?, NODES),
        NodeAction::Show { name } => Answer::record(api.get(&format!("/api/v1/nodes/{}", seg(&name))).await?),
        NodeAction::Update { name, maintenance, interfaces } => {
            let patch = NodePatch {
                interfaces: interfaces.iter().map(|i| interface(i)).collect::<Result<_, _>>()?,
                maintenance,
            };
            let json = api.patch(&format!("/api/v1/nodes/{}", seg(&name)), body(&patch)).await?;
            Answer::done(json, format!("Changed the node {name}."))
        }
        NodeAction::Remove { name } => {
            let json = api.delete(&format!("/api/v1/nodes/{}", seg(&name))).await?;
            Answer::done(json, format!("Removed the node {name} from the cluster."))
        }
    })
}

async fn cluster(api: &Api, action: ClusterAction) -> Result<Answer, CallError> {
    Ok(match action {
        ClusterAction::Status => Answer::record(api.get("/api/v1/cluster").await?),
        ClusterAction::JoinToken => {
            let json = api.post("/api/v1/cluster/join-tokens", json!({})).await?;
            let token = json.get("token").and_then(Value::as_str).unwrap_or_default().to_string();
            Answer::done(json, format!("PORTICO_JOIN_TOKEN={token}\n(single use, valid for one hour; shown only now)"))
        }
    })
}

async fn user(api: &Api, action: UserAction) -> Result<Answer, CallError> {
    Ok(match action {
        UserAction::List => Answer::rows(api.get("/api/v1/users").await?, USERS),
        UserAction::Create { username, role, password_env } => {
            let new = NewUser {
                username: username.clone(),
                password: secret_from(&password_env, "password")?,
                role: role.into(),
            };
            let json = api.post("/api/v1/users", body(&new)).await?;
            Answer::done(json, format!("Created the user {username}."))
        }
        UserAction::Update { username, role, password_env, enabled } => {
            let password = password_env.map(|v| secret_from(&v, "new password")).transpose()?;
            let patch = UserPatch { role: role.map(Into::into), password, enabled };
            let json = api.patch(&format!("/api/v1/users/{}", seg(&username)), body(&patch)).await?;
            Answer::done(json, format!("Changed the user {username}."))
        }
        UserAction::Delete { username } => {
            let json = api.delete(&format!("/api/v1/users/{}", seg(&username))).await?;
            Answer::done(json, format!("Deleted the user {username}."))
        }
    })
}

async fn token(api: &Api, action: TokenAction) -> Result<Answer, CallError> {
    Ok(match action {
        TokenAction::List => Answer::rows(api.get("/api/v1/tokens").await?, TOKENS),
        TokenAction::Create { name } => {
            let json = api.post("/api/v1/tokens", body(&NewToken { name })).await?;
            let token = json.get("token").and_then(Value::as_str).unwrap_or_default().to_string();
            Answer::done(json, format!("{token}\n(shown only now; send it as PORTICO_TOKEN)"))
        }
        TokenAction::Revoke { id } => {
            let json = api.delete(&format!("/api/v1/tokens/{id}")).await?;
            Answer::done(json, format!("Revoked the token {id}."))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_against_the_apis_keys() {
        let known = body(&SessionSettings::default());
        let v = settings(&["max_burst_length=262144".into(), "immediate_data=default".into()], known.clone()).unwrap();
        assert_eq!(v, json!({"max_burst_length": 262144, "immediate_data": null}));
        let e = settings(&["max_burst=1".into()], known.clone()).unwrap_err().to_string();
        assert!(e.contains("max_burst_length"), "{e}");
        assert!(settings(&["max_burst_length".into()], known).is_err());
    }

    #[test]
    fn targets_and_interfaces_are_read_from_their_short_forms() {
        let t = target_spec("n1=10.0.0.5:3260,10.0.1.5").unwrap();
        assert_eq!((t.node.as_str(), t.portals.len()), ("n1", 2));
        assert!(target_spec("n1").is_err());
        let i = interface("eth1=iscsi,replication").unwrap();
        assert_eq!(i.traffic_types, vec!["iscsi", "replication"]);
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(seg("iqn.2026-11.local:h1"), "iqn%2E2026%2D11%2Elocal%3Ah1");
    }
}
