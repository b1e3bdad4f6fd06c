//! This node's TLS identity on the cluster channel (CLUSTER.md §1:
//! node-to-node traffic is mutually authenticated TLS), and how it checks
//! the other end's.
//!
//! In `<data>/cluster/`, private to the node's user: the CA's certificate
//! (`ca.pem`), this node's key (`node.key`, made here, never sent) and the
//! certificate the cluster's signer issued for it (`node.pem`); on the
//! signer only, the CA's key (`ca.key`). See [`super::certs`] for what a
//! certificate names and who signs it.
//!
//! Both ends check the chain to the CA and its dates, and that the other
//! end's key was not revoked; neither checks an IP address, since a node is
//! named by its Raft id, not by where it is (a changed `--cluster-addr`
//! needs nothing more than a restart). The server takes a peer without a
//! certificate too (a node that comes to join, which may only ask to);
//! whether a peer with one is a member *now* is asked of the roster on
//! every request (`transport::FromMember`). A renewed certificate replaces
//! the old one in place ([`Identity::install_renewed`]): new handshakes
//! show it, connections already up carry on.
//!
//! Certificates and keys are rcgen's and checked by rustls (ring
//! provider); nothing here is hand-made cryptography.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use rcgen::KeyPair;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::certs::{self, Signer, CA_CERT};
use super::roster::Roster;

const DIR: &str = "cluster";
const NODE_KEY: &str = "node.key";
const NODE_CERT: &str = "node.pem";

pub use certs::fingerprint;

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join(DIR)
}

/// This node's certificate as handshakes show it: swapped in place when it
/// is renewed.
#[derive(Debug)]
struct Current {
    key: RwLock<Arc<CertifiedKey>>,
}

impl Current {
    fn get(&self) -> Arc<CertifiedKey> {
        self.key.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl rustls::server::ResolvesServerCert for Current {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

impl rustls::client::ResolvesClientCert for Current {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// This node's TLS identity.
pub struct Identity {
    dir: PathBuf,
    ca_der: CertificateDer<'static>,
    ca_pem: String,
    cluster: String,
    node_key: KeyPair,
    current: Arc<Current>,
    not_after: RwLock<time::OffsetDateTime>,
    signer: Option<Signer>,
    roster: Arc<Roster>,
}

/// Reads this node's key, or makes it (once).
fn node_key(dir: &Path) -> anyhow::Result<KeyPair> {
    let path = dir.join(NODE_KEY);
    if path.exists() {
        let pem = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        return KeyPair::from_pem(&pem).with_context(|| format!("{} is not a key", path.display()));
    }
    crate::data_dir::private_dir(dir)?;
    let key = KeyPair::generate().context("cannot make this node's key")?;
    crate::data_dir::write_private(&path, &key.serialize_pem())?;
    Ok(key)
}

impl Identity {
    /// Whether this data directory holds a cluster identity.
    pub fn exists(data_dir: &Path) -> bool {
        dir(data_dir).join(CA_CERT).exists()
    }

    /// Creates the cluster's CA (at bootstrap, on the node that will be
    /// Raft node 1, the signer) and this node's certificate.
    pub fn create_cluster(data_dir: &Path, cluster_name: &str) -> anyhow::Result<()> {
        let d = dir(data_dir);
        let signer = Signer::create(&d, cluster_name)?;
        let key = node_key(&d)?;
        crate::data_dir::write_private(&d.join(NODE_CERT), &signer.issue_own(&key, certs::SIGNER)?)
    }

    /// A certificate request for this node's key (made now if it has none),
    /// for a join.
    pub fn join_request(data_dir: &Path, node_name: &str) -> anyhow::Result<String> {
        certs::request(&node_key(&dir(data_dir))?, node_name)
    }

    /// Stores what a join brought: the CA's certificate, which must be the
    /// one the join token names, and this node's certificate, which must
    /// be for this node's key and chain to that CA.
    pub fn install_admission(
        data_dir: &Path,
        ca_fingerprint: &str,
        ca_pem: &str,
        node_cert_pem: &str,
        raft_id: u64,
    ) -> anyhow::Result<()> {
        let d = dir(data_dir);
        let ca = certs::ca_der(ca_pem)?;
        anyhow::ensure!(
            certs::fingerprint(&ca).eq_ignore_ascii_case(ca_fingerprint),
            "the CA the cluster sent is not the one the join token names"
        );
        let key = node_key(&d)?;
        let cert = certs::ca_der(node_cert_pem)?;
        let named =
            certs::read_peer_cert(&cert).map_err(|e| anyhow::anyhow!("the certificate the cluster sent: {e}"))?;
        anyhow::ensure!(
            named.raft_id == raft_id && named.key == certs::key_fingerprint(key.public_key_raw()),
            "the certificate the cluster sent is not for this node's key and Raft id"
        );
        crate::data_dir::write_private(&d.join(CA_CERT), ca_pem)?;
        crate::data_dir::write_private(&d.join(NODE_CERT), node_cert_pem)
    }

    /// Loads this node's identity. The signer whose certificate is missing
    /// (or was never issued) issues its own.
    pub fn load(data_dir: &Path, raft_id: u64, roster: Arc<Roster>) -> anyhow::Result<Self> {
        let d = dir(data_dir);
        let read = |f: &str| {
            std::fs::read_to_string(d.join(f)).with_context(|| format!("cannot read {}", d.join(f).display()))
        };
        let ca_pem = read(CA_CERT)?;
        let ca_der = certs::ca_der(&ca_pem)?;
        let cluster = certs::cluster_id(&certs::fingerprint(&ca_der));
        roster.set_cluster(&cluster);
        let node_key = node_key(&d)?;
        let signer = Signer::open(&d)?;
        if let Some(signer) = &signer {
            if raft_id != certs::SIGNER {
                // Left by an older version, which gave every node the CA's key.
                std::fs::remove_file(d.join(certs::CA_KEY))
                    .context("cannot remove the CA key this node should not hold")?;
                tracing::warn!("removed a copy of the cluster CA's key: only the signer (Raft node 1) keeps it");
            } else if !d.join(NODE_CERT).exists() {
                crate::data_dir::write_private(&d.join(NODE_CERT), &signer.issue_own(&node_key, raft_id)?)?;
            }
        }
        let signer = signer.filter(|_| raft_id == certs::SIGNER);
        let cert_pem = read(NODE_CERT)?;
        let identity = Identity {
            current: Arc::new(Current { key: RwLock::new(certified(&cert_pem, &ca_der, &node_key)?) }),
            not_after: RwLock::new(certs::not_after(&cert_pem)?),
            dir: d,
            ca_der,
            ca_pem,
            cluster,
            node_key,
            signer,
            roster,
        };
        Ok(identity)
    }

    /// The CA's fingerprint, which join tokens carry.
    pub fn ca_fingerprint(&self) -> String {
        certs::fingerprint(&self.ca_der)
    }

    /// The CA's certificate, for a node that joins.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA, if this node is the signer.
    pub fn signer(&self) -> Option<&Signer> {
        self.signer.as_ref()
    }

    /// This node's key's fingerprint, as the cluster pins it.
    pub fn key_fingerprint(&self) -> String {
        certs::key_fingerprint(self.node_key.public_key_raw())
    }

    /// When this node's certificate stops being good.
    pub fn not_after(&self) -> time::OffsetDateTime {
        *self.not_after.read().unwrap_or_else(|e| e.into_inner())
    }

    /// A certificate request for this node's key, for a renewal.
    pub fn renewal_request(&self, node_name: &str) -> anyhow::Result<String> {
        certs::request(&self.node_key, node_name)
    }

    /// Takes a renewed certificate: stored, and shown from the next
    /// handshake on.
    pub fn install_renewed(&self, raft_id: u64, cert_pem: &str) -> anyhow::Result<()> {
        let named = certs::read_peer_cert(&certs::ca_der(cert_pem)?).map_err(|e| anyhow::anyhow!(e))?;
        anyhow::ensure!(
            named.raft_id == raft_id && named.cluster == self.cluster && named.key == self.key_fingerprint(),
            "the renewed certificate is not for this node's key and Raft id"
        );
        let key = certified(cert_pem, &self.ca_der, &self.node_key)?;
        let until = certs::not_after(cert_pem)?;
        crate::data_dir::write_private(&self.dir.join(NODE_CERT), cert_pem)?;
        *self.current.key.write().unwrap_or_else(|e| e.into_inner()) = key;
        *self.not_after.write().unwrap_or_else(|e| e.into_inner()) = until;
        Ok(())
    }

    fn roots(&self) -> anyhow::Result<Arc<RootCertStore>> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone())?;
        Ok(Arc::new(roots))
    }

    /// The server side: a client may show a certificate of this CA or none
    /// (a node that comes to join, which may only ask to).
    pub fn server_config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots()?, provider()).allow_unauthenticated().build()?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.current.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// The replica's side of a replication stream: TLS 1.3, and the
    /// primary must show a certificate of this CA (who it is, the stream
    /// guard asks of the roster).
    pub fn replication_server_config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider()).build()?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.current.clone());
        config.alpn_protocols = vec![super::stream_guard::ALPN.to_vec()];
        Ok(Arc::new(config))
    }

    /// The primary's side of a replication stream: TLS 1.3, as between
    /// members otherwise.
    pub fn replication_client_config(&self) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let verifier = NodeCert::new(self.roots()?, Some((self.cluster.clone(), self.roster.clone())))?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(self.current.clone());
        config.alpn_protocols = vec![super::stream_guard::ALPN.to_vec()];
        Ok(Arc::new(config))
    }

    /// The client side between members: the peer must show a certificate
    /// of this CA for a node of this cluster whose key is not revoked, and
    /// this node shows its own.
    pub fn client_config(&self) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let verifier = NodeCert::new(self.roots()?, Some((self.cluster.clone(), self.roster.clone())))?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(self.current.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// This node's certificate, with the CA after it, and its key, for rustls.
fn certified(cert_pem: &str, ca_der: &CertificateDer<'static>, key: &KeyPair) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain = vec![certs::ca_der(cert_pem)?, ca_der.clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok(Arc::new(CertifiedKey::from_der(chain, key, &provider()).context("this node's certificate and key")?))
}

/// The client side of a node that comes to join: it has no certificate
/// yet and trusts the server only if its chain holds the CA with the
/// fingerprint the join token carries, and that CA issued the server's
/// certificate.
pub fn pinned_client_config(ca_fingerprint: &str) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let verifier = PinnedCa { fingerprint: ca_fingerprint.to_ascii_lowercase(), provider: provider() };
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Checks a server's node certificate: it chains to the CA and is in date
/// (webpki, as for a client certificate: no host name is checked), names
/// a node, and (between members) one of this cluster whose key is not
/// revoked.
#[derive(Debug)]
struct NodeCert {
    chain: Arc<dyn ClientCertVerifier>,
    members: Option<(String, Arc<Roster>)>,
    provider: Arc<CryptoProvider>,
}

impl NodeCert {
    fn new(roots: Arc<RootCertStore>, members: Option<(String, Arc<Roster>)>) -> anyhow::Result<Self> {
        let chain = WebPkiClientVerifier::builder_with_provider(roots, provider()).build()?;
        Ok(NodeCert { chain, members, provider: provider() })
    }

    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        self.chain.verify_client_cert(end_entity, intermediates, now)?;
        let named = certs::read_peer_cert(end_entity).map_err(rustls::Error::General)?;
        if let Some((cluster, roster)) = &self.members {
            if &named.cluster != cluster {
                return Err(rustls::Error::General("the peer is a node of another cluster".into()));
            }
            if roster.revoked(&named.key) {
                return Err(rustls::Error::General(format!("node {} was removed from the cluster", named.raft_id)));
            }
        }
        Ok(())
    }
}

impl ServerCertVerifier for NodeCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verify(end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[derive(Debug)]
struct PinnedCa {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| {
                let found = fingerprint(c);
                subtle::ConstantTimeEq::ct_eq(found.as_bytes(), self.fingerprint.as_bytes()).into()
            })
            .ok_or_else(|| {
                rustls::Error::General("the node's certificate is not from the CA the join token names".into())
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned()).map_err(|e| rustls::Error::General(e.to_string()))?;
        let node = NodeCert::new(Arc::new(roots), None).map_err(|e| rustls::Error::General(e.to_string()))?;
        node.verify(end_entity, &[], now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A cluster's signer and a second node it issued a certificate for,
    /// in two data directories.
    pub(crate) fn two_nodes() -> (tempfile::TempDir, Identity, tempfile::TempDir, Identity) {
        let a = tempfile::tempdir().unwrap();
        Identity::create_cluster(a.path(), "t").unwrap();
        let first = Identity::load(a.path(), 1, Arc::default()).unwrap();
        let b = tempfile::tempdir().unwrap();
        let request = certs::read_request(&Identity::join_request(b.path(), "n2").unwrap()).unwrap();
        let cert = first.signer().unwrap().issue_for(&request, 2).unwrap();
        Identity::install_admission(b.path(), &first.ca_fingerprint(), first.ca_pem(), &cert, 2).unwrap();
        let second = Identity::load(b.path(), 2, Arc::default()).unwrap();
        (a, first, b, second)
    }

    /// Handshakes over a socket pair: members authenticate each other, a
    /// joining node with the right fingerprint gets in without a
    /// certificate (and is seen as such), a wrong fingerprint or a foreign
    /// CA does not. Only the signer keeps the CA's key.
    #[tokio::test]
    async fn members_authenticate_each_other_and_a_joiner_pins_the_ca() {
        let (a, first, b, second) = two_nodes();
        assert!(a.path().join("cluster/ca.key").exists() && !b.path().join("cluster/ca.key").exists());
        assert!(second.signer().is_none());
        assert_eq!(first.ca_fingerprint(), second.ca_fingerprint());
        let other = tempfile::tempdir().unwrap();
        Identity::create_cluster(other.path(), "other").unwrap();
        let stranger = Identity::load(other.path(), 1, Arc::default()).unwrap();

        async fn handshake(server: &Identity, client: Arc<rustls::ClientConfig>) -> Result<bool, String> {
            let (c, s) = tokio::io::duplex(64 * 1024);
            let acceptor = tokio_rustls::TlsAcceptor::from(server.server_config().unwrap());
            let connector = tokio_rustls::TlsConnector::from(client);
            let name = ServerName::IpAddress("127.0.0.1".parse::<std::net::IpAddr>().unwrap().into());
            let (client, server) = tokio::join!(connector.connect(name, c), acceptor.accept(s));
            client.map_err(|e| e.to_string())?;
            let server = server.map_err(|e| e.to_string())?;
            Ok(server.get_ref().1.peer_certificates().is_some())
        }

        assert_eq!(handshake(&first, second.client_config().unwrap()).await, Ok(true));
        assert_eq!(handshake(&second, first.client_config().unwrap()).await, Ok(true));
        let pinned = pinned_client_config(&first.ca_fingerprint()).unwrap();
        assert_eq!(handshake(&second, pinned).await, Ok(false));
        let wrong = pinned_client_config(&stranger.ca_fingerprint()).unwrap();
        assert!(handshake(&first, wrong).await.is_err());
        assert!(handshake(&first, stranger.client_config().unwrap()).await.is_err());

        // A renewed certificate is shown from the next handshake on.
        let request = certs::read_request(&second.renewal_request("n2").unwrap()).unwrap();
        let renewed = first.signer().unwrap().issue_for(&request, 2).unwrap();
        assert!(second.install_renewed(3, &renewed).is_err(), "not for another Raft id");
        second.install_renewed(2, &renewed).unwrap();
        assert_eq!(handshake(&first, second.client_config().unwrap()).await, Ok(true));
    }
}
