//! The cluster's audit log (CLUSTER.md §1: the audit log is cluster-wide).
//!
//! Each node writes its records to its own `audit_log` first, so that
//! nothing waits on the cluster and nothing is lost while there is no
//! leader, then shares them in order ([`crate::service::audit`]). Applying
//! a share is idempotent: a batch proposed again after a lost answer adds
//! nothing twice.

use portico_app::error::ApiError;

use super::{db, field, Effects, Tx};
use crate::storage::proposal::SharedAuditRecord;

/// Most records in one share.
pub const MAX_SHARED: usize = 256;

/// Longest text of one field of a shared record; a node's own records are
/// far shorter.
const MAX_FIELD: usize = 4096;

fn check(r: &SharedAuditRecord) -> Result<(), String> {
    if !matches!(r.result.as_str(), "success" | "failure" | "denied") {
        return Err(format!("record {}: the result {:?} is not success, failure or denied", r.seq, r.result));
    }
    let texts = [Some(&r.time), Some(&r.user), Some(&r.action), Some(&r.object), r.source.as_ref(), r.detail.as_ref()];
    if texts.into_iter().flatten().any(|t| t.len() > MAX_FIELD) {
        return Err(format!("record {}: a field is longer than {MAX_FIELD} bytes", r.seq));
    }
    Ok(())
}

pub(super) async fn share(
    tx: &mut Tx<'_>,
    origin: u64,
    node: &str,
    records: &[SharedAuditRecord],
) -> Result<Effects, ApiError> {
    if records.len() > MAX_SHARED {
        return Err(field("records", format!("At most {MAX_SHARED} audit records are shared at once.")));
    }
    for r in records {
        check(r).map_err(|m| field("records", m))?;
    }
    let mut added = 0;
    for r in records {
        let done = sqlx::query(
            "INSERT INTO cluster_audit (origin, seq, node, time, username, action, object, result, source, detail) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (origin, seq) DO NOTHING",
        )
        .bind(origin as i64)
        .bind(r.seq)
        .bind(node)
        .bind(&r.time)
        .bind(&r.user)
        .bind(&r.action)
        .bind(&r.object)
        .bind(&r.result)
        .bind(&r.source)
        .bind(&r.detail)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        added += done.rows_affected();
    }
    Ok(Effects { detail: Some(format!("{added} audit records of {node}")), ..Default::default() })
}
