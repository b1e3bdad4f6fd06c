//! Dashboard users: administrators only. The last enabled administrator can
//! be neither deleted, disabled nor demoted; each of those checks is part of
//! the one SQL statement that makes the change, so two concurrent requests
//! cannot both pass it.

use portico_app::error::{ApiError, FieldErrors};
use portico_app::model::*;
use portico_app::service::Caller;

use super::{db_error, hash_error, internal, AuditRecord, Node};

/// True when the user `?` is not the last enabled admin (SQL fragment).
const NOT_LAST_ADMIN: &str = "NOT (role = 'admin' AND enabled = 1 AND \
     (SELECT COUNT(*) FROM users WHERE role = 'admin' AND enabled = 1) <= 1)";

const LAST_ADMIN: &str = "This is the last enabled administrator: add or enable another administrator first.";

type UserRow = (String, String, bool, String, Option<String>);

fn view((username, role, enabled, created_at, last_login_at): UserRow) -> Result<UserView, ApiError> {
    let role = Role::parse(&role).ok_or_else(|| internal("unknown role in the database"))?;
    Ok(UserView { username, role, enabled, created_at, last_login_at })
}

impl Node {
    /// Audits and returns the refusal of a change that would leave no enabled admin.
    async fn refuse_last_admin(&self, caller: &Caller, action: &'static str, object: &str) -> ApiError {
        self.record(AuditRecord::by(caller, action, object, AuditResult::Failure).detail("refused: last admin")).await;
        ApiError::conflict(LAST_ADMIN)
    }

    async fn find_user(&self, username: &str) -> Result<UserView, ApiError> {
        let row: Option<UserRow> =
            sqlx::query_as("SELECT username, role, enabled, created_at, last_login_at FROM users WHERE username = ?")
                .bind(username)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
        view(row.ok_or_else(|| ApiError::not_found(format!("The user {username}")))?)
    }

    pub(crate) async fn list_users_impl(&self, caller: &Caller) -> Result<Vec<UserView>, ApiError> {
        caller.require(Role::Admin, "manage users")?;
        let rows: Vec<UserRow> =
            sqlx::query_as("SELECT username, role, enabled, created_at, last_login_at FROM users ORDER BY username")
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
        rows.into_iter().map(view).collect()
    }

    pub(crate) async fn create_user_impl(&self, caller: &Caller, new: NewUser) -> Result<UserView, ApiError> {
        let object = format!("user/{}", new.username.chars().take(64).collect::<String>());
        self.authorize(caller, Role::Admin, "user.create", &object, "manage users").await?;
        let mut errors = FieldErrors::default();
        errors.check("username", check_username(&new.username));
        errors.check("password", check_password(&new.password));
        errors.into_result()?;
        let hash = self.hasher.hash(new.password).await.map_err(hash_error)?;
        let now = crate::db::now();
        let res = sqlx::query(
            "INSERT INTO users (username, password_hash, role, enabled, created_at, updated_at) VALUES (?, ?, ?, 1, ?, ?) \
             ON CONFLICT (username) DO NOTHING",
        )
        .bind(&new.username)
        .bind(hash)
        .bind(new.role.as_str())
        .bind(&now)
        .bind(&now)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        if res.rows_affected() == 0 {
            self.record(AuditRecord::by(caller, "user.create", &object, AuditResult::Failure).detail("name taken"))
                .await;
            let mut e = ApiError::conflict(format!("A user named {} already exists.", new.username));
            e.fields.insert("username".into(), "This name is taken.".into());
            return Err(e);
        }
        self.record(
            AuditRecord::by(caller, "user.create", &object, AuditResult::Success).detail(format!("role {}", new.role)),
        )
        .await;
        self.find_user(&new.username).await
    }

    pub(crate) async fn update_user_impl(
        &self,
        caller: &Caller,
        username: &str,
        patch: UserPatch,
    ) -> Result<UserView, ApiError> {
        let object = format!("user/{username}");
        self.authorize(caller, Role::Admin, "user.update", &object, "manage users").await?;
        if patch.role.is_none() && patch.password.is_none() && patch.enabled.is_none() {
            return Err(ApiError::new(422, "Nothing to change: give role, password or enabled."));
        }
        let mut errors = FieldErrors::default();
        if let Some(p) = &patch.password {
            errors.check("password", check_password(p));
        }
        errors.into_result()?;
        let before = self.find_user(username).await?;
        let mut changes = Vec::new();

        if let Some(role) = patch.role.filter(|r| *r != before.role) {
            let sql = if role == Role::Admin {
                "UPDATE users SET role = ?, updated_at = ? WHERE username = ?".to_string()
            } else {
                format!("UPDATE users SET role = ?, updated_at = ? WHERE username = ? AND {NOT_LAST_ADMIN}")
            };
            let res = sqlx::query(&sql)
                .bind(role.as_str())
                .bind(crate::db::now())
                .bind(username)
                .execute(&self.pool)
                .await
                .map_err(db_error)?;
            if res.rows_affected() == 0 {
                return Err(self.refuse_last_admin(caller, "user.update", &object).await);
            }
            changes.push(format!("role {} → {}", before.role, role));
        }
        if let Some(enabled) = patch.enabled.filter(|e| *e != before.enabled) {
            let sql = if enabled {
                "UPDATE users SET enabled = 1, updated_at = ? WHERE username = ?".to_string()
            } else {
                format!("UPDATE users SET enabled = 0, updated_at = ? WHERE username = ? AND {NOT_LAST_ADMIN}")
            };
            let res =
                sqlx::query(&sql).bind(crate::db::now()).bind(username).execute(&self.pool).await.map_err(db_error)?;
            if res.rows_affected() == 0 {
                return Err(self.refuse_last_admin(caller, "user.update", &object).await);
            }
            changes.push(if enabled { "enabled".into() } else { "disabled".into() });
        }
        if let Some(password) = patch.password {
            let hash = self.hasher.hash(password).await.map_err(hash_error)?;
            sqlx::query("UPDATE users SET password_hash = ?, updated_at = ? WHERE username = ?")
                .bind(hash)
                .bind(crate::db::now())
                .bind(username)
                .execute(&self.pool)
                .await
                .map_err(db_error)?;
            changes.push("password reset".into());
        }
        if patch.enabled == Some(false) || changes.iter().any(|c| c == "password reset") {
            // A disabled user or a reset password ends the user's sessions and
            // revokes the user's API tokens: whoever held them is out for good,
            // also once the account is enabled again.
            let user_id = "(SELECT id FROM users WHERE username = ?)";
            let mut tx = self.pool.begin().await.map_err(db_error)?;
            for table in ["sessions", "api_tokens"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE user_id = {user_id}"))
                    .bind(username)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
            }
            tx.commit().await.map_err(db_error)?;
            changes.push("sessions and API tokens revoked".into());
        }
        let detail = if changes.is_empty() { "no change".to_string() } else { changes.join("; ") };
        self.record(AuditRecord::by(caller, "user.update", &object, AuditResult::Success).detail(detail)).await;
        self.find_user(username).await
    }

    pub(crate) async fn delete_user_impl(&self, caller: &Caller, username: &str) -> Result<(), ApiError> {
        let object = format!("user/{username}");
        self.authorize(caller, Role::Admin, "user.delete", &object, "manage users").await?;
        self.find_user(username).await?;
        let res = sqlx::query(&format!("DELETE FROM users WHERE username = ? AND {NOT_LAST_ADMIN}"))
            .bind(username)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        if res.rows_affected() == 0 {
            return Err(self.refuse_last_admin(caller, "user.delete", &object).await);
        }
        self.record(AuditRecord::by(caller, "user.delete", &object, AuditResult::Success)).await;
        Ok(())
    }
}
