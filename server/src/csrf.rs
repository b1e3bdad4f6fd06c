//! Cross-site request forgery. The session cookie is `SameSite=Strict`, but
//! a "site" is the registrable domain without the port: a page served on
//! another port of the node's host, or on a sibling name, is the same site
//! and its forms would carry the cookie. So every request that may change
//! something (any method but GET, HEAD and OPTIONS), to the REST API and to
//! the server functions alike, must come from the dashboard's own origin
//! when a browser sent it:
//!
//! * `Sec-Fetch-Site` (Fetch Metadata), when present, must be `same-origin`
//!   (or `none`: the user acted in the browser itself);
//! * otherwise `Origin`, when present, must name the scheme, host and port
//!   the request was sent to (the `Host` header, or `X-Forwarded-Host` from
//!   a trusted proxy); `Origin: null` is refused;
//! * a request with neither header is not from a browser (curl, scripts
//!   with a token) and passes: there is no ambient credential to abuse.
//!
//! Server functions also take JSON only: a cross-origin form can send
//! `text/plain` or form encoding without a CORS preflight, never
//! `application/json`.

use axum::http::{header, HeaderMap, Method};

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CsrfRefusal {
    #[error("this request came from another site (Sec-Fetch-Site: {0}); changes are accepted only from the dashboard's own address")]
    FetchSite(String),
    #[error("this request came from another origin ({0}); changes are accepted only from the dashboard's own address")]
    Origin(String),
    #[error("the request does not say which host it was sent to")]
    NoHost,
}

/// Where the request was addressed, as the browser saw it.
pub struct Target<'a> {
    /// `host[:port]`.
    pub authority: &'a str,
    /// Whether the browser reached the node over HTTPS.
    pub secure: bool,
}

pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Checks a state-changing request; safe methods always pass.
pub fn check(method: &Method, headers: &HeaderMap, target: Option<Target<'_>>) -> Result<(), CsrfRefusal> {
    if is_safe(method) {
        return Ok(());
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("?");
        return match site {
            "same-origin" | "none" => Ok(()),
            other => Err(CsrfRefusal::FetchSite(other.chars().take(32).collect())),
        };
    }
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin = origin.to_str().unwrap_or("null");
    let refused = || CsrfRefusal::Origin(origin.chars().take(100).collect());
    let target = target.ok_or(CsrfRefusal::NoHost)?;
    let (scheme, authority) = origin.split_once("://").ok_or_else(refused)?;
    let scheme_ok = match scheme {
        "https" => true,
        // Over TLS, a page served in clear is another origin.
        "http" => !target.secure,
        _ => false,
    };
    if scheme_ok && same_authority(authority, target.authority, scheme) {
        Ok(())
    } else {
        Err(refused())
    }
}

/// `host[:port]` equality, case-insensitive, with the scheme's default port
/// equal to no port.
fn same_authority(origin: &str, host: &str, scheme: &str) -> bool {
    let default = if scheme == "https" { ":443" } else { ":80" };
    let norm = |a: &str| {
        let a = a.to_ascii_lowercase();
        match a.strip_suffix(default) {
            Some(bare) => bare.to_string(),
            None => a,
        }
    };
    !origin.is_empty() && norm(origin) == norm(host)
}

/// Whether a server function call is JSON.
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn at(authority: &str) -> Option<Target<'_>> {
        Some(Target { authority, secure: false })
    }

    #[test]
    fn safe_methods_and_non_browsers_pass() {
        let evil = headers(&[("origin", "http://evil.example")]);
        assert!(check(&Method::GET, &evil, at("node:8080")).is_ok());
        assert!(check(&Method::POST, &HeaderMap::new(), at("node:8080")).is_ok());
    }

    #[test]
    fn another_port_on_the_same_host_is_another_origin() {
        let h = headers(&[("origin", "http://127.0.0.1:9999")]);
        assert!(matches!(check(&Method::POST, &h, at("127.0.0.1:8080")), Err(CsrfRefusal::Origin(_))));
        let h = headers(&[("origin", "http://127.0.0.1:8080")]);
        assert!(check(&Method::DELETE, &h, at("127.0.0.1:8080")).is_ok());
        let h = headers(&[("origin", "https://SAN.example.com")]);
        assert!(check(&Method::PATCH, &h, at("san.example.com:443")).is_ok());
        let h = headers(&[("origin", "http://other.example.com")]);
        assert!(check(&Method::POST, &h, at("san.example.com")).is_err());
        let h = headers(&[("origin", "null")]);
        assert!(check(&Method::POST, &h, at("san.example.com")).is_err());
        let h = headers(&[("origin", "http://san.example.com")]);
        assert!(check(&Method::POST, &h, Some(Target { authority: "san.example.com", secure: true })).is_err());
    }

    #[test]
    fn fetch_metadata_decides_when_present() {
        for (site, ok) in [("same-origin", true), ("none", true), ("same-site", false), ("cross-site", false)] {
            let h = headers(&[("sec-fetch-site", site), ("origin", "http://127.0.0.1:8080")]);
            assert_eq!(check(&Method::POST, &h, at("127.0.0.1:8080")).is_ok(), ok, "{site}");
        }
    }

    #[test]
    fn json_is_recognised() {
        assert!(is_json(&headers(&[("content-type", "application/json; charset=utf-8")])));
        assert!(!is_json(&headers(&[("content-type", "application/x-www-form-urlencoded")])));
        assert!(!is_json(&headers(&[("content-type", "text/plain")])));
        assert!(!is_json(&HeaderMap::new()));
    }
}
