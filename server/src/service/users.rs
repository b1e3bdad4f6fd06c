//! Dashboard users: administrators only. Users are the cluster's: every
//! change is committed through it (`storage/commands/users.rs` applies it,
//! with the rule that the last enabled administrator can be neither
//! deleted, disabled nor demoted), so a user logs in on any node.

use portico_app::error::{ApiError, FieldErrors};
use portico_app::model::*;
use portico_app::service::Caller;

use super::{db_error, hash_error, internal, AuditRecord, Node};

use crate::storage::commands::users::LAST_ADMIN;
use crate::storage::proposal::UserChange;

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
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT u.username, u.role, u.enabled, u.created_at, l.last_login_at FROM users u \
                 LEFT JOIN user_logins l ON l.user_id = u.id WHERE u.username = ?",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        view(row.ok_or_else(|| ApiError::not_found(format!("The user {username}")))?)
    }

    pub(crate) async fn list_users_impl(&self, caller: &Caller) -> Result<Vec<UserView>, ApiError> {
        caller.require(Role::Admin, "manage users")?;
        let rows: Vec<UserRow> = sqlx::query_as(
            "SELECT u.username, u.role, u.enabled, u.created_at, l.last_login_at FROM users u \
                 LEFT JOIN user_logins l ON l.user_id = u.id ORDER BY u.username",
        )
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
        let change = UserChange::Create {
            username: new.username.clone(),
            password_hash: hash,
            role: new.role.as_str().to_string(),
        };
        if let Err(e) = self.change_users(change).await {
            self.record(
                AuditRecord::by(caller, "user.create", &object, AuditResult::Failure).detail(e.message.clone()),
            )
            .await;
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

        // Each part is its own change; the first that is refused ends it.
        let object_ref = object.as_str();
        let refused = |e: ApiError| async move {
            if e.message == LAST_ADMIN {
                return self.refuse_last_admin(caller, "user.update", object_ref).await;
            }
            e
        };
        if let Some(role) = patch.role.filter(|r| *r != before.role) {
            let change = UserChange::SetRole { username: username.to_string(), role: role.as_str().to_string() };
            if let Err(e) = self.change_users(change).await {
                return Err(refused(e).await);
            }
            changes.push(format!("role {} → {}", before.role, role));
        }
        if let Some(enabled) = patch.enabled.filter(|e| *e != before.enabled) {
            if let Err(e) = self.change_users(UserChange::SetEnabled { username: username.to_string(), enabled }).await
            {
                return Err(refused(e).await);
            }
            changes.push(if enabled { "enabled".into() } else { "disabled".into() });
        }
        if let Some(password) = patch.password {
            let hash = self.hasher.hash(password).await.map_err(hash_error)?;
            let change = UserChange::SetPassword { username: username.to_string(), password_hash: hash };
            if let Err(e) = self.change_users(change).await {
                return Err(refused(e).await);
            }
            changes.push("password reset".into());
        }
        if patch.enabled == Some(false) || changes.iter().any(|c| c == "password reset") {
            // Applied with the change: a disabled user or a reset password
            // ends the user's sessions and revokes the user's API tokens, on
            // every node; whoever held them is out for good.
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
        if let Err(e) = self.change_users(UserChange::Delete { username: username.to_string() }).await {
            if e.message == LAST_ADMIN {
                return Err(self.refuse_last_admin(caller, "user.delete", &object).await);
            }
            return Err(e);
        }
        self.record(AuditRecord::by(caller, "user.delete", &object, AuditResult::Success)).await;
        Ok(())
    }
}
