//! What a member may propose through another (`/cluster/propose`): a change
//! that speaks for one node only from that node, and what only the leader
//! decides never from anyone else.
//!
//! - A node registers itself, reports its own engine and shares its own
//!   audit records: the name and Raft id in the change must be the
//!   caller's.
//! - A copy's sync mark comes from the volume's primary: the caller's node
//!   must hold the volume's primary as the leader has applied it (the
//!   mark's epoch compare-and-set still decides).
//! - Admissions (the join checks the token's secret first), a node's
//!   online or offline state (the leader's liveness) and the replacement of
//!   a lost copy (the leader's controller) are the leader's own proposals,
//!   never a forwarded one.
//!
//! Everything else an authenticated member forwards for a user of its
//! dashboard or API (the user's role was checked there), or for the
//! controller of a volume it serves.

use portico_app::error::ApiError;
use sqlx::SqlitePool;

use super::transport::FromMember;
use crate::storage::proposal::Change;

/// Refuses (403) a change the caller may not propose.
pub(super) async fn check(pool: &SqlitePool, caller: &FromMember, change: &Change) -> Result<(), ApiError> {
    let own = |name: &str, what: &str| -> Result<(), ApiError> {
        if name == caller.name() {
            Ok(())
        } else {
            Err(refuse(caller, what))
        }
    };
    match change {
        Change::RegisterNode { name, member, .. } => {
            own(name, "register a node")?;
            caller.must_be(member.raft_id.unwrap_or(caller.raft_id()), "register a node")
        }
        Change::ReportEngine { name, .. } => own(name, "report an engine"),
        Change::ShareAudit { origin, node, .. } => {
            own(node, "share audit records")?;
            caller.must_be(*origin, "share audit records")
        }
        Change::MarkCopy { volume, .. } => {
            let primary: Option<(Option<i64>,)> =
                sqlx::query_as("SELECT n.raft_id FROM volumes v JOIN nodes n ON n.id = v.node_id WHERE v.name = ?")
                    .bind(volume)
                    .fetch_optional(pool)
                    .await
                    .map_err(|_| ApiError::internal())?;
            match primary {
                Some((Some(raft_id),)) if raft_id as u64 == caller.raft_id() => Ok(()),
                // A volume that is gone: the mark is refused when applied.
                None => Ok(()),
                _ => Err(refuse(caller, "mark the copies of a volume it is not the primary of")),
            }
        }
        Change::AdmitNode { .. } | Change::SetNodeState { .. } | Change::ReplaceCopy { .. } => {
            Err(refuse(caller, "propose what only the leader decides"))
        }
        _ => Ok(()),
    }
}

fn refuse(caller: &FromMember, what: &str) -> ApiError {
    tracing::warn!(caller = caller.raft_id(), node = caller.name(), what, "a member's proposal was refused");
    ApiError::new(403, format!("A member may not {what}."))
}
