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
//! [`CONNECTIONS`] connections are served at once. HTTP/1.1 and HTTP/2 are
//! both offered (ALPN).

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
/// An HTTP/1.1 request's headers must arrive within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

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
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES));
    let connections = Arc::new(Semaphore::new(CONNECTIONS));
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
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let _place = place;
                let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                drop(handshake);
                let Ok(Ok(tls)) = accepted else {
                    tracing::debug!(%address, "HTTPS handshake failed or timed out");
                    return;
                };
                serve_connection(tls, address, app).await;
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
) {
    let service = app.layer(axum::Extension(ConnectInfo(address)));
    let mut http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    http.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    http.http2().timer(TokioTimer::new()).max_concurrent_streams(256);
    let _ = http.serve_connection(TokioIo::new(tls), TowerToHyperService::new(service)).await;
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
}
