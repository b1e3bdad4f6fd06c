//! The `portico` client subcommands against a node served over TCP: each
//! command family builds or reads what it should, and each kind of refusal
//! (bad value, conflict, not found, not allowed, no credentials, nothing
//! listening) prints the API's message and exits with its code. Also
//! `/metrics`: refused without a token, the Prometheus text with one.

mod common;

use std::net::SocketAddr;
use std::process::Output;

use axum::http::{Method, StatusCode};
use common::storage::{free_port, get};
use serde_json::{json, Value};

struct Cli {
    url: String,
    token: String,
}

impl Cli {
    async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_portico"));
        command
            .args(args)
            .env("PORTICO_URL", &self.url)
            .env("PORTICO_TOKEN", &self.token)
            .env_remove("PORTICO_TOKEN_FILE")
            .env_remove("PORTICO_FINGERPRINT")
            .env_remove("PORTICO_CA_FILE");
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().await.expect("the portico binary runs")
    }

    /// Runs and expects success; returns what it printed.
    async fn ok(&self, args: &[&str]) -> String {
        self.ok_with(args, &[]).await
    }

    async fn ok_with(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.run(args, env).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "portico {args:?} failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        stdout
    }

    /// Runs and expects a refusal with this exit code; returns stderr.
    async fn refused(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args, &[]).await;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "portico {args:?}: {stderr}{}", String::from_utf8_lossy(&out.stdout));
        stderr
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        serde_json::from_str(&self.ok(&with_json).await).expect("--json prints JSON")
    }
}

async fn token(node: &common::TestNode, auth: &str) -> String {
    let r = node.send(Method::POST, "/api/v1/tokens", Some(auth), Some(json!({"name": "cli"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body["token"].as_str().unwrap().to_string()
}

async fn client(node: &common::TestNode, auth: &str) -> (Cli, SocketAddr) {
    let addr = node.serve().await;
    (Cli { url: format!("http://{addr}"), token: token(node, auth).await }, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_builds_a_group_from_scratch_with_the_cli() {
    let node = common::node().await;
    let admin = node.admin().await;
    let (cli, _) = client(&node, &admin).await;
    let portal = format!("127.0.0.1:{}", free_port());

    // Volumes.
    assert!(cli.ok(&["volume", "create", "vol1", "--size", "64MiB"]).await.contains("Created the volume vol1."));
    cli.ok(&["volume", "create", "vol2", "--size", "32MiB", "--write-cache", "write-back"]).await;
    let list = cli.ok(&["volume", "list"]).await;
    assert!(list.contains("vol1") && list.contains("64 MiB") && list.contains("write-back"), "{list}");
    cli.ok(&["volume", "update", "vol1", "--size", "128MiB", "--iops-limit", "5000"]).await;
    let vol1 = cli.json(&["volume", "show", "vol1"]).await;
    assert_eq!((vol1["size"].as_u64(), vol1["iops_limit"].as_u64()), (Some(128 << 20), Some(5000)));

    // CHAP users; the secret comes from the environment, never from the command line.
    cli.ok_with(
        &["chap-user", "create", "esx", "--description", "ESXi hosts"],
        &[("PORTICO_CHAP_SECRET", "esxsecret1234")],
    )
    .await;
    assert!(cli.ok(&["chap-user", "list"]).await.contains("ESXi hosts"));

    // A group with a target, CHAP, LUNs and an ACL rule.
    let target = format!("test-node={portal}");
    cli.ok(&["target-group", "create", "g1", "--target", &target, "--chap", "one-way", "--chap-user", "esx"]).await;
    assert!(cli.ok(&["target-group", "lun", "attach", "g1", "vol1"]).await.contains("as LUN 0"));
    cli.ok(&["target-group", "lun", "attach", "g1", "vol2", "--lun", "5"]).await;
    cli.ok(&["target-group", "acl", "add", "g1", "iqn.1998-01.com.vmware:esx1", "--luns", "0,5"]).await;
    cli.ok(&["target-group", "acl", "update", "g1", "iqn.1998-01.com.vmware:esx1", "--luns", "all", "--alias", "esx1"])
        .await;
    cli.ok(&[
        "target-group",
        "acl",
        "add",
        "g1",
        "iqn.1991-05.com.microsoft:win1",
        "--privilege",
        "target_cold_reset=true",
    ])
    .await;
    let e = cli
        .refused(
            &["target-group", "acl", "add", "g1", "iqn.1991-05.com.microsoft:win2", "--privilege", "reboot=true"],
            2,
        )
        .await;
    assert!(e.contains("target_cold_reset"), "{e}");
    cli.ok(&["target-group", "update", "g1", "--acl", "on"]).await;
    cli.ok(&["target-group", "session", "set", "g1", "max_burst_length=262144", "immediate_data=false"]).await;
    cli.ok(&["target-group", "privileges", "set", "g1", "set_target_port_groups=false"]).await;

    let g1 = cli.json(&["target-group", "show", "g1"]).await;
    assert_eq!(g1["acl_enabled"], json!(true));
    assert_eq!(g1["chap"]["user"], json!("esx"));
    assert_eq!(g1["luns"].as_array().map(Vec::len), Some(2));
    let rule =
        |initiator: &str| g1["acl"].as_array().unwrap().iter().find(|r| r["initiator"] == initiator).cloned().unwrap();
    assert_eq!(rule("iqn.1998-01.com.vmware:esx1")["alias"], json!("esx1"));
    assert_eq!(rule("iqn.1998-01.com.vmware:esx1")["luns"], Value::Null, "all LUNs");
    assert_eq!(rule("iqn.1991-05.com.microsoft:win1")["privileges"]["target_cold_reset"], json!(true));
    let session = cli.json(&["target-group", "session", "show", "g1"]).await;
    assert_eq!(session["offered"]["max_burst_length"], json!(262144));
    assert_eq!(session["offered"]["immediate_data"], json!(false));
    let privileges = cli.json(&["target-group", "privileges", "show", "g1"]).await;
    assert_eq!(privileges["effective"]["set_target_port_groups"], json!(false));
    let targets = cli.ok(&["target-group", "target", "list", "g1"]).await;
    assert!(targets.contains("iqn.2026-11.local.portico:g1.test-node") && targets.contains(&portal), "{targets}");
    assert!(cli.ok(&["target-group", "list"]).await.contains("one-way"));
    assert!(cli.ok(&["target-group", "connections", "g1"]).await.contains("(none)"));

    // The API sees the same group the CLI built.
    let (status, api) = get(&node, &admin, "/api/v1/target-groups/g1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api["luns"], g1["luns"]);

    // Stop, start, take apart.
    cli.ok(&["target-group", "stop", "g1"]).await;
    assert_eq!(cli.json(&["target-group", "show", "g1"]).await["state"], json!("stopped"));
    cli.ok(&["target-group", "start", "g1"]).await;
    cli.ok(&["target-group", "acl", "remove", "g1", "iqn.1998-01.com.vmware:esx1"]).await;
    cli.ok(&["target-group", "acl", "update", "g1", "iqn.1991-05.com.microsoft:win1", "--group-privileges"]).await;
    let g1 = cli.json(&["target-group", "show", "g1"]).await;
    assert_eq!(g1["acl"][0]["privileges"], Value::Null, "back to the group's");
    cli.ok(&["target-group", "lun", "detach", "g1", "5"]).await;
    cli.ok(&["volume", "delete", "vol2"]).await;
    let e = cli.refused(&["target-group", "delete", "g1"], 7).await;
    assert!(e.contains("detach them first"), "{e}");
    cli.ok(&["target-group", "delete", "g1", "--force"]).await;
    cli.ok(&["volume", "delete", "vol1"]).await;
    cli.ok(&["chap-user", "delete", "esx"]).await;
    assert_eq!(cli.json(&["target-group", "list"]).await, json!([]));

    // Discovery, nodes, the cluster, the overview, the audit log.
    cli.ok(&["discovery", "set", "--chap", "none"]).await;
    assert_eq!(cli.json(&["discovery", "show"]).await["chap"]["mode"], json!("none"));
    assert!(cli.ok(&["node", "list"]).await.contains("test-node"));
    assert_eq!(cli.json(&["node", "show", "test-node"]).await["state"], json!("online"));
    cli.ok(&["node", "update", "test-node", "--maintenance", "on"]).await;
    assert_eq!(cli.json(&["node", "show", "test-node"]).await["state"], json!("maintenance"));
    let e = cli.refused(&["volume", "create", "vol9", "--size", "16MiB"], 7).await;
    assert!(e.contains("maintenance"), "{e}");
    cli.ok(&["node", "update", "test-node", "--maintenance", "off"]).await;
    let e = cli.refused(&["node", "update", "test-node", "--interface", "eth9"], 2).await;
    assert!(e.contains("IFACE=TYPE"), "{e}");
    assert_eq!(cli.json(&["cluster", "status"]).await["role"], json!("leader"));
    assert!(cli.ok(&["overview"]).await.contains("engine.state"));
    assert_eq!(cli.json(&["whoami"]).await["username"], json!("admin"));
    let audit = cli.ok(&["audit", "--per-page", "100"]).await;
    assert!(audit.contains("target-group.create") && audit.contains("volume.delete"), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_manages_users_and_tokens_with_the_cli() {
    let node = common::node().await;
    let admin = node.admin().await;
    let (cli, _) = client(&node, &admin).await;

    cli.ok_with(&["user", "create", "vera", "--role", "viewer"], &[("PORTICO_USER_PASSWORD", "viewer-pass-1")]).await;
    cli.ok(&["user", "update", "vera", "--enabled", "off"]).await;
    let users = cli.json(&["user", "list"]).await;
    let vera = users.as_array().unwrap().iter().find(|u| u["username"] == "vera").unwrap().clone();
    assert_eq!((vera["role"].clone(), vera["enabled"].clone()), (json!("viewer"), json!(false)));
    cli.ok(&["user", "delete", "vera"]).await;

    // A token cannot create tokens: only a password login can.
    let refusal = cli.refused(&["token", "create", "second"], 5).await;
    assert!(refusal.contains("HTTP 403"), "{refusal}");
    let tokens = cli.json(&["token", "list"]).await;
    let id = tokens[0]["id"].as_i64().unwrap().to_string();
    assert!(cli.ok(&["token", "list"]).await.contains("cli"));
    // Revoking its own token: the next call is unauthenticated.
    cli.ok(&["token", "revoke", &id]).await;
    cli.refused(&["volume", "list"], 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refusal_prints_the_apis_message_and_exits_with_its_code() {
    let node = common::node().await;
    let admin = node.admin().await;
    let (cli, _) = client(&node, &admin).await;
    cli.ok(&["volume", "create", "vol1", "--size", "16MiB"]).await;

    // 422 with the field that is wrong.
    let e = cli.refused(&["volume", "create", "bad", "--size", "12parsecs"], 3).await;
    assert!(e.contains("HTTP 422") && e.contains("size:"), "{e}");
    // 409: exists.
    let e = cli.refused(&["volume", "create", "vol1", "--size", "16MiB"], 7).await;
    assert!(e.contains("already exists"), "{e}");
    // 404.
    let e = cli.refused(&["target-group", "show", "nope"], 6).await;
    assert!(e.contains("HTTP 404"), "{e}");
    // Caught before anything is sent: a misspelt setting, a missing secret.
    let e = cli.refused(&["target-group", "session", "set", "g1", "max_burst=1"], 2).await;
    assert!(e.contains("max_burst_length"), "{e}");
    let e = cli.refused(&["chap-user", "create", "esx", "--secret-env", "PORTICO_NO_SUCH_VARIABLE"], 2).await;
    assert!(e.contains("PORTICO_NO_SUCH_VARIABLE"), "{e}");
    // A viewer may read but not change: 403.
    let viewer = node.create_user(&admin, "vic", "viewer").await;
    let viewer_cli = Cli { url: cli.url.clone(), token: token(&node, &viewer).await };
    assert!(viewer_cli.ok(&["volume", "list"]).await.contains("vol1"));
    let e = viewer_cli.refused(&["volume", "delete", "vol1"], 5).await;
    assert!(e.contains("HTTP 403"), "{e}");
    // A wrong token: 401.
    let stranger = Cli { url: cli.url.clone(), token: "ptk_not-a-token".into() };
    stranger.refused(&["volume", "list"], 4).await;
    // Nothing listening.
    let nowhere = Cli { url: format!("http://127.0.0.1:{}", free_port()), token: cli.token.clone() };
    let e = nowhere.refused(&["volume", "list"], 1).await;
    assert!(e.contains("cannot connect"), "{e}");
    // No token at all, and a URL without a scheme: usage errors.
    let none = Cli { url: cli.url.clone(), token: String::new() };
    assert!(none.refused(&["volume", "list"], 2).await.contains("--token"));
    let bare = Cli { url: cli.url.trim_start_matches("http://").to_string(), token: cli.token.clone() };
    bare.refused(&["volume", "list"], 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_scripts_are_generated_by_clap() {
    let cli = Cli { url: String::new(), token: String::new() };
    let bash = cli.ok(&["completion", "bash"]).await;
    assert!(bash.contains("complete") && bash.contains("target-group"), "{}", &bash[..bash.len().min(300)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_a_token_and_report_each_volume() {
    let node = common::node().await;
    let admin = node.admin().await;
    let (cli, addr) = client(&node, &admin).await;
    cli.ok(&["volume", "create", "vol1", "--size", "16MiB"]).await;

    let anonymous = common::http::Call::new(Method::GET, "/metrics").send(addr).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let scraped = common::http::Call::new(Method::GET, "/metrics")
        .header("authorization", format!("Bearer {}", cli.token))
        .send(addr)
        .await;
    assert_eq!(scraped.status, StatusCode::OK);
    assert!(scraped.headers["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = scraped.body.as_str().expect("text").to_string();
    for line in [
        r#"portico_volume_size_bytes{node="test-node",volume="vol1"} 16777216"#,
        r#"portico_volume_commands_total{node="test-node",volume="vol1"} 0"#,
        r#"portico_node_state{node="test-node",state="online"} 1"#,
        r#"portico_raft_role{node="test-node",role="leader"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_trusts_an_https_node_by_its_fingerprint_only() {
    let node = common::node().await;
    let admin = node.admin().await;
    let tls = portico_server::https::DashboardTls::load(node.dir.path(), None, None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(portico_server::https::serve(listener, tls.config.clone(), node.app.clone(), std::future::pending()));
    let cli = Cli { url: format!("https://{addr}"), token: token(&node, &admin).await };

    // The fingerprint as the node prints it (colons, upper case).
    let printed = portico_server::https::colon_fingerprint(&tls.fingerprint);
    let out = cli.ok_with(&["volume", "list", "--fingerprint", &printed], &[]).await;
    assert!(out.contains("(none)"), "{out}");
    // Another certificate's fingerprint: refused before any request is sent.
    let other = "00".repeat(32);
    let e = cli.refused(&["volume", "list", "--fingerprint", &other], 1).await;
    assert!(e.contains("fingerprint"), "{e}");
    // No way to trust it: a usage error.
    let e = cli.refused(&["volume", "list"], 2).await;
    assert!(e.contains("--fingerprint"), "{e}");
}
