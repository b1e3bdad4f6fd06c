//! Caps on what a node holds, so that a script in a loop (or a mistake)
//! cannot grow the database, the engine's tables or the disk without end:
//! volumes, target groups, targets, LUNs per group and ACL rules per group
//! are counted when one more is added, and the space volumes are promised
//! is weighed against the space they could have.
//!
//! Volumes are thin (sparse images), so the node may promise more than it
//! has: that is allowed and shown (the overview, the audit detail of the
//! change). `max_overprovision` is the ceiling: the provisioned total may be
//! at most that many times the space the images could use (what they hold
//! now plus what is free on their file system). Every refusal is a 422 that
//! says which limit and which setting.

use std::path::Path;

use portico_app::error::ApiError;
use portico_app::model::storage::format_size;
use portico_app::model::StorageCapacity;
use sqlx::SqliteConnection;

/// The caps of one node.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_volumes: u32,
    pub max_target_groups: u32,
    pub max_targets: u32,
    pub max_luns_per_group: u32,
    pub max_acl_rules_per_group: u32,
    /// Provisioned bytes / (bytes held + bytes free), at most; `None`: no ceiling.
    pub max_overprovision: Option<f64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_volumes: 1024,
            max_target_groups: 256,
            max_targets: 1024,
            max_luns_per_group: 256,
            max_acl_rules_per_group: 256,
            max_overprovision: None,
        }
    }
}

/// What is counted against a cap.
#[derive(Clone, Copy, Debug)]
pub enum Counted {
    Volumes,
    TargetGroups,
    Targets,
    /// LUNs in the group with this id.
    Luns(i64),
    /// ACL rules in the group with this id.
    AclRules(i64),
}

/// Refuses (422) if a change just made in `conn` took `what` past its cap.
pub async fn ensure_within(conn: &mut SqliteConnection, limits: &Limits, what: Counted) -> Result<(), ApiError> {
    let (sql, group, cap, things, setting) = match what {
        Counted::Volumes => ("SELECT COUNT(*) FROM volumes", None, limits.max_volumes, "volumes", "--max-volumes"),
        Counted::TargetGroups => (
            "SELECT COUNT(*) FROM target_groups",
            None,
            limits.max_target_groups,
            "target groups",
            "--max-target-groups",
        ),
        Counted::Targets => ("SELECT COUNT(*) FROM targets", None, limits.max_targets, "targets", "--max-targets"),
        Counted::Luns(g) => (
            "SELECT COUNT(*) FROM luns WHERE group_id = ?",
            Some(g),
            limits.max_luns_per_group,
            "LUNs in this group",
            "--max-luns-per-group",
        ),
        Counted::AclRules(g) => (
            "SELECT COUNT(*) FROM acl_rules WHERE group_id = ?",
            Some(g),
            limits.max_acl_rules_per_group,
            "ACL rules in this group",
            "--max-acl-rules",
        ),
    };
    let mut query = sqlx::query_as::<_, (i64,)>(sql);
    if let Some(g) = group {
        query = query.bind(g);
    }
    let (held,) = query.fetch_one(&mut *conn).await.map_err(|e| {
        tracing::error!(error = %e, "database error");
        ApiError::internal()
    })?;
    if held > i64::from(cap) {
        return Err(ApiError::new(
            422,
            format!("That would make {held} {things}; this node allows at most {cap} ({setting}). Remove some first."),
        ));
    }
    Ok(())
}

/// The space of the volumes on this node (each copy it holds), measured now.
pub async fn capacity(
    conn: &mut SqliteConnection,
    node_id: i64,
    data_dir: &Path,
    limits: &Limits,
) -> Result<StorageCapacity, ApiError> {
    let names: Vec<(String, i64)> = sqlx::query_as(
        "SELECT name, size FROM volumes WHERE node_id = ?1 \
         OR id IN (SELECT volume_id FROM volume_copies WHERE node_id = ?1)",
    )
    .bind(node_id)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "database error");
        ApiError::internal()
    })?;
    let provisioned = names.iter().map(|(_, size)| *size as u64).sum();
    let images: Vec<_> = names.iter().map(|(name, _)| super::volume_files::image_path(data_dir, name)).collect();
    let dir = super::volume_files::volumes_dir(data_dir);
    let (allocated, free) = tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::MetadataExt;
        // st_blocks counts 512-byte units whatever the file system's block size.
        let allocated: u64 = images.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.blocks() * 512).sum();
        let free = rustix::fs::statvfs(&dir).map(|s| s.f_bavail.saturating_mul(s.f_frsize)).unwrap_or(0);
        (allocated, free)
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "cannot measure the volumes' space");
        ApiError::internal()
    })?;
    Ok(StorageCapacity {
        provisioned_bytes: provisioned,
        allocated_bytes: allocated,
        free_bytes: free,
        max_overprovision_percent: limits.max_overprovision.map(percent),
    })
}

fn percent(ratio: f64) -> u32 {
    (ratio * 100.0).round().clamp(0.0, f64::from(u32::MAX)) as u32
}

/// Checks that `extra` more provisioned bytes stay under the ceiling, and
/// says, for the audit, when the node is then over-provisioned.
pub fn check_provision(cap: &StorageCapacity, extra: u64) -> Result<Option<String>, ApiError> {
    let backing = cap.allocated_bytes.saturating_add(cap.free_bytes);
    let total = cap.provisioned_bytes.saturating_add(extra);
    if let Some(max) = cap.max_overprovision_percent {
        let allowed = (u128::from(backing) * u128::from(max) / 100).min(u128::from(u64::MAX)) as u64;
        if total > allowed {
            return Err(ApiError::invalid_field(
                "size",
                format!(
                    "That would provision {} on {} of space ({}%); this node allows at most {max}% \
                     (--max-overprovision).",
                    format_size(total),
                    format_size(backing),
                    ratio_percent(total, backing)
                ),
            ));
        }
    }
    Ok((total > backing).then(|| {
        format!(
            "thin: {} provisioned on {} of space ({}%)",
            format_size(total),
            format_size(backing),
            ratio_percent(total, backing)
        )
    }))
}

fn ratio_percent(total: u64, backing: u64) -> u128 {
    if backing == 0 {
        return u128::from(u32::MAX);
    }
    u128::from(total) * 100 / u128::from(backing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(provisioned: u64, allocated: u64, free: u64, max: Option<u32>) -> StorageCapacity {
        StorageCapacity {
            provisioned_bytes: provisioned,
            allocated_bytes: allocated,
            free_bytes: free,
            max_overprovision_percent: max,
        }
    }

    #[test]
    fn thin_overprovisioning_is_allowed_and_told() {
        let gib = 1u64 << 30;
        assert_eq!(check_provision(&cap(gib, gib, 8 * gib, None), gib).unwrap(), None);
        let note = check_provision(&cap(8 * gib, gib, 4 * gib, None), 4 * gib).unwrap().unwrap();
        assert_eq!(note, "thin: 12 GiB provisioned on 5 GiB of space (240%)");
    }

    #[test]
    fn the_ceiling_refuses_with_the_setting_named() {
        let gib = 1u64 << 30;
        let c = cap(8 * gib, gib, 4 * gib, Some(200));
        assert!(check_provision(&c, 2 * gib).unwrap().is_some(), "10 GiB on 5 GiB is 200%: allowed");
        let e = check_provision(&c, 2 * gib + 1).unwrap_err();
        assert_eq!(e.status, 422);
        assert!(e.field("size").unwrap().contains("--max-overprovision"), "{e:?}");
        assert!(check_provision(&cap(0, 0, gib, Some(100)), gib + 1).is_err(), "100%: no over-provisioning");
    }
}
