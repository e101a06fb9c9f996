//! Administrator accounts and their sessions (the bearer token from `/auth`).

use super::{Actor, Admin, AdminError, AdminResult, Target};
use crate::engine::EngineError;
use crate::model::{AdminAccount, AdminRole, AdminSession};
use crate::rng::random_token;
use crate::store::FailKind;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// How long an admin session lasts.
pub const SESSION_SECONDS: i64 = 8 * 3600;

/// A successful sign-in.
#[derive(Clone)]
pub struct LoginResult {
    /// The bearer token; only its hash is stored.
    pub token: Zeroizing<String>,
    pub session: AdminSession,
}

impl std::fmt::Debug for LoginResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginResult")
            .field("token", &"***")
            .field("session", &self.session)
            .finish()
    }
}

fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn check_admin_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
    {
        return Err(format!(
            "name: '{name}' must be 1 to 64 letters, digits, '-', '_', '.' or '@'"
        ));
    }
    Ok(())
}

impl Admin {
    pub async fn create_admin(
        &self,
        actor: &Actor,
        name: &str,
        password: &str,
        role: AdminRole,
    ) -> AdminResult<AdminAccount> {
        let mut errs = Vec::new();
        if let Err(e) = check_admin_name(name) {
            errs.push(e);
        }
        if password.chars().count() < 12 {
            errs.push("password: administrators need at least 12 characters".into());
        }
        if !errs.is_empty() {
            return Err(AdminError::Invalid(errs));
        }
        let hash = self
            .engine
            .ports()
            .hasher
            .hash(password)
            .await
            .map_err(EngineError::from)?;
        let account = AdminAccount {
            name: name.to_string(),
            password_hash: hash,
            role,
            enabled: true,
            created_at: self.now(),
        };
        self.engine.store().create_admin(&account).await?;
        self.audit(
            actor,
            "admin_create",
            Target {
                user: Some(name),
                ..Target::default()
            },
            "ok",
            &format!("role {}", role.as_str()),
        )
        .await?;
        Ok(account)
    }

    pub async fn list_admins(&self) -> AdminResult<Vec<AdminAccount>> {
        Ok(self.engine.store().list_admins().await?)
    }

    pub async fn delete_admin(&self, actor: &Actor, name: &str) -> AdminResult<()> {
        let store = self.engine.store();
        if !store.delete_admin(name).await? {
            return Err(AdminError::NotFound(format!("administrator '{name}'")));
        }
        store.delete_sessions_of(name).await?;
        self.audit(
            actor,
            "admin_delete",
            Target {
                user: Some(name),
                ..Target::default()
            },
            "ok",
            "deleted; sessions ended",
        )
        .await
    }

    pub async fn set_admin_password(
        &self,
        actor: &Actor,
        name: &str,
        password: &str,
    ) -> AdminResult<()> {
        if password.chars().count() < 12 {
            return Err(AdminError::invalid(
                "password: administrators need at least 12 characters",
            ));
        }
        let hash = self
            .engine
            .ports()
            .hasher
            .hash(password)
            .await
            .map_err(EngineError::from)?;
        let store = self.engine.store();
        if !store.update_admin_password(name, &hash).await? {
            return Err(AdminError::NotFound(format!("administrator '{name}'")));
        }
        store.delete_sessions_of(name).await?;
        self.audit(
            actor,
            "admin_password",
            Target {
                user: Some(name),
                ..Target::default()
            },
            "ok",
            "password changed; sessions ended",
        )
        .await
    }

    /// Signs an administrator in. Unknown names, wrong passwords and locked names get the same
    /// answer after the same work. An attempt is taken from the name's budget before the
    /// password is checked (`max_password_attempts` within `incorrect_attempt_interval_minutes`
    /// lock it for `lock_period_minutes`, per address too with `lock_per_client_address`), when
    /// account locking is on; a right password clears the count.
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        client_ip: Option<std::net::IpAddr>,
    ) -> AdminResult<Option<LoginResult>> {
        let hasher = &self.engine.ports().hasher;
        let store = self.engine.store();
        let settings = self.engine.snapshot().settings.clone();
        let now = self.now();
        let lost_before = store.lost_writes();
        let budgets = crate::engine::admin_budgets(&settings, name, client_ip);
        let held = self
            .engine
            .reserve_all(budgets.clone(), FailKind::Password, now)
            .await?;
        let locked = held.is_none();
        let checked = async {
            let account = store.admin(name).await?;
            let ok = match &account {
                Some(a) if !locked => hasher.verify(password, &a.password_hash).await? && a.enabled,
                _ => {
                    hasher.waste_verify().await?;
                    false
                }
            };
            AdminResult::Ok((account, ok))
        }
        .await;
        // A sign-in that could not be checked (shed, a store fault) costs no attempt.
        let (account, ok) = match checked {
            Ok(checked) => checked,
            Err(e) => {
                if let Some(held) = &held {
                    self.engine.release_all(held).await.ok();
                }
                return Err(e);
            }
        };
        let actor = Actor {
            name: format!("admin:{name}"),
            door: "api".into(),
            client_ip: client_ip.map(|ip| ip.to_string()),
        };
        let target = Target {
            user: Some(name),
            ..Target::default()
        };
        let Some(account) = account.filter(|_| ok) else {
            // A wrong password keeps its attempt.
            let reason = match held.as_deref().and_then(|h| h.first()) {
                None => "locked after too many failed sign-ins".to_string(),
                Some(r) => format!(
                    "wrong name or password (attempt {} of {})",
                    r.attempt,
                    r.policy.max(r.kind)
                ),
            };
            self.audit(&actor, "admin_login", target, "reject", &reason)
                .await?;
            crate::store::ensure_kept(store.as_ref(), lost_before)?;
            return Ok(None);
        };
        let keys: Vec<_> = budgets.into_iter().map(|(key, _)| key).collect();
        store.clear_locks(&keys).await?;
        let token = Zeroizing::new(random_token(self.engine.ports().rng.as_ref()));
        let session = AdminSession {
            token_hash: token_hash(&token),
            admin: account.name.clone(),
            role: account.role,
            created_at: now,
            expires_at: now + SESSION_SECONDS,
        };
        store.create_session(&session).await?;
        self.audit(&actor, "admin_login", target, "ok", "signed in")
            .await?;
        crate::store::ensure_kept(store.as_ref(), lost_before)?;
        Ok(Some(LoginResult { token, session }))
    }

    /// The live session a bearer token belongs to.
    pub async fn session(&self, token: &str) -> AdminResult<Option<AdminSession>> {
        if token.is_empty() || token.len() > 256 {
            return Ok(None);
        }
        let session = self.engine.store().session(&token_hash(token)).await?;
        Ok(session.filter(|s| s.expires_at > self.now()))
    }

    pub async fn logout(&self, token: &str) -> AdminResult<()> {
        self.engine
            .store()
            .delete_session(&token_hash(token))
            .await?;
        Ok(())
    }
}
