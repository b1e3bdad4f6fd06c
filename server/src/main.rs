//! `portico`: the node binary.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use portico_app::service::SharedService;
use portico_server::cli::{Cli, Command, EngineArgs, ServeArgs};
use portico_server::service::{storage_status, Node, NodeSettings};
use portico_server::state::AppState;
use portico_server::storage::Storage;
use tracing_subscriber::EnvFilter;

/// Memory freed after a burst (a flood of 8 MiB reads, say) goes back to
/// the system within moments; with glibc's allocator it stayed with the
/// process (measured with `scripts/flood.sh`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    if matches!(cli.command, Command::Serve(_) | Command::Engine(_)) {
        // A flood of connections must meet the engine's caps, not the
        // process's descriptor limit (which the database and files need too).
        match target_engine::portal::raise_open_file_limit() {
            Ok((old, new)) if new > old => tracing::info!(from = old, to = new, "raised the open-file limit"),
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Engine(args) => runtime.block_on(engine(args)),
        Command::Completion { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "portico",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Client(command) => std::process::exit(runtime.block_on(portico_server::client::run(command))),
    }
}

/// Resolves when SIGINT or SIGTERM arrives.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

fn default_site_root() -> PathBuf {
    if let Some(dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join("site"))) {
        if dir.join("pkg").is_dir() {
            return dir;
        }
    }
    PathBuf::from("target/site")
}

fn host_name() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let node_name = args.node_name.clone().unwrap_or_else(host_name);
    let pool = portico_server::db::open(&args.data_dir)
        .await
        .with_context(|| format!("cannot open the database in {}", args.data_dir.display()))?;
    tracing::info!(data_dir = %args.data_dir.display(), node = %node_name, "database ready");

    let engine = target_engine::engine::Engine::new();
    let cluster = args.cluster_options(&node_name)?;
    let rebuild_after = cluster.rebuild_after;
    let failback_after = cluster.failback_after;
    let storage = Storage::start(
        pool.clone(),
        engine.clone(),
        args.data_dir.clone(),
        node_name.clone(),
        args.limits.limits(),
        cluster,
    )
    .await
    .context("cannot bring up the cluster and the stored storage configuration")?;
    let storage = Arc::new(storage);
    storage.follow_applied_changes();
    storage.rebuild_lost_copies(rebuild_after);
    storage.fail_over_lost_primaries(failback_after);
    storage.watch_portals();
    let checks: std::sync::Weak<dyn portico_server::cluster::node_checks::NodeChecks> = Arc::downgrade(&storage) as _;
    storage.cluster().serve_node_checks(checks);
    let node =
        Node::new(pool, NodeSettings::new(node_name.clone()), storage_status(storage.clone()), storage.cluster());
    let (password, generated) = match std::env::var("PORTICO_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => (p, false),
        _ => (portico_server::secrets::random_password(), true),
    };
    match node.ensure_first_admin(&password).await {
        Ok(true) if generated => {
            eprintln!(
                "\n  First start: created the user 'admin' with the password\n\n      {password}\n\n  \
                 It is shown only this once. Log in and change it on the Users page.\n"
            );
        }
        Ok(true) => tracing::info!("created the user 'admin' with the password from PORTICO_ADMIN_PASSWORD"),
        Ok(false) if !generated => tracing::info!("users exist: PORTICO_ADMIN_PASSWORD is not used"),
        Ok(false) => {}
        Err(e) => anyhow::bail!("cannot create the first administrator: {} {:?}", e.message, e.fields),
    }

    let site_root = args.site_root.clone().unwrap_or_else(default_site_root);
    if !site_root.join("pkg").is_dir() {
        tracing::warn!(site_root = %site_root.display(), "no built dashboard here (pkg/ missing): pages render but will not hydrate; build with `cargo leptos build`");
    }
    let leptos_options = leptos::config::LeptosOptions::builder()
        .output_name("portico")
        .site_root(site_root.to_string_lossy().into_owned())
        .site_pkg_dir("pkg")
        .site_addr(args.http)
        .build();
    if let Some(address) = args.metrics_addr {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen for /metrics on {address}"))?;
        tracing::info!(address = %listener.local_addr()?, "serving /metrics without credentials");
        let metrics = portico_server::metrics::open_router(storage.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, metrics).await {
                tracing::error!(error = %e, "the /metrics listener stopped");
            }
        });
    }
    let https = match args.serves_https() {
        true => Some(
            portico_server::https::DashboardTls::load(
                &args.data_dir,
                args.tls_cert.as_deref(),
                args.tls_key.as_deref(),
            )
            .context("cannot set up HTTPS")?,
        ),
        false => None,
    };
    let node = Arc::new(node);
    let state = AppState {
        service: node.clone() as SharedService,
        storage,
        leptos_options,
        secure_cookies: args.secure_cookies || https.is_some(),
        trusted_proxies: args.trusted_proxies.clone().into(),
    };
    let app = portico_server::web::router(state);

    let listener =
        tokio::net::TcpListener::bind(args.http).await.with_context(|| format!("cannot listen on {}", args.http))?;
    let address = listener.local_addr()?;
    match https {
        Some(tls) => {
            let fingerprint = portico_server::https::colon_fingerprint(&tls.fingerprint);
            eprintln!(
                "\n  The dashboard is at https://{address}/\n  Its certificate ({}) has the SHA-256 fingerprint\n\n      {fingerprint}\n\n  \
                 A browser warns about a self-signed certificate until it is trusted: check that the\n  \
                 fingerprint it shows is this one. The CLI takes it as --fingerprint.\n",
                tls.source
            );
            tracing::info!(%address, node = %node_name, %fingerprint, "portico is serving: open https://{address}/");
            portico_server::https::serve(listener, tls.config, app, shutdown_signal()).await;
        }
        None => {
            tracing::info!(%address, node = %node_name, "portico is serving: open http://{address}/");
            axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .with_graceful_shutdown(shutdown_signal())
                .await?;
        }
    }
    node.flush_refusals().await;
    engine.shutdown().await;
    Ok(())
}

async fn engine(args: EngineArgs) -> anyhow::Result<()> {
    // SIGHUP reloads the configuration file.
    let (reload, reloads) = tokio::sync::mpsc::channel(1);
    let mut hangups =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            // A reload already queued covers this one too.
            let _ = reload.try_send(());
        }
    });
    target_engine::run_standalone(&args.config, shutdown_signal(), reloads)
        .await
        .with_context(|| format!("the engine stopped with an error (config {})", args.config.display()))
}
