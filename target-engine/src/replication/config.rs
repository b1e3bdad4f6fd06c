//! Replication in the engine's configuration: the node's part
//! (`[replication]`: its id, the address its replicas listen on, the
//! cluster's name) and each replicated volume's placement (`replication =
//! { epoch, primary, min_in_sync, replicas }` in its `[[volume]]`). With
//! `portico engine` the administrator writes them (and SIGHUP applies a new
//! placement); `portico serve` derives them from the cluster's state.
//!
//! ```toml
//! [replication]
//! node = 1
//! listen = "127.0.1.1:3270"
//! resync_mbps = 200      # the default; 0 is no limit
//!
//! [[volume]]
//! name = "r1"
//! path = "/var/lib/portico/r1.img"
//! size = "1GiB"
//! replication = { epoch = 1, primary = 1, replicas = [
//!     { node = 2, address = "127.0.2.1:3270" },
//!     { node = 3, address = "127.0.3.1:3270", in_sync = false } ] }
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use std::path::PathBuf;

use super::core::ops::{Epoch, ReplicaId};

/// This node's part in replication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationNode {
    /// This node's id among the copies of a volume.
    pub node: ReplicaId,
    /// Where this node takes streams from primaries.
    pub listen: SocketAddr,
    /// Checked in every stream's hello.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// The cluster's replication key, the same file on every node: both
    /// ends of a stream prove they hold it before anything else moves
    /// (see [`super::auth`]).
    pub key_file: PathBuf,
    /// What resyncing one volume may read and send, in MB/s (0: no limit),
    /// so that initiators keep most of the disks and the network.
    #[serde(default = "default_resync_mbps")]
    pub resync_mbps: u64,
    /// What streams run over (a cluster node's own guard goes before it).
    #[serde(default)]
    pub transport: Transport,
}

/// What the engine on its own runs replication streams over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TLS 1.3, keyed by the replication key (`super::keyed_tls`).
    #[default]
    Tls,
    /// TCP: the key is proven at the start, frames carry only a CRC32C.
    /// For measuring, on a network only the nodes reach.
    Plain,
}

fn default_resync_mbps() -> u64 {
    200
}

fn default_cluster() -> String {
    "portico".into()
}

/// A volume's placement: who is primary at which epoch, and the other copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumePlacement {
    pub epoch: u64,
    pub primary: ReplicaId,
    /// In-sync copies (the primary's included) below which writes wait.
    #[serde(default = "one")]
    pub min_in_sync: usize,
    /// Every copy but the primary's.
    pub replicas: Vec<ReplicaPlacement>,
}

fn one() -> usize {
    1
}

fn yes() -> bool {
    true
}

/// One replica of a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaPlacement {
    pub node: ReplicaId,
    /// Its node's replication address.
    pub address: SocketAddr,
    /// Whether it holds every acknowledged write (the control plane's word).
    #[serde(default = "yes")]
    pub in_sync: bool,
}

/// This node's role for a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

impl VolumePlacement {
    pub fn epoch(&self) -> Epoch {
        Epoch(self.epoch)
    }

    /// What node `me` is for the volume, or why the placement is wrong.
    pub fn role(&self, me: ReplicaId) -> Result<Role, String> {
        if self.primary == me {
            return Ok(Role::Primary);
        }
        if self.replicas.iter().any(|r| r.node == me) {
            return Ok(Role::Replica);
        }
        Err(format!("node {me} is neither its primary ({}) nor one of its replicas", self.primary))
    }

    /// The placement with every replica counted in sync: what stays the
    /// same while a primary marks its replicas.
    pub fn without_marks(&self) -> VolumePlacement {
        let mut p = self.clone();
        p.replicas.iter_mut().for_each(|r| r.in_sync = true);
        p
    }

    /// Why the placement cannot work, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.epoch == 0 {
            return Err("epoch starts at 1".into());
        }
        let mut nodes = HashSet::from([self.primary]);
        for r in &self.replicas {
            if !nodes.insert(r.node) {
                return Err(format!("node {} holds two copies", r.node));
            }
        }
        if self.replicas.len() > 2 {
            return Err("a volume has at most 3 copies".into());
        }
        if self.min_in_sync == 0 || self.min_in_sync > 1 + self.replicas.len() {
            return Err(format!("min_in_sync must be between 1 and {}", 1 + self.replicas.len()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(text: &str) -> VolumePlacement {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn roles_and_checks() {
        let p = placement(
            r#"epoch = 2
primary = 1
replicas = [ { node = 2, address = "127.0.2.1:3270" }, { node = 3, address = "127.0.3.1:3270", in_sync = false } ]"#,
        );
        assert_eq!(p.role(1), Ok(Role::Primary));
        assert_eq!(p.role(3), Ok(Role::Replica));
        assert!(p.role(4).is_err());
        assert!(p.check().is_ok());
        assert!(p.replicas[0].in_sync && !p.replicas[1].in_sync);
        let twice = placement(
            r#"epoch = 1
primary = 1
replicas = [ { node = 1, address = "127.0.2.1:3270" } ]"#,
        );
        assert!(twice.check().unwrap_err().contains("two copies"));
        let too_many_in_sync = VolumePlacement { min_in_sync: 3, ..p.clone() };
        assert!(too_many_in_sync.check().is_ok());
        assert!(VolumePlacement { min_in_sync: 4, ..p.clone() }.check().is_err());
        // Marks aside, the same placement; another epoch is not.
        let mut marked = p.clone();
        marked.replicas[1].in_sync = true;
        assert_ne!(marked, p);
        assert_eq!(marked.without_marks(), p.without_marks());
        assert_ne!(VolumePlacement { epoch: 3, ..marked }.without_marks(), p.without_marks());
    }
}
