//! Password changes through the user's source: the user's own (with the current password) and
//! an administrator's reset. The password-reset panel and the CLI use this.

use super::{Engine, RequestCtx, account_budgets};
use crate::model::AuditRecord;
use crate::source::{PasswordChangeError, SourceErrorText};
use crate::store::FailKind;

impl Engine {
    /// Changes the password of `user` (possibly `user@realm`). With `old`, the user's own
    /// change: a wrong or missing current password and an unknown user look the same, and a
    /// wrong one counts towards the login's lockout. Without, an administrator's reset.
    pub async fn change_password(
        &self,
        user: &str,
        realm: Option<&str>,
        old: Option<&str>,
        new: &str,
        ctx: &RequestCtx,
    ) -> Result<(), PasswordChangeError> {
        let snap = self.snapshot();
        let now = self.ports.clock.now();
        let (login, realm_name) = snap.split_login(user, realm);
        let realm_name = realm_name.unwrap_or_else(|| snap.settings.default_realm.clone());
        let result = async {
            let not_found = || match old {
                Some(_) => PasswordChangeError::WrongOldPassword,
                None => PasswordChangeError::Refused(format!(
                    "no user '{login}' in realm '{realm_name}'"
                )),
            };
            let Some(realm) = snap.realm(&realm_name) else {
                return Err(not_found());
            };
            let (found, complete) = self
                .find_user_in(&snap, &realm.name, &login)
                .await
                .map_err(|e| PasswordChangeError::Source(SourceErrorText(e.to_string())))?;
            // With an earlier source down, the account found may be another person's of the
            // same name: no password is changed on such a guess.
            if !complete {
                return Err(PasswordChangeError::Source(SourceErrorText(format!(
                    "a user source of realm '{}' before the one that knows '{login}' is unavailable; try again later",
                    realm.name
                ))));
            }
            let Some(found) = found.filter(|u| u.is_active(now)) else {
                // As long as a check of the current password would take.
                if old.is_some()
                    && let Some(source) = realm.sources.first().and_then(|s| snap.source(s.as_str()))
                {
                    source.waste_verify().await?;
                }
                return Err(not_found());
            };
            // The account's own budgets, whatever form of its name was typed (as for logins):
            // an attempt is taken before the current password is checked.
            let held = match old {
                Some(_) => {
                    let budgets = account_budgets(
                        &snap.settings,
                        realm.name.as_str(),
                        &found.username,
                        0,
                        ctx.client_ip,
                    );
                    match self
                        .reserve_all(budgets, FailKind::Password, now)
                        .await
                        .map_err(store_err)?
                    {
                        Some(held) => held,
                        None => {
                            return Err(PasswordChangeError::Refused(
                                "the account is locked after too many failed attempts; try again later"
                                    .into(),
                            ));
                        }
                    }
                }
                None => Vec::new(),
            };
            let Some(source) = snap.source(found.source.as_str()) else {
                self.release_all(&held).await.map_err(store_err)?;
                return Err(not_found());
            };
            let result = source.change_password(&found, old, new).await;
            // A wrong current password keeps its attempt; anything else gives it back.
            if result != Err(PasswordChangeError::WrongOldPassword) {
                self.release_all(&held).await.map_err(store_err)?;
            }
            if result.is_ok() {
                self.forget_users();
            }
            result
        }
        .await;
        let record = AuditRecord::event(
            self.ports.clock.now_millis(),
            ctx.door.as_str(),
            ctx.actor.clone(),
            if old.is_some() {
                "password_change"
            } else {
                "password_reset"
            },
        )
        .user(Some(login.clone()), Some(realm_name.clone()))
        .client(
            ctx.client_ip.map(|ip| ip.to_string()),
            ctx.user_agent.clone(),
        )
        .ended(
            if result.is_ok() { "ok" } else { "error" },
            match &result {
                Ok(()) => "password changed".to_string(),
                Err(e) => e.to_string(),
            },
        );
        self.audit_decision(record).await.map_err(|e| {
            PasswordChangeError::Source(SourceErrorText(format!("audit record not written: {e}")))
        })?;
        result
    }
}

fn store_err(e: crate::store::StoreError) -> PasswordChangeError {
    PasswordChangeError::Source(SourceErrorText(e.to_string()))
}
