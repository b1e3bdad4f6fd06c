//! Who is a member now: the key the cluster pinned for each node it
//! admitted, and the keys of the nodes it removed (the revocation list),
//! both from the replicated state (`nodes.cert_key`, `revoked_node_keys`).
//!
//! The state machine reloads the roster whenever it applies a change to
//! either (an admission, a registration, a removal, a snapshot), so a
//! removed node is refused by every member as soon as that member has
//! applied its removal, on connections it already holds too: every request
//! on the cluster channel is checked here (`transport::FromMember`).
//!
//! A node that has just joined has no state yet, so it could not tell the
//! leader's first message from anyone's: its admission brings the roster
//! as the leader had it then ([`Seed`]), which counts beside its own state
//! until it has applied the log that far.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use sqlx::SqliteConnection;

use super::certs::PeerCert;

#[derive(Default)]
pub struct Roster {
    view: RwLock<View>,
}

impl std::fmt::Debug for Roster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let view = self.view.read().unwrap_or_else(|e| e.into_inner());
        write!(f, "Roster({} members, {} revoked)", view.members.len(), view.revoked.len())
    }
}

#[derive(Default)]
struct View {
    /// This cluster's id (`certs::cluster_id`), once known.
    cluster: Option<String>,
    /// Raft id → (pinned key, node name).
    members: HashMap<u64, (String, String)>,
    /// Raft id → the node's id in the state (`nodes.id`: what placements
    /// name), from the state only.
    node_ids: HashMap<u64, i64>,
    revoked: HashSet<String>,
    seed: Option<Seed>,
}

/// The roster as the leader had it when it admitted a node, at log index
/// `index`.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Seed {
    pub index: u64,
    /// (Raft id, pinned key, name).
    pub members: Vec<(u64, String, String)>,
    pub revoked: Vec<String>,
}

/// A member as the roster knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    pub raft_id: u64,
    pub name: String,
    /// Its id in the state (`nodes.id`), once this node has applied it.
    pub node_id: Option<i64>,
}

impl Roster {
    /// Sets the cluster's id (from the CA this node trusts).
    pub fn set_cluster(&self, cluster: &str) {
        self.view.write().unwrap_or_else(|e| e.into_inner()).cluster = Some(cluster.to_string());
    }

    /// Reads the members and the revocation list from the state database,
    /// applied up to log index `applied`.
    pub async fn reload(&self, conn: &mut SqliteConnection, applied: u64) -> Result<(), sqlx::Error> {
        let members: Vec<(i64, String, String, i64)> = sqlx::query_as(
            "SELECT raft_id, cert_key, name, id FROM nodes WHERE raft_id IS NOT NULL AND cert_key IS NOT NULL",
        )
        .fetch_all(&mut *conn)
        .await?;
        let revoked: Vec<(String,)> =
            sqlx::query_as("SELECT cert_key FROM revoked_node_keys").fetch_all(&mut *conn).await?;
        let mut view = self.view.write().unwrap_or_else(|e| e.into_inner());
        view.node_ids = members.iter().map(|(raft_id, _, _, id)| (*raft_id as u64, *id)).collect();
        view.members = members.into_iter().map(|(id, key, name, _)| (id as u64, (key, name))).collect();
        view.revoked = revoked.into_iter().map(|(k,)| k).collect();
        if view.seed.as_ref().is_some_and(|s| applied >= s.index) {
            view.seed = None;
        }
        if let Some(seed) = view.seed.clone() {
            view.add(&seed);
        }
        Ok(())
    }

    /// Whether an admission's roster still counts beside the state.
    pub fn seeded(&self) -> bool {
        self.view.read().unwrap_or_else(|e| e.into_inner()).seed.is_some()
    }

    /// Takes the roster an admission brought, until the state has caught up.
    pub fn seed(&self, seed: Seed) {
        let mut view = self.view.write().unwrap_or_else(|e| e.into_inner());
        view.add(&seed);
        view.seed = Some(seed);
    }

    /// The roster as it is here, applied up to `index`, for a node that joins.
    pub fn snapshot(&self, index: u64) -> Seed {
        let view = self.view.read().unwrap_or_else(|e| e.into_inner());
        let members = view.members.iter().map(|(id, (key, name))| (*id, key.clone(), name.clone())).collect();
        Seed { index, members, revoked: view.revoked.iter().cloned().collect() }
    }

    /// The member a certificate belongs to: it names this cluster and a
    /// Raft id whose pinned key is the certificate's, and that key is not
    /// revoked. None for anyone else.
    pub fn member(&self, cert: &PeerCert) -> Option<Known> {
        let view = self.view.read().unwrap_or_else(|e| e.into_inner());
        if view.cluster.as_deref() != Some(cert.cluster.as_str()) || view.revoked.contains(&cert.key) {
            return None;
        }
        let (key, name) = view.members.get(&cert.raft_id)?;
        let same: bool = subtle::ConstantTimeEq::ct_eq(key.as_bytes(), cert.key.as_bytes()).into();
        let node_id = view.node_ids.get(&cert.raft_id).copied();
        same.then(|| Known { raft_id: cert.raft_id, name: name.clone(), node_id })
    }

    /// Whether a key was revoked (its node removed).
    pub fn revoked(&self, key: &str) -> bool {
        self.view.read().unwrap_or_else(|e| e.into_inner()).revoked.contains(key)
    }

    /// The key pinned for Raft node `raft_id`, if any.
    pub fn pinned(&self, raft_id: u64) -> Option<String> {
        self.view.read().unwrap_or_else(|e| e.into_inner()).members.get(&raft_id).map(|(k, _)| k.clone())
    }

    /// Pins a member's key by hand (tests without a state database).
    #[cfg(test)]
    pub fn pin(&self, raft_id: u64, key: &str, name: &str) {
        let mut view = self.view.write().unwrap_or_else(|e| e.into_inner());
        view.members.insert(raft_id, (key.to_string(), name.to_string()));
    }
}

impl View {
    fn add(&mut self, seed: &Seed) {
        for (id, key, name) in &seed.members {
            self.members.entry(*id).or_insert_with(|| (key.clone(), name.clone()));
        }
        self.revoked.extend(seed.revoked.iter().cloned());
        // A key revoked anywhere is no member's.
        let revoked = &self.revoked;
        self.members.retain(|_, (key, _)| !revoked.contains(key));
    }
}
