//! The client subcommands as clap parses them: one per API action,
//! grouped in families (`portico volume create …`), each with how to reach
//! the node (`--url`, `--token`, `--json`), accepted after the family's name.

use clap::{Subcommand, ValueEnum};
use portico_app::model::storage::{ChapMode, ChapSetting, OtherPaths, WriteCache};
use portico_app::model::Role;

use super::Connection;

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
    pub page: u32,
    /// Entries per page, 1–200.
    #[arg(long, default_value_t = 50)]
    pub per_page: u32,
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
        /// The node to hold it; without: the online node with the most room.
        #[arg(long)]
        node: Option<String>,
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
        /// Copies on distinct nodes (1–3), changed online.
        #[arg(long)]
        replicas: Option<u8>,
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
    pub(super) fn setting(&self) -> Option<ChapSetting> {
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
        /// The state of each LUN's paths other than its Active/Optimized one.
        #[arg(long, value_name = "standby|active-non-optimized", value_parser = other_paths, default_value = "standby")]
        other_paths: OtherPaths,
    },
    /// Turn the ACL on or off, change the group's CHAP, or the state of its other paths.
    Update {
        name: String,
        #[arg(long, value_name = "on|off", value_parser = on_off)]
        acl: Option<bool>,
        #[command(flatten)]
        chap: ChapArgs,
        /// standby: they refuse I/O until they take over; active-non-optimized:
        /// they serve it through the primary's node.
        #[arg(long, value_name = "standby|active-non-optimized", value_parser = other_paths)]
        other_paths: Option<OtherPaths>,
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
    /// The join tokens not used yet (admins only).
    JoinTokens,
    /// Revoke an unused join token by its id (admins only).
    RevokeJoinToken { id: String },
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
        /// It stops working this many days from now (default: when revoked).
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// It can only read: it acts as a viewer, whatever your role.
        #[arg(long)]
        read_only: bool,
    },
    Revoke {
        id: i64,
    },
}

fn other_paths(s: &str) -> Result<OtherPaths, String> {
    OtherPaths::parse(s).ok_or_else(|| format!("{s:?}: give standby or active-non-optimized"))
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
