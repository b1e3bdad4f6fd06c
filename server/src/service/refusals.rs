//! Refused logins — a locked address or user name, a source still waiting
//! after its failures, a login already in progress from it, no free turn to
//! hash — cost no password hashing and could come by the thousand. Each is
//! counted here in memory, per source and user name, and the counts are
//! written to the audit log as one `login.refused` entry per source and
//! name per period, in one transaction: a flood of refused requests costs no
//! durable write each, and the audit log stays readable.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use portico_app::model::AuditResult;

use super::AuditRecord;

/// Distinct (source, user name) pairs counted per period; more are counted
/// together under "others".
const MAX_KEYS: usize = 1000;

#[derive(Debug)]
struct Tally {
    count: u64,
    first: String,
    last: String,
    reasons: BTreeSet<&'static str>,
}

#[derive(Debug, Default)]
pub struct RefusalTally {
    counts: Mutex<BTreeMap<(String, String), Tally>>,
}

impl RefusalTally {
    /// Counts one refused login of `user` from `source`.
    pub fn note(&self, source: Option<&str>, user: &str, reason: &'static str) {
        let now = crate::db::now();
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = (source.unwrap_or("-").to_string(), user.chars().take(64).collect::<String>());
        if !counts.contains_key(&key) && counts.len() >= MAX_KEYS {
            key = ("others".into(), "*".into());
        }
        let t = counts.entry(key).or_insert_with(|| Tally {
            count: 0,
            first: now.clone(),
            last: now.clone(),
            reasons: BTreeSet::new(),
        });
        t.count += 1;
        t.last = now;
        t.reasons.insert(reason);
    }

    /// The audit entries for what was counted since the last call.
    pub fn take(&self) -> Vec<AuditRecord> {
        let counts = std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()));
        counts
            .into_iter()
            .map(|((source, user), t)| {
                let reasons = t.reasons.into_iter().collect::<Vec<_>>().join(", ");
                AuditRecord {
                    user: if user.is_empty() { "-".into() } else { user.clone() },
                    action: "login.refused",
                    object: format!("user/{user}"),
                    result: AuditResult::Denied,
                    source: (source != "-").then_some(source),
                    detail: Some(format!("{} logins refused from {} to {} ({reasons})", t.count, t.first, t.last)),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_per_source_and_name_and_taken_once() {
        let t = RefusalTally::default();
        for _ in 0..50 {
            t.note(Some("10.0.0.1"), "admin", "user name locked");
        }
        t.note(Some("10.0.0.1"), "admin", "waiting after failures");
        t.note(Some("10.0.0.2"), "admin", "address locked");
        let entries = t.take();
        assert_eq!(entries.len(), 2);
        let first = &entries[0];
        assert_eq!(first.source.as_deref(), Some("10.0.0.1"));
        let detail = first.detail.as_deref().unwrap();
        assert!(detail.starts_with("51 logins refused"), "{detail}");
        assert!(detail.contains("user name locked") && detail.contains("waiting"), "{detail}");
        assert!(t.take().is_empty(), "counted once");
    }

    #[test]
    fn the_number_of_entries_is_bounded() {
        let t = RefusalTally::default();
        for i in 0..(MAX_KEYS + 500) {
            t.note(Some(&format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256)), "admin", "address locked");
        }
        let entries = t.take();
        assert_eq!(entries.len(), MAX_KEYS + 1);
        let others = entries.iter().find(|e| e.source.as_deref() == Some("others")).unwrap();
        assert!(others.detail.as_deref().unwrap().starts_with("500 logins"));
    }
}
