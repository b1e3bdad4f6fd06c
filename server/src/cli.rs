//! Command-line interface of the `portico` binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
    }
}
