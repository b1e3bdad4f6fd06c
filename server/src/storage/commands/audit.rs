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

/// Longest text of one field of a record, in bytes: longer ones are cut
/// when written ([`clip`]), so that no request, however long its path or
/// body, makes a record the cluster refuses to take.
pub const MAX_FIELD: usize = 4096;

/// What ends a field that was cut.
const CUT: &str = "…";

/// `text` if it is at most [`MAX_FIELD`] bytes; else its longest start
/// that fits with the mark of the cut (never splitting a character).
pub fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_FIELD {
        return text.into();
    }
    let mut end = MAX_FIELD - CUT.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{CUT}", &text[..end]).into()
}

/// `r` with every text field clipped: what a node shares, also of records
/// written before fields were clipped, so that one long record never
/// holds the rest of its batch back.
pub fn clip_record(r: SharedAuditRecord) -> SharedAuditRecord {
    let own = |t: String| clip(&t).into_owned();
    SharedAuditRecord {
        time: own(r.time),
        user: own(r.user),
        action: own(r.action),
        object: own(r.object),
        source: r.source.map(own),
        detail: r.detail.map(own),
        ..r
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(object: String, detail: Option<String>) -> SharedAuditRecord {
        SharedAuditRecord {
            seq: 7,
            time: "2026-12-07T21:00:00Z".into(),
            user: "viewer".into(),
            action: "volume.switchover".into(),
            object,
            result: "denied".into(),
            source: Some("10.0.0.9".into()),
            detail,
        }
    }

    #[test]
    fn a_long_field_is_cut_at_a_character_and_marked() {
        assert_eq!(clip("volume/vol1"), "volume/vol1");
        let exact = "a".repeat(MAX_FIELD);
        assert_eq!(clip(&exact), exact.as_str(), "a field of exactly the limit stays whole");
        // Three-byte characters: the cut falls inside one unless it backs off.
        let long = "€".repeat(MAX_FIELD);
        let cut = clip(&long);
        assert!(cut.len() <= MAX_FIELD, "{} bytes", cut.len());
        assert!(cut.ends_with(CUT));
        assert!(cut.trim_end_matches(CUT).chars().all(|c| c == '€'));
        assert!(cut.len() > MAX_FIELD - 8, "no more is cut than needed");
    }

    /// Finding 4 of issue 30: a viewer's refused request with a path of
    /// 10,000 bytes made a record whose share was refused whole, and
    /// retried for ever, so none of the node's later records reached the
    /// cluster.
    #[test]
    fn a_record_from_a_very_long_request_no_longer_blocks_its_batch() {
        let long = record(format!("volume/{}", "x".repeat(10_000)), Some("d".repeat(9_000)));
        assert!(check(&long).is_err(), "the cluster refuses what is not clipped");
        let clipped = clip_record(long);
        assert_eq!(check(&clipped), Ok(()));
        assert!(clipped.object.starts_with("volume/xxx") && clipped.object.len() <= MAX_FIELD);
        assert_eq!(clipped.seq, 7, "only the texts change");
        assert_eq!(clipped.result, "denied");
    }
}
