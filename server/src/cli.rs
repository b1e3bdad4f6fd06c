//! Command-line interface of the `portico` binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::storage::quotas::Limits;

#[derive(Debug, Parser)]
#[command(name = "portico", version, about = "Portico: an iSCSI SAN run from the browser")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: the dashboard and REST API (and, later, its iSCSI targets).
    ///
    /// On first start the database is created in the data directory and, if no
    /// user exists, the user `admin` with the password from
    /// PORTICO_ADMIN_PASSWORD (or a random one, printed once).
    Serve(ServeArgs),
    /// Run the iSCSI target engine alone, configured from a TOML file (SIGHUP reloads it).
    Engine(EngineArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    #[command(flatten)]
    Client(crate::client::ClientCommand),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address the dashboard and API listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080", env = "PORTICO_HTTP")]
    pub http: SocketAddr,
    /// Directory for the database and other state (created if missing).
    #[arg(long, value_name = "DIR", default_value = "./portico-data", env = "PORTICO_DATA_DIR")]
    pub data_dir: PathBuf,
    /// This node's name in the cluster (default: the host name).
    #[arg(long, value_name = "NAME", env = "PORTICO_NODE_NAME")]
    pub node_name: Option<String>,
    /// Directory of the built dashboard (`pkg/`, static files). Default:
    /// LEPTOS_SITE_ROOT, else `site` next to the binary, else `target/site`.
    #[arg(long, value_name = "DIR", env = "LEPTOS_SITE_ROOT")]
    pub site_root: Option<PathBuf>,
    /// Serve HTTPS with this certificate (PEM, the chain from the node's
    /// own certificate up). Renewal is a restart with the new files.
    #[arg(long, value_name = "FILE", env = "PORTICO_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", env = "PORTICO_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS on a loopback address too (with the node's self-signed
    /// certificate unless --tls-cert is given). Other addresses always get
    /// HTTPS unless --plain-http.
    #[arg(long)]
    pub https: bool,
    /// Serve plain HTTP on an address other than loopback (behind a
    /// TLS-terminating proxy, say): passwords and session cookies then
    /// cross the network readable.
    #[arg(long, conflicts_with_all = ["tls_cert", "https"])]
    pub plain_http: bool,
    /// Mark cookies Secure: set when the node is reached over HTTPS (for
    /// example behind a TLS-terminating proxy). Requests that arrive with
    /// `X-Forwarded-Proto: https` get Secure cookies in any case.
    #[arg(long)]
    pub secure_cookies: bool,
    /// A reverse proxy in front of the node (repeat for each, or a comma
    /// separated list): from these peers the client's address is taken from
    /// X-Forwarded-For, and the host the browser addressed from
    /// X-Forwarded-Host. Without it every client behind a proxy counts as
    /// the proxy's address for login throttling.
    #[arg(long = "trusted-proxy", value_name = "IP", env = "PORTICO_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The address this node serves the cluster channel on (node to node,
    /// HTTP/2 with mutual TLS): an IP other nodes can dial, and a port.
    /// Without it the node is a cluster of one.
    #[arg(long, value_name = "IP:PORT", env = "PORTICO_CLUSTER_ADDR")]
    pub cluster_addr: Option<SocketAddr>,
    /// Where this node listens for the cluster channel when other nodes
    /// dial another address to reach it (a port forward or NAT in
    /// between). Defaults to --cluster-addr. Its certificate names the IP
    /// of --cluster-addr: what dials that address must reach this node.
    #[arg(long, value_name = "IP:PORT", env = "PORTICO_CLUSTER_LISTEN", requires = "cluster_addr")]
    pub cluster_listen: Option<SocketAddr>,
    /// The address this node takes replication streams on from the
    /// primaries of volumes it keeps copies of (the `replication` traffic
    /// type): an IP other nodes can dial, and a port. Defaults to the
    /// cluster address's IP, port 3270.
    #[arg(long, value_name = "IP:PORT", env = "PORTICO_REPLICATION_ADDR", requires = "cluster_addr")]
    pub replication_addr: Option<SocketAddr>,
    /// Where this node listens for replication streams when primaries dial
    /// another address to reach it (a port forward or NAT in between).
    /// Defaults to the replication address.
    #[arg(long, value_name = "IP:PORT", env = "PORTICO_REPLICATION_LISTEN", requires = "cluster_addr")]
    pub replication_listen: Option<SocketAddr>,
    /// How long a node keeping a copy of a replicated volume may be offline
    /// before, if this node leads, the copy is made again on another node.
    #[arg(long, value_name = "SECONDS", default_value_t = 600, env = "PORTICO_REBUILD_AFTER")]
    pub rebuild_after: u64,
    /// How long a replicated volume's preferred node must have been online
    /// and in sync before, if this node leads, the volume's primary returns
    /// to it (failback; at most once per volume in 10 minutes).
    #[arg(long, value_name = "SECONDS", default_value_t = 60, env = "PORTICO_FAILBACK_AFTER")]
    pub failback_after: u64,
    /// On first start, join the cluster of the member at this cluster
    /// address (https://IP:PORT) instead of creating a cluster.
    #[arg(long, value_name = "URL", requires = "token", requires = "cluster_addr")]
    pub join: Option<String>,
    /// The join token an admin created on any member (the API's
    /// POST /api/v1/cluster/join-tokens, or the Nodes page). Prefer the
    /// environment variable: a command line is visible to other users.
    #[arg(long, value_name = "TOKEN", env = "PORTICO_JOIN_TOKEN", hide_env_values = true, requires = "join")]
    pub token: Option<String>,
    /// Also serve Prometheus's `/metrics` on this address, without
    /// credentials (give an address only the monitoring network reaches).
    /// On the dashboard's address `/metrics` always asks for a token.
    #[arg(long, value_name = "ADDR", env = "PORTICO_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Where a node takes replication streams unless told otherwise.
const DEFAULT_REPLICATION_PORT: u16 = 3270;

impl ServeArgs {
    /// Whether the dashboard is served over HTTPS: when a certificate is
    /// given or asked for, and on any address but loopback unless plain
    /// HTTP is asked for there.
    pub fn serves_https(&self) -> bool {
        self.tls_cert.is_some() || self.https || !(self.http.ip().is_loopback() || self.plain_http)
    }

    /// How the node takes part in the cluster.
    pub fn cluster_options(&self, node_name: &str) -> anyhow::Result<crate::cluster::ClusterOptions> {
        let join = match (&self.join, &self.token) {
            (Some(url), Some(token)) => Some(crate::cluster::JoinOptions {
                url: url.clone(),
                token: crate::cluster::join::JoinToken::parse(token)?,
            }),
            _ => None,
        };
        if let Some(address) = self.cluster_addr {
            anyhow::ensure!(
                !address.ip().is_unspecified() && address.port() != 0,
                "--cluster-addr {address}: give the IP and port other nodes dial to reach this one"
            );
        }
        let replication_addr = match (self.replication_addr, self.cluster_addr) {
            (Some(address), _) => {
                anyhow::ensure!(
                    !address.ip().is_unspecified() && address.port() != 0,
                    "--replication-addr {address}: give the IP and port other nodes dial to reach this one"
                );
                Some(address)
            }
            (None, Some(cluster)) => Some(SocketAddr::new(cluster.ip(), DEFAULT_REPLICATION_PORT)),
            (None, None) => None,
        };
        Ok(crate::cluster::ClusterOptions {
            node_name: node_name.to_string(),
            cluster_addr: self.cluster_addr,
            cluster_listen: self.cluster_listen,
            replication_addr,
            replication_listen: self.replication_listen,
            rebuild_after: std::time::Duration::from_secs(self.rebuild_after),
            failback_after: std::time::Duration::from_secs(self.failback_after),
            join,
        })
    }
}

/// Caps on what the node holds (see the README's "Limits").
#[derive(Debug, clap::Args)]
pub struct LimitArgs {
    /// Volumes at most.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_volumes, env = "PORTICO_MAX_VOLUMES")]
    pub max_volumes: u32,
    /// Target groups at most.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_target_groups, env = "PORTICO_MAX_TARGET_GROUPS")]
    pub max_target_groups: u32,
    /// Targets at most, over all groups.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_targets, env = "PORTICO_MAX_TARGETS")]
    pub max_targets: u32,
    /// LUNs in one target group at most.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_luns_per_group, env = "PORTICO_MAX_LUNS_PER_GROUP")]
    pub max_luns_per_group: u32,
    /// ACL rules in one target group at most.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_acl_rules_per_group, env = "PORTICO_MAX_ACL_RULES")]
    pub max_acl_rules: u32,
    /// Ceiling on thin over-provisioning: the volumes' sizes added up may be
    /// at most RATIO times the space their images could use (held + free).
    /// 1 refuses any over-provisioning; without it there is no ceiling.
    #[arg(long, value_name = "RATIO", env = "PORTICO_MAX_OVERPROVISION", value_parser = positive_ratio)]
    pub max_overprovision: Option<f64>,
}

fn positive_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a ratio above 0, such as 1 or 2.5")),
    }
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            max_volumes: self.max_volumes,
            max_target_groups: self.max_target_groups,
            max_targets: self.max_targets,
            max_luns_per_group: self.max_luns_per_group,
            max_acl_rules_per_group: self.max_acl_rules,
            max_overprovision: self.max_overprovision,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct EngineArgs {
    /// Engine configuration (volumes, targets, CHAP, ACLs), TOML.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_has_sensible_defaults() {
        let cli = Cli::parse_from(["portico", "serve"]);
        let Command::Serve(args) = cli.command else { panic!("not serve") };
        assert_eq!(args.http.to_string(), "127.0.0.1:8080");
        assert_eq!(args.data_dir, PathBuf::from("./portico-data"));
        assert_eq!(args.limits.limits().max_volumes, Limits::default().max_volumes);
        assert_eq!(args.limits.max_overprovision, None);
    }

    #[test]
    fn https_is_the_default_but_on_loopback() {
        let serve = |args: &[&str]| {
            let cli = Cli::parse_from([&["portico", "serve"], args].concat());
            let Command::Serve(args) = cli.command else { panic!("not serve") };
            args.serves_https()
        };
        assert!(!serve(&[]));
        assert!(!serve(&["--http", "[::1]:8080"]));
        assert!(serve(&["--http", "0.0.0.0:8443"]));
        assert!(!serve(&["--http", "0.0.0.0:8080", "--plain-http"]));
        assert!(serve(&["--https"]));
        assert!(serve(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]));
        assert!(Cli::try_parse_from(["portico", "serve", "--tls-cert", "c.pem"]).is_err());
        assert!(Cli::try_parse_from(["portico", "serve", "--https", "--plain-http"]).is_err());
    }

    #[test]
    fn limits_are_settings() {
        let cli = Cli::parse_from(["portico", "serve", "--max-volumes", "3", "--max-overprovision", "1.5"]);
        let Command::Serve(args) = cli.command else { panic!("not serve") };
        assert_eq!(args.limits.limits().max_volumes, 3);
        assert_eq!(args.limits.limits().max_overprovision, Some(1.5));
        assert!(Cli::try_parse_from(["portico", "serve", "--max-overprovision", "0"]).is_err());
    }
}
