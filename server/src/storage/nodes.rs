//! This node in the database: its name and real network interfaces.

use std::collections::BTreeMap;
use std::net::IpAddr;

use sqlx::SqlitePool;

/// Traffic types a newly seen interface carries until an operator changes them.
const DEFAULT_TRAFFIC: &[&str] = &["iscsi", "management"];

/// The traffic types an interface may carry.
pub const TRAFFIC_TYPES: &[&str] = &["iscsi", "management", "replication", "cluster"];

/// Interfaces of this machine with their addresses (loopback included, so a
/// node can be tried on one machine).
pub fn local_interfaces() -> BTreeMap<String, Vec<IpAddr>> {
    let mut out: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    match if_addrs::get_if_addrs() {
        Ok(list) => {
            for i in list {
                out.entry(i.name.clone()).or_default().push(i.ip());
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list network interfaces"),
    }
    out
}

/// Registers (or refreshes) the local node and its interfaces. Addresses are
/// refreshed at each start; traffic types chosen by an operator are kept.
pub async fn register_local(
    pool: &SqlitePool,
    name: &str,
    interfaces: &BTreeMap<String, Vec<IpAddr>>,
) -> sqlx::Result<i64> {
    let now = crate::db::now();
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE nodes SET is_local = 0 WHERE name <> ?").bind(name).execute(&mut *tx).await?;
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO nodes (name, state, is_local, last_heartbeat) VALUES (?, 'online', 1, ?) \
         ON CONFLICT (name) DO UPDATE SET state = 'online', is_local = 1, last_heartbeat = excluded.last_heartbeat RETURNING id",
    )
    .bind(name)
    .bind(&now)
    .fetch_one(&mut *tx)
    .await?;
    for (ifname, addrs) in interfaces {
        let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        sqlx::query(
            "INSERT INTO interfaces (node_id, name, addresses, traffic_types) VALUES (?, ?, ?, ?) \
             ON CONFLICT (node_id, name) DO UPDATE SET addresses = excluded.addresses",
        )
        .bind(id)
        .bind(ifname)
        .bind(serde_json::to_string(&addrs).unwrap_or_default())
        .bind(serde_json::to_string(DEFAULT_TRAFFIC).unwrap_or_default())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(id)
}

/// Whether `ip` belongs to one of `addresses` (an interface holding 127.0.0.1
/// answers for all of 127.0.0.0/8, as Linux's loopback does).
pub fn address_matches(addresses: &[String], ip: IpAddr) -> bool {
    addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()).any(|a| {
        a == ip || (matches!((a, ip), (IpAddr::V4(a4), IpAddr::V4(i4)) if a4.is_loopback() && i4.is_loopback()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_covers_its_whole_range() {
        let lo = vec!["127.0.0.1".to_string(), "::1".to_string()];
        assert!(address_matches(&lo, "127.0.0.1".parse().unwrap()));
        assert!(address_matches(&lo, "127.0.2.1".parse().unwrap()));
        assert!(!address_matches(&lo, "10.0.0.1".parse().unwrap()));
        let eth = vec!["192.168.1.5".to_string()];
        assert!(address_matches(&eth, "192.168.1.5".parse().unwrap()));
        assert!(!address_matches(&eth, "192.168.1.6".parse().unwrap()));
    }
}
