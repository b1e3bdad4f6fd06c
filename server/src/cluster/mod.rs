//! The control plane: the cluster's state is a replicated log of
//! [`Proposal`]s, agreed on with Raft (openraft, behind [`raft`]) and applied
//! by every node to its state database (CLUSTER.md §1).
//!
//! The first `portico serve` in a data directory creates a one-node cluster:
//! this node, Raft id 1, the only voter, and the cluster's CA ([`tls`]).
//! With `--cluster-addr` the node serves the cluster channel ([`transport`]):
//! Raft's messages, and the join of new nodes ([`join`]). Every change the
//! API or the dashboard makes is proposed here; a node that is not the
//! leader forwards it to the leader, and answers once it has applied the
//! change itself, so whoever made it reads it back on this node.

pub mod certs;
mod claims;
pub mod join;
pub mod lease;
pub mod liveness;
pub mod node_checks;
pub mod raft;
pub mod roster;
pub mod signing;
pub mod stream_guard;
pub mod tls;
pub mod transport;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use portico_app::error::ApiError;
use serde::Serialize;
use sqlx::SqlitePool;

use crate::storage::proposal::Proposal;
use crate::storage::secret_box::SecretBox;
use join::{JoinToken, ProposeAnswer};
use raft::log_store::LogStore;
use raft::state_machine::StateMachine;
use raft::{
    AppliedChange, BasicNode, ChangeMembers, Config, NodeId, Raft, RaftInstant as _, ServerState, WatchReceiver,
};
use tls::Identity;
use transport::Client;

/// The status of a change that reached a node that does not lead: nothing
/// was appended, and it may be sent again (421 Misdirected Request).
const NOT_LEADER: u16 = 421;

/// How long a change waits for the cluster to commit it.
const COMMIT_WAIT: Duration = Duration::from_secs(5);

/// Keeps `book` on the members' addresses as the membership names them.
fn keep_addresses(raft: &Raft, book: raft::network::AddressBook) {
    let mut metrics = raft.metrics();
    tokio::spawn(async move {
        let mut seen = None;
        loop {
            let membership = metrics.borrow_watched().membership_config.clone();
            // The metrics change with every entry; the membership seldom.
            if seen != Some(*membership.log_id()) {
                seen = Some(*membership.log_id());
                book.update(membership.membership().nodes());
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    });
}

/// How long a node back at a new address keeps telling the members.
const ADDRESS_TELLING: Duration = Duration::from_secs(60);

/// How this node takes part: its name, the address it serves the cluster
/// channel on, and the member to join through (first start only).
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    pub node_name: String,
    pub cluster_addr: Option<SocketAddr>,
    /// Where it listens for the cluster channel, if not there.
    pub cluster_listen: Option<SocketAddr>,
    /// Where this node takes replication streams (none for a cluster of one).
    pub replication_addr: Option<SocketAddr>,
    /// Where it listens for them, if not there.
    pub replication_listen: Option<SocketAddr>,
    /// How long a copy's node may be offline before the copy is made again
    /// on another node.
    pub rebuild_after: Duration,
    /// How long a preferred node is online and in sync before failback.
    pub failback_after: Duration,
    pub join: Option<JoinOptions>,
}

#[derive(Clone, Debug)]
pub struct JoinOptions {
    /// `https://IP:PORT`: a member's cluster address.
    pub url: String,
    pub token: JoinToken,
}

/// This node's part in the cluster.
#[derive(Clone)]
pub struct Cluster {
    raft: Raft,
    id: NodeId,
    state_machine: StateMachine,
    shared: Arc<Shared>,
}

struct Shared {
    pool: SqlitePool,
    data_dir: PathBuf,
    cluster_addr: Option<SocketAddr>,
    identity: Option<Arc<Identity>>,
    node_name: String,
    /// Calls to the other members; none without a cluster address.
    client: Option<Arc<Client>>,
    /// The leader changes membership one step at a time.
    membership_lock: tokio::sync::Mutex<()>,
    /// This node's storage, for other members' checks.
    node_checks: node_checks::Slot,
    /// Whether this node has heard from a majority lately.
    lease: Arc<lease::Lease>,
}

/// Where this node stands in the cluster, for the API and the dashboard.
#[derive(Clone, Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    pub node_id: NodeId,
    /// leader, follower, candidate, learner or shutdown.
    pub role: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub applied_index: u64,
    pub voters: Vec<NodeId>,
    /// Every member, voters and learners, with its cluster address.
    pub members: Vec<Member>,
    /// This node's cluster address, if it serves the cluster channel.
    pub cluster_addr: Option<String>,
    /// On the leader: how long ago each other member last answered a
    /// heartbeat, in milliseconds (a member never heard from is missing).
    #[serde(default)]
    pub last_contact_ms: BTreeMap<NodeId, u64>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Member {
    pub raft_id: NodeId,
    pub address: String,
    pub voter: bool,
}

fn raft_config() -> anyhow::Result<Arc<Config>> {
    // Heartbeats every 200 ms, elections after 0.8–1.6 s: a new leader
    // commits within 5 s of the old one's loss (cluster-test.sh measures
    // about 2–3 s), well inside the 4 s in which CLUSTER.md §1 calls a
    // silent node offline, and still several heartbeats of slack on a
    // loaded machine.
    let config = Config {
        cluster_name: "portico".into(),
        heartbeat_interval: 200,
        election_timeout_min: 800,
        election_timeout_max: 1600,
        enable_pre_vote: Some(true),
        ..Default::default()
    };
    Ok(Arc::new(config.validate()?))
}

fn no_leader() -> ApiError {
    ApiError::new(503, "The cluster has no leader (no quorum of nodes can be reached); nothing was changed. Try again.")
}

impl Cluster {
    /// Opens this node's log and state. The first time, it creates a
    /// one-node cluster, or joins the one `options.join` names. Returns
    /// once this node knows a leader and has applied the log.
    pub async fn start(data_dir: &Path, pool: SqlitePool, options: &ClusterOptions) -> anyhow::Result<Self> {
        let log = LogStore::open(data_dir).await?;
        let mut joining = None;
        let mut admitted_roster = None;
        let id = match log.node_id().await? {
            Some(id) => {
                if options.join.is_some() {
                    tracing::warn!(node_id = id, "this node is a member of a cluster already: --join is ignored");
                }
                id
            }
            None => match &options.join {
                Some(join) => {
                    let address = options
                        .cluster_addr
                        .context("--join needs --cluster-addr: the address this node serves the cluster channel on")?;
                    let request = Identity::join_request(data_dir, &options.node_name)?;
                    let admission =
                        join::request_admission(&join.url, &join.token, &options.node_name, address, &request).await?;
                    Identity::install_admission(
                        data_dir,
                        &join.token.ca_fingerprint,
                        &admission.ca,
                        &admission.certificate,
                        admission.raft_id,
                    )?;
                    SecretBox::install_key(data_dir, &admission.cluster_key()?)?;
                    log.set_node_id(admission.raft_id).await?;
                    tracing::info!(node_id = admission.raft_id, "admitted to the cluster");
                    joining = Some(join.url.clone());
                    admitted_roster = Some(admission.roster);
                    admission.raft_id
                }
                None => {
                    log.set_node_id(1).await?;
                    1
                }
            },
        };
        if !Identity::exists(data_dir) {
            anyhow::ensure!(id == 1, "this node's copy of the cluster CA is missing from {}", data_dir.display());
            Identity::create_cluster(data_dir, &options.node_name)?;
        }
        let state_machine = StateMachine::open(pool.clone(), data_dir).await?;
        if let Some(seed) = admitted_roster {
            state_machine.roster().seed(seed);
        }
        let identity = match options.cluster_addr {
            Some(_) => Some(Arc::new(Identity::load(data_dir, id, state_machine.roster())?)),
            None => None,
        };
        let client = match &identity {
            Some(identity) => Some(Arc::new(Client::new(identity.client_config()?))),
            None => None,
        };
        let new = log.is_empty().await?;
        let book = raft::network::AddressBook::default();
        let lease = Arc::new(lease::Lease::default());
        let network = raft::network::Network::new(client.clone(), book.clone());
        let raft = Raft::new(id, raft_config()?, network, log, state_machine.clone()).await?;
        keep_addresses(&raft, book);
        let shared = Shared {
            pool,
            data_dir: data_dir.to_path_buf(),
            cluster_addr: options.cluster_addr,
            identity,
            node_name: options.node_name.clone(),
            client,
            membership_lock: Default::default(),
            node_checks: Default::default(),
            lease,
        };
        let cluster = Cluster { raft, id, state_machine, shared: Arc::new(shared) };
        if let (Some(advertised), Some(identity)) = (options.cluster_addr, &cluster.shared.identity) {
            let address = options.cluster_listen.unwrap_or(advertised);
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on the cluster address {address}"))?;
            let raft = cluster.raft.clone();
            let member_address: transport::MemberAddress = Arc::new(move |ip| {
                let metrics = raft.metrics().borrow_watched().clone();
                let members =
                    metrics.membership_config.membership().nodes().map(|(_, n)| n.addr.clone()).collect::<Vec<_>>();
                members.iter().any(|a| a.parse::<SocketAddr>().is_ok_and(|a| a.ip() == ip))
            });
            let roster = cluster.state_machine.roster();
            transport::serve(listener, identity.server_config()?, cluster.routes(), roster, member_address);
            tracing::info!(%address, %advertised, ca = %identity.ca_fingerprint(), "serving the cluster channel");
        }
        if !new && joining.is_none() {
            cluster.tell_members_own_address();
        }
        if new && joining.is_none() {
            let me = BasicNode::new(options.cluster_addr.map(|a| a.to_string()).unwrap_or_default());
            cluster.raft.initialize(BTreeMap::from([(id, me)])).await?;
            tracing::info!(node_id = id, "created a one-node cluster");
        }
        if let Some(url) = joining {
            let answer = join::request_membership(&cluster, &url).await?;
            tracing::info!(voter = answer.voter, "joined the cluster");
        }
        let ready = cluster
            .raft
            .wait(Some(Duration::from_secs(30)))
            .metrics(|m| m.current_leader.is_some() && m.last_applied.is_some(), "a leader")
            .await;
        if let Err(e) = ready {
            anyhow::bail!("the cluster has no leader: {e}");
        }
        cluster.publish_own_address().await;
        liveness::spawn(cluster.clone());
        lease::spawn(cluster.clone());
        signing::spawn_renewal(cluster.clone());
        Ok(cluster)
    }

    /// Whether this node has heard from a majority within the lease
    /// (CLUSTER.md §2): a primary serves media commands only while it does.
    pub fn lease_holds(&self) -> bool {
        self.shared.lease.holds()
    }

    /// This node's engine runs what was applied here up to Raft index
    /// `index` (a renewed lease waits for it; see `lease`).
    pub fn engine_brought_to(&self, index: u64) {
        self.shared.lease.engine_brought_to(index);
    }

    /// Whether the state this node's engine runs marks this node offline
    /// (it then holds no lease; see `lease`).
    pub fn marked_offline_here(&self, offline: bool) {
        self.shared.lease.marked_offline_here(offline);
    }

    /// The address the membership names for node `id`, if any.
    fn member_address(&self, id: NodeId) -> Option<String> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let address = metrics.membership_config.membership().get_node(&id).map(|n| n.addr.clone());
        address
    }

    /// A leader whose membership names another address for it than the
    /// one it serves now (a one-node cluster that got `--cluster-addr`, or
    /// a new address) sets it, so that the others can reach it.
    async fn publish_own_address(&self) {
        let Some(address) = self.shared.cluster_addr.map(|a| a.to_string()) else { return };
        if self.raft.metrics().borrow_watched().current_leader != Some(self.id) {
            return;
        }
        match self.set_member_address(self.id, &address).await {
            Ok(true) => tracing::info!(%address, "the cluster reaches this node at its new address"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e.message, "cannot record this node's cluster address"),
        }
    }

    /// On the leader: records that member `id` is reached at `address`.
    /// Whether anything changed.
    pub(crate) async fn set_member_address(&self, id: NodeId, address: &str) -> Result<bool, ApiError> {
        let _one_change_at_a_time = self.shared.membership_lock.lock().await;
        match self.member_address(id) {
            None => return Err(ApiError::not_found(format!("Raft node {id}"))),
            Some(known) if known == address => return Ok(false),
            Some(_) => {}
        }
        let change = ChangeMembers::SetNodes(BTreeMap::from([(id, BasicNode::new(address))]));
        match tokio::time::timeout(COMMIT_WAIT, self.raft.change_membership(change, true)).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) => Err(ApiError::new(503, format!("The member's new address could not be recorded: {e}"))),
            Err(_) => Err(ApiError::new(503, "The member's new address was not committed within 5 s.")),
        }
    }

    /// A follower that comes back at another address than the membership
    /// names for it cannot hear the leader, which sends to the old one: it
    /// tells the other members its address (any of them forwards it to the
    /// leader), again and again until the membership has it or a minute
    /// has passed.
    fn tell_members_own_address(&self) {
        let Some(address) = self.shared.cluster_addr.map(|a| a.to_string()) else { return };
        let Ok(client) = self.client().cloned() else { return };
        let cluster = self.clone();
        tokio::spawn(async move {
            // The membership as stored, once Raft has loaded it.
            let id = cluster.id;
            let loaded = cluster
                .raft
                .wait(Some(Duration::from_secs(10)))
                .metrics(|m| m.membership_config.membership().get_node(&id).is_some(), "this node's membership")
                .await;
            if loaded.is_err() || cluster.member_address(id).is_none_or(|known| known == address) {
                return;
            }
            tracing::info!(%address, "this node is back at another cluster address: telling the members");
            let request = join::AddressRequest { raft_id: cluster.id, address: address.clone() };
            let deadline = tokio::time::Instant::now() + ADDRESS_TELLING;
            while tokio::time::Instant::now() < deadline {
                if cluster.member_address(cluster.id).as_deref() == Some(address.as_str()) {
                    return;
                }
                let members = cluster.raft.metrics().borrow_watched().membership_config.membership().clone();
                for (id, node) in members.nodes() {
                    if *id == cluster.id || node.addr.is_empty() {
                        continue;
                    }
                    let told: Result<bool, _> =
                        client.call(&node.addr, "/cluster/address", &request, Duration::from_secs(10)).await;
                    match told {
                        Ok(_) => {
                            tracing::info!(%address, through = %node.addr, "the cluster reaches this node at its new address");
                            return;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, member = %node.addr, "cannot tell a member this node's address")
                        }
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            tracing::warn!(%address, "no member took this node's new cluster address within a minute");
        });
    }

    fn routes(&self) -> axum::Router {
        raft::network::routes(self.raft.clone(), self.shared.lease.clone())
            .merge(join::routes(self.clone()))
            .merge(node_checks::routes(self.shared.node_checks.clone()))
    }

    fn client(&self) -> Result<&Arc<Client>, ApiError> {
        self.shared.client.as_ref().ok_or_else(|| ApiError::new(503, "This node has no cluster channel."))
    }

    /// The leader's cluster address when another node leads; `None` when
    /// this node does. Waits up to 5 s for a leader.
    async fn leader_address_if_not_me(&self) -> Result<Option<String>, ApiError> {
        let found = self
            .raft
            .wait(Some(COMMIT_WAIT))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .map_err(|_| no_leader())?;
        let leader = found.current_leader.ok_or_else(no_leader)?;
        if leader == self.id {
            return Ok(None);
        }
        match found.membership_config.membership().get_node(&leader) {
            Some(node) if !node.addr.is_empty() => Ok(Some(node.addr.clone())),
            // A leader that has just left the membership: a new one comes.
            _ => Err(ApiError::new(NOT_LEADER, format!("The cluster's leader (node {leader}) is leaving; try again."))),
        }
    }

    /// Commits `proposal` through this node's Raft, which must lead. A
    /// refusal with [`NOT_LEADER`] means nothing was appended: the change
    /// may be sent again, to the leader there is now.
    async fn commit_here(&self, proposal: Proposal) -> Result<ProposeAnswer, ApiError> {
        let written = tokio::time::timeout(COMMIT_WAIT, self.raft.client_write(proposal)).await;
        match written {
            Err(_) => Err(ApiError::new(
                503,
                "The cluster did not commit the change within 5 s: no quorum of nodes answered. Try again.",
            )),
            Ok(Err(e)) => match e.forward_to_leader() {
                Some(_) => Err(ApiError::new(NOT_LEADER, "This node is not the cluster's leader (any more).")),
                None => {
                    tracing::warn!(error = %e, "a change was not committed");
                    Err(ApiError::new(503, format!("The cluster could not commit the change: {e}")))
                }
            },
            Ok(Ok(response)) => Ok(ProposeAnswer { index: response.log_id.index, outcome: response.data.outcome }),
        }
    }

    /// One try at committing `proposal` through the leader as this node
    /// knows it.
    async fn commit_through_leader(&self, proposal: &Proposal) -> Result<ProposeAnswer, ApiError> {
        match self.leader_address_if_not_me().await? {
            None => self.commit_here(proposal.clone()).await,
            Some(leader) => {
                let client = self.client()?;
                let forwarded = client.call::<_, ProposeAnswer>(&leader, "/cluster/propose", proposal, COMMIT_WAIT * 2);
                forwarded.await.map_err(|e| match e {
                    transport::CallError::Refused { status, message, .. } => ApiError::new(status, message),
                    // Never sent: as safe to send again as a refusal.
                    transport::CallError::Unreachable { .. } => ApiError::new(NOT_LEADER, e.to_string()),
                    other => ApiError::new(503, format!("The cluster's leader did not answer: {other}")),
                })
            }
        }
    }

    /// Commits `proposal` (through the leader, wherever it is) and waits
    /// until this node has applied it. While leadership moves (the change
    /// reached a node that no longer leads, or none), it is sent again, for
    /// up to 10 s. The outer error is the cluster's (no leader, no quorum);
    /// the inner one is the change's own refusal, the same on every node.
    pub async fn propose(&self, proposal: Proposal) -> Result<Result<AppliedChange, ApiError>, ApiError> {
        let deadline = tokio::time::Instant::now() + COMMIT_WAIT * 2;
        let answer = loop {
            match self.commit_through_leader(&proposal).await {
                Err(e) if e.status == NOT_LEADER && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(reason = %e.message, "sending a change again: leadership moved");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) if e.status == NOT_LEADER => return Err(no_leader()),
                other => break other?,
            }
        };
        let mut applied = self.state_machine.applied();
        let caught_up = tokio::time::timeout(COMMIT_WAIT, applied.wait_for(|a| *a >= answer.index)).await;
        if !matches!(caught_up, Ok(Ok(_))) {
            return Err(ApiError::new(503, "The change was committed but this node has not applied it yet."));
        }
        answer.outcome.ok_or_else(ApiError::internal)
    }

    /// If this node leads, hands the leadership to the voter whose log is
    /// furthest along (openraft's leadership transfer: it starts its
    /// election at once, instead of the cluster waiting out an election
    /// timeout after this node goes), and waits up to 5 s for it to take
    /// over. For a planned removal or maintenance of this node. Whether
    /// another node leads now.
    pub async fn step_down(&self) -> bool {
        let metrics = self.raft.metrics().borrow_watched().clone();
        if metrics.current_leader != Some(self.id) {
            return true;
        }
        let matched = metrics.replication.clone().unwrap_or_default();
        let successor = metrics
            .membership_config
            .membership()
            .voter_ids()
            .filter(|id| *id != self.id)
            .max_by_key(|id| matched.get(id).cloned().flatten().map(|log| log.index));
        let Some(to) = successor else { return false };
        if let Err(e) = self.raft.trigger().transfer_leader(to).await {
            tracing::warn!(to, "cannot hand the leadership over: {e}");
            return false;
        }
        let moved = self
            .raft
            .wait(Some(Duration::from_secs(5)))
            .metrics(|m| m.current_leader.is_some_and(|l| l != self.id), "another leader")
            .await
            .is_ok();
        if moved {
            tracing::info!(to, "handed the cluster's leadership over");
        } else {
            tracing::warn!(to, "the leadership was not taken over within 5 s");
        }
        moved
    }

    /// Ends `raft_id`'s membership (the leader does it; another node asks
    /// the leader). The last voter cannot go. The leader removing itself
    /// hands its leadership over first.
    pub async fn remove_member(&self, raft_id: NodeId) -> Result<(), ApiError> {
        if raft_id == self.id {
            self.step_down().await;
        }
        if let Some(leader) = self.leader_address_if_not_me().await? {
            let request = join::RemoveRequest { raft_id };
            let answer = self.client()?.call::<_, ()>(&leader, "/cluster/remove", &request, COMMIT_WAIT * 4).await;
            return answer.map_err(|e| match e {
                transport::CallError::Refused { status, message, .. } => ApiError::new(status, message),
                other => ApiError::new(503, format!("The cluster's leader could not be asked: {other}")),
            });
        }
        let _one_change_at_a_time = self.shared.membership_lock.lock().await;
        let membership = self.raft.metrics().borrow_watched().membership_config.membership().clone();
        if membership.get_node(&raft_id).is_none() {
            return Ok(());
        }
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let change = if voters.contains(&raft_id) {
            if voters.len() == 1 {
                return Err(ApiError::conflict("This is the cluster's last voter; it cannot be removed."));
            }
            ChangeMembers::RemoveVoters([raft_id].into())
        } else {
            ChangeMembers::RemoveNodes([raft_id].into())
        };
        match tokio::time::timeout(COMMIT_WAIT * 3, self.raft.change_membership(change, false)).await {
            Ok(Ok(_)) => {
                tracing::info!(raft_id, "removed a node from the cluster's membership");
                Ok(())
            }
            Ok(Err(e)) => Err(ApiError::new(503, format!("The membership could not be changed: {e}"))),
            Err(_) => Err(ApiError::new(503, "The membership change was not committed within 15 s.")),
        }
    }

    /// Builds a snapshot of the state as applied now and drops the log
    /// before it (the leader does this as a node joins): the new node then
    /// gets the whole state as a snapshot, rows written before they went
    /// through the log included.
    async fn compact(&self) -> anyhow::Result<()> {
        let applied = self.raft.metrics().borrow_watched().last_applied.map(|l| l.index).unwrap_or(0);
        self.raft.trigger().snapshot().await?;
        self.raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.snapshot.is_some_and(|s| s.index >= applied), "a snapshot")
            .await?;
        self.raft.trigger().purge_log(applied).await?;
        Ok(())
    }

    /// Every index this node applies, as it applies it.
    pub fn applied(&self) -> tokio::sync::watch::Receiver<u64> {
        self.state_machine.applied()
    }

    /// The CA's fingerprint, if this node serves the cluster channel (a
    /// join token is of use only then).
    /// What the engine's replication streams are to run inside: mutual TLS
    /// with the nodes' certificates (none without a cluster channel).
    pub fn stream_guard(&self) -> anyhow::Result<Option<stream_guard::ClusterStreamGuard>> {
        let Some(identity) = &self.shared.identity else { return Ok(None) };
        Ok(Some(stream_guard::ClusterStreamGuard::new(identity, self.state_machine.roster())?))
    }

    /// The fingerprint of this node's cluster key, which the cluster pins
    /// as its own (none without a cluster channel).
    pub fn key_fingerprint(&self) -> Option<String> {
        Some(self.shared.identity.as_ref()?.key_fingerprint())
    }

    pub fn cluster_address(&self) -> Option<(SocketAddr, String)> {
        Some((self.shared.cluster_addr?, self.shared.identity.as_ref()?.ca_fingerprint()))
    }

    pub fn node_id(&self) -> NodeId {
        self.id
    }

    pub fn status(&self) -> ClusterStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| Member { raft_id: *id, address: node.addr.clone(), voter: voters.contains(id) })
            .collect();
        ClusterStatus {
            node_id: self.id,
            role: role.to_string(),
            leader: m.current_leader,
            term: m.current_term,
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            voters,
            members,
            cluster_addr: self.shared.cluster_addr.map(|a| a.to_string()),
            last_contact_ms: m
                .heartbeat
                .iter()
                .flatten()
                .filter_map(|(id, at)| at.as_ref().map(|t| (*id, t.elapsed().as_millis() as u64)))
                .collect(),
        }
    }

    /// Every member's own account of where it stands (this node's too),
    /// asked of each over the cluster channel with a 1 s deadline; a member
    /// that did not answer is missing.
    pub async fn member_statuses(&self) -> BTreeMap<NodeId, ClusterStatus> {
        let me = self.status();
        let mut out = BTreeMap::new();
        let asked = me.members.iter().filter(|m| m.raft_id != self.id && !m.address.is_empty()).map(|m| async move {
            let client = self.shared.client.as_ref()?;
            let answer = client.call::<_, ClusterStatus>(&m.address, "/cluster/status", &(), Duration::from_secs(1));
            answer.await.ok().map(|s| (m.raft_id, s))
        });
        for (id, status) in futures_util::future::join_all(asked).await.into_iter().flatten() {
            out.insert(id, status);
        }
        out.insert(self.id, me);
        out
    }

    /// Stops this node's Raft (the process is ending).
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft did not stop cleanly");
        }
    }
}

#[cfg(test)]
mod tests;
