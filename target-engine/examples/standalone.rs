//! Runs the engine from a TOML file until Ctrl-C:
//! `cargo run -p target-engine --example standalone -- engine.toml`

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: standalone CONFIG.toml");
        std::process::exit(2);
    };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(e) = target_engine::run_standalone(std::path::Path::new(&path), stop).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
