//! The failover controller (CLUSTER.md §3): one decision maker, on the
//! Raft leader, moves the primary of a replicated volume away from a node
//! the cluster has marked offline.
//!
//! Every [`CHECK_EVERY`] the leader looks for replicated volumes whose
//! primary's node is offline. For each, it picks a copy that is in sync, on
//! an online node, preferring a node with a running target that exports
//! the volume (so that a path stays Active/Optimized), then the lowest node
//! id, and commits [`Change::Promote`]: a compare-and-set on the volume's
//! epoch, so that two leaders in turn, or a retry, never promote twice.
//!
//! Fencing comes first, and from time alone: a node is offline only once
//! the leader has not heard from it for 4 s (`cluster::liveness`), while
//! its own lease ran out 3 s after it last heard from a majority
//! (`cluster::lease`); from then on it serves no media command of a
//! replicated volume. The new epoch fences it for good: its replicas refuse
//! its stream, and its marks are refused, so no write it takes completes.
//! When it is back, it applies the change before its lease holds again,
//! and becomes an out-of-sync copy that its new primary resyncs.
//!
//! An operator may also move the primary to another in-sync copy's node
//! ([`Storage::move_primary`], a planned switchover). The old primary's
//! node does it: it demotes its copy first (what it admitted completes and
//! is settled on every in-sync copy; what arrives after ends NOT READY,
//! transitioning, so that initiators retry on the new Active/Optimized
//! path), then commits the move. Its copy then stays in sync, and the new
//! primary has nothing to reconcile: no resync. A primary that cannot be
//! asked is not moved this way: it may still hold its lease, and a move
//! never shortens the wait that fencing needs. SET TARGET PORT GROUPS
//! asking for another node's port group (explicit ALUA) is the same move,
//! asked by the initiator ([`Storage::activate_port_group`]).
//!
//! Failback: once a volume's preferred node (where it was created, or
//! where an operator or an initiator last moved it) has been online with
//! its copy in sync for the hold time (`--failback-after`, 60 s), the
//! leader moves the primary back, by a hand-over as in a planned
//! switchover; at most once per volume in 10 minutes, never to a node the
//! volume failed over from 3 times in that window, one volume per target
//! group every 2 s, and only for volumes with `auto_failback` on.
//! Planned switchovers of one volume are refused (429) beyond 3 a minute,
//! so that two initiators each asking for their own group cannot move it
//! back and forth.
//!
//! What initiators see while a volume moves, and why each multipath stack
//! retries it on another path rather than failing the I/O:
//! - the old primary's port: reads and writes end NOT READY, LOGICAL UNIT
//!   NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION (02h/04h/0Ah), and
//!   REPORT TARGET PORT GROUPS shows its group TRANSITIONING (SPC-4
//!   §5.16.2.4.6), with an IMPLICIT TRANSITION TIME of 15 s. Linux's
//!   `scsi_dh_alua` takes 04h/0Ah as a transient state: it marks the group
//!   transitioning, retries, and polls with TEST UNIT READY until the state
//!   settles; VMware's VMW_SATP_ALUA and Windows' MSDSM treat it as a
//!   transition to wait out and then re-read the groups. A dead or stopped
//!   node gives no status at all: the command times out (the iSCSI NOP-Out
//!   and replacement timeouts) and the path is failed;
//! - the other ports: ASYMMETRIC ACCESS STATE CHANGED (06h/2Ah/06h) on
//!   every nexus that knew the unit, which all three answer by reading
//!   REPORT TARGET PORT GROUPS again; there the new group is
//!   Active/Optimized and the rest Standby, whose reads and writes end
//!   02h/04h/0Bh (the path is kept as a standby one, not used for I/O).
//!
//! Each move is one committed entry, one row of the volume's timeline
//! (`volume_moves`), and one audit record with its cause
//! (`volume.failover`, `volume.switchover`, `volume.failback`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use portico_app::error::ApiError;
use portico_app::model::{AuditResult, Role};

use super::proposal::{Change, PromoteCause, Proposal};
use super::{db_error, Storage};
use crate::cluster::liveness::OFFLINE_AFTER;
use crate::cluster::node_checks::{HandOver, MoveWhy};
use crate::service::audit::{write_audit, AuditRecord};
use portico_app::service::Caller;

/// How often the leader looks for primaries on offline nodes.
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How long a primary handing over waits for what it admitted.
const HAND_OVER: Duration = Duration::from_secs(5);

/// Failback happens at most once per volume in this window, and never to
/// a node the volume failed over from [`FLAPS`] times in it.
const FAILBACK_WINDOW: Duration = Duration::from_secs(600);
const FLAPS: i64 = 3;
/// Failbacks in one target group are this far apart, so that a group's
/// LUNs do not all move at once.
const FAILBACK_SPACING: Duration = Duration::from_secs(2);

/// Planned switchovers of one volume (an operator's, or an initiator's SET
/// TARGET PORT GROUPS) are refused beyond this many in [`PLANNED_WINDOW`]:
/// two initiators that each want their own group active would otherwise
/// move the volume back and forth for ever.
const PLANNED_MOVES: i64 = 3;
const PLANNED_WINDOW: Duration = Duration::from_secs(60);

/// The planned switchovers of `volume` in the last [`PLANNED_WINDOW`].
async fn recent_switchovers(pool: &sqlx::SqlitePool, volume: &str) -> sqlx::Result<i64> {
    let (count,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM volume_moves WHERE volume = ? AND kind = 'switchover' \
         AND julianday(at) > julianday('now', ?)",
    )
    .bind(volume)
    .bind(format!("-{} seconds", PLANNED_WINDOW.as_secs()))
    .fetch_one(pool)
    .await?;
    Ok(count)
}

/// A volume whose primary's node is offline: its name, epoch, that node's
/// name, and how long ago it was marked offline (ms).
type Stranded = (String, i64, String, i64);

/// A volume whose primary is not on its preferred node, which is online
/// with its copy in sync: name, preferred node's id and name, its group,
/// failbacks and failovers from the preferred node in the window.
type FailbackCandidate = (String, i64, String, Option<i64>, i64, i64);

/// The volumes whose primary is not on their preferred node while that
/// node is online with its copy in sync, and the current primary's node is
/// online too (it hands over), with automatic failback on; with their
/// failbacks, and failovers away from the preferred node, in the last
/// [`FAILBACK_WINDOW`].
async fn failback_candidates(pool: &sqlx::SqlitePool) -> sqlx::Result<Vec<FailbackCandidate>> {
    sqlx::query_as(
        "SELECT v.name, v.preferred_node_id, p.name, \
                (SELECT MIN(l.group_id) FROM luns l WHERE l.volume_id = v.id), \
                (SELECT COUNT(*) FROM volume_moves m WHERE m.volume = v.name AND m.kind = 'failback' \
                    AND julianday(m.at) > julianday('now', ?1)), \
                (SELECT COUNT(*) FROM volume_moves m WHERE m.volume = v.name AND m.kind = 'failover' \
                    AND m.from_node = p.name AND julianday(m.at) > julianday('now', ?1)) \
         FROM volumes v JOIN nodes p ON p.id = v.preferred_node_id JOIN nodes cur ON cur.id = v.node_id \
         JOIN volume_copies c ON c.volume_id = v.id AND c.node_id = v.preferred_node_id \
         WHERE v.auto_failback AND v.node_id <> v.preferred_node_id AND c.in_sync \
           AND p.state = 'online' AND cur.state = 'online' ORDER BY v.name",
    )
    .bind(format!("-{} seconds", FAILBACK_WINDOW.as_secs()))
    .fetch_all(pool)
    .await
}

/// What the leader remembers between failback passes (a new leader starts
/// the hold time again).
#[derive(Default)]
struct Failback {
    after: Duration,
    /// Since when each volume has been due to return.
    eligible_since: HashMap<String, tokio::time::Instant>,
    /// When each group last had a volume return.
    last_in_group: HashMap<i64, tokio::time::Instant>,
    /// Volumes whose refusal was logged.
    told: HashSet<String>,
}

impl Storage {
    /// Moves primaries away from offline nodes, while this node leads.
    /// Ends with the storage.
    pub fn fail_over_lost_primaries(self: &Arc<Self>, failback_after: Duration) {
        let storage = Arc::downgrade(self);
        tokio::spawn(async move {
            // Volumes reported as having no copy to take over, at an epoch:
            // said once, not every half second.
            let mut told = HashSet::new();
            loop {
                tokio::time::sleep(CHECK_EVERY).await;
                let Some(storage) = storage.upgrade() else { return };
                if storage.cluster.status().role != "leader" {
                    continue;
                }
                if let Err(e) = storage.fail_over(&mut told).await {
                    tracing::warn!(error = %e.message, "a failover did not go through; trying again");
                }
            }
        });
        // Apart, so that a hand-over that takes its time never holds up a failover.
        let storage = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut failback = Failback { after: failback_after, ..Default::default() };
            loop {
                tokio::time::sleep(CHECK_EVERY).await;
                let Some(storage) = storage.upgrade() else { return };
                if storage.cluster.status().role != "leader" {
                    failback = Failback { after: failback_after, ..Default::default() };
                    continue;
                }
                if let Err(e) = storage.fail_back(&mut failback).await {
                    tracing::warn!(error = %e.message, "a failback did not go through; trying again later");
                }
            }
        });
    }

    /// Returns primaries to their preferred nodes: one volume a pass, one
    /// per group every [`FAILBACK_SPACING`], each only once the preferred
    /// node has been online with its copy in sync for the hold time, at
    /// most once per volume in [`FAILBACK_WINDOW`], and never to a node the
    /// volume failed over from [`FLAPS`] times in that window.
    async fn fail_back(&self, state: &mut Failback) -> Result<(), ApiError> {
        let mut due = failback_candidates(&self.pool).await.map_err(db_error)?;
        // A node that initiators could not reach at the last look is not
        // due yet: its hold time starts once its portals answer again.
        due.retain(|(_, to, ..)| !self.portals.is_missed(*to));
        let now = tokio::time::Instant::now();
        state.eligible_since.retain(|volume, _| due.iter().any(|d| &d.0 == volume));
        for (volume, to, to_name, group, failbacks, flaps) in due {
            let since = *state.eligible_since.entry(volume.clone()).or_insert(now);
            if now.duration_since(since) < state.after || failbacks > 0 {
                continue;
            }
            if flaps >= FLAPS {
                if state.told.insert(volume.clone()) {
                    tracing::warn!(
                        volume,
                        node = to_name,
                        flaps,
                        "no failback: the volume failed over from its preferred node too often"
                    );
                }
                continue;
            }
            if let Some(group) = group {
                if state.last_in_group.get(&group).is_some_and(|t| now.duration_since(*t) < FAILBACK_SPACING) {
                    continue;
                }
                state.last_in_group.insert(group, now);
            }
            state.eligible_since.remove(&volume);
            state.told.remove(&volume);
            let answer = self.switch_over(&volume, to, "the failback controller", MoveWhy::Failback, 0).await;
            let (result, detail) = match &answer {
                Ok(detail) => (AuditResult::Success, detail.clone()),
                Err(e) => (AuditResult::Failure, format!("failback to {to_name}: {}", e.message)),
            };
            tracing::info!(volume, %detail, "failback");
            let record = AuditRecord::system("volume.failback", &format!("volume/{volume}"), result, Some(&detail));
            write_audit(&self.pool, record).await;
            return answer.map(|_| ());
        }
        Ok(())
    }

    async fn fail_over(&self, told: &mut HashSet<(String, i64)>) -> Result<(), ApiError> {
        let stranded: Vec<Stranded> = sqlx::query_as(
            "SELECT v.name, v.epoch, n.name, \
                 CAST((julianday('now') - julianday(n.last_heartbeat)) * 86400000 AS INTEGER) \
             FROM volumes v JOIN nodes n ON n.id = v.node_id \
             WHERE n.state = 'offline' AND EXISTS (SELECT 1 FROM volume_copies c WHERE c.volume_id = v.id) \
             ORDER BY v.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        told.retain(|(volume, epoch)| stranded.iter().any(|(v, e, ..)| v == volume && e == epoch));
        for (volume, epoch, from, offline_ms) in stranded {
            let Some((to, to_name)) = self.successor(&volume).await? else {
                if told.insert((volume.clone(), epoch)) {
                    tracing::error!(volume, node = from, "the primary's node is offline and no copy is in sync on an online node: the volume is offline until one is");
                }
                continue;
            };
            let cause = PromoteCause::NodeOffline { node: from.clone() };
            tracing::warn!(volume, from, to = to_name, "failing over");
            // I/O stopped when the node was last heard from: the offline
            // mark came OFFLINE_AFTER later.
            let held_ms = (offline_ms.max(0) as u64).saturating_add(OFFLINE_AFTER.as_millis() as u64);
            let change =
                Change::Promote { volume: volume.clone(), epoch: epoch as u64, to, cause, held_ms: Some(held_ms) };
            let proposal = Proposal::now(change);
            let applied = match self.cluster.propose(proposal.clone()).await {
                Ok(Ok(applied)) => applied,
                Ok(Err(e)) | Err(e) => return Err(e),
            };
            let detail = applied.detail.unwrap_or_default();
            tracing::info!(volume, %detail, "failed over");
            let record = AuditRecord::system(
                proposal.change.action(),
                &proposal.change.object(),
                AuditResult::Success,
                Some(&detail),
            );
            write_audit(&self.pool, record).await;
        }
        Ok(())
    }

    /// The node to take over `volume`: an in-sync copy on an online node
    /// that initiators can reach, one with a running target that exports
    /// the volume first.
    pub(super) async fn successor(&self, volume: &str) -> Result<Option<(i64, String)>, ApiError> {
        let candidates = successors(&self.pool, volume).await?;
        // Initiators must be able to reach it.
        let reachable = candidates.into_iter().find(|(id, _)| !self.portals.is_cut_off(*id));
        Ok(reachable)
    }

    /// A planned switchover: moves the primary of `volume` (and with it the
    /// Active/Optimized path of its LUN) to `node`, which keeps an in-sync
    /// copy and is online. Operators and admins only; audited.
    pub async fn move_primary(&self, caller: &Caller, volume: &str, node: &str) -> Result<(), ApiError> {
        const ACTION: &str = "volume.switchover";
        let object = format!("volume/{volume}");
        self.authorize(caller, Role::Operator, "move a volume's primary", ACTION, &object).await?;
        let to: Option<(i64,)> = sqlx::query_as("SELECT id FROM nodes WHERE name = ?")
            .bind(node)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        let answer = match to {
            Some((to,)) => self.switch_over(volume, to, &caller.username, MoveWhy::Planned, 0).await,
            None => Err(ApiError::invalid_field("node", format!("No node is named {node}."))),
        };
        match answer {
            Ok(detail) => {
                self.audit(caller, ACTION, &object, AuditResult::Success, Some(detail)).await;
                Ok(())
            }
            Err(e) => self.failed(caller, ACTION, &object, e).await,
        }
    }

    /// SET TARGET PORT GROUPS through a port of this node asked for port
    /// group `tpg` to be active for `volume` (explicit ALUA): the move to
    /// that group's node, as a planned switchover, audited with the
    /// initiator's name.
    pub(crate) async fn activate_port_group(
        &self,
        volume: &str,
        tpg: u16,
        initiator: &str,
    ) -> Result<String, ApiError> {
        let node: Option<(i64, String)> =
            sqlx::query_as("SELECT n.id, n.name FROM targets t JOIN nodes n ON n.id = t.node_id WHERE t.tpg = ?")
                .bind(i64::from(tpg))
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
        let answer = match node {
            Some((to, _)) => self.switch_over(volume, to, &format!("initiator {initiator}"), MoveWhy::Planned, 0).await,
            None => Err(ApiError::conflict(format!("No target has port group {tpg}."))),
        };
        let (result, detail) = match &answer {
            Ok(detail) => (AuditResult::Success, format!("SET TARGET PORT GROUPS for port group {tpg}: {detail}")),
            Err(e) => (AuditResult::Failure, format!("SET TARGET PORT GROUPS for port group {tpg}: {}", e.message)),
        };
        let record = AuditRecord::system("volume.switchover", &format!("volume/{volume}"), result, Some(&detail));
        write_audit(&self.pool, record).await;
        answer
    }

    /// Moves the primary of `volume` to node `to`, for `by`: the primary's
    /// node hands over (see [`Self::hand_over_here`]). A primary that
    /// cannot be asked is not moved from here: it may still hold its lease,
    /// and the move must not shorten the fencing a failover waits for (if
    /// its node is down, the controller fails over once it is offline).
    pub(super) async fn switch_over(
        &self,
        volume: &str,
        to: i64,
        by: &str,
        why: MoveWhy,
        held_before_ms: u64,
    ) -> Result<String, ApiError> {
        let row: Option<(i64, i64, String, Option<String>)> = sqlx::query_as(
            "SELECT v.epoch, n.id, n.name, n.cluster_addr FROM volumes v JOIN nodes n ON n.id = v.node_id \
             WHERE v.name = ?",
        )
        .bind(volume)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        let Some((epoch, from_id, from, address)) = row else {
            return Err(ApiError::not_found(format!("The volume {volume}")));
        };
        if from_id == to {
            return Err(ApiError::conflict(format!("{from} holds the primary of {volume} already.")));
        }
        if why == MoveWhy::Planned && recent_switchovers(&self.pool, volume).await.map_err(db_error)? >= PLANNED_MOVES {
            let message = format!(
                "{volume} was switched over {PLANNED_MOVES} times in the last {} s; try again later.",
                PLANNED_WINDOW.as_secs()
            );
            return Err(ApiError::new(429, message));
        }
        let request =
            HandOver { volume: volume.to_string(), epoch: epoch as u64, to, by: by.to_string(), why, held_before_ms };
        if from_id == self.node_id {
            return self.hand_over_here(request).await;
        }
        let Some(address) = address else {
            return Err(ApiError::new(503, format!("{from}, the primary of {volume}, has no cluster address.")));
        };
        self.cluster.ask_hand_over(&from, &address, &request).await
    }

    /// On the primary's node: demotes its copy of the volume (what it
    /// admitted completes and is settled on the replicas; what comes now
    /// ends NOT READY, transitioning), then commits the move, saying
    /// whether its copy stays in sync. A move the cluster refuses leaves
    /// the primary serving again.
    pub(super) async fn hand_over_here(&self, request: HandOver) -> Result<String, ApiError> {
        // Refused before anything stops: what the move itself would be refused for.
        let trial = self.promotion(&request, false, None);
        self.dry_run_here(&trial).await?;
        // I/O is held from the demotion on.
        let started = tokio::time::Instant::now();
        let demoted =
            self.engine.demote(&request.volume, HAND_OVER).await.map_err(|e| ApiError::conflict(e.to_string()))?;
        if demoted.epoch.0 != request.epoch {
            self.resume(&request.volume).await;
            let message =
                format!("The primary of {} is at epoch {}, not {}.", request.volume, demoted.epoch.0, request.epoch);
            return Err(ApiError::conflict(message));
        }
        let held_ms = request.held_before_ms.saturating_add(started.elapsed().as_millis() as u64);
        let proposal = self.promotion(&request, demoted.drained && demoted.settled, Some(held_ms));
        match self.cluster.propose(proposal).await {
            Ok(Ok(applied)) => {
                let detail = applied.detail.unwrap_or_default();
                Ok(format!("{detail}; the old primary drained in {} ms", demoted.took.as_millis()))
            }
            Ok(Err(e)) => {
                // Refused when applied: nothing moved.
                self.resume(&request.volume).await;
                Err(e)
            }
            Err(e) => {
                // Not known to be committed. Serving again is safe either
                // way: if the move did commit, the new epoch fences this
                // copy, and a copy that served after its demotion is never
                // trusted as settled.
                self.resume(&request.volume).await;
                Err(e)
            }
        }
    }

    fn promotion(&self, request: &HandOver, handed_over: bool, held_ms: Option<u64>) -> Proposal {
        let cause = match request.why {
            MoveWhy::Failback => PromoteCause::Failback { handed_over },
            MoveWhy::Planned => PromoteCause::Planned { by: request.by.clone(), handed_over },
            MoveWhy::PortalsDown => PromoteCause::PortalsDown { node: self.node_name.clone(), handed_over },
        };
        let (volume, epoch, to) = (request.volume.clone(), request.epoch, request.to);
        Proposal::now(Change::Promote { volume, epoch, to, cause, held_ms })
    }

    async fn resume(&self, volume: &str) {
        if let Err(e) = self.engine.resume(volume).await {
            tracing::warn!(volume, error = %e, "cannot serve again after a hand-over that did not happen");
        }
    }
}

/// The nodes that may take over `volume`, best first: in-sync copies on
/// online nodes, those with a running target exporting the volume first.
pub(super) async fn successors(pool: &sqlx::SqlitePool, volume: &str) -> Result<Vec<(i64, String)>, ApiError> {
    let candidates: Vec<(i64, String, bool)> = sqlx::query_as(
        "SELECT c.node_id, n.name, EXISTS (SELECT 1 FROM luns l JOIN targets t ON t.group_id = l.group_id \
                 JOIN target_groups g ON g.id = t.group_id \
                 WHERE l.volume_id = v.id AND t.node_id = c.node_id AND g.state = 'running') AS exported \
             FROM volumes v JOIN volume_copies c ON c.volume_id = v.id JOIN nodes n ON n.id = c.node_id \
             WHERE v.name = ? AND c.in_sync AND n.state = 'online' ORDER BY exported DESC, c.node_id",
    )
    .bind(volume)
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    Ok(candidates.into_iter().map(|(id, name, _)| (id, name)).collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use portico_app::model::storage::Command;
    use serde_json::json;

    use super::*;
    use crate::storage::commands;
    use crate::storage::proposal::{self, Here};
    use crate::storage::quotas::Limits;
    use crate::storage::secret_box::SecretBox;

    async fn apply(pool: &sqlx::SqlitePool, here: &Here<'_>, change: Change) -> Result<(), String> {
        let mut proposal = proposal::decide(change, here).map_err(|e| e.message)?;
        if let Change::Storage(Command::CreateVolume(_)) = &proposal.change {
            proposal.decided.node_id = Some(1);
            proposal.decided.copies = vec![2];
        }
        let mut tx = pool.begin().await.unwrap();
        let answer = commands::apply(proposal, &mut tx).await.map(|_| ()).map_err(|e| e.message);
        tx.commit().await.unwrap();
        answer
    }

    /// A move `minutes` ago, as the timeline keeps it.
    async fn moved(pool: &sqlx::SqlitePool, kind: &str, from: &str, to: &str, minutes: i64) {
        sqlx::query(
            "INSERT INTO volume_moves (volume, at, kind, from_node, to_node, epoch, cause) \
             VALUES ('r', strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?), ?, ?, ?, 9, 'test')",
        )
        .bind(format!("-{minutes} minutes"))
        .bind(kind)
        .bind(from)
        .bind(to)
        .execute(pool)
        .await
        .unwrap();
    }

    /// CLUSTER.md §3, failback: a volume created on n1 and failed over to
    /// n2 is due back on n1 once n1 is online with its copy in sync, with
    /// the failbacks and the failovers from n1 of the last 10 minutes
    /// counted (older ones are not); never with automatic failback off.
    #[tokio::test]
    async fn a_failed_over_volume_is_due_back_on_its_preferred_node() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::open(dir.path()).await.unwrap();
        let secrets = SecretBox::open_or_create(dir.path()).unwrap();
        let limits = Limits::default();
        let here = Here { node_id: 1, secrets: &secrets, limits: &limits, data_dir: dir.path() };
        for n in 1..=2 {
            let interfaces = BTreeMap::from([("eth0".to_string(), vec![format!("10.0.0.{n}")])]);
            let member =
                proposal::Membership { replication_addr: Some(format!("10.0.1.{n}:3270")), ..Default::default() };
            apply(&pool, &here, Change::RegisterNode { name: format!("n{n}"), interfaces, member }).await.unwrap();
        }
        let create = json!({"command": "create_volume", "name": "r", "size": "64MiB", "replicas": 2});
        apply(&pool, &here, Change::Storage(serde_json::from_value(create).unwrap())).await.unwrap();
        assert!(failback_candidates(&pool).await.unwrap().is_empty(), "on its preferred node already");

        let offline = |online| Change::SetNodeState { name: "n1".into(), online };
        apply(&pool, &here, offline(false)).await.unwrap();
        let cause = PromoteCause::NodeOffline { node: "n1".into() };
        apply(&pool, &here, Change::Promote { volume: "r".into(), epoch: 1, to: 2, cause, held_ms: Some(4321) })
            .await
            .unwrap();
        let timeline = crate::storage::views::moves(&pool, Some("r"), None).await.unwrap();
        assert_eq!((timeline[0].kind.as_str(), timeline[0].held_ms), ("failover", Some(4321)));
        // A failover decided on an offline mark undone before it applied.
        let stale = PromoteCause::NodeOffline { node: "n2".into() };
        let refused =
            apply(&pool, &here, Change::Promote { volume: "r".into(), epoch: 2, to: 1, cause: stale, held_ms: None })
                .await;
        let refused = refused.expect_err("n2 is online: no failover from it");
        assert!(refused.contains("no failover for n2 being offline"), "{refused}");
        assert!(failback_candidates(&pool).await.unwrap().is_empty(), "n1 is offline, its copy out of sync");
        apply(&pool, &here, offline(true)).await.unwrap();
        assert!(failback_candidates(&pool).await.unwrap().is_empty(), "n1's copy is not in sync yet");
        let mark = Change::MarkCopy { volume: "r".into(), epoch: 2, node_id: 1, in_sync: true };
        apply(&pool, &here, mark).await.unwrap();
        let due = failback_candidates(&pool).await.unwrap();
        assert_eq!(due, [("r".to_string(), 1, "n1".to_string(), None, 0, 1)], "one failover from n1 counted");

        moved(&pool, "failover", "n1", "n2", 11).await;
        moved(&pool, "failback", "n2", "n1", 12).await;
        let counts = |due: Vec<FailbackCandidate>| (due[0].4, due[0].5);
        assert_eq!(counts(failback_candidates(&pool).await.unwrap()), (0, 1), "older than 10 minutes: not counted");
        moved(&pool, "failback", "n2", "n1", 3).await;
        moved(&pool, "failover", "n1", "n2", 2).await;
        moved(&pool, "failover", "n1", "n2", 1).await;
        let (failbacks, flaps) = counts(failback_candidates(&pool).await.unwrap());
        assert_eq!((failbacks, flaps), (1, 3), "a failback and three failovers from n1 in the window");
        assert!(flaps >= FLAPS);

        // Planned switchovers: those of the last minute count.
        assert_eq!(recent_switchovers(&pool, "r").await.unwrap(), 0);
        moved(&pool, "switchover", "n1", "n2", 2).await;
        moved(&pool, "switchover", "n2", "n1", 0).await;
        moved(&pool, "switchover", "n1", "n2", 0).await;
        assert_eq!(recent_switchovers(&pool, "r").await.unwrap(), 2);

        let off = json!({"command": "update_volume", "name": "r", "patch": {"auto_failback": false}});
        apply(&pool, &here, Change::Storage(serde_json::from_value(off).unwrap())).await.unwrap();
        assert!(failback_candidates(&pool).await.unwrap().is_empty(), "automatic failback off");
    }
}
