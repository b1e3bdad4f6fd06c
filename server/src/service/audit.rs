//! Writing, sharing and reading the audit log.
//!
//! A node writes each record to its own `audit_log` at once, then shares
//! its records with the cluster in order (`cluster_audit`, see
//! `storage::commands::audit`). Reading on any node lists the cluster's
//! records and this node's own records it has not shared yet, so that a
//! change shows up in the log at once, and on every node soon after.

use std::time::Duration;

use portico_app::error::ApiError;
use portico_app::model::{AuditEntry, AuditPage, AuditResult, Role};
use portico_app::service::Caller;

use super::{db_error, Node};
use crate::storage::commands::audit::{clip, clip_record, MAX_SHARED};
use crate::storage::proposal::{Change, Proposal, SharedAuditRecord};

/// id, time, user, action, object, result, source, detail: a record of
/// this node's own log.
type OwnRow = (i64, String, String, String, String, String, Option<String>, Option<String>);

/// node, seq, time, user, action, object, result, source, detail.
type AuditRow = (String, i64, String, String, String, String, String, Option<String>, Option<String>);

/// How often a node looks for records to share, and how long it waits
/// after the cluster could not take them.
const SHARE_PERIOD: Duration = Duration::from_secs(1);
const SHARE_RETRY: Duration = Duration::from_secs(3);

/// One entry to write.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub user: String,
    pub action: &'static str,
    pub object: String,
    pub result: AuditResult,
    pub source: Option<String>,
    pub detail: Option<String>,
}

impl AuditRecord {
    pub fn by(caller: &Caller, action: &'static str, object: impl Into<String>, result: AuditResult) -> Self {
        AuditRecord {
            user: caller.username.clone(),
            action,
            object: object.into(),
            result,
            source: caller.source.clone(),
            detail: None,
        }
    }

    pub fn system(action: &'static str, object: &str, result: AuditResult, detail: Option<&str>) -> Self {
        AuditRecord {
            user: "system".into(),
            action,
            object: object.into(),
            result,
            source: None,
            detail: detail.map(str::to_string),
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// Appends to the audit log. A failure to audit is logged, never hidden.
pub async fn write_audit(pool: &sqlx::SqlitePool, r: AuditRecord) {
    write_audit_batch(pool, vec![r]).await
}

/// Appends several entries in one transaction (one durable write).
pub async fn write_audit_batch(pool: &sqlx::SqlitePool, records: Vec<AuditRecord>) {
    if records.is_empty() {
        return;
    }
    let now = crate::db::now();
    let result: Result<(), sqlx::Error> = async {
        let mut tx = pool.begin().await?;
        for r in &records {
            // Fields as long as a request made them (a path parameter, a
            // message) are cut, so that the cluster takes every record.
            sqlx::query(
                "INSERT INTO audit_log (time, username, action, object, result, source, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&now)
            .bind(clip(&r.user))
            .bind(r.action)
            .bind(clip(&r.object))
            .bind(r.result.as_str())
            .bind(r.source.as_deref().map(clip))
            .bind(r.detail.as_deref().map(clip))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }
    .await;
    if let Err(e) = &result {
        for r in &records {
            tracing::error!(error = %e, action = r.action, object = %clip(&r.object), "cannot write the audit log");
        }
    }
    for r in &records {
        tracing::info!(user = %clip(&r.user), action = r.action, object = %clip(&r.object), result = r.result.as_str(), "audit");
    }
}

/// Ends a read-only transaction.
async fn discard_read(tx: sqlx::Transaction<'_, sqlx::Sqlite>) {
    if let Err(e) = tx.rollback().await {
        tracing::warn!(error = %e, "cannot end a read of the audit log");
    }
}

/// The id of the last record of node `origin` the cluster has.
async fn last_shared(pool: &sqlx::SqlitePool, origin: u64) -> Result<i64, sqlx::Error> {
    let (seq,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(seq), 0) FROM cluster_audit WHERE origin = ?")
        .bind(origin as i64)
        .fetch_one(pool)
        .await?;
    Ok(seq)
}

/// Shares the next batch of this node's records; how many it shared.
async fn share_next(pool: &sqlx::SqlitePool, cluster: &crate::cluster::Cluster, node: &str) -> Result<usize, ApiError> {
    let origin = cluster.node_id();
    let after = last_shared(pool, origin).await.map_err(db_error)?;
    let rows: Vec<OwnRow> = sqlx::query_as(
        "SELECT id, time, username, action, object, result, source, detail FROM audit_log \
         WHERE id > ? ORDER BY id LIMIT ?",
    )
    .bind(after)
    .bind(MAX_SHARED as i64)
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    let records: Vec<SharedAuditRecord> = rows
        .into_iter()
        .map(|(seq, time, user, action, object, result, source, detail)| {
            clip_record(SharedAuditRecord { seq, time, user, action, object, result, source, detail })
        })
        .collect();
    let count = records.len();
    if count > 0 {
        let change = Change::ShareAudit { origin, node: node.to_string(), records };
        cluster.propose(Proposal::now(change)).await??;
    }
    Ok(count)
}

/// Shares this node's audit records with the cluster for as long as the
/// process runs: a full batch is followed at once by the next, and a
/// cluster without a leader is asked again later (the records wait in this
/// node's own log meanwhile).
pub fn share_with_cluster(pool: sqlx::SqlitePool, cluster: crate::cluster::Cluster, node: String) {
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            match share_next(&pool, &cluster, &node).await {
                Ok(count) => {
                    if failing {
                        tracing::info!("audit records are shared with the cluster again");
                        failing = false;
                    }
                    if count == MAX_SHARED {
                        continue;
                    }
                    tokio::time::sleep(SHARE_PERIOD).await;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e.message, "cannot share audit records with the cluster yet; they wait here");
                        failing = true;
                    }
                    tokio::time::sleep(SHARE_RETRY).await;
                }
            }
        }
    });
}

impl Node {
    pub(crate) async fn record(&self, r: AuditRecord) {
        write_audit(&self.pool, r).await
    }

    /// Checks the caller's role for a change; a refusal is audited.
    pub(crate) async fn authorize(
        &self,
        caller: &Caller,
        needed: Role,
        action: &'static str,
        object: &str,
        what: &str,
    ) -> Result<(), ApiError> {
        if let Err(e) = caller.require(needed, what) {
            self.record(
                AuditRecord::by(caller, action, object, AuditResult::Denied)
                    .detail(format!("role {} lacks {}", caller.role, needed)),
            )
            .await;
            return Err(e);
        }
        Ok(())
    }

    pub(crate) async fn audit_impl(&self, caller: &Caller, page: u32, per_page: u32) -> Result<AuditPage, ApiError> {
        caller.require(Role::Viewer, "read the audit log")?;
        let per_page = per_page.clamp(1, 200);
        let page = page.max(1);
        let offset = i64::from(page - 1) * i64::from(per_page);
        let origin = self.cluster.node_id() as i64;
        // The cluster's records, and this node's own not shared yet, read in
        // one transaction: records shared meanwhile are counted once.
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let (total,): (i64,) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM cluster_audit) + (SELECT COUNT(*) FROM audit_log \
               WHERE id > (SELECT COALESCE(MAX(seq), 0) FROM cluster_audit WHERE origin = ?))",
        )
        .bind(origin)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT node, seq, time, username, action, object, result, source, detail FROM ( \
               SELECT node, seq, time, username, action, object, result, source, detail FROM cluster_audit \
               UNION ALL \
               SELECT ? AS node, id AS seq, time, username, action, object, result, source, detail \
                 FROM audit_log WHERE id > (SELECT COALESCE(MAX(seq), 0) FROM cluster_audit WHERE origin = ?) \
             ) ORDER BY time DESC, node, seq DESC LIMIT ? OFFSET ?",
        )
        .bind(&self.settings.node_name)
        .bind(origin)
        .bind(i64::from(per_page))
        .bind(offset)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        discard_read(tx).await;
        let entries = rows
            .into_iter()
            .map(|(node, id, time, user, action, object, result, source, detail)| AuditEntry {
                id,
                node,
                time,
                user,
                action,
                object,
                result: AuditResult::parse(&result),
                source,
                detail,
            })
            .collect();
        Ok(AuditPage { entries, page, per_page, total: total as u64 })
    }
}
