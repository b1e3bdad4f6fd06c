//! `/metrics`: the node's figures for Prometheus, in the OpenMetrics text
//! format that Prometheus scrapes (encoded by the `prometheus-client` crate).
//!
//! Every scrape reads the engine and the state database afresh, so the
//! figures are never older than the scrape and nothing is kept per scrape.
//! Counters are the engine's own since the process started (Prometheus's
//! `rate()` handles a restart). What is exported:
//!
//! - per volume this node serves: commands, bytes read and written, errors,
//!   a histogram of command latency, and its size;
//! - per target: its sessions (one connection each: the engine negotiates
//!   MaxConnections=1), plus discovery sessions and logins in progress;
//! - per replicated volume: this node's role and epoch, whether writes are
//!   suspended, and each replica's state and resync progress;
//! - the cluster as this node sees it: every node's state and its engine
//!   problems, this node's Raft role, term and applied index.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use portico_app::error::ApiError;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use target_engine::engine::{ReplicationStatus, VolumeStats};
use target_engine::scsi::{LatencyHistogram, BUCKET_BOUNDS_MICROS};

use crate::api::extract::Authed;
use crate::api::ApiFailure;
use crate::state::AppState;
use crate::storage::Storage;

/// `GET /metrics` on the dashboard's address: any signed-in user or API
/// token (a viewer's token is what a Prometheus server should carry).
pub async fn authenticated_scrape(State(state): State<AppState>, Authed(_): Authed) -> Response {
    scrape(&state.storage).await
}

/// A router that serves only `GET /metrics`, without credentials, for
/// `--metrics-addr`: an address that only the monitoring network reaches.
pub fn open_router(storage: Arc<Storage>) -> Router {
    Router::new()
        .route("/metrics", get(|State(storage): State<Arc<Storage>>| async move { scrape(&storage).await }))
        .with_state(storage)
}

async fn scrape(storage: &Storage) -> Response {
    match storage.metrics_snapshot().await {
        Ok(snapshot) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], encode(snapshot)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the figures for /metrics");
            ApiFailure(ApiError::new(500, format!("Cannot read the node's figures: {e}"))).into_response()
        }
    }
}

/// The content type of the text [`encode`] produces.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One node's state as the cluster's database has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    pub name: String,
    /// `online`, `offline` or `maintenance`.
    pub state: String,
    pub engine_problems: u64,
}

/// Everything one scrape reports, read at once.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub node: String,
    pub volumes: Vec<VolumeStats>,
    /// Target IQN → its sessions.
    pub target_sessions: BTreeMap<String, u64>,
    pub discovery_sessions: u64,
    pub logins_in_progress: u64,
    pub replication: Vec<ReplicationStatus>,
    pub nodes: Vec<NodeState>,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub raft_role: String,
    pub raft_term: u64,
    pub raft_applied_index: u64,
}

const NODE_STATES: [&str; 3] = ["online", "offline", "maintenance"];
const REPLICA_STATES: [&str; 6] = ["in-sync", "reconciling", "failing", "out-of-sync", "resyncing", "catching-up"];
const RAFT_ROLES: [&str; 5] = ["leader", "follower", "candidate", "learner", "shutdown"];

/// The snapshot as OpenMetrics text.
pub fn encode(snapshot: Snapshot) -> String {
    let mut registry = Registry::with_prefix("portico");
    registry.register_collector(Box::new(SnapshotCollector(snapshot)));
    let mut text = String::new();
    // Writing into a String cannot fail.
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encoding into a String");
    text
}

#[derive(Debug)]
struct SnapshotCollector(Snapshot);

/// A value that is already known at scrape time.
#[derive(Debug)]
enum Value {
    Counter(u64),
    Gauge(i64),
    Latency(LatencyHistogram),
}

impl EncodeMetric for Value {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        match self {
            Value::Counter(v) => encoder.encode_counter::<NoLabelSet, _, u64>(v, None),
            Value::Gauge(v) => encoder.encode_gauge(v),
            Value::Latency(h) => {
                let buckets: Vec<(f64, u64)> = BUCKET_BOUNDS_MICROS
                    .iter()
                    .map(|&micros| micros as f64 / 1e6)
                    .chain(std::iter::once(f64::INFINITY))
                    .zip(h.buckets.iter().copied())
                    .collect();
                encoder.encode_histogram::<NoLabelSet>(h.sum_micros as f64 / 1e6, h.count(), &buckets, None)
            }
        }
    }

    fn metric_type(&self) -> MetricType {
        match self {
            Value::Counter(_) => MetricType::Counter,
            Value::Gauge(_) => MetricType::Gauge,
            Value::Latency(_) => MetricType::Histogram,
        }
    }
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// One metric family: its name, help and every labelled value.
fn family<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels<'a>, Value)>,
) -> Result<(), std::fmt::Error> {
    let mut series = series.into_iter().peekable();
    let Some((_, first)) = series.peek() else { return Ok(()) };
    let mut metric = encoder.encode_descriptor(name, help, None, first.metric_type())?;
    for (labels, value) in series {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn flag(on: bool) -> Value {
    Value::Gauge(i64::from(on))
}

fn gauge(v: u64) -> Value {
    Value::Gauge(i64::try_from(v).unwrap_or(i64::MAX))
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let node = s.node.as_str();
        let per_volume = |f: fn(&VolumeStats) -> Value| {
            s.volumes.iter().map(move |v| (vec![("node", node), ("volume", v.volume.as_str())], f(v)))
        };
        family(
            &mut e,
            "volume_commands",
            "SCSI commands the volume received on this node.",
            per_volume(|v| Value::Counter(v.counters.commands)),
        )?;
        family(
            &mut e,
            "volume_read_bytes",
            "Bytes read from the volume by initiators on this node.",
            per_volume(|v| Value::Counter(v.counters.bytes_read)),
        )?;
        family(
            &mut e,
            "volume_written_bytes",
            "Bytes written to the volume by initiators on this node.",
            per_volume(|v| Value::Counter(v.counters.bytes_written)),
        )?;
        family(
            &mut e,
            "volume_errors",
            "Commands on the volume that ended in CHECK CONDITION (unit attentions not counted).",
            per_volume(|v| Value::Counter(v.counters.errors)),
        )?;
        family(
            &mut e,
            "volume_command_duration_seconds",
            "How long the volume's commands took, from dispatch to status.",
            per_volume(|v| Value::Latency(v.counters.latency)),
        )?;
        family(&mut e, "volume_size_bytes", "The volume's size.", per_volume(|v| gauge(v.size)))?;

        family(
            &mut e,
            "target_sessions",
            "iSCSI sessions logged in to the target on this node (one connection each).",
            s.target_sessions.iter().map(|(t, n)| (vec![("node", node), ("target", t.as_str())], gauge(*n))),
        )?;
        family(
            &mut e,
            "discovery_sessions",
            "Discovery sessions open on this node.",
            [(vec![("node", node)], gauge(s.discovery_sessions))],
        )?;
        family(
            &mut e,
            "logins_in_progress",
            "iSCSI connections on this node still in their login phase.",
            [(vec![("node", node)], gauge(s.logins_in_progress))],
        )?;

        family(
            &mut e,
            "replication_primary",
            "1 where this node holds the replicated volume's primary copy, 0 where it holds a replica.",
            s.replication
                .iter()
                .map(|r| (vec![("node", node), ("volume", r.volume.as_str())], flag(r.role == "primary"))),
        )?;
        family(
            &mut e,
            "replication_epoch",
            "The epoch of the replicated volume this node has applied.",
            s.replication.iter().map(|r| (vec![("node", node), ("volume", r.volume.as_str())], gauge(r.epoch))),
        )?;
        family(
            &mut e,
            "replication_suspended",
            "1 while the primary holds writes for want of in-sync copies.",
            s.replication
                .iter()
                .filter(|r| r.role == "primary")
                .map(|r| (vec![("node", node), ("volume", r.volume.as_str())], flag(r.suspended))),
        )?;
        let replicas = || s.replication.iter().flat_map(|r| r.replicas.iter().map(move |c| (r, c)));
        let names: Vec<(String, String)> = replicas().map(|(_, c)| (c.node.to_string(), c.state.clone())).collect();
        family(
            &mut e,
            "replica_state",
            "Each replica of a volume this node is primary of: 1 for its current state.",
            replicas().zip(&names).flat_map(|((r, _), (replica, state))| {
                REPLICA_STATES.iter().map(move |&st| {
                    (
                        vec![
                            ("node", node),
                            ("volume", r.volume.as_str()),
                            ("replica", replica.as_str()),
                            ("state", st),
                        ],
                        flag(state == st),
                    )
                })
            }),
        )?;
        family(
            &mut e,
            "replica_resync_left_bytes",
            "Bytes a replica still has to receive before it is in sync.",
            replicas().zip(&names).map(|((r, c), (replica, _))| {
                (
                    vec![("node", node), ("volume", r.volume.as_str()), ("replica", replica.as_str())],
                    gauge(c.left_bytes),
                )
            }),
        )?;
        family(
            &mut e,
            "replica_resync_copied_bytes",
            "Bytes copied to a replica by its current resync.",
            replicas().zip(&names).map(|((r, c), (replica, _))| {
                (
                    vec![("node", node), ("volume", r.volume.as_str()), ("replica", replica.as_str())],
                    gauge(c.copied_bytes),
                )
            }),
        )?;
        family(
            &mut e,
            "replica_resync_rate_bytes",
            "Bytes a second the current resync copies to a replica.",
            replicas().zip(&names).map(|((r, c), (replica, _))| {
                (
                    vec![("node", node), ("volume", r.volume.as_str()), ("replica", replica.as_str())],
                    gauge(c.resync_rate),
                )
            }),
        )?;

        family(
            &mut e,
            "node_state",
            "Each node of the cluster, as this node's copy of the cluster state has it: 1 for its current state.",
            s.nodes.iter().flat_map(|n| {
                NODE_STATES.iter().map(move |&st| (vec![("node", n.name.as_str()), ("state", st)], flag(n.state == st)))
            }),
        )?;
        family(
            &mut e,
            "node_engine_problems",
            "What a node's engine could not bring up (a portal it could not bind, a volume it could not open), as the node reported.",
            s.nodes.iter().map(|n| (vec![("node", n.name.as_str())], gauge(n.engine_problems))),
        )?;
        family(
            &mut e,
            "raft_role",
            "This node's role in the cluster's Raft: 1 for its current role.",
            RAFT_ROLES.iter().map(|&r| (vec![("node", node), ("role", r)], flag(s.raft_role == r))),
        )?;
        family(&mut e, "raft_term", "The Raft term this node is in.", [(vec![("node", node)], gauge(s.raft_term))])?;
        family(
            &mut e,
            "raft_applied_index",
            "The last cluster log entry this node applied.",
            [(vec![("node", node)], gauge(s.raft_applied_index))],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use target_engine::engine::ReplicaStatus;
    use target_engine::scsi::LuCounters;

    fn sample() -> Snapshot {
        let mut latency = LatencyHistogram::default();
        latency.buckets[0] = 3;
        latency.buckets[4] = 1;
        latency.sum_micros = 900;
        Snapshot {
            node: "n1".into(),
            volumes: vec![VolumeStats {
                volume: "vol1".into(),
                size: 1 << 30,
                counters: LuCounters { commands: 4, bytes_read: 8192, bytes_written: 4096, errors: 1, latency },
            }],
            target_sessions: BTreeMap::from([("iqn.2026-11.local.portico:g1.n1".to_string(), 2)]),
            discovery_sessions: 1,
            logins_in_progress: 0,
            replication: vec![ReplicationStatus {
                volume: "vol1".into(),
                role: "primary",
                epoch: 7,
                suspended: false,
                flushes: 0,
                replicas: vec![ReplicaStatus {
                    node: 2,
                    state: "resyncing".into(),
                    copied_bytes: 10,
                    left_bytes: 20,
                    matched_bytes: 0,
                    resync_rate: 5,
                }],
            }],
            nodes: vec![
                NodeState { name: "n1".into(), state: "online".into(), engine_problems: 0 },
                NodeState { name: "n2".into(), state: "offline".into(), engine_problems: 2 },
            ],
            raft_role: "leader".into(),
            raft_term: 3,
            raft_applied_index: 42,
        }
    }

    #[test]
    fn the_snapshot_is_exported_with_every_family_and_label() {
        let text = encode(sample());
        for line in [
            "# TYPE portico_volume_commands counter",
            r#"portico_volume_commands_total{node="n1",volume="vol1"} 4"#,
            r#"portico_volume_read_bytes_total{node="n1",volume="vol1"} 8192"#,
            r#"portico_volume_errors_total{node="n1",volume="vol1"} 1"#,
            "# TYPE portico_volume_command_duration_seconds histogram",
            r#"portico_volume_command_duration_seconds_bucket{le="0.00005",node="n1",volume="vol1"} 3"#,
            r#"portico_volume_command_duration_seconds_bucket{le="0.001",node="n1",volume="vol1"} 4"#,
            r#"portico_volume_command_duration_seconds_bucket{le="+Inf",node="n1",volume="vol1"} 4"#,
            r#"portico_volume_command_duration_seconds_count{node="n1",volume="vol1"} 4"#,
            r#"portico_target_sessions{node="n1",target="iqn.2026-11.local.portico:g1.n1"} 2"#,
            r#"portico_replica_state{node="n1",volume="vol1",replica="2",state="resyncing"} 1"#,
            r#"portico_replica_state{node="n1",volume="vol1",replica="2",state="in-sync"} 0"#,
            r#"portico_replica_resync_left_bytes{node="n1",volume="vol1",replica="2"} 20"#,
            r#"portico_node_state{node="n2",state="offline"} 1"#,
            r#"portico_node_engine_problems{node="n2"} 2"#,
            r#"portico_raft_role{node="n1",role="leader"} 1"#,
            r#"portico_raft_applied_index{node="n1"} 42"#,
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn a_family_without_values_is_left_out() {
        let text = encode(Snapshot { node: "n1".into(), raft_role: "leader".into(), ..Snapshot::default() });
        assert!(!text.contains("portico_volume_commands"), "{text}");
        assert!(text.contains(r#"portico_raft_role{node="n1",role="leader"} 1"#), "{text}");
    }
}
