//! The CLI's connection to a node's REST API: one HTTP/1.1 request per
//! call, with the API token as `Authorization: Bearer`, and the API's error
//! (status and message) handed back as it came.

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
    pub fn new(url: &str, token: String) -> anyhow::Result<Self> {
        let base: Uri = url.trim_end_matches('/').parse().with_context(|| format!("{url:?} is not a URL"))?;
        match base.scheme_str() {
            Some("http") => {}
            Some(other) => anyhow::bail!("{url}: the scheme {other}:// is not supported; give http://HOST:PORT"),
            None => anyhow::bail!("{url}: give the scheme too, such as http://{url}"),
        }
        anyhow::ensure!(base.host().is_some(), "{url}: no host in the URL");
        anyhow::ensure!(
            !token.trim().is_empty(),
            "no API token: give --token, --token-file or PORTICO_TOKEN (create one on the dashboard's Tokens page)"
        );
        Ok(Api { base, token: token.trim().to_string() })
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
            None => format!("{authority}:80"),
        };
        let stream = tokio::net::TcpStream::connect(&address)
            .await
            .with_context(|| format!("cannot connect to {address}"))
            .map_err(transport)?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .context("HTTP handshake")
            .map_err(transport)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
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
        assert!(Api::new("http://127.0.0.1:8080", "t".into()).is_ok());
        assert!(Api::new("http://127.0.0.1:8080/", "t".into()).is_ok());
        assert!(Api::new("127.0.0.1:8080", "t".into()).is_err());
        assert!(Api::new("ftp://127.0.0.1", "t".into()).is_err());
        let no_token = Api::new("http://127.0.0.1:8080", " ".into()).unwrap_err().to_string();
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
