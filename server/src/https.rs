//! HTTPS for the dashboard and the REST API (rustls, ring provider).
//!
//! The certificate is the one given with `--tls-cert` and `--tls-key`
//! (PEM; renewing it is a restart with the new files), or else one the node
//! makes for itself on first start and keeps in `<data>/tls/`: self-signed,
//! for the node's host name, `localhost` and its interfaces' addresses. Its
//! SHA-256 fingerprint is printed at every start, so that a user can check
//! what the browser shows and the CLI can pin it (`--fingerprint`).
//!
//! Serving: each connection's TLS handshake runs in its own task with a
//! deadline, at most [`HANDSHAKES`] at once, so a client that connects and
//! never speaks holds one place for 10 s and blocks nobody; at most
//! [`CONNECTIONS`] connections are served at once, and at most
//! [`PER_ADDRESS`] from one client address, so one client cannot take the
//! places of all the others. A connection with no request in progress for
//! [`IDLE`] is closed (gracefully: an HTTP/2 client is told to go away,
//! and opens a new one when it needs one), so places held by idle browsers
//! and by clients that open connections and park them come back. HTTP/1.1
//! and HTTP/2 are both offered (ALPN).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

const DIR: &str = "tls";
const CERT: &str = "dashboard.pem";
const KEY: &str = "dashboard.key";

/// TLS handshakes in progress at once.
pub const HANDSHAKES: usize = 128;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const CONNECTIONS: usize = 4096;
/// Connections served at once from one client address.
pub const PER_ADDRESS: usize = 128;
/// A connection with no request in progress for this long is closed.
pub const IDLE: Duration = Duration::from_secs(300);
/// An HTTP/1.1 request's headers must arrive within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection told to close may take to finish what it serves.
const CLOSING: Duration = Duration::from_secs(30);

/// The caps [`serve`] applies.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    pub handshakes: usize,
    pub connections: usize,
    pub per_address: usize,
    pub idle: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits { handshakes: HANDSHAKES, connections: CONNECTIONS, per_address: PER_ADDRESS, idle: IDLE }
    }
}

/// The certificate the node serves, ready for rustls.
pub struct DashboardTls {
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the certificate, lowercase hex.
    pub fingerprint: String,
    /// Where it came from, for the start-up message.
    pub source: String,
}

/// The fingerprint as browsers show it: uppercase hex pairs with colons.
pub fn colon_fingerprint(hex: &str) -> String {
    hex.as_bytes().chunks(2).map(|p| String::from_utf8_lossy(p).to_uppercase()).collect::<Vec<_>>().join(":")
}

impl DashboardTls {
    /// The given certificate and key, or the node's own (made on first start).
    pub fn load(data_dir: &Path, cert: Option<&Path>, key: Option<&Path>) -> anyhow::Result<Self> {
        let (cert_path, key_path, source) = match (cert, key) {
            (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf(), format!("{}", c.display())),
            (None, None) => {
                let (c, k) = own_certificate(data_dir)?;
                let source = format!("self-signed, {}", c.display());
                (c, k, source)
            }
            _ => anyhow::bail!("give both --tls-cert and --tls-key, or neither"),
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
            .with_context(|| format!("cannot read the certificate {}", cert_path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("{} holds no readable certificate: {e:?}", cert_path.display()))?;
        anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert_path.display());
        let key = PrivateKeyDer::from_pem_file(&key_path)
            .map_err(|e| anyhow::anyhow!("cannot read the private key {}: {e:?}", key_path.display()))?;
        let fingerprint = crate::cluster::tls::fingerprint(&chain[0]);
        let mut config = rustls::ServerConfig::builder_with_provider(crate::cluster::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .with_context(|| {
                format!("the key {} does not fit the certificate {}", key_path.display(), cert_path.display())
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(DashboardTls { config: Arc::new(config), fingerprint, source })
    }
}

/// `<data>/tls/dashboard.{pem,key}`, made now if missing.
fn own_certificate(data_dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = data_dir.join(DIR);
    let (cert, key) = (dir.join(CERT), dir.join(KEY));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    crate::data_dir::private_dir(&dir)?;
    let mut names = vec!["localhost".to_string()];
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    if !host.is_empty() && host != "localhost" {
        names.push(host);
    }
    let addresses: Vec<IpAddr> = crate::storage::nodes::local_interface_addresses()
        .into_values()
        .flatten()
        .filter_map(|a| a.parse().ok())
        .collect();
    let mut params = rcgen::CertificateParams::new(names).context("the node's names do not fit a certificate")?;
    params.subject_alt_names.extend(addresses.into_iter().map(rcgen::SanType::IpAddress));
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "Portico");
    dn.push(rcgen::DnType::CommonName, "Portico dashboard");
    params.distinguished_name = dn;
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(365 * 5);
    let key_pair = rcgen::KeyPair::generate().context("cannot make the dashboard's key")?;
    let certificate = params.self_signed(&key_pair).context("cannot make the dashboard's certificate")?;
    crate::data_dir::write_private(&key, &key_pair.serialize_pem())?;
    crate::data_dir::write_private(&cert, &certificate.pem())?;
    Ok((cert, key))
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves. Each
/// request carries the client's address as `ConnectInfo`, as with plain HTTP.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()>,
) {
    serve_with(listener, tls, app, shutdown, ServeLimits::default()).await
}

/// Connections per client address, each place given back when its
/// connection ends.
#[derive(Default)]
struct PerAddress {
    open: std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>,
}

struct AddressPlace {
    counts: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    fn take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<AddressPlace> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_default();
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(AddressPlace { counts: self.clone(), ip })
    }
}

impl Drop for AddressPlace {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// When a connection last had a request in progress.
struct Activity {
    started: tokio::time::Instant,
    in_progress: std::sync::atomic::AtomicUsize,
    /// Milliseconds from `started` to the last request's start or end.
    last: std::sync::atomic::AtomicU64,
}

struct Busy<'a>(&'a Activity);

impl Activity {
    fn new() -> Self {
        Activity { started: tokio::time::Instant::now(), in_progress: Default::default(), last: Default::default() }
    }

    fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last.store(now, std::sync::atomic::Ordering::Relaxed);
    }

    fn begin(&self) -> Busy<'_> {
        self.in_progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.touch();
        Busy(self)
    }

    /// When the connection will have been idle for `idle`, if nothing
    /// starts before then; none while a request is in progress.
    fn idle_at(&self, idle: Duration) -> Option<tokio::time::Instant> {
        if self.in_progress.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last.load(std::sync::atomic::Ordering::Relaxed));
        Some(self.started + last + idle)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_progress.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// [`serve`] with other caps.
pub async fn serve_with(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()>,
    limits: ServeLimits,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let handshakes = Arc::new(Semaphore::new(limits.handshakes));
    let connections = Arc::new(Semaphore::new(limits.connections));
    let per_address = Arc::new(PerAddress::default());
    let accepting = async {
        loop {
            let (stream, address) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTPS listener: cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
                tracing::warn!(%address, "HTTPS: too many handshakes in progress; connection closed");
                continue;
            };
            let Ok(place) = connections.clone().try_acquire_owned() else {
                tracing::warn!(%address, "HTTPS: connections at their cap; connection closed");
                continue;
            };
            let Some(address_place) = per_address.take(address.ip(), limits.per_address) else {
                tracing::warn!(%address, cap = limits.per_address, "HTTPS: this client address has as many connections as one may; connection closed");
                continue;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let _places = (place, address_place);
                let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                drop(handshake);
                let Ok(Ok(tls)) = accepted else {
                    tracing::debug!(%address, "HTTPS handshake failed or timed out");
                    return;
                };
                serve_connection(tls, address, app, limits.idle).await;
            });
        }
    };
    tokio::select! {
        _ = accepting => {}
        _ = shutdown => {}
    }
}

async fn serve_connection(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    address: SocketAddr,
    app: axum::Router,
    idle: Duration,
) {
    let activity = Arc::new(Activity::new());
    let tracked = activity.clone();
    let service = app.layer(axum::Extension(ConnectInfo(address))).layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let activity = tracked.clone();
            async move {
                let _busy = activity.begin();
                next.run(request).await
            }
        },
    ));
    let mut http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    http.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    http.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let connection = http.serve_connection(TokioIo::new(tls), TowerToHyperService::new(service));
    tokio::pin!(connection);
    loop {
        // Looked at again at least every second while requests run.
        let wake = activity.idle_at(idle).unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(1));
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = tokio::time::sleep_until(wake) => {
                if activity.idle_at(idle).is_some_and(|at| at <= tokio::time::Instant::now()) {
                    tracing::debug!(%address, "HTTPS: an idle connection closed");
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(CLOSING, connection.as_mut()).await;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_makes_its_certificate_once_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = DashboardTls::load(dir.path(), None, None).unwrap();
        let again = DashboardTls::load(dir.path(), None, None).unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
        assert_eq!(first.fingerprint.len(), 64);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(DIR).join(KEY)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(colon_fingerprint("ab01"), "AB:01");
    }

    #[test]
    fn a_given_certificate_needs_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let own = DashboardTls::load(dir.path(), None, None).unwrap();
        let cert = dir.path().join(DIR).join(CERT);
        let key = dir.path().join(DIR).join(KEY);
        let given = DashboardTls::load(Path::new("/nonexistent"), Some(&cert), Some(&key)).unwrap();
        assert_eq!(given.fingerprint, own.fingerprint);
        assert!(DashboardTls::load(dir.path(), Some(&cert), None).is_err());
        let other = tempfile::tempdir().unwrap();
        DashboardTls::load(other.path(), None, None).unwrap();
        let wrong_key = other.path().join(DIR).join(KEY);
        let e = DashboardTls::load(dir.path(), Some(&cert), Some(&wrong_key)).err().unwrap().to_string();
        assert!(e.contains("does not fit"), "{e}");
    }

    /// A TLS connection from `from` (a loopback address) to `address`,
    /// trusting the certificate in `cert` (handshake done).
    async fn connect(
        cert: &Path,
        from: IpAddr,
        address: SocketAddr,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        let der = CertificateDer::pem_file_iter(cert).unwrap().next().unwrap();
        roots.add(der.unwrap()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(crate::cluster::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(from, 0))?;
        let tcp = socket.connect(address).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await
    }

    /// Whether the server closed the connection within `within`.
    async fn closed(stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>, within: Duration) -> bool {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 64];
        loop {
            match tokio::time::timeout(within, stream.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }

    /// Issue 30, finding 5: one client address gets at most its share of
    /// connections, the next one is closed at once, another address is
    /// served; a connection that carries no request for the idle time is
    /// closed, and its place comes back.
    #[tokio::test]
    async fn one_address_gets_its_share_of_connections_and_idle_ones_are_closed() {
        let dir = tempfile::tempdir().unwrap();
        let tls = DashboardTls::load(dir.path(), None, None).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let limits = ServeLimits { per_address: 3, idle: Duration::from_secs(2), ..Default::default() };
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        tokio::spawn(serve_with(listener, tls.config.clone(), app, std::future::pending(), limits));

        let cert = dir.path().join(DIR).join(CERT);
        let (one, two): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(connect(&cert, one, address).await.unwrap());
        }
        let one_more = connect(&cert, one, address).await;
        let refused = match one_more {
            Err(_) => true,
            Ok(mut stream) => closed(&mut stream, Duration::from_secs(1)).await,
        };
        assert!(refused, "a fourth connection from one address was served");
        // Another client address (127.0.0.2 is loopback too) has its own share.
        let mut stream = connect(&cert, two, address).await.unwrap();
        assert!(!closed(&mut stream, Duration::from_millis(500)).await, "another address was refused");

        // Idle for 2 s: closed by the server, and the places are back.
        for stream in &mut held {
            assert!(closed(stream, Duration::from_secs(5)).await, "an idle connection stayed open");
        }
        let mut again = connect(&cert, one, address).await.unwrap();
        assert!(!closed(&mut again, Duration::from_millis(500)).await);
    }

    /// Issue 30, finding 6: clients that connect and never finish their TLS
    /// handshake fill the handshake places only; one more is closed at once,
    /// and each is closed when its handshake time is up.
    #[tokio::test]
    async fn handshakes_that_never_finish_fill_only_their_places() {
        let dir = tempfile::tempdir().unwrap();
        let tls = DashboardTls::load(dir.path(), None, None).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let limits = ServeLimits { handshakes: 3, ..Default::default() };
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        tokio::spawn(serve_with(listener, tls.config.clone(), app, std::future::pending(), limits));
        let mut silent = Vec::new();
        for _ in 0..3 {
            silent.push(tokio::net::TcpStream::connect(address).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let cert = dir.path().join(DIR).join(CERT);
        let one_more = connect(&cert, "127.0.0.1".parse().unwrap(), address).await;
        assert!(one_more.is_err(), "a handshake beyond the cap was served");
        // Their 10 s are up: closed, and the places are back.
        use tokio::io::AsyncReadExt;
        for stream in &mut silent {
            let mut byte = [0u8; 1];
            let closed = tokio::time::timeout(HANDSHAKE_TIMEOUT + Duration::from_secs(5), stream.read(&mut byte)).await;
            assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "a silent handshake was kept past its time");
        }
        assert!(connect(&cert, "127.0.0.1".parse().unwrap(), address).await.is_ok());
    }
}
