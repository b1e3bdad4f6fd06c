//! Switch failure (CLUSTER.md §3): a node that stays in the cluster while
//! initiators can no longer reach any of its iSCSI portals. The cluster
//! link still answers, so the node is never marked offline, and without
//! this watch its primaries would keep the Active/Optimized path that no
//! initiator can use.
//!
//! - Every node probes the iSCSI portals of the other nodes' targets in
//!   running groups (a TCP connect, [`PROBE_TIMEOUT`]) every
//!   [`PROBE_EVERY`], and keeps, per node, whether any of its portals
//!   answered and since when ([`PortalView`]). A portal that listens on a
//!   wildcard address is probed at its node's cluster address.
//! - The leader asks every online member for its view
//!   (`/cluster/portal-view`) and judges a node cut off from the iSCSI
//!   network ([`cut_off`]) when every other member that probes it has had
//!   none of its portals answer for [`CUT_OFF_AFTER`], and at least one of
//!   them does reach another node's portals: a member whose own iSCSI link
//!   is down reaches nobody, and proves nothing. With two nodes, or when
//!   no third node has portals, nothing can be judged, and nothing moves.
//! - The controller then moves each primary on that node to an in-sync
//!   copy on a node that is not cut off, by a hand-over as in a planned
//!   switchover (the cut-off node is asked over the cluster link, drains,
//!   and settles on its replicas over the replication link, so that its
//!   copy stays in sync). The move is a failover in the timeline and the
//!   audit, with its cause. Failback waits until the node's portals have
//!   answered again for the hold time, and counts such a move as a
//!   failover from that node, as a crash is.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portico_app::error::ApiError;
use portico_app::model::AuditResult;
use tokio::time::Instant;

use super::{db_error, Storage};
use crate::cluster::node_checks::MoveWhy;
use crate::service::audit::{write_audit, AuditRecord};

/// How often each node probes the other nodes' portals.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long one probe may take to connect.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long every other member must have missed a node's portals.
const CUT_OFF_AFTER: Duration = Duration::from_secs(3);
/// How often the leader gathers the members' views.
const JUDGE_EVERY: Duration = Duration::from_secs(1);
/// Portals probed per node, at most.
const MAX_PORTALS_PER_NODE: usize = 16;

/// What one node sees of another node's iSCSI portals.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortalView {
    /// The node probed.
    pub node: i64,
    /// Some portal of it answered the last probe.
    pub reachable: bool,
    /// For how long it has been so, in milliseconds.
    pub for_ms: u64,
}

/// This node's probes, and the leader's judgement.
#[derive(Debug, Default)]
pub struct PortalWatch {
    /// Per node probed: whether it answered, since when.
    seen: Mutex<HashMap<i64, (bool, Instant)>>,
    /// The nodes the leader judges cut off now (empty elsewhere).
    cut_off: Mutex<BTreeSet<i64>>,
    /// The nodes whose portals no observer reached at the leader's last
    /// look, however briefly: failback to them waits for the hold time
    /// from when they answer again, so a flapping link never brings a
    /// volume back between two flaps.
    missed: Mutex<BTreeSet<i64>>,
}

impl PortalWatch {
    /// What this node sees now.
    pub fn views(&self) -> Vec<PortalView> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut views: Vec<PortalView> = seen
            .iter()
            .map(|(node, (reachable, since))| PortalView {
                node: *node,
                reachable: *reachable,
                for_ms: since.elapsed().as_millis() as u64,
            })
            .collect();
        views.sort_by_key(|v| v.node);
        views
    }

    /// Whether the leader judges node `node` cut off from the iSCSI network.
    pub fn is_cut_off(&self, node: i64) -> bool {
        self.cut_off.lock().unwrap_or_else(|e| e.into_inner()).contains(&node)
    }

    /// Whether the leader's last look found node `node`'s portals missed
    /// by every observer (or judged it cut off).
    pub fn is_missed(&self, node: i64) -> bool {
        self.is_cut_off(node) || self.missed.lock().unwrap_or_else(|e| e.into_inner()).contains(&node)
    }

    fn record(&self, results: HashMap<i64, bool>) {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|node, _| results.contains_key(node));
        for (node, reachable) in results {
            let entry = seen.entry(node).or_insert((reachable, now));
            if entry.0 != reachable {
                *entry = (reachable, now);
            }
        }
    }

    /// Sets the leader's judgement; returns the nodes newly cut off and
    /// those reachable again.
    fn judged(&self, now: BTreeSet<i64>) -> (Vec<i64>, Vec<i64>) {
        let mut cut = self.cut_off.lock().unwrap_or_else(|e| e.into_inner());
        let newly = now.difference(&cut).copied().collect();
        let back = cut.difference(&now).copied().collect();
        *cut = now;
        (newly, back)
    }
}

/// The nodes cut off from the iSCSI network, by the views of the members
/// (observer -> what it sees): every observer of the node has missed its
/// portals for `after`, and some observer reaches another node's portals.
pub fn cut_off(views: &HashMap<i64, Vec<PortalView>>, after: Duration) -> BTreeSet<i64> {
    let probed: BTreeSet<i64> = views.values().flatten().map(|v| v.node).collect();
    let after = after.as_millis() as u64;
    probed
        .into_iter()
        .filter(|&x| {
            let observers: Vec<(&i64, &PortalView)> = views
                .iter()
                .filter(|(observer, _)| **observer != x)
                .filter_map(|(observer, seen)| seen.iter().find(|v| v.node == x).map(|v| (observer, v)))
                .collect();
            let all_miss = !observers.is_empty() && observers.iter().all(|(_, v)| !v.reachable && v.for_ms >= after);
            let witness = observers.iter().any(|(observer, _)| {
                views[*observer].iter().any(|v| v.node != x && v.node != **observer && v.reachable)
            });
            all_miss && witness
        })
        .collect()
}

/// Since when every observer has missed node `node`'s portals (ms): the
/// shortest time any of them has.
fn missed_for(views: &HashMap<i64, Vec<PortalView>>, node: i64) -> u64 {
    views
        .iter()
        .filter(|(observer, _)| **observer != node)
        .filter_map(|(_, seen)| seen.iter().find(|v| v.node == node && !v.reachable).map(|v| v.for_ms))
        .min()
        .unwrap_or(0)
}

/// Where a portal is probed from another node: a wildcard address at the
/// node's cluster address.
fn probe_address(portal: &str, cluster_addr: Option<&str>) -> Option<SocketAddr> {
    let portal: SocketAddr = portal.parse().ok()?;
    if !portal.ip().is_unspecified() {
        return Some(portal);
    }
    let ip: IpAddr = cluster_addr?.parse::<SocketAddr>().ok()?.ip();
    Some(SocketAddr::new(ip, portal.port()))
}

async fn answers(addr: SocketAddr) -> bool {
    matches!(tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await, Ok(Ok(_)))
}

/// A volume whose primary is on a cut-off node: name, that node's id and name.
type OnCutOffNode = (String, i64, String);

impl Storage {
    /// Probes the other nodes' portals on every node, and judges them on
    /// the leader. Ends with the storage.
    pub fn watch_portals(self: &Arc<Self>) {
        let storage = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                let Some(storage) = storage.upgrade() else { return };
                match storage.probe_portals().await {
                    Ok(results) => storage.portals.record(results),
                    Err(e) => tracing::warn!(error = %e.message, "cannot probe the other nodes' portals"),
                }
            }
        });
        let storage = Arc::downgrade(self);
        tokio::spawn(async move {
            // Volumes whose move was refused, at the node they are on: said once.
            let mut told = HashSet::new();
            loop {
                tokio::time::sleep(JUDGE_EVERY).await;
                let Some(storage) = storage.upgrade() else { return };
                if storage.cluster.status().role != "leader" {
                    storage.portals.judged(BTreeSet::new());
                    *storage.portals.missed.lock().unwrap_or_else(|e| e.into_inner()) = BTreeSet::new();
                    continue;
                }
                if let Err(e) = storage.move_off_cut_off_nodes(&mut told).await {
                    tracing::warn!(error = %e.message, "a move off a node cut off from the iSCSI network did not go through; trying again");
                }
            }
        });
    }

    /// Probes every portal of the other nodes' targets in running groups:
    /// per node, whether any answered.
    async fn probe_portals(&self) -> Result<HashMap<i64, bool>, ApiError> {
        let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(
            "SELECT t.node_id, t.portals, n.cluster_addr FROM targets t JOIN nodes n ON n.id = t.node_id \
             JOIN target_groups g ON g.id = t.group_id WHERE t.node_id <> ? AND g.state = 'running'",
        )
        .bind(self.node_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut portals: HashMap<i64, BTreeSet<SocketAddr>> = HashMap::new();
        for (node, list, cluster_addr) in rows {
            let list: Vec<String> = serde_json::from_str(&list).unwrap_or_default();
            let set = portals.entry(node).or_default();
            for p in list {
                if set.len() < MAX_PORTALS_PER_NODE {
                    set.extend(probe_address(&p, cluster_addr.as_deref()));
                }
            }
        }
        let probes = portals.into_iter().map(|(node, addrs)| async move {
            let tries = addrs.into_iter().map(answers);
            (node, futures_util::future::join_all(tries).await.into_iter().any(|ok| ok))
        });
        Ok(futures_util::future::join_all(probes).await.into_iter().collect())
    }

    /// On the leader: gathers the online members' views, judges which
    /// nodes are cut off, and moves the primaries off them.
    async fn move_off_cut_off_nodes(&self, told: &mut HashSet<(String, i64)>) -> Result<(), ApiError> {
        let members: Vec<(i64, String, Option<String>)> =
            sqlx::query_as("SELECT id, name, cluster_addr FROM nodes WHERE state = 'online'")
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
        let asks = members.iter().filter(|(id, ..)| *id != self.node_id).map(|(id, name, addr)| async move {
            let views = match addr {
                Some(addr) => self.cluster.ask_portal_view(name, addr).await.ok(),
                None => None,
            };
            (*id, views)
        });
        let mut views: HashMap<i64, Vec<PortalView>> =
            futures_util::future::join_all(asks).await.into_iter().filter_map(|(id, v)| Some((id, v?))).collect();
        views.insert(self.node_id, self.portals.views());
        let online: HashSet<i64> = members.iter().map(|(id, ..)| *id).collect();
        let judged: BTreeSet<i64> = cut_off(&views, CUT_OFF_AFTER).into_iter().filter(|n| online.contains(n)).collect();
        *self.portals.missed.lock().unwrap_or_else(|e| e.into_inner()) = cut_off(&views, Duration::ZERO);
        let (newly, back) = self.portals.judged(judged.clone());
        let name = |id: i64| members.iter().find(|m| m.0 == id).map(|m| m.1.clone()).unwrap_or_else(|| id.to_string());
        for n in newly {
            tracing::warn!(node = name(n), "no other node reaches this node's iSCSI portals: its primaries move away");
        }
        for n in back {
            tracing::info!(node = name(n), "this node's iSCSI portals answer again");
        }
        if judged.is_empty() {
            told.clear();
            return Ok(());
        }
        let stranded: Vec<OnCutOffNode> = sqlx::query_as(
            "SELECT v.name, n.id, n.name FROM volumes v JOIN nodes n ON n.id = v.node_id \
             WHERE EXISTS (SELECT 1 FROM volume_copies c WHERE c.volume_id = v.id) ORDER BY v.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        told.retain(|(volume, node)| stranded.iter().any(|(v, n, _)| v == volume && n == node));
        for (volume, from, from_name) in stranded.into_iter().filter(|(_, n, _)| judged.contains(n)) {
            let Some((to, _)) = self.successor(&volume).await? else {
                if told.insert((volume.clone(), from)) {
                    tracing::error!(volume, node = from_name, "initiators cannot reach the primary's node, and no copy is in sync on another node they can reach");
                }
                continue;
            };
            let held_before_ms = missed_for(&views, from);
            let answer =
                self.switch_over(&volume, to, "the failover controller", MoveWhy::PortalsDown, held_before_ms).await;
            let (result, detail) = match &answer {
                Ok(detail) => (AuditResult::Success, detail.clone()),
                Err(e) => (
                    AuditResult::Failure,
                    format!("no other node reaches {from_name}'s iSCSI portals; the move failed: {}", e.message),
                ),
            };
            if answer.is_ok() || told.insert((volume.clone(), from)) {
                tracing::warn!(volume, %detail, "failover: the primary's node is cut off from the iSCSI network");
                let record = AuditRecord::system("volume.failover", &format!("volume/{volume}"), result, Some(&detail));
                write_audit(&self.pool, record).await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(node: i64, reachable: bool, for_ms: u64) -> PortalView {
        PortalView { node, reachable, for_ms }
    }

    const AFTER: Duration = Duration::from_secs(3);

    /// CLUSTER.md §3, switch failure: node 2's iSCSI link is down, so
    /// nodes 1 and 3 miss its portals and still reach each other's.
    #[test]
    fn a_node_every_other_node_misses_while_they_reach_each_other_is_cut_off() {
        let views = HashMap::from([
            (1, vec![view(2, false, 4000), view(3, true, 60000)]),
            (2, vec![view(1, false, 4000), view(3, false, 4000)]),
            (3, vec![view(1, true, 60000), view(2, false, 3500)]),
        ]);
        assert_eq!(cut_off(&views, AFTER), BTreeSet::from([2]));
        assert_eq!(missed_for(&views, 2), 3500, "I/O through node 2 held for 3.5 s at least");
    }

    #[test]
    fn nobody_is_cut_off_too_soon_or_when_one_observer_still_reaches_it() {
        let soon = HashMap::from([
            (1, vec![view(2, false, 2000), view(3, true, 60000)]),
            (3, vec![view(1, true, 60000), view(2, false, 4000)]),
        ]);
        assert_eq!(cut_off(&soon, AFTER), BTreeSet::new(), "node 1 missed node 2 for 2 s only");
        let one_reaches = HashMap::from([
            (1, vec![view(2, false, 9000), view(3, true, 60000)]),
            (3, vec![view(1, true, 60000), view(2, true, 9000)]),
        ]);
        assert_eq!(cut_off(&one_reaches, AFTER), BTreeSet::new(), "node 3 reaches node 2");
    }

    /// A node whose own iSCSI link is down reaches nobody: it proves
    /// nothing about the others, and with two nodes nothing is judged.
    #[test]
    fn an_observer_that_reaches_nobody_proves_nothing() {
        let two = HashMap::from([(1, vec![view(2, false, 9000)]), (2, vec![view(1, false, 9000)])]);
        assert_eq!(cut_off(&two, AFTER), BTreeSet::new());
        // Node 1's own link is down: it misses 2 and 3, and they reach each
        // other and miss node 1, which is the one cut off.
        let views = HashMap::from([
            (1, vec![view(2, false, 9000), view(3, false, 9000)]),
            (2, vec![view(1, false, 9000), view(3, true, 9000)]),
            (3, vec![view(1, false, 9000), view(2, true, 9000)]),
        ]);
        assert_eq!(cut_off(&views, AFTER), BTreeSet::from([1]));
    }

    #[test]
    fn a_wildcard_portal_is_probed_at_its_nodes_cluster_address() {
        assert_eq!(probe_address("0.0.0.0:3260", Some("10.0.0.2:7000")), Some("10.0.0.2:3260".parse().unwrap()));
        assert_eq!(probe_address("10.1.0.2:3261", Some("10.0.0.2:7000")), Some("10.1.0.2:3261".parse().unwrap()));
        assert_eq!(probe_address("0.0.0.0:3260", None), None);
        assert_eq!(probe_address("bad", Some("10.0.0.2:7000")), None);
    }
}
