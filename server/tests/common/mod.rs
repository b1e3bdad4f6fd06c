//! A throw-away node for HTTP-level tests: its own SQLite database, engine
//! and data directory, and a way to send real HTTP requests through the same
//! router `portico serve` uses.
#![allow(dead_code)]

pub mod http;
pub mod storage;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use portico_app::service::SharedService;
use portico_server::service::{storage_status, Node, NodeSettings};
use portico_server::state::AppState;
use portico_server::storage::quotas::Limits;
use portico_server::storage::Storage;
use portico_server::throttle::LoginPolicy;
use serde_json::{json, Value};
use tower::ServiceExt;

pub const ADMIN_PASSWORD: &str = "admin-password-1";

pub struct TestNode {
    pub app: Router,
    pub dir: tempfile::TempDir,
    pub engine: target_engine::engine::Engine,
    pub storage: Arc<Storage>,
    pub options: Options,
    /// What creating the first administrator answered at this start.
    pub first_admin: Result<bool, portico_app::error::ApiError>,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub set_cookie: Option<String>,
}

/// How a test node is set up.
#[derive(Clone)]
pub struct Options {
    pub settings: NodeSettings,
    pub trusted_proxies: Vec<IpAddr>,
    pub limits: Limits,
    /// What `PORTICO_ADMIN_PASSWORD` would hold.
    pub admin_password: String,
}

impl Default for Options {
    fn default() -> Self {
        let mut settings = NodeSettings::new("test-node");
        // No waits between failures (the throttle's unit tests cover them):
        // tests send their attempts back to back.
        settings.login_policy = LoginPolicy { delay_step: Duration::ZERO, ..LoginPolicy::default() };
        Options {
            settings,
            trusted_proxies: Vec::new(),
            limits: Limits::default(),
            admin_password: ADMIN_PASSWORD.into(),
        }
    }
}

pub async fn node() -> TestNode {
    node_with(|_| {}).await
}

/// A fresh node set up as `configure` says.
pub async fn node_with(configure: impl FnOnce(&mut Options)) -> TestNode {
    let mut options = Options::default();
    configure(&mut options);
    start(tempfile::tempdir().unwrap(), options).await
}

/// A node over an existing data directory (first start or restart).
pub async fn node_in_dir(dir: tempfile::TempDir) -> TestNode {
    start(dir, Options::default()).await
}

async fn start(dir: tempfile::TempDir, options: Options) -> TestNode {
    let pool = portico_server::db::open(dir.path()).await.unwrap();
    let engine = target_engine::engine::Engine::new();
    let storage = Storage::start(
        pool.clone(),
        engine.clone(),
        dir.path().to_path_buf(),
        "test-node".into(),
        options.limits.clone(),
        portico_server::cluster::ClusterOptions { node_name: "test-node".into(), ..Default::default() },
    )
    .await
    .unwrap();
    let storage = Arc::new(storage);
    storage.follow_applied_changes();
    let node = Node::new(pool, options.settings.clone(), storage_status(storage.clone()), storage.cluster());
    let first_admin = node.ensure_first_admin(&options.admin_password).await;
    let leptos_options = leptos::config::LeptosOptions::builder()
        .output_name("portico")
        .site_root(dir.path().to_string_lossy().into_owned())
        .build();
    let state = AppState {
        service: Arc::new(node) as SharedService,
        storage: storage.clone(),
        leptos_options,
        secure_cookies: false,
        trusted_proxies: options.trusted_proxies.clone().into(),
    };
    TestNode { app: portico_server::web::router(state), dir, engine, storage, options, first_admin }
}

impl TestNode {
    /// Serves the node over TCP on a free loopback port, as `portico serve`
    /// does (with the peer address of each connection).
    pub async fn serve(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = self.app.clone().into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    /// Stops this node's engine and starts a new node on the same data directory.
    pub async fn restart(self) -> TestNode {
        self.restart_with(|_| {}).await
    }

    /// Restarts with changed options.
    pub async fn restart_with(self, change: impl FnOnce(&mut Options)) -> TestNode {
        self.engine.shutdown().await;
        let TestNode { dir, app, mut options, .. } = self;
        drop(app);
        change(&mut options);
        start(dir, options).await
    }

    pub async fn send(&self, method: Method, uri: &str, auth: Option<&str>, body: Option<Value>) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        match auth {
            Some(a) if a.starts_with("ptk_") => req = req.header(header::AUTHORIZATION, format!("Bearer {a}")),
            Some(cookie) => req = req.header(header::COOKIE, cookie),
            None => {}
        }
        let req = match body {
            Some(b) => req.header(header::CONTENT_TYPE, "application/json").body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let set_cookie = resp.headers().get(header::SET_COOKIE).map(|v| v.to_str().unwrap().to_string());
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply { status, body, set_cookie }
    }

    pub async fn login(&self, username: &str, password: &str) -> Reply {
        self.send(Method::POST, "/api/v1/login", None, Some(json!({"username": username, "password": password}))).await
    }

    /// Logs in and returns the `Cookie` header value for later requests.
    pub async fn session(&self, username: &str, password: &str) -> String {
        let r = self.login(username, password).await;
        assert_eq!(r.status, StatusCode::OK, "login of {username}: {:?}", r.body);
        let cookie = r.set_cookie.expect("a session cookie");
        cookie.split(';').next().unwrap().to_string()
    }

    pub async fn admin(&self) -> String {
        self.session("admin", ADMIN_PASSWORD).await
    }

    pub async fn create_user(&self, admin: &str, name: &str, role: &str) -> String {
        let password = format!("{name}-password");
        let r = self
            .send(
                Method::POST,
                "/api/v1/users",
                Some(admin),
                Some(json!({"username": name, "password": password, "role": role})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        self.session(name, &password).await
    }

    pub async fn audit(&self, auth: &str) -> Vec<Value> {
        let r = self.send(Method::GET, "/api/v1/audit?per_page=200", Some(auth), None).await;
        assert_eq!(r.status, StatusCode::OK);
        r.body["entries"].as_array().unwrap().clone()
    }
}
