//! Login, logout and resolving a cookie or bearer token to a caller.

use std::time::Instant;

use portico_app::error::ApiError;
use portico_app::model::{AuditResult, LoginRequest, Me, Role};
use portico_app::service::{AuthMethod, Caller, Credential, NewSession, RequestOrigin};

use super::{db_error, hash_error, internal, AuditRecord, Node};
use crate::secrets::{self, SecretError, API_TOKEN_PREFIX};
use crate::throttle::Refusal;

const WRONG_CREDENTIALS: &str = "Wrong user name or password.";

fn minutes(d: std::time::Duration) -> u64 {
    d.as_secs().div_ceil(60).max(1)
}

/// The answer to an attempt the throttle refused (429).
fn refused(refusal: Refusal) -> ApiError {
    let message = match refusal {
        Refusal::SourceLocked(left) => {
            format!("Too many failed logins from your address. Try again in {} minutes.", minutes(left))
        }
        Refusal::Wait(left) => match left.as_secs_f64().ceil().max(1.0) as u64 {
            1 => "Too many failed logins from your address. Try again in a second.".into(),
            n => format!("Too many failed logins from your address. Try again in {n} seconds."),
        },
        Refusal::InFlight => "Another login from your address is being checked. Try again in a moment.".into(),
        Refusal::UserLocked(left) => format!(
            "Too many failed logins for this user name. Try again in {} minutes, or from a machine \
             that has not failed to log in.",
            minutes(left)
        ),
    };
    ApiError::too_many_attempts(message)
}

impl Node {
    pub(crate) async fn login_impl(&self, req: LoginRequest, origin: RequestOrigin) -> Result<NewSession, ApiError> {
        let username = req.username.trim().to_string();
        let address = origin.address.clone();
        let audit = |result, detail: String| AuditRecord {
            user: if username.is_empty() { "-".into() } else { username.chars().take(64).collect() },
            action: "login",
            object: format!("user/{}", username.chars().take(64).collect::<String>()),
            result,
            source: address.clone(),
            detail: Some(detail),
        };
        if username.is_empty() || req.password.is_empty() {
            let mut fields = std::collections::BTreeMap::new();
            if username.is_empty() {
                fields.insert("username".into(), "Enter your user name.".into());
            }
            if req.password.is_empty() {
                fields.insert("password".into(), "Enter your password.".into());
            }
            return Err(ApiError::invalid(fields));
        }
        if req.password.len() > 1024 || username.len() > 256 {
            return Err(ApiError::new(400, "The user name or password is too long."));
        }

        // Throttling comes first: a refused attempt costs no hashing and no
        // durable write (it is counted, see `refusals.rs`).
        let attempt = match self.throttle.admit(&username, address.as_deref(), Instant::now()) {
            Ok(attempt) => attempt,
            Err(refusal) => {
                self.refusals.note(address.as_deref(), &username, refusal.reason());
                return Err(refused(refusal));
            }
        };

        let row: Option<(i64, String, String, bool)> =
            sqlx::query_as("SELECT id, password_hash, role, enabled FROM users WHERE username = ?")
                .bind(&username)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
        let stored = row.as_ref().map(|r| r.1.clone());
        let ok = match self.hasher.verify(req.password, stored).await {
            Ok(ok) => ok,
            Err(SecretError::Busy) => {
                self.refusals.note(address.as_deref(), &username, "no free turn to check the password");
                return Err(hash_error(SecretError::Busy));
            }
            Err(e) => return Err(internal(e)),
        };

        let Some((user_id, _, role, enabled)) = row.filter(|_| ok) else {
            let outcome = self.throttle.failed(attempt, Instant::now());
            tracing::warn!(user = %username, source = ?address, failures = outcome.user_failures, "failed login");
            self.record(audit(
                AuditResult::Failure,
                format!(
                    "wrong user name or password (failure {} of this name, {} from this address)",
                    outcome.user_failures, outcome.source_failures
                ),
            ))
            .await;
            let lock_min = minutes(self.throttle.policy().lock_for);
            let locks = [
                (outcome.user_locked, format!("user/{username}"), "user name", " for addresses that failed to log in"),
                (outcome.source_locked, format!("address/{}", address.clone().unwrap_or_default()), "address", ""),
            ];
            for (_, object, what, scope) in locks.iter().filter(|l| l.0) {
                self.record(AuditRecord {
                    user: username.clone(),
                    action: "login.lockout",
                    object: object.clone(),
                    result: AuditResult::Denied,
                    source: address.clone(),
                    detail: Some(format!("{what} locked for {lock_min} minutes{scope} after repeated failed logins")),
                })
                .await;
            }
            if outcome.user_locked || outcome.source_locked {
                return Err(ApiError::too_many_attempts(format!(
                    "Too many failed logins: locked for {lock_min} minutes."
                )));
            }
            return Err(ApiError::new(401, WRONG_CREDENTIALS));
        };
        if !enabled {
            self.record(audit(AuditResult::Denied, "account disabled".into())).await;
            return Err(ApiError::new(403, "This account is disabled. Ask an administrator."));
        }
        let role = Role::parse(&role).ok_or_else(|| internal("unknown role in the database"))?;
        self.throttle.succeeded(attempt);

        let token = secrets::random_token("");
        let now = time::OffsetDateTime::now_utc();
        let expires = now + self.settings.session_lifetime;
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, source) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(secrets::sha256_hex(&token))
        .bind(user_id)
        .bind(crate::db::rfc3339(now))
        .bind(crate::db::rfc3339(expires))
        .bind(&address)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO user_logins (user_id, last_login_at) VALUES (?, ?) \
             ON CONFLICT (user_id) DO UPDATE SET last_login_at = excluded.last_login_at",
        )
        .bind(user_id)
        .bind(crate::db::rfc3339(now))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        // Expired sessions are swept at each login.
        sqlx::query("DELETE FROM sessions WHERE expires_at < ?")
            .bind(crate::db::rfc3339(now))
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        self.record(audit(AuditResult::Success, "session opened".into())).await;
        Ok(NewSession {
            token,
            max_age_seconds: self.settings.session_lifetime.whole_seconds(),
            me: Me { username, role },
        })
    }

    pub(crate) async fn logout_impl(&self, caller: &Caller, session_token: &str) -> Result<(), ApiError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(secrets::sha256_hex(session_token))
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        self.record(AuditRecord::by(caller, "logout", format!("user/{}", caller.username), AuditResult::Success)).await;
        Ok(())
    }

    pub(crate) async fn authenticate_impl(
        &self,
        credential: Credential,
        origin: RequestOrigin,
    ) -> Result<Caller, ApiError> {
        let now = crate::db::now();
        let row: Option<(i64, String, String)> = match &credential {
            Credential::Session(token) => {
                if token.is_empty() || token.len() > 128 {
                    return Err(ApiError::unauthenticated());
                }
                sqlx::query_as(
                    "SELECT u.id, u.username, u.role FROM sessions s JOIN users u ON u.id = s.user_id \
                     WHERE s.token_hash = ? AND s.expires_at > ? AND u.enabled = 1",
                )
                .bind(secrets::sha256_hex(token))
                .bind(&now)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?
            }
            Credential::Bearer(token) => {
                if !token.starts_with(API_TOKEN_PREFIX) || token.len() > 128 {
                    return Err(ApiError::new(401, "The API token is not valid."));
                }
                let hash = secrets::sha256_hex(token);
                let found: Option<(i64, String, String, Option<String>, bool)> = sqlx::query_as(
                    "SELECT u.id, u.username, u.role, t.expires_at, t.read_only FROM api_tokens t \
                     JOIN users u ON u.id = t.user_id WHERE t.token_hash = ? AND u.enabled = 1",
                )
                .bind(&hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
                if found.as_ref().is_some_and(|(.., expires_at, _)| expires_at.as_ref().is_some_and(|e| *e <= now)) {
                    return Err(ApiError::new(401, "The API token has expired; make a new one on the Tokens page."));
                }
                // A read-only token acts as a viewer, whatever its owner's role.
                let row = found.map(|(id, username, role, _, read_only)| {
                    (id, username, if read_only { Role::Viewer.as_str().to_string() } else { role })
                });
                if row.is_some() {
                    sqlx::query(
                        "INSERT INTO token_uses (token_id, last_used_at) \
                         SELECT id, ? FROM api_tokens WHERE token_hash = ? \
                         ON CONFLICT (token_id) DO UPDATE SET last_used_at = excluded.last_used_at",
                    )
                    .bind(&now)
                    .bind(&hash)
                    .execute(&self.pool)
                    .await
                    .map_err(db_error)?;
                }
                row
            }
        };
        let Some((user_id, username, role)) = row else {
            return Err(match credential {
                Credential::Session(_) => ApiError::new(401, "Your session has ended. Log in again."),
                Credential::Bearer(_) => ApiError::new(401, "The API token is not valid."),
            });
        };
        let role = Role::parse(&role).ok_or_else(|| internal("unknown role in the database"))?;
        let auth = match credential {
            Credential::Session(_) => AuthMethod::Session,
            Credential::Bearer(_) => AuthMethod::Token,
        };
        Ok(Caller { user_id, username, role, source: origin.address, auth })
    }
}
