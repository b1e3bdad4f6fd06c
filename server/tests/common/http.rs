//! Real HTTP/1.1 over TCP to a node served on `127.0.0.1:0`, from a chosen
//! loopback source address, so that tests see what a browser or an attacker
//! on the network would: the peer address, `Origin`, cookies, body limits.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::Value;

pub struct HttpReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl HttpReply {
    pub fn set_cookie(&self) -> Option<String> {
        self.headers.get("set-cookie").map(|v| v.to_str().unwrap().to_string())
    }

    pub fn message(&self) -> String {
        self.body["message"].as_str().unwrap_or_default().to_string()
    }
}

/// One request.
pub struct Call<'a> {
    pub method: Method,
    pub path: &'a str,
    /// The local address to connect from (any of 127.0.0.0/8 works on Linux).
    pub from: Option<IpAddr>,
    pub headers: Vec<(&'a str, String)>,
    pub body: Option<(&'a str, Vec<u8>)>,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, path: &'a str) -> Self {
        Call { method, path, from: None, headers: Vec::new(), body: None }
    }

    pub fn from(mut self, ip: &str) -> Self {
        self.from = Some(ip.parse().unwrap());
        self
    }

    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn json(mut self, v: Value) -> Self {
        self.body = Some(("application/json", v.to_string().into_bytes()));
        self
    }

    pub fn body(mut self, content_type: &'a str, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Some((content_type, bytes.into()));
        self
    }

    pub async fn send(self, to: SocketAddr) -> HttpReply {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(self.from.unwrap_or([127, 0, 0, 1].into()), 0)).unwrap();
        let stream = socket.connect(to).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let mut req = Request::builder().method(self.method).uri(self.path).header("host", to.to_string());
        for (name, value) in &self.headers {
            req = req.header(*name, value);
        }
        let req = match self.body {
            Some((content_type, bytes)) => req.header("content-type", content_type).body(Body::from(bytes)),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        HttpReply { status, headers, body }
    }
}
