//! `portico volume …`, `portico target-group …` and the other client
//! subcommands: every action of the REST API from a shell, against any node.
//!
//! Each subcommand is one API call (a few read first, to name what they
//! change). Bodies are built from the API's own model types, so the CLI and
//! the API cannot drift apart. The answer is printed as a table, or as the
//! API's JSON with `--json`. A refusal prints the API's message and exits
//! with a code chosen by its HTTP status ([`exit_code`]).

pub mod args;
mod calls;
pub mod http;
mod output;

use std::path::PathBuf;

pub use args::ClientCommand;
use http::{Api, CallError};

/// How to reach a node; accepted before or after the action.
#[derive(Debug, clap::Args)]
pub struct Connection {
    /// The node's dashboard address.
    #[arg(long, global = true, value_name = "URL", env = "PORTICO_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An API token (the dashboard's Tokens page, or `portico token create`).
    /// Prefer PORTICO_TOKEN or --token-file: a command line is visible to
    /// other users of the machine.
    #[arg(long, global = true, value_name = "TOKEN", env = "PORTICO_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the API token (--token, if given too, wins).
    #[arg(long, global = true, value_name = "FILE", env = "PORTICO_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// For an https node: the SHA-256 fingerprint of its certificate, as
    /// the node prints it at start (trusts that certificate only).
    #[arg(long, global = true, value_name = "SHA256", env = "PORTICO_FINGERPRINT")]
    pub fingerprint: Option<String>,
    /// For an https node: a CA certificate (PEM) that issued its certificate.
    #[arg(long, global = true, value_name = "FILE", env = "PORTICO_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Connection {
    fn api(&self) -> anyhow::Result<Api> {
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("cannot read the token file {}: {e}", file.display()))?,
            (None, None) => String::new(),
        };
        let trust = http::Trust { fingerprint: self.fingerprint.clone(), ca_file: self.ca_file.clone() };
        Api::new(&self.url, token, &trust)
    }
}

/// The process's exit code for a refusal with this HTTP status: scripts can
/// tell "not there" from "not allowed" from "try again".
pub fn exit_code(status: u16) -> i32 {
    match status {
        400 | 413 | 415 | 422 => 3,
        401 => 4,
        403 => 5,
        404 => 6,
        409 => 7,
        429 | 503 => 8,
        _ => 1,
    }
}

/// Runs one client subcommand; returns the process's exit code.
pub async fn run(command: ClientCommand) -> i32 {
    let (api, json) = (command.connection().api(), command.connection().json);
    let api = match api {
        Ok(api) => api,
        Err(e) => {
            eprintln!("portico: {e:#}");
            return 2;
        }
    };
    match calls::execute(&api, command).await {
        Ok(answer) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&answer.json).unwrap_or_default());
            } else {
                print!("{}", answer.render());
            }
            0
        }
        Err(CallError::Refused(e)) => {
            eprintln!("portico: {} (HTTP {})", e.message, e.status);
            for (field, why) in &e.fields {
                eprintln!("  {field}: {why}");
            }
            exit_code(e.status)
        }
        Err(CallError::Usage(e)) => {
            eprintln!("portico: {e}");
            2
        }
        Err(CallError::Transport(e)) => {
            eprintln!("portico: {e:#}");
            1
        }
    }
}
