//! The declarative engine configuration (TOML / serde) and its validation.
//!
//! A configuration is accepted or rejected as a whole: [`EngineConfig::validate`]
//! reports the first problem found with enough context to fix it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

pub use crate::iscsi::admission::Limits;
pub use crate::iscsi::keys::{DigestPolicy, TargetLimits};
use crate::iscsi::name;
use crate::iscsi::registry::ChapPolicy;
pub use crate::replication::config::{ReplicaPlacement, ReplicationNode, VolumePlacement};
pub use crate::scsi::alua::AluaState;
pub use crate::scsi::{Privileges, WriteCache};

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot parse configuration: {0}")]
    Parse(String),
    #[error("volume {0:?} is defined twice")]
    DuplicateVolume(String),
    #[error("target {0:?} is defined twice")]
    DuplicateTarget(String),
    #[error("peer target {iqn}: {why}")]
    BadPeerTarget { iqn: String, why: String },
    #[error("volume name {0:?} is empty or has characters other than letters, digits, '-', '_' and '.'")]
    BadVolumeName(String),
    #[error("volume {0:?}: block_size must be 512 or 4096")]
    BadBlockSize(String),
    #[error("volume {0:?}: size must be a non-zero multiple of the block size")]
    BadSize(String),
    #[error("volume {0:?}: a file backend needs a path")]
    MissingPath(String),
    #[error("volume {0:?}: wwn must be 32 hexadecimal digits starting with 6 (NAA type 6)")]
    BadWwn(String),
    #[error("target name {0:?} is not a valid iqn./eui./naa. name")]
    BadIqn(String),
    #[error("target {target:?}: LUN {lun} is out of range (0-255)")]
    LunOutOfRange { target: String, lun: u64 },
    #[error("target {target:?}: LUN key {key:?} is not a number")]
    BadLun { target: String, key: String },
    #[error("target {target:?}: LUN {lun} refers to unknown volume {volume:?}")]
    UnknownVolume { target: String, lun: u64, volume: String },
    #[error("target {0:?} has no portal")]
    NoPortal(String),
    #[error("target {0:?}: tpg must be between 1 and 65535")]
    BadTpg(String),
    #[error("target {0:?}: relative_port must be between 1 and 65535 and differ from every other target's")]
    BadRelativePort(String),
    #[error("{0}: CHAP {1} must be 12 to 255 characters (user names 1 to 255)")]
    BadChap(String, &'static str),
    #[error("{0}: mutual CHAP secrets must differ")]
    SameSecrets(String),
    #[error("target {target:?}: ACL entry for {initiator:?} lists LUN {lun}, which the target does not map")]
    AclUnknownLun { target: String, initiator: String, lun: u64 },
    #[error("target {target:?}: initiator name {initiator:?} is not a valid iSCSI name")]
    BadInitiator { target: String, initiator: String },
    #[error("target {target:?}: initiator {initiator:?} has two ACL entries")]
    DuplicateAclEntry { target: String, initiator: String },
    #[error("limits: {0}")]
    BadLimits(&'static str),
    #[error("volume {volume:?}: replication: {why}")]
    BadReplication { volume: String, why: String },
    #[error("target {target:?}: session setting {setting} {why}")]
    BadSession { target: String, setting: &'static str, why: String },
    #[error("target {target:?}: alua names LUN {key:?}, which the target does not map")]
    AluaUnknownLun { target: String, key: String },
    #[error("volume {volume:?}: target port group {tpg} is given two ALUA states ({first} and {second})")]
    AluaConflict { volume: String, tpg: u16, first: AluaState, second: AluaState },
    #[error("volume {volume:?}: {why}")]
    BadPeerPortGroup { volume: String, why: String },
    #[error("target {target:?}: LUN {lun} exports remote volume {volume:?} as {state}; a volume whose data is on another node is exported active/non-optimized (its commands go to the node with the data), standby or unavailable")]
    RemoteVolumeActive { target: String, lun: u64, volume: String, state: AluaState },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    #[default]
    File,
    Memory,
    /// The volume's data is on another node: this node exports it only
    /// through standby (or unavailable) port groups, so that REPORT TARGET
    /// PORT GROUPS and INQUIRY answer alike through every port of the
    /// cluster, and refuses media access (SPC-4 §5.16.2.4.4).
    Remote,
}

/// A size given as bytes or as a string such as "1GiB", "64MiB", "4096".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size(n)),
            Raw::S(s) => parse_size(&s).map(Size).ok_or_else(|| serde::de::Error::custom(format!("bad size {s:?}"))),
        }
    }
}

/// Parses "1GiB", "512MiB", "4KiB", "1TiB", "1G", "1000", "2 GiB".
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn default_block() -> u32 {
    512
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeConfig {
    pub name: String,
    #[serde(default)]
    pub backend: BackendKind,
    #[serde(default)]
    pub path: Option<PathBuf>,
    pub size: Size,
    #[serde(default = "default_block")]
    pub block_size: u32,
    #[serde(default)]
    pub read_only: bool,
    /// NAA type 6 identifier as 32 hex digits; derived from the name if absent.
    #[serde(default)]
    pub wwn: Option<String>,
    /// Unit serial number; derived from the name if absent.
    #[serde(default)]
    pub serial: Option<String>,
    /// Most reads and writes per second; absent or 0: unlimited. Changes apply live.
    #[serde(default)]
    pub iops_limit: Option<u64>,
    /// Most megabytes (10^6 bytes) per second read and written; absent or 0: unlimited.
    #[serde(default)]
    pub mbps_limit: Option<u64>,
    /// Whether the unit takes reservations (persistent ones and RESERVE/RELEASE(6)).
    #[serde(default = "enabled")]
    pub reservations: bool,
    /// Where the unit's state is kept across restarts (reservations made
    /// with APTPL, mode parameters); absent: next to a file volume's image
    /// (`<path>.reservations.toml`), nowhere for a memory volume.
    #[serde(default, alias = "reservation_file")]
    pub state_file: Option<PathBuf>,
    /// Who decides whether writes are cached: `write-through` (default),
    /// `write-back` or `initiator`. Changes apply live.
    #[serde(default)]
    pub write_cache: WriteCache,
    /// Copies on other nodes (see [`crate::replication::config`]); absent:
    /// the volume lives here only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<VolumePlacement>,
    /// Target port groups on other nodes that export the volume too, with
    /// their states: REPORT TARGET PORT GROUPS lists them beside this
    /// node's own, so every port of the cluster gives the same answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer_port_groups: Vec<PeerPortGroup>,
    /// The port group REPORT TARGET PORT GROUPS marks preferred (the PREF
    /// bit, SPC-4 §6.27.2): in a cluster, the group on the node where the
    /// volume's primary belongs. Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_port_group: Option<u16>,
}

/// A target port group on another node that exports a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerPortGroup {
    pub tpg: u16,
    /// The relative target port identifier of its one port.
    pub relative_port: u16,
    pub state: AluaState,
}

/// The most peer port groups one volume may list.
pub const MAX_PEER_PORT_GROUPS: usize = 64;

fn enabled() -> bool {
    true
}

impl VolumeConfig {
    /// The volume's IOPS and throughput limits.
    pub fn limits(&self) -> crate::backend::throttle::Limits {
        crate::backend::throttle::Limits {
            iops: self.iops_limit.filter(|v| *v > 0),
            bytes_per_second: self.mbps_limit.filter(|v| *v > 0).map(|m| m.saturating_mul(1_000_000)),
        }
    }

    /// The NAA identifier: configured, or derived deterministically from the name.
    pub fn naa(&self) -> [u8; 16] {
        if let Some(w) = &self.wwn {
            if let Some(b) = parse_wwn(w) {
                return b;
            }
        }
        let h = fnv128(self.name.as_bytes());
        let mut b = h.to_be_bytes();
        // NAA 6, then a 24-bit IEEE company id placeholder (locally administered), then vendor-specific bits.
        b[0] = 0x60 | (b[0] & 0x0f);
        b
    }

    /// The file that keeps the unit's state, if any.
    pub fn state_path(&self) -> Option<PathBuf> {
        self.state_file.clone().or_else(|| {
            let image = self.path.as_ref().filter(|_| self.backend == BackendKind::File)?;
            let mut name = image.file_name()?.to_os_string();
            name.push(".reservations.toml");
            Some(image.with_file_name(name))
        })
    }

    pub fn serial(&self) -> String {
        match &self.serial {
            Some(s) => s.clone(),
            None => format!("PRT{:016X}", fnv128(self.name.as_bytes()) as u64),
        }
    }
}

fn fnv128(data: &[u8]) -> u128 {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for &b in data {
        h ^= b as u128;
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    h
}

fn parse_wwn(s: &str) -> Option<[u8; 16]> {
    let s = s.trim_start_matches("0x").replace(':', "");
    if s.len() != 32 || !s.starts_with('6') {
        return None;
    }
    let v = u128::from_str_radix(&s, 16).ok()?;
    Some(v.to_be_bytes())
}

/// Authentication requirement, as written in the config.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ChapConfig {
    pub mode: ChapMode,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub target_user: Option<String>,
    #[serde(default)]
    pub target_secret: Option<String>,
}

impl std::fmt::Debug for ChapConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChapConfig")
            .field("mode", &self.mode)
            .field("user", &self.user)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("target_user", &self.target_user)
            .field("target_secret", &self.target_secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ChapMode {
    #[default]
    None,
    OneWay,
    Mutual,
}

impl ChapConfig {
    fn check(&self, what: &str) -> Result<ChapPolicy, ConfigError> {
        let name_ok = |s: &Option<String>| s.as_ref().is_some_and(|s| !s.is_empty() && s.len() <= 255);
        let secret_ok = |s: &Option<String>| s.as_ref().is_some_and(|s| (12..=255).contains(&s.len()));
        let req = |ok: bool, f: &'static str| if ok { Ok(()) } else { Err(ConfigError::BadChap(what.to_string(), f)) };
        match self.mode {
            ChapMode::None => Ok(ChapPolicy::None),
            ChapMode::OneWay => {
                req(name_ok(&self.user), "user")?;
                req(secret_ok(&self.secret), "secret")?;
                Ok(ChapPolicy::OneWay { user: self.user.clone().unwrap(), secret: self.secret.clone().unwrap() })
            }
            ChapMode::Mutual => {
                req(name_ok(&self.user), "user")?;
                req(secret_ok(&self.secret), "secret")?;
                req(name_ok(&self.target_user), "target_user")?;
                req(secret_ok(&self.target_secret), "target_secret")?;
                if self.secret == self.target_secret {
                    return Err(ConfigError::SameSecrets(what.to_string()));
                }
                Ok(ChapPolicy::Mutual {
                    user: self.user.clone().unwrap(),
                    secret: self.secret.clone().unwrap(),
                    target_user: self.target_user.clone().unwrap(),
                    target_secret: self.target_secret.clone().unwrap(),
                })
            }
        }
    }

    /// The policy the transport enforces (call after `validate`).
    pub fn policy(&self) -> ChapPolicy {
        self.check("").unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclEntry {
    /// An iSCSI name in any case; it matches the same name in any case.
    pub initiator: String,
    pub luns: Vec<u64>,
    /// CHAP credentials of this initiator alone, instead of the target's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chap: Option<ChapConfig>,
    /// Privileges of this initiator alone, instead of the target's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileges: Option<Privileges>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub iqn: String,
    pub portals: Vec<SocketAddr>,
    #[serde(default = "default_tpg")]
    pub tpg: u16,
    /// The target's relative target port identifier (SPC-4 §7.8.2.7), which
    /// persistent reservations name. A cluster assigns it once and for good
    /// in its replicated state, so that every node names a port alike;
    /// without it the engine numbers targets itself, 1, 2, … in the order it
    /// first sees them, for as long as the process runs.
    #[serde(default)]
    pub relative_port: Option<u16>,
    /// LUN number (as a TOML key string) to volume name.
    #[serde(default)]
    pub luns: BTreeMap<String, String>,
    #[serde(default)]
    pub chap: Option<ChapConfig>,
    #[serde(default)]
    pub acl: Option<Vec<AclEntry>>,
    /// The asymmetric access state (SPC-4 §5.16) of this target's port group
    /// for each of its LUNs (LUN number as a TOML key string); a LUN not
    /// listed is active/optimized through this target.
    #[serde(default)]
    pub alua: BTreeMap<String, AluaState>,
    /// Which commands that reach every host its initiators may send.
    #[serde(default)]
    pub privileges: Privileges,
    /// What the target offers in login negotiation (RFC 7143 §13) and its
    /// NOP-In timing; changes apply to new sessions.
    #[serde(default)]
    pub session: TargetLimits,
}

fn default_tpg() -> u16 {
    1
}

impl TargetConfig {
    /// The LUN map with numeric keys (call after `validate`).
    pub fn lun_map(&self) -> BTreeMap<u64, String> {
        self.luns.iter().filter_map(|(k, v)| k.trim().parse().ok().map(|n| (n, v.clone()))).collect()
    }

    /// The access state of this target's port group for `lun`.
    pub fn alua_state(&self, lun: u64) -> AluaState {
        self.alua.iter().find(|(k, _)| k.trim().parse() == Ok(lun)).map(|(_, s)| *s).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    #[serde(default)]
    pub chap: Option<ChapConfig>,
    /// Targets that other nodes serve, listed by SendTargets beside this
    /// engine's own: a cluster's target group spans nodes, and discovery
    /// through any of its portals names every target and portal of the
    /// group (RFC 7143 §4.3, Appendix C).
    #[serde(default, rename = "peer_target", skip_serializing_if = "Vec::is_empty")]
    pub peer_targets: Vec<PeerTarget>,
}

/// Peer targets a configuration may name at most.
pub const MAX_PEER_TARGETS: usize = 4096;

/// A target another node serves, as discovery lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerTarget {
    pub iqn: String,
    /// Its portals: addresses an initiator can reach (not 0.0.0.0).
    pub portals: Vec<SocketAddr>,
    /// Its portal group tag.
    #[serde(default = "default_tpg")]
    pub tpg: u16,
    /// The initiators its ACL admits; none: every initiator.
    #[serde(default)]
    pub initiators: Option<Vec<String>>,
}

impl PeerTarget {
    pub fn allows(&self, initiator: &str) -> bool {
        self.initiators.as_ref().is_none_or(|list| list.iter().any(|i| i == initiator))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    #[serde(default, rename = "volume")]
    pub volumes: Vec<VolumeConfig>,
    #[serde(default, rename = "target")]
    pub targets: Vec<TargetConfig>,
    #[serde(default)]
    pub discovery: DiscoveryConfig,
    /// Caps on sessions, logins and memory (see [`crate::iscsi::admission`]).
    #[serde(default)]
    pub limits: Limits,
    /// This node's part in replication, needed by replicated volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationNode>,
}

impl EngineConfig {
    /// Peer targets: at most [`MAX_PEER_TARGETS`], each named once, in
    /// normal form, none of them a target of this engine, each with a
    /// portal an initiator can dial.
    fn check_peer_targets(&self) -> Result<(), ConfigError> {
        let peers = &self.discovery.peer_targets;
        if peers.len() > MAX_PEER_TARGETS {
            return Err(ConfigError::BadPeerTarget {
                iqn: String::new(),
                why: format!("{} peer targets; at most {MAX_PEER_TARGETS}", peers.len()),
            });
        }
        let own: HashSet<&str> = self.targets.iter().map(|t| t.iqn.as_str()).collect();
        let mut seen = HashSet::new();
        for p in peers {
            let bad = |why: &str| ConfigError::BadPeerTarget { iqn: p.iqn.clone(), why: why.to_string() };
            if name::normalize(&p.iqn).as_deref() != Ok(p.iqn.as_str()) {
                return Err(bad("not an iSCSI name in normal form"));
            }
            if own.contains(p.iqn.as_str()) || !seen.insert(p.iqn.as_str()) {
                return Err(bad("named twice"));
            }
            if p.portals.is_empty() || p.portals.iter().any(|a| a.ip().is_unspecified() || a.port() == 0) {
                return Err(bad("needs portals an initiator can dial"));
            }
            if p.tpg == 0 {
                return Err(bad("portal group tag 0"));
            }
        }
        Ok(())
    }

    pub fn from_toml(s: &str) -> Result<Self, ConfigError> {
        let c: EngineConfig = toml::from_str(s).map_err(|e| ConfigError::Parse(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        for v in &self.volumes {
            if v.name.is_empty() || !v.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                return Err(ConfigError::BadVolumeName(v.name.clone()));
            }
            if !names.insert(v.name.as_str()) {
                return Err(ConfigError::DuplicateVolume(v.name.clone()));
            }
            if v.block_size != 512 && v.block_size != 4096 {
                return Err(ConfigError::BadBlockSize(v.name.clone()));
            }
            if v.size.0 == 0 || v.size.0 % v.block_size as u64 != 0 {
                return Err(ConfigError::BadSize(v.name.clone()));
            }
            if v.backend == BackendKind::File && v.path.is_none() {
                return Err(ConfigError::MissingPath(v.name.clone()));
            }
            if v.wwn.as_deref().is_some_and(|w| parse_wwn(w).is_none()) {
                return Err(ConfigError::BadWwn(v.name.clone()));
            }
            check_peer_port_groups(v)?;
            if let Some(p) = &v.replication {
                let bad = |why: String| ConfigError::BadReplication { volume: v.name.clone(), why };
                p.check().map_err(bad)?;
                let node = self.replication.as_ref().ok_or_else(|| bad("needs a [replication] section".into()))?;
                p.role(node.node).map_err(bad)?;
                if v.backend != BackendKind::File {
                    return Err(bad("only file volumes are replicated".into()));
                }
            }
        }
        self.limits.check().map_err(ConfigError::BadLimits)?;
        self.check_peer_targets()?;
        let mut iqns = HashSet::new();
        let mut relative_ports = HashSet::new();
        for t in &self.targets {
            // Target names are looked up as initiators send them: in normal form.
            if name::normalize(&t.iqn).as_deref() != Ok(t.iqn.as_str()) {
                return Err(ConfigError::BadIqn(t.iqn.clone()));
            }
            if !iqns.insert(t.iqn.as_str()) {
                return Err(ConfigError::DuplicateTarget(t.iqn.clone()));
            }
            if t.portals.is_empty() {
                return Err(ConfigError::NoPortal(t.iqn.clone()));
            }
            if t.tpg == 0 {
                return Err(ConfigError::BadTpg(t.iqn.clone()));
            }
            if let Some(rtp) = t.relative_port {
                if rtp == 0 || !relative_ports.insert(rtp) {
                    return Err(ConfigError::BadRelativePort(t.iqn.clone()));
                }
            }
            t.session.check().map_err(|(setting, why)| ConfigError::BadSession {
                target: t.iqn.clone(),
                setting,
                why,
            })?;
            let mut luns = HashSet::new();
            for (k, vol) in &t.luns {
                let lun: u64 =
                    k.trim().parse().map_err(|_| ConfigError::BadLun { target: t.iqn.clone(), key: k.clone() })?;
                if lun > 255 {
                    return Err(ConfigError::LunOutOfRange { target: t.iqn.clone(), lun });
                }
                if !names.contains(vol.as_str()) {
                    return Err(ConfigError::UnknownVolume { target: t.iqn.clone(), lun, volume: vol.clone() });
                }
                luns.insert(lun);
            }
            if let Some(c) = &t.chap {
                c.check(&format!("target {:?}", t.iqn))?;
            }
            let mut initiators = HashSet::new();
            for a in t.acl.iter().flatten() {
                let Ok(normal) = name::normalize(&a.initiator) else {
                    return Err(ConfigError::BadInitiator { target: t.iqn.clone(), initiator: a.initiator.clone() });
                };
                if !initiators.insert(normal) {
                    return Err(ConfigError::DuplicateAclEntry {
                        target: t.iqn.clone(),
                        initiator: a.initiator.clone(),
                    });
                }
                if let Some(c) = &a.chap {
                    c.check(&format!("target {:?}, ACL entry {:?}", t.iqn, a.initiator))?;
                }
                if let Some(l) = a.luns.iter().find(|l| !luns.contains(l)) {
                    return Err(ConfigError::AclUnknownLun {
                        target: t.iqn.clone(),
                        initiator: a.initiator.clone(),
                        lun: *l,
                    });
                }
            }
        }
        if let Some(c) = &self.discovery.chap {
            c.check("discovery")?;
        }
        self.check_alua()
    }

    /// ALUA states name mapped LUNs, one target port group has one state
    /// per volume even when several of its targets export it, no port group
    /// is both this node's and a peer's, and a remote volume is never
    /// exported active/optimized (through an active/non-optimized port its
    /// commands go to the node that has the data).
    fn check_alua(&self) -> Result<(), ConfigError> {
        let mut seen: BTreeMap<(String, u16), AluaState> = BTreeMap::new();
        let volumes: HashMap<&str, &VolumeConfig> = self.volumes.iter().map(|v| (v.name.as_str(), v)).collect();
        for t in &self.targets {
            let map = t.lun_map();
            for key in t.alua.keys() {
                if !key.trim().parse().is_ok_and(|l: u64| map.contains_key(&l)) {
                    return Err(ConfigError::AluaUnknownLun { target: t.iqn.clone(), key: key.clone() });
                }
            }
            for (&lun, volume) in &map {
                let state = t.alua_state(lun);
                if let Some(first) = seen.insert((volume.clone(), t.tpg), state) {
                    if first != state {
                        return Err(ConfigError::AluaConflict {
                            volume: volume.clone(),
                            tpg: t.tpg,
                            first,
                            second: state,
                        });
                    }
                }
                let Some(v) = volumes.get(volume.as_str()) else { continue };
                if v.peer_port_groups.iter().any(|p| p.tpg == t.tpg || t.relative_port == Some(p.relative_port)) {
                    return Err(ConfigError::BadPeerPortGroup {
                        volume: volume.clone(),
                        why: format!("peer port group {} or its port is also target {:?}'s", t.tpg, t.iqn),
                    });
                }
                if v.backend == BackendKind::Remote && state == AluaState::ActiveOptimized {
                    let volume = volume.clone();
                    return Err(ConfigError::RemoteVolumeActive { target: t.iqn.clone(), lun, volume, state });
                }
            }
        }
        Ok(())
    }
}

/// A volume's peer port groups: a bounded list, each group and each port
/// named once, none numbered 0.
fn check_peer_port_groups(v: &VolumeConfig) -> Result<(), ConfigError> {
    let bad = |why: String| ConfigError::BadPeerPortGroup { volume: v.name.clone(), why };
    if v.peer_port_groups.len() > MAX_PEER_PORT_GROUPS {
        return Err(bad(format!("{} peer port groups; at most {MAX_PEER_PORT_GROUPS}", v.peer_port_groups.len())));
    }
    let (mut groups, mut ports) = (HashSet::new(), HashSet::new());
    for p in &v.peer_port_groups {
        if p.tpg == 0 || p.relative_port == 0 {
            return Err(bad("peer port groups and their ports are numbered from 1".into()));
        }
        if !groups.insert(p.tpg) || !ports.insert(p.relative_port) {
            return Err(bad(format!("peer port group {} or port {} is listed twice", p.tpg, p.relative_port)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A volume lists at most 64 peer port groups, each group and each
    /// port once, none numbered 0.
    #[test]
    fn peer_port_groups_are_bounded_and_named_once() {
        let mut v: VolumeConfig =
            toml::from_str("name = \"v\"\nbackend = \"remote\"\nsize = \"1MiB\"\n").expect("a volume");
        let group = |n: u16| PeerPortGroup { tpg: n, relative_port: n, state: AluaState::Standby };
        v.peer_port_groups = (1..=MAX_PEER_PORT_GROUPS as u16).map(group).collect();
        assert!(check_peer_port_groups(&v).is_ok());
        v.peer_port_groups.push(group(MAX_PEER_PORT_GROUPS as u16 + 1));
        let e = check_peer_port_groups(&v).unwrap_err().to_string();
        assert!(e.contains("65 peer port groups; at most 64"), "{e}");
        v.peer_port_groups = vec![group(1), group(1)];
        assert!(check_peer_port_groups(&v).unwrap_err().to_string().contains("listed twice"));
        v.peer_port_groups = vec![group(0)];
        assert!(check_peer_port_groups(&v).unwrap_err().to_string().contains("numbered from 1"));
    }

    const SAMPLE: &str = r#"
[[volume]]
name = "vol1"
backend = "file"
path = "/dev/shm/vol1.img"
size = "1GiB"
block_size = 512
read_only = false
[[target]]
iqn = "iqn.2026-11.local.portico:demo"
portals = ["127.0.0.1:3260"]
tpg = 1
luns = { 0 = "vol1" }
chap = { mode = "one-way", user = "alice", secret = "alicesecret1" }
acl = [ { initiator = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test", luns = [0] } ]
[discovery]
chap = { mode = "none" }
"#;

    #[test]
    fn sample_parses() {
        let c = EngineConfig::from_toml(SAMPLE).unwrap();
        assert_eq!(c.volumes[0].size, Size(1 << 30));
        assert_eq!(c.targets[0].lun_map().get(&0).map(String::as_str), Some("vol1"));
        assert!(matches!(c.targets[0].chap.as_ref().unwrap().policy(), ChapPolicy::OneWay { .. }));
        assert_eq!(c.volumes[0].naa(), c.volumes[0].clone().naa());
        assert_eq!(c.volumes[0].naa()[0] >> 4, 6);
        assert!(!format!("{c:?}").contains("alicesecret1"));
        assert!(!format!("{:?}", c.targets[0].chap.as_ref().unwrap().policy()).contains("alicesecret1"));
    }

    #[test]
    fn rejects_bad_configs() {
        let bad = |from: &str, to: &str| EngineConfig::from_toml(&SAMPLE.replace(from, to)).unwrap_err();
        assert!(matches!(bad("{ 0 = \"vol1\" }", "{ 0 = \"nope\" }"), ConfigError::UnknownVolume { .. }));
        assert!(matches!(bad("{ 0 = \"vol1\" }", "{ 300 = \"vol1\" }"), ConfigError::LunOutOfRange { .. }));
        assert!(matches!(bad("tpg = 1\n", "tpg = 1\nrelative_port = 0\n"), ConfigError::BadRelativePort(_)));
        let two = format!("{SAMPLE}[[target]]\niqn = \"iqn.2026-11.local.portico:b\"\nportals = [\"127.0.0.1:3261\"]\nrelative_port = 5\n");
        let clash = two.replace("tpg = 1\n", "tpg = 1\nrelative_port = 5\n");
        assert!(matches!(EngineConfig::from_toml(&clash).unwrap_err(), ConfigError::BadRelativePort(_)));
        assert!(EngineConfig::from_toml(&two.replace("tpg = 1\n", "tpg = 1\nrelative_port = 4\n")).is_ok());
        assert!(matches!(bad("iqn.2026-11.local.portico:demo", "bogus"), ConfigError::BadIqn(_)));
        assert!(matches!(bad("block_size = 512", "block_size = 1000"), ConfigError::BadBlockSize(_)));
        assert!(matches!(bad("\"1GiB\"", "\"1 parsec\""), ConfigError::Parse(_)));
        assert!(matches!(bad("alicesecret1", "short"), ConfigError::BadChap(..)));
        assert!(matches!(bad("luns = [0]", "luns = [3]"), ConfigError::AclUnknownLun { .. }));
        let dup = format!("{SAMPLE}\n[[volume]]\nname = \"vol1\"\nbackend = \"memory\"\nsize = 4096\n");
        let dup = dup.replace("[discovery]\nchap = { mode = \"none\" }\n", "");
        let dup = format!("{dup}\n[discovery]\n");
        assert!(matches!(EngineConfig::from_toml(&dup).unwrap_err(), ConfigError::DuplicateVolume(_)));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("2 GiB"), Some(2 << 30));
        assert_eq!(parse_size("x"), None);
    }
}
