//! What a node's certificate says, and the cluster's CA that signs it.
//!
//! A node is its key. Each node makes its own key pair once and never lets
//! the private half leave its data directory; the cluster pins the public
//! half in the replicated state when it admits the node (the join carries a
//! certificate request, RFC 2986) and forgets it, onto a revocation list,
//! when the node is removed ([`super::roster`]). The certificate the CA signs
//! for that key names the node as a URI subject alternative name,
//! `portico://cluster/<cluster>/node/<raft-id>`, where `<cluster>` is the
//! first 16 hex digits of the CA certificate's SHA-256.
//!
//! The CA's key lives on one node only, the signer: the node that created
//! the cluster (Raft id [`SIGNER`]). It signs a certificate for a Raft id
//! only for the key the cluster pinned for that id, so holding the CA key is
//! not enough to pass as a member either: the signer could mint a
//! certificate for another key, and every member would refuse it
//! (`transport::FromMember`). Certificates are good for [`LIFETIME`]; each
//! node asks the signer for a fresh one over the cluster channel when less
//! than [`RENEW_WITHIN`] is left (`super::renewal`).
//!
//! Certificates, requests and signatures are rcgen's and x509-parser's;
//! nothing here is hand-made cryptography.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use sha2::{Digest, Sha256};

/// The Raft id of the node that holds the CA's key: the one that created
/// the cluster.
pub const SIGNER: u64 = 1;
/// How long a node certificate is good for.
pub const LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
/// A node asks for a new certificate when less than this is left.
pub const RENEW_WITHIN: Duration = Duration::from_secs(30 * 24 * 3600);
/// The longest certificate request the cluster reads.
pub const MAX_REQUEST: usize = 8 << 10;

pub(super) const CA_CERT: &str = "ca.pem";
pub(super) const CA_KEY: &str = "ca.key";

/// The SHA-256 of a certificate's DER, as lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The fingerprint of a public key (the subject public key's bits, as a
/// certificate and a certificate request both carry them): what the
/// cluster pins for a node.
pub fn key_fingerprint(public_key: &[u8]) -> String {
    hex::encode(Sha256::digest(public_key))
}

/// The cluster's name in node URIs, from its CA certificate's fingerprint.
pub fn cluster_id(ca_fingerprint: &str) -> String {
    ca_fingerprint.chars().take(16).collect()
}

/// The URI that names node `raft_id` of cluster `cluster`.
pub fn node_uri(cluster: &str, raft_id: u64) -> String {
    format!("portico://cluster/{cluster}/node/{raft_id}")
}

/// The cluster and Raft id a node URI names.
pub fn parse_node_uri(uri: &str) -> Option<(String, u64)> {
    let rest = uri.strip_prefix("portico://cluster/")?;
    let (cluster, id) = rest.split_once("/node/")?;
    let ok = cluster.len() == 16 && cluster.bytes().all(|b| b.is_ascii_hexdigit());
    let id: u64 = id.parse().ok().filter(|_| ok && !id.starts_with('+'))?;
    Some((cluster.to_string(), id))
}

/// What a peer's certificate says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCert {
    pub cluster: String,
    pub raft_id: u64,
    /// Its public key's fingerprint ([`key_fingerprint`]).
    pub key: String,
}

/// Reads a node certificate (DER). A certificate with no node URI, or
/// with more than one, names no node.
pub fn read_peer_cert(der: &[u8]) -> Result<PeerCert, String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("not a certificate: {e}"))?;
    let mut named = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                named.extend(parse_node_uri(uri));
            }
        }
    }
    let [(cluster, raft_id)] =
        <[_; 1]>::try_from(named).map_err(|_| "the certificate names no one node".to_string())?;
    Ok(PeerCert { cluster, raft_id, key: key_fingerprint(&cert.public_key().subject_public_key.data) })
}

/// When a certificate (PEM) stops being good.
pub fn not_after(cert_pem: &str) -> anyhow::Result<time::OffsetDateTime> {
    use x509_parser::prelude::*;
    let (_, pem) = parse_x509_pem(cert_pem.as_bytes()).context("the certificate is not PEM")?;
    let cert = pem.parse_x509().context("the certificate cannot be read")?;
    Ok(cert.validity().not_after.to_datetime())
}

/// A certificate request for `key`, as a node sends it (PEM).
pub fn request(key: &KeyPair, node_name: &str) -> anyhow::Result<String> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, node_name);
    params.distinguished_name = name;
    let csr = params.serialize_request(key).context("cannot make a certificate request")?;
    csr.pem().context("cannot encode the certificate request")
}

/// A certificate request, its signature checked.
pub struct Request {
    params: CertificateSigningRequestParams,
    /// The fingerprint of the key it asks a certificate for.
    pub key: String,
}

/// Reads a certificate request (PEM) and checks that its key signed it.
pub fn read_request(pem: &str) -> Result<Request, String> {
    if pem.len() > MAX_REQUEST {
        return Err(format!("a certificate request is at most {MAX_REQUEST} bytes"));
    }
    let params = CertificateSigningRequestParams::from_pem(pem)
        .map_err(|e| format!("not a certificate request signed by its own key: {e}"))?;
    let key = key_fingerprint(params.public_key.der_bytes());
    Ok(Request { params, key })
}

/// The cluster's CA, on the one node that holds its key.
pub struct Signer {
    key: KeyPair,
    issuer: rcgen::Certificate,
    cluster: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({}, <key>)", self.cluster)
    }
}

impl Signer {
    /// Creates the cluster's CA (at bootstrap) and stores it in `dir`.
    pub fn create(dir: &Path, cluster_name: &str) -> anyhow::Result<Self> {
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
        crate::data_dir::private_dir(dir)?;
        crate::data_dir::write_private(&dir.join(CA_KEY), &key.serialize_pem())?;
        crate::data_dir::write_private(&dir.join(CA_CERT), &cert.pem())?;
        Self::open(dir)?.context("the CA just made cannot be read back")
    }

    /// The CA, if this node holds its key.
    pub fn open(dir: &Path) -> anyhow::Result<Option<Self>> {
        let key_path = dir.join(CA_KEY);
        if !key_path.exists() {
            return Ok(None);
        }
        let key_pem =
            std::fs::read_to_string(&key_path).with_context(|| format!("cannot read {}", key_path.display()))?;
        let cert_pem = std::fs::read_to_string(dir.join(CA_CERT))
            .with_context(|| format!("cannot read {}", dir.join(CA_CERT).display()))?;
        let key = KeyPair::from_pem(&key_pem).context("the cluster CA's key cannot be read")?;
        // The issuer's name and key are what a signature names; rebuilding
        // the CA's certificate from its own file keeps both.
        let issuer = CertificateParams::from_ca_cert_pem(&cert_pem)
            .context("the cluster CA's certificate cannot be read")?
            .self_signed(&key)?;
        let cluster = cluster_id(&fingerprint(&ca_der(&cert_pem)?));
        Ok(Some(Signer { key, issuer, cluster }))
    }

    /// A certificate (PEM) for Raft node `raft_id` with the key `public`.
    /// The caller has checked that the cluster pinned that key for it.
    fn issue(&self, public: &impl PublicKeyData, raft_id: u64) -> anyhow::Result<String> {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "Portico");
        name.push(DnType::CommonName, format!("Portico node {raft_id}"));
        params.distinguished_name = name;
        let uri = node_uri(&self.cluster, raft_id);
        params.subject_alt_names = vec![SanType::URI(uri.try_into().context("the node URI")?)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = time::OffsetDateTime::now_utc() + LIFETIME;
        let mut serial = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut serial);
        serial[0] &= 0x7f;
        params.serial_number = Some(serial.to_vec().into());
        let cert = params.signed_by(public, &self.issuer, &self.key).context("cannot sign the certificate")?;
        Ok(cert.pem())
    }

    /// Signs this node's own key (the signer's, as it creates the cluster
    /// or renews its own certificate).
    pub fn issue_own(&self, key: &KeyPair, raft_id: u64) -> anyhow::Result<String> {
        self.issue(key, raft_id)
    }

    /// Signs the key of `request` for Raft node `raft_id`.
    pub fn issue_for(&self, request: &Request, raft_id: u64) -> anyhow::Result<String> {
        self.issue(&request.params.public_key, raft_id)
    }
}

/// A certificate's DER from its PEM.
pub fn ca_der(cert_pem: &str) -> anyhow::Result<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("the certificate cannot be read: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_uri_reads_back_and_nothing_else_reads_as_one() {
        let uri = node_uri("0123456789abcdef", 7);
        assert_eq!(uri, "portico://cluster/0123456789abcdef/node/7");
        assert_eq!(parse_node_uri(&uri), Some(("0123456789abcdef".into(), 7)));
        for bad in [
            "portico://cluster/0123456789abcdef/node/",
            "portico://cluster/0123456789abcdef/node/+7",
            "portico://cluster/0123456789abcde/node/7",
            "portico://cluster/0123456789abcdeg/node/7",
            "https://cluster/0123456789abcdef/node/7",
            "portico://cluster/0123456789abcdef/node/7/x",
        ] {
            assert_eq!(parse_node_uri(bad), None, "{bad}");
        }
    }

    /// The signer signs the key a request carries, for the Raft id it is
    /// told; the certificate names that node and that key, and a request
    /// whose signature does not match its key is refused.
    #[test]
    fn a_signed_request_names_the_node_and_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Signer::create(dir.path(), "t").unwrap();
        let key = KeyPair::generate().unwrap();
        let asked = read_request(&request(&key, "n2").unwrap()).unwrap();
        assert_eq!(asked.key, key_fingerprint(key.public_key_raw()));
        let pem = signer.issue_for(&asked, 2).unwrap();
        let der = ca_der(&pem).unwrap();
        let peer = read_peer_cert(&der).unwrap();
        assert_eq!(peer, PeerCert { cluster: signer.cluster.clone(), raft_id: 2, key: asked.key.clone() });
        let left = not_after(&pem).unwrap() - time::OffsetDateTime::now_utc();
        assert!(left > time::Duration::days(89) && left <= time::Duration::days(90), "{left}");

        let mut forged = request(&key, "n2").unwrap().into_bytes();
        let at = forged.len() - 40;
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        assert!(read_request(std::str::from_utf8(&forged).unwrap()).is_err());
        assert!(read_request(&"A".repeat(MAX_REQUEST + 1)).is_err());
        assert!(Signer::open(tempfile::tempdir().unwrap().path()).unwrap().is_none());
    }
}
