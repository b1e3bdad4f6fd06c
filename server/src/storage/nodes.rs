//! This node in the database: its name and real network interfaces.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// Traffic types a newly seen interface carries until an operator changes them.
pub const DEFAULT_TRAFFIC: &[&str] = &["iscsi", "management"];

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

/// This machine's interfaces as a node reports them when it registers.
pub fn local_interface_addresses() -> BTreeMap<String, Vec<String>> {
    local_interfaces()
        .into_iter()
        .map(|(name, addrs)| (name, addrs.iter().map(ToString::to_string).collect()))
        .collect()
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
