//! The CLI's connection to a node's REST API: one HTTP/1.1 request per
//! call, with the API token as `Authorization: Bearer`, and the API's error
//! (status and message) handed back as it came.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, Uri};
use portico_app::error::ApiError;
use serde_json::Value;

/// A node's answers are small JSON documents; more than this is refused.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// Connecting, sending and reading one answer together.
const DEADLINE: Duration = Duration::from_secs(30);

/// Where the API is and who is calling.
#[derive(Clone)]
pub struct Api {
    base: Uri,
    token: String,
    /// For https: how the node's certificate is trusted.
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// How an https node's certificate is trusted.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// The SHA-256 of the node's certificate (hex, colons allowed), as the
    /// node prints it at start: that certificate and no other.
    pub fingerprint: Option<String>,
    /// A CA certificate (PEM) that issued the node's certificate.
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("base", &self.base).finish_non_exhaustive()
    }
}

/// Why a call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The node answered with an error: its status and message.
    #[error("{}", .0.message)]
    Refused(ApiError),
    /// The command itself is wrong (a misspelt setting, a missing secret):
    /// nothing was sent.
    #[error("{0}")]
    Usage(String),
    /// The node could not be reached, or its answer could not be read.
    #[error("{0:#}")]
    Transport(anyhow::Error),
}

impl Api {
    /// `url` is the node's dashboard address, such as http://10.0.0.5:8080.
    pub fn new(url: &str, token: String, trust: &Trust) -> anyhow::Result<Self> {
        let base: Uri = url.trim_end_matches('/').parse().with_context(|| format!("{url:?} is not a URL"))?;
        let tls = match base.scheme_str() {
            Some("http") => None,
            Some("https") => Some(client_config(trust)?),
            Some(other) => anyhow::bail!("{url}: the scheme {other}:// is not supported; give https://HOST:PORT"),
            None => anyhow::bail!("{url}: give the scheme too, such as https://{url}"),
        };
        anyhow::ensure!(base.host().is_some(), "{url}: no host in the URL");
        anyhow::ensure!(
            !token.trim().is_empty(),
            "no API token: give --token, --token-file or PORTICO_TOKEN (create one on the dashboard's Tokens page)"
        );
        Ok(Api { base, token: token.trim().to_string(), tls })
    }

    pub async fn get(&self, path: &str) -> Result<Value, CallError> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value, CallError> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Result<Value, CallError> {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Result<Value, CallError> {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, CallError> {
        self.call(Method::DELETE, path, None).await
    }

    /// One request; `path` starts with `/api/v1/` and is already escaped.
    /// An empty answer (204) is `null`.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, CallError> {
        tokio::time::timeout(DEADLINE, self.exchange(method, path, body))
            .await
            .unwrap_or_else(|_| Err(CallError::Transport(anyhow::anyhow!("no answer within {} s", DEADLINE.as_secs()))))
    }

    async fn exchange(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, CallError> {
        let transport = |e: anyhow::Error| CallError::Transport(e);
        let authority = self.base.authority().map(|a| a.as_str().to_string()).unwrap_or_default();
        let address = match self.base.port_u16() {
            Some(_) => authority.clone(),
            None if self.tls.is_some() => format!("{authority}:443"),
            None => format!("{authority}:80"),
        };
        let stream = tokio::net::TcpStream::connect(&address)
            .await
            .with_context(|| format!("cannot connect to {address}"))
            .map_err(transport)?;
        let mut sender = match &self.tls {
            None => handshake(stream).await,
            Some(config) => {
                let host = self.base.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .with_context(|| format!("{host} is not a host name or address"))
                    .map_err(transport)?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, stream)
                    .await
                    .with_context(|| format!("TLS with {address}"))
                    .map_err(transport)?;
                handshake(tls).await
            }
        }
        .map_err(transport)?;
        let uri = format!("{}{}", self.base.path().trim_end_matches('/'), path);
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(hyper::header::ACCEPT, "application/json");
        let payload = match body {
            Some(b) => {
                request = request.header(hyper::header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(&b).map_err(|e| transport(e.into()))?)
            }
            None => Bytes::new(),
        };
        let request = request.body(Full::new(payload)).map_err(|e| transport(e.into()))?;
        let answer = sender.send_request(request).await.context("sending the request").map_err(transport)?;
        let status = answer.status();
        let bytes = Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| transport(anyhow::anyhow!("reading the answer: {e}")))?
            .to_bytes();
        if status.is_success() {
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).context("the answer is not JSON").map_err(transport);
        }
        Err(CallError::Refused(refusal(status, &bytes)))
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn handshake<S>(stream: S) -> anyhow::Result<Sender>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.context("HTTP handshake")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// TLS that trusts the node's certificate by its fingerprint, or a CA.
fn client_config(trust: &Trust) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = crate::cluster::tls::provider();
    let builder =
        rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let config = match (&trust.fingerprint, &trust.ca_file) {
        (Some(fingerprint), _) => {
            let fingerprint: String = fingerprint.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
            anyhow::ensure!(
                fingerprint.len() == 64 && fingerprint.chars().all(|c| c.is_ascii_hexdigit()),
                "--fingerprint: give the SHA-256 the node printed at start (64 hex digits, colons allowed)"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedCertificate { fingerprint, provider }))
                .with_no_client_auth()
        }
        (None, Some(file)) => {
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::CertificateDer::pem_file_iter(file)
                .with_context(|| format!("cannot read {}", file.display()))?
            {
                roots.add(cert.map_err(|e| anyhow::anyhow!("{}: {e:?}", file.display()))?)?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        (None, None) => anyhow::bail!(
            "an https node: give --fingerprint (the node prints it at start) or --ca-file (the CA that issued its certificate)"
        ),
    };
    Ok(Arc::new(config))
}

/// Trusts exactly one certificate, named by its SHA-256 (the way a user
/// checks a self-signed certificate); the handshake's signatures are still
/// checked, so only the holder of that certificate's key gets through.
#[derive(Debug)]
struct PinnedCertificate {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let found = crate::cluster::tls::fingerprint(end_entity);
        if subtle::ConstantTimeEq::ct_eq(found.as_bytes(), self.fingerprint.as_bytes()).into() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the node's certificate has the fingerprint {found}, not the one given"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The API's error document, or one made from the status if the body is
/// not one (a proxy's page, say).
fn refusal(status: StatusCode, body: &[u8]) -> ApiError {
    serde_json::from_slice::<ApiError>(body).unwrap_or_else(|_| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let reason = status.canonical_reason().unwrap_or("error");
        if text.is_empty() || text.len() > 300 {
            ApiError::new(status.as_u16(), format!("The node answered {} {reason}.", status.as_u16()))
        } else {
            ApiError::new(status.as_u16(), format!("The node answered {} {reason}: {text}", status.as_u16()))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_needs_http_a_host_and_a_token() {
        let trust = Trust::default();
        assert!(Api::new("http://127.0.0.1:8080", "t".into(), &trust).is_ok());
        assert!(Api::new("http://127.0.0.1:8080/", "t".into(), &trust).is_ok());
        assert!(Api::new("127.0.0.1:8080", "t".into(), &trust).is_err());
        assert!(Api::new("ftp://127.0.0.1", "t".into(), &trust).is_err());
        let https = Api::new("https://127.0.0.1:8443", "t".into(), &trust).unwrap_err().to_string();
        assert!(https.contains("--fingerprint"), "{https}");
        let pinned = Trust { fingerprint: Some("AB:".repeat(31) + "AB"), ca_file: None };
        assert!(Api::new("https://127.0.0.1:8443", "t".into(), &pinned).is_ok());
        let short = Trust { fingerprint: Some("abcd".into()), ca_file: None };
        assert!(Api::new("https://127.0.0.1:8443", "t".into(), &short).is_err());
        let no_token = Api::new("http://127.0.0.1:8080", " ".into(), &trust).unwrap_err().to_string();
        assert!(no_token.contains("--token"), "{no_token}");
    }

    #[test]
    fn an_error_that_is_not_the_apis_document_keeps_its_status() {
        let e = refusal(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>");
        assert_eq!(e.status, 502);
        assert!(e.message.contains("502"), "{}", e.message);
        let e = refusal(StatusCode::CONFLICT, br#"{"status":409,"message":"The volume vol1 exists."}"#);
        assert_eq!((e.status, e.message.as_str()), (409, "The volume vol1 exists."));
    }
}
