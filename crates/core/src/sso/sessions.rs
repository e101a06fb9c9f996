//! SSO sessions: a browser signed in on the login page, the applications whose factor chains
//! it passed, the relying parties it signed in to (for single and back-channel logout).

use super::{Sso, key_hash};
use crate::model::{SamlParticipant, SsoSession, SsoSessionInfo};
use crate::settings::SystemSettings;
use crate::store::{StoreError, StoreResult, WebState, WebStateKind};

const KIND: WebStateKind = WebStateKind::SsoSession;
/// How often a conditional update of a session is tried against others changing it.
const AMEND_TRIES: usize = 5;
/// The subject every back-channel logout still to be sent is kept under (to list them).
const DUE_SUBJECT: &str = "due";
/// How long an ended session waits for a running server to tell its relying parties.
pub(super) const DUE_SECONDS: i64 = 86_400;

/// How long sessions live: idle and in all (seconds), from the settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    pub idle: i64,
    pub lifetime: i64,
}

impl SessionLimits {
    pub fn of(settings: &SystemSettings) -> SessionLimits {
        SessionLimits {
            idle: i64::from(settings.sso_idle_minutes) * 60,
            lifetime: i64::from(settings.sso_session_minutes) * 60,
        }
    }
}

/// A user who passed every factor of an application on the login page.
#[derive(Clone, Debug)]
pub struct SignIn<'a> {
    /// The key of the session the browser holds already, if any.
    pub existing: Option<&'a str>,
    pub user: &'a str,
    pub realm: &'a str,
    pub app: &'a str,
    /// The sign-in proved two kinds of factor (REFEDS MFA).
    pub mfa: bool,
    pub client_ip: String,
    pub user_agent: String,
}

/// The session a sign-in left the browser with.
#[derive(Clone, Debug)]
pub struct SignedIn {
    /// The session's new key (for the cookie): new at every sign-in, so a key planted in the
    /// browser before (fixation) is worth nothing after.
    pub key: String,
    pub session: SsoSession,
    pub expires_at: i64,
    /// Another user's session the browser held, ended by this sign-in (its relying parties
    /// are to be told).
    pub ended: Option<SsoSession>,
}

impl Sso {
    /// The live session behind a cookie's key and when it ends (its idle limit checked; the
    /// user still active is checked when a code is traded).
    pub async fn session(
        &self,
        key: &str,
        limits: SessionLimits,
    ) -> StoreResult<Option<(SsoSession, i64)>> {
        let now = self.now();
        Ok(self
            .get::<SsoSession>(KIND, key)
            .await?
            .filter(|(s, _)| now - s.last_seen < limits.idle))
    }

    /// Signs the browser in: the session it holds for the same user gains the application
    /// (and keeps its end), another user's is ended, else a new one starts. Kept under a new
    /// key; the old key goes once the new session is kept (a failed write signs no one out).
    pub async fn sign_in(&self, s: SignIn<'_>, limits: SessionLimits) -> StoreResult<SignedIn> {
        let now = self.now();
        let existing = match s.existing {
            Some(k) => self.session(k, limits).await?.map(|(x, end)| (k, x, end)),
            None => None,
        };
        let same = |x: &SsoSession| x.user == s.user && x.realm == s.realm;
        let old_key = existing.as_ref().map(|(k, _, _)| *k);
        let (session, expires_at, ended) = match existing {
            Some((_, mut x, end)) if same(&x) => {
                if !x.apps.iter().any(|a| a == s.app) {
                    x.apps.push(s.app.to_string());
                }
                // What this sign-in proved replaces what the application's last one did.
                x.mfa_apps.retain(|a| a != s.app);
                if s.mfa {
                    x.mfa_apps.push(s.app.to_string());
                }
                x.last_seen = now;
                x.auth_time = now;
                (x, end, None)
            }
            other => (
                SsoSession {
                    user: s.user.to_string(),
                    realm: s.realm.to_string(),
                    apps: vec![s.app.to_string()],
                    mfa_apps: if s.mfa {
                        vec![s.app.to_string()]
                    } else {
                        Vec::new()
                    },
                    auth_time: now,
                    last_seen: now,
                    created_at: now,
                    client_ip: s.client_ip,
                    user_agent: s.user_agent,
                    saml: Vec::new(),
                    oidc: Vec::new(),
                    sid: self.new_key(),
                },
                now + limits.lifetime,
                other.map(|(_, x, _)| x),
            ),
        };
        let key = self.new_key();
        self.put(
            KIND,
            &key,
            SsoSession::subject(s.realm, s.user),
            &session,
            expires_at,
        )
        .await?;
        if let Some(old) = old_key
            && let Err(e) = self.delete(KIND, old).await
        {
            tracing::warn!(error = %e, "the SSO session's old key not removed");
        }
        Ok(SignedIn {
            key,
            session,
            expires_at,
            ended,
        })
    }

    /// Changes the live session behind `key` with `change` (which says whether it changed
    /// anything), conditionally: a session changed meanwhile (another tab) is read again and
    /// changed again. False when there is no such session.
    async fn amend(
        &self,
        key: &str,
        change: impl Fn(&mut SsoSession) -> bool,
    ) -> StoreResult<bool> {
        let hash = key_hash(key);
        for _ in 0..AMEND_TRIES {
            let now = self.now();
            let Some(kept) = self.web.web_state(KIND, &hash, now).await? else {
                return Ok(false);
            };
            let Ok(mut session) = serde_json::from_str::<SsoSession>(&kept.data) else {
                return Ok(false);
            };
            if !change(&mut session) {
                return Ok(true);
            }
            let data = serde_json::to_string(&session)
                .map_err(|e| StoreError::Backend(format!("SSO session not encoded: {e}")))?;
            if self
                .web
                .update_web_state(KIND, &hash, &kept.data, &data, now)
                .await?
            {
                return Ok(true);
            }
        }
        Err(StoreError::Backend(
            "the SSO session kept changing under this update".into(),
        ))
    }

    /// Marks a session used now (its idle limit starts again; its end stays).
    pub async fn touch(&self, key: &str) -> StoreResult<bool> {
        let now = self.now();
        self.amend(key, |s| {
            s.last_seen = now;
            true
        })
        .await
    }

    /// Records that a session signed in to a SAML service provider (the last sign-in there
    /// replaces an earlier one), for single logout.
    pub async fn remember_saml(&self, key: &str, joined: SamlParticipant) -> StoreResult<bool> {
        self.amend(key, |s| {
            s.saml.retain(|p| p.sp != joined.sp);
            s.saml.push(joined.clone());
            true
        })
        .await
    }

    /// Records that a session signed in to an OpenID Connect client (for back-channel logout).
    pub async fn remember_oidc(&self, key: &str, client_id: &str) -> StoreResult<bool> {
        self.amend(key, |s| {
            if s.oidc.iter().any(|c| c == client_id) {
                return false;
            }
            s.oidc.push(client_id.to_string());
            true
        })
        .await
    }

    /// Ends the session behind a cookie's key (taken: ended once, whoever asks at the same
    /// time); `how` says who ended it, for the audit record.
    pub async fn end(&self, key: &str, how: &str) -> StoreResult<Option<SsoSession>> {
        let Some(session) = self.take::<SsoSession>(KIND, key).await? else {
            return Ok(None);
        };
        self.audit(
            "sso_logout",
            "web",
            (&session.user, &session.realm),
            None,
            &format!(
                "SSO session ended ({how}); relying parties told: {} SAML, {} OpenID Connect",
                session.saml.len(),
                session.oidc.len()
            ),
        )
        .await;
        Ok(Some(session))
    }

    /// The live sessions of `username` in `realm`, oldest first.
    pub async fn sessions_of(
        &self,
        realm: &str,
        username: &str,
    ) -> StoreResult<Vec<SsoSessionInfo>> {
        let kept = self
            .web
            .web_states_of(KIND, &SsoSession::subject(realm, username), self.now())
            .await?;
        Ok(kept
            .into_iter()
            .filter_map(|w| {
                let session = serde_json::from_str::<SsoSession>(&w.data).ok()?;
                Some(SsoSessionInfo {
                    id: w.key_hash,
                    session,
                    expires_at: w.expires_at,
                })
            })
            .collect())
    }

    /// Ends a session by its listed id ([`SsoSessionInfo::id`]); false when it was gone.
    pub async fn end_listed(&self, id: &str) -> StoreResult<bool> {
        self.web.delete_web_state(KIND, id).await
    }

    /// Queues ended sessions whose OpenID Connect clients are still to be told: a running
    /// server takes each once ([`Sso::take_due_logouts`]) and tells them.
    pub async fn queue_logouts(&self, sessions: &[SsoSession]) -> StoreResult<()> {
        let now = self.now();
        for s in sessions.iter().filter(|s| !s.oidc.is_empty()) {
            let data = serde_json::to_string(s)
                .map_err(|e| StoreError::Backend(format!("SSO session not encoded: {e}")))?;
            self.web
                .put_web_state(&WebState {
                    kind: WebStateKind::BackchannelDue,
                    key_hash: crate::rng::random_hex(self.rng.as_ref(), 16),
                    subject: DUE_SUBJECT.into(),
                    data,
                    expires_at: now + DUE_SECONDS,
                })
                .await?;
        }
        Ok(())
    }

    /// The queued ended sessions, each taken once (whichever node takes it first).
    pub async fn take_due_logouts(&self) -> StoreResult<Vec<SsoSession>> {
        let now = self.now();
        let due = self
            .web
            .web_states_of(WebStateKind::BackchannelDue, DUE_SUBJECT, now)
            .await?;
        let mut sessions = Vec::new();
        for d in due {
            // One not taken now is taken on a later call (what was taken is kept going).
            match self
                .web
                .take_web_state(WebStateKind::BackchannelDue, &d.key_hash, now)
                .await
            {
                Ok(Some(taken)) => {
                    if let Ok(s) = serde_json::from_str::<SsoSession>(&taken.data) {
                        sessions.push(s);
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "an ended session to tell not taken"),
            }
        }
        Ok(sessions)
    }
}
