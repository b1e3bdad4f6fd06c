//! Writing and reading the audit log.

use portico_app::error::ApiError;
use portico_app::model::{AuditEntry, AuditPage, AuditResult, Role};
use portico_app::service::Caller;

use super::{db_error, Node};

/// id, time, user, action, object, result, source, detail.
type AuditRow = (i64, String, String, String, String, String, Option<String>, Option<String>);

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
            sqlx::query(
                "INSERT INTO audit_log (time, username, action, object, result, source, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&now)
            .bind(&r.user)
            .bind(r.action)
            .bind(&r.object)
            .bind(r.result.as_str())
            .bind(&r.source)
            .bind(&r.detail)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }
    .await;
    if let Err(e) = &result {
        for r in &records {
            tracing::error!(error = %e, action = r.action, object = %r.object, "cannot write the audit log");
        }
    }
    for r in &records {
        tracing::info!(user = %r.user, action = r.action, object = %r.object, result = r.result.as_str(), "audit");
    }
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
        let (total,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM audit_log").fetch_one(&self.pool).await.map_err(db_error)?;
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT id, time, username, action, object, result, source, detail FROM audit_log ORDER BY id DESC LIMIT ? OFFSET ?",
        )
        .bind(i64::from(per_page))
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let entries = rows
            .into_iter()
            .map(|(id, time, user, action, object, result, source, detail)| AuditEntry {
                id,
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
