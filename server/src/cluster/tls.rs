//! The cluster's own certificate authority and this node's certificate
//! (CLUSTER.md §1: node-to-node traffic is mutually authenticated TLS).
//!
//! The first node creates the CA when it bootstraps the cluster; a joining
//! node receives the CA's certificate and key over a channel pinned to the
//! CA's fingerprint (carried by the join token). Every node issues its own
//! certificate at each start, for the address it serves the cluster on, so
//! a changed `--cluster-addr` needs nothing more than a restart. The files
//! live in `<data>/cluster/`, private to the node's user.
//!
//! Certificates and keys are made with rcgen and checked by rustls (ring
//! provider); nothing here is hand-made cryptography.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

const DIR: &str = "cluster";
const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";

/// The CA as a joining node receives it.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct CaFiles {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CaFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CaFiles(<certificate and key>)")
    }
}

/// This node's TLS identity: the CA and a certificate it issued for this
/// node's cluster address.
pub struct Identity {
    ca: CaFiles,
    ca_der: CertificateDer<'static>,
    node_chain: Vec<CertificateDer<'static>>,
    node_key: PrivatePkcs8KeyDer<'static>,
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join(DIR)
}

/// The SHA-256 of a certificate's DER, as lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn ca_der(cert_pem: &str) -> anyhow::Result<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("the cluster CA's certificate cannot be read: {e:?}"))
}

impl Identity {
    /// Whether this data directory holds a cluster CA.
    pub fn exists(data_dir: &Path) -> bool {
        dir(data_dir).join(CA_CERT).exists()
    }

    /// Creates the cluster's CA (at bootstrap) and stores it.
    pub fn create_ca(data_dir: &Path, cluster_name: &str) -> anyhow::Result<()> {
        let key = KeyPair::generate().context("cannot make the CA's key")?;
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "Portico");
        name.push(DnType::CommonName, format!("Portico cluster CA {cluster_name}"));
        params.distinguished_name = name;
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(365 * 30);
        let cert = params.self_signed(&key).context("cannot sign the CA's certificate")?;
        Self::install_ca(data_dir, &CaFiles { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// Stores a CA this node received when it joined.
    pub fn install_ca(data_dir: &Path, ca: &CaFiles) -> anyhow::Result<()> {
        ca_der(&ca.cert_pem)?;
        KeyPair::from_pem(&ca.key_pem).context("the cluster CA's key cannot be read")?;
        let d = dir(data_dir);
        crate::data_dir::private_dir(&d)?;
        crate::data_dir::write_private(&d.join(CA_KEY), &ca.key_pem)?;
        crate::data_dir::write_private(&d.join(CA_CERT), &ca.cert_pem)?;
        Ok(())
    }

    /// Loads the CA and issues this node a certificate for `address` (its
    /// cluster address), good for both ends of a connection.
    pub fn load(data_dir: &Path, node_name: &str, address: IpAddr) -> anyhow::Result<Self> {
        let d = dir(data_dir);
        let read = |f: &str| {
            std::fs::read_to_string(d.join(f)).with_context(|| format!("cannot read {}", d.join(f).display()))
        };
        let ca = CaFiles { cert_pem: read(CA_CERT)?, key_pem: read(CA_KEY)? };
        let ca_der = ca_der(&ca.cert_pem)?;
        let ca_key = KeyPair::from_pem(&ca.key_pem).context("the cluster CA's key cannot be read")?;
        // The issuer's name and key are what a signature names; rebuilding
        // the CA's certificate from its own file keeps both.
        let issuer = CertificateParams::from_ca_cert_pem(&ca.cert_pem)
            .context("the cluster CA's certificate cannot be read")?
            .self_signed(&ca_key)?;

        let key = KeyPair::generate().context("cannot make this node's key")?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "Portico");
        name.push(DnType::CommonName, node_name);
        params.distinguished_name = name;
        params.subject_alt_names = vec![SanType::IpAddress(address)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(365 * 5);
        let cert = params.signed_by(&key, &issuer, &ca_key).context("cannot issue this node's certificate")?;
        Ok(Identity {
            node_chain: vec![cert.der().clone(), ca_der.clone()],
            node_key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            ca_der,
            ca,
        })
    }

    /// The CA's fingerprint, which join tokens carry.
    pub fn ca_fingerprint(&self) -> String {
        fingerprint(&self.ca_der)
    }

    /// The CA, for a node that joins.
    pub fn ca_files(&self) -> &CaFiles {
        &self.ca
    }

    fn roots(&self) -> anyhow::Result<Arc<RootCertStore>> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone())?;
        Ok(Arc::new(roots))
    }

    /// The server side: a client may show a certificate of this CA (a
    /// member) or none (a node that comes to join, which may only ask to).
    pub fn server_config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots()?, provider()).allow_unauthenticated().build()?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.node_chain.clone(), PrivateKeyDer::Pkcs8(self.node_key.clone_key()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// The client side between members: the peer must show a certificate
    /// of this CA, and this node shows its own.
    pub fn client_config(&self) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.node_chain.clone(), PrivateKeyDer::Pkcs8(self.node_key.clone_key()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
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
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
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
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        webpki.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
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
mod tests {
    use super::*;

    /// Handshakes over a socket pair: members authenticate each other, a
    /// joining node with the right fingerprint gets in without a
    /// certificate (and is seen as such), a wrong fingerprint or a foreign
    /// CA does not.
    #[tokio::test]
    async fn members_authenticate_each_other_and_a_joiner_pins_the_ca() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = tempfile::tempdir().unwrap();
        Identity::create_ca(a.path(), "t").unwrap();
        let first = Identity::load(a.path(), "n1", ip).unwrap();
        let b = tempfile::tempdir().unwrap();
        Identity::install_ca(b.path(), first.ca_files()).unwrap();
        let second = Identity::load(b.path(), "n2", ip).unwrap();
        assert_eq!(first.ca_fingerprint(), second.ca_fingerprint());
        let other = tempfile::tempdir().unwrap();
        Identity::create_ca(other.path(), "other").unwrap();
        let stranger = Identity::load(other.path(), "x", ip).unwrap();

        async fn handshake(server: &Identity, client: Arc<rustls::ClientConfig>) -> Result<bool, String> {
            let (c, s) = tokio::io::duplex(64 * 1024);
            let acceptor = tokio_rustls::TlsAcceptor::from(server.server_config().unwrap());
            let connector = tokio_rustls::TlsConnector::from(client);
            let name = ServerName::IpAddress("127.0.0.1".parse::<IpAddr>().unwrap().into());
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
    }
}
