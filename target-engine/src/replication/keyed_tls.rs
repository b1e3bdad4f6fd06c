//! Replication streams of the engine on its own (`portico engine`) over
//! TLS 1.3, keyed by the cluster's replication key.
//!
//! The engines of a standalone cluster share a key file, not certificates.
//! So each end makes a throwaway self-signed certificate when replication
//! starts, and neither end trusts a certificate: once the TLS handshake is
//! done, each proves it holds the replication key with an HMAC-SHA-256 over
//! keying material exported from that TLS session (RFC 8446 §7.5; the
//! primary first, then the replica), under its own role label. A proof is
//! good for one session only: someone in the middle holds two sessions with
//! two different exports, and cannot carry a proof from one to the other
//! without the key. From then on TLS encrypts every record and
//! authenticates it, with its sequence number, so no frame can be changed,
//! forged, replayed or dropped unseen. This is the "per-frame MAC" of the
//! key-file mode, from rustls rather than made here.
//!
//! `transport = "plain"` in `[replication]` leaves TLS out (the key is then
//! proven after the hello, [`super::auth::Exchange`], and frames carry only
//! their CRC32C): for measuring what TLS costs, on a network only the nodes
//! reach.

use std::sync::Arc;

use async_trait::async_trait;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::auth::{self, Key, Side, PROOF};
use super::core::ops::ReplicaId;
use super::guard::{Guarded, StreamGuard};

/// The label of the keying material the proofs cover.
const EXPORT_LABEL: &[u8] = b"EXPORTER-portico-replication-key";
/// The name the throwaway certificates carry (nobody checks it).
const NAME: &str = "portico-replication";
/// The ALPN protocol of a keyed stream.
const ALPN: &[u8] = b"portico-replication-keyed/1";

/// Streams over TLS, keyed by the replication key.
pub struct KeyedTls {
    key: Key,
    connector: tokio_rustls::TlsConnector,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for KeyedTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedTls")
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl KeyedTls {
    pub fn new(key: Key) -> Result<Self, String> {
        let made = rcgen::generate_simple_self_signed(vec![NAME.to_string()])
            .map_err(|e| format!("cannot make the replication certificate: {e}"))?;
        let chain = vec![made.cert.der().clone()];
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.key_pair.serialize_der()));
        let tls13 = [&rustls::version::TLS13];
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&tls13)
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| e.to_string())?;
        server.alpn_protocols = vec![ALPN.to_vec()];
        let mut client = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&tls13)
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
            .with_no_client_auth();
        client.alpn_protocols = vec![ALPN.to_vec()];
        Ok(KeyedTls {
            key,
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        })
    }
}

#[async_trait]
impl StreamGuard for KeyedTls {
    async fn connect(&self, tcp: TcpStream, _replica: ReplicaId) -> Result<Guarded, String> {
        let name = ServerName::try_from(NAME).map_err(|e| e.to_string())?;
        let mut tls = self.connector.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
        let material =
            tls.get_ref().1.export_keying_material([0u8; 32], EXPORT_LABEL, None).map_err(|e| format!("TLS: {e}"))?;
        tls.write_all(&auth::session_proof(&self.key, Side::Primary, &material)).await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let mut proof = [0u8; PROOF];
        tls.read_exact(&mut proof)
            .await
            .map_err(|_| "the replica did not prove that it holds the replication key".to_string())?;
        if !auth::verify_session_proof(&self.key, Side::Replica, &material, &proof) {
            return Err("the replica did not prove that it holds the replication key".into());
        }
        Ok(Box::new(tls))
    }

    async fn accept(&self, tcp: TcpStream) -> Result<(Guarded, Option<ReplicaId>), String> {
        let mut tls = self.acceptor.accept(tcp).await.map_err(|e| format!("TLS: {e}"))?;
        let material =
            tls.get_ref().1.export_keying_material([0u8; 32], EXPORT_LABEL, None).map_err(|e| format!("TLS: {e}"))?;
        let mut proof = [0u8; PROOF];
        tls.read_exact(&mut proof).await.map_err(|e| format!("no proof of the replication key: {e}"))?;
        if !auth::verify_session_proof(&self.key, Side::Primary, &material, &proof) {
            return Err("the primary did not prove that it holds the replication key".into());
        }
        tls.write_all(&auth::session_proof(&self.key, Side::Replica, &material)).await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        Ok((Box::new(tls), None))
    }
}

/// Takes any server certificate (the key proof says who is there), but
/// still checks that the server signed the handshake with its key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not spoken here".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair(primary: &KeyedTls, replica: &KeyedTls) -> (Result<Guarded, String>, Result<Guarded, String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepting = async { replica.accept(listener.accept().await.unwrap().0).await.map(|(s, _)| s) };
        let connecting = async { primary.connect(TcpStream::connect(address).await.unwrap(), 2).await };
        let (c, a) = tokio::join!(connecting, accepting);
        (c, a)
    }

    /// Two ends with the same key open a stream that carries bytes both
    /// ways; with different keys neither end goes on.
    #[tokio::test]
    async fn a_keyed_stream_opens_only_between_holders_of_the_key() {
        let key = || Key::new(b"0123456789abcdef0123").unwrap();
        let (primary, replica) = (KeyedTls::new(key()).unwrap(), KeyedTls::new(key()).unwrap());
        let (c, a) = pair(&primary, &replica).await;
        let (mut c, mut a) = (c.unwrap(), a.unwrap());
        c.write_all(b"frame").await.unwrap();
        c.flush().await.unwrap();
        let mut got = [0u8; 5];
        a.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"frame");

        let stranger = KeyedTls::new(Key::new(b"not-the-key-at-all-000").unwrap()).unwrap();
        let (c, a) = pair(&stranger, &replica).await;
        assert!(a.is_err(), "the replica took a primary without the key");
        assert!(c.is_err(), "the primary went on without the replica's proof");
        let (c, a) = pair(&primary, &stranger).await;
        assert!(a.is_err() && c.is_err(), "a replica without the key was taken");
    }
}
