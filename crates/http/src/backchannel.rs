//! OpenID Connect Back-Channel Logout 1.0: when an SSO session ends — signed out, ended from
//! the session list, by an administrator, or by a SAML single logout — every OIDC client it
//! signed in to that registered a `backchannel_logout_uri` is sent a logout token (a signed
//! JWT naming the user and the session) by POST, server to server.

use crate::HttpState;
use serde_json::{Value, json};
use std::time::Duration;
use tessera_core::model::{AuditRecord, SsoSession};

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
const TIMEOUT: Duration = Duration::from_secs(5);
/// How many relying parties are told at the same time.
const PARALLEL: usize = 8;
/// The pauses before the second, third and fourth tries (with the 5 s timeouts, a relying
/// party that never answers is given up about a minute after the first try).
const RETRY_AFTER: [Duration; 3] = [
    Duration::from_secs(2),
    Duration::from_secs(10),
    Duration::from_secs(30),
];

/// Takes the sessions ended away from a running server (kind `backchannel_due`: by the CLI,
/// the admin API) — each once, whichever node takes it first — and tells their relying
/// parties in the background. Called every second by the server.
pub async fn send_due(state: &HttpState) {
    match state.engine.sso().take_due_logouts().await {
        Ok(sessions) if !sessions.is_empty() => notify(state, &sessions),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "ended sessions to tell not read"),
    }
}

/// Tells the relying parties of the ended sessions, in the background.
pub(crate) fn notify(state: &HttpState, sessions: &[SsoSession]) {
    if sessions.iter().all(|s| s.oidc.is_empty()) {
        return;
    }
    let state = state.clone();
    let sessions = sessions.to_vec();
    tokio::spawn(async move { notify_now(&state, &sessions).await });
}

/// Tells the relying parties of the ended sessions, several at a time; returns when each
/// answered, or was tried for the last time.
async fn notify_now(state: &HttpState, sessions: &[SsoSession]) {
    use futures_util::StreamExt;
    let snap = state.engine.snapshot();
    let Ok(iss) = crate::oauth::issuer(state) else {
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Ok(http) = http_client(None) else {
        return;
    };
    let mut deliveries = Vec::new();
    for session in sessions {
        let realm = tessera_core::ids::RealmName(session.realm.clone());
        let sub = match state.engine.find_user(&snap, &realm, &session.user).await {
            Ok(Some(u)) => Some(crate::web::subject(&u)),
            _ => None,
        };
        for client_id in &session.oidc {
            let Some(client) = snap.api_client_by_id(client_id) else {
                continue;
            };
            let Some(uri) = client.backchannel_logout_uri.clone() else {
                continue;
            };
            // The token names the session (sid) or the user (sub): without either it would
            // mean nothing.
            if sub.is_none() && session.sid.is_empty() {
                tracing::warn!(client = %client.name, user = %session.user,
                    "back-channel logout not sent: neither the session id nor the user is known");
                continue;
            }
            let told = Told {
                state,
                iss: &iss,
                client,
                session,
                sub: sub.clone(),
            };
            // A client with CA certificates of its own is reached trusting only them.
            let own = client
                .backchannel_ca_pem
                .as_deref()
                .map(|pem| http_client(Some(pem)));
            let http = &http;
            deliveries.push(async move {
                let (result, reason) = match &own {
                    Some(Ok(own)) => deliver(own, &uri, &told).await,
                    Some(Err(e)) => ("error", format!("{uri}: the client's CA certificates: {e}")),
                    None => deliver(http, &uri, &told).await,
                };
                told.audit(result, reason).await;
            });
        }
    }
    // Each relying party on its own (one that is down and retried delays no other), a few
    // at a time.
    futures_util::stream::iter(deliveries)
        .buffer_unordered(PARALLEL)
        .collect::<Vec<()>>()
        .await;
}

/// The HTTP client logout tokens are posted with: no redirects, a short timeout; the system's
/// CA certificates are trusted, or only those of `ca_pem`.
fn http_client(ca_pem: Option<&str>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| format!("not readable: {e}"))?;
        if certs.is_empty() {
            return Err("no PEM certificate".into());
        }
        builder = builder.tls_certs_only(certs);
    }
    builder.build().map_err(|e| e.to_string())
}

/// One relying party to tell of one ended session.
struct Told<'a> {
    state: &'a HttpState,
    iss: &'a str,
    client: &'a tessera_core::model::ApiClient,
    session: &'a SsoSession,
    sub: Option<String>,
}

impl Told<'_> {
    /// A logout token, signed like the client's ID tokens; new at each try (its own `jti`, so
    /// that a relying party that took an earlier try does not refuse this one as a replay).
    async fn token(&self) -> Result<String, String> {
        let now = self.state.engine.clock().now();
        let rng = self.state.engine.rng();
        let mut claims = json!({
            "iss": self.iss, "aud": self.client.client_id, "iat": now, "exp": now + 120,
            "jti": tessera_core::rng::random_hex(rng, 16),
            "events": { EVENT: {} },
        });
        if let Some(obj) = claims.as_object_mut() {
            if let Some(s) = &self.sub {
                obj.insert("sub".into(), Value::String(s.clone()));
            }
            if !self.session.sid.is_empty() {
                obj.insert("sid".into(), Value::String(self.session.sid.clone()));
            }
        }
        match self.client.id_token_alg.as_deref() {
            Some("RS256") => match crate::rsa_key::signer(self.state).await {
                Ok(Some(k)) => k.sign_typed(&claims, "logout+jwt"),
                Ok(None) => Err("no RS256 key".into()),
                Err(e) => Err(e),
            },
            _ => match crate::oauth::signer(self.state).await {
                Ok(k) => k.sign_typed(&claims, "logout+jwt"),
                Err(e) => Err(e),
            },
        }
    }

    async fn audit(&self, result: &str, reason: String) {
        if result != "ok" {
            tracing::warn!(client = %self.client.name, %reason, "back-channel logout failed");
        }
        let record = AuditRecord::event(
            self.state.engine.clock().now_millis(),
            "web",
            format!("api:{}", self.client.name),
            "oidc_backchannel_logout",
        )
        .user(
            Some(self.session.user.clone()),
            Some(self.session.realm.clone()),
        )
        .application(self.client.application.as_ref().map(|a| a.0.clone()))
        .ended(result, reason);
        if let Err(e) = self.state.engine.audit(&record).await {
            tracing::warn!(error = %e, "back-channel logout not audited");
        }
    }
}

/// Posts a logout token; a relying party that cannot be reached, does not answer in time or
/// answers 5xx (a restart, an overload) is tried again, with a new token, after each of
/// [`RETRY_AFTER`]. An answer 4xx is final: the relying party read the token and refused it
/// (501: it does not do back-channel logout).
async fn deliver(http: &reqwest::Client, uri: &str, told: &Told<'_>) -> (&'static str, String) {
    let mut tries = 0;
    loop {
        tries += 1;
        let token = match told.token().await {
            Ok(t) => t,
            Err(e) => return ("error", format!("logout token not signed: {e}")),
        };
        let (result, reason, again) =
            match http.post(uri).form(&[("logout_token", token)]).send().await {
                Ok(r) if r.status().is_success() => ("ok", format!("{uri}: {}", r.status()), false),
                Ok(r) => {
                    let s = r.status();
                    let again = s.is_server_error() && s != reqwest::StatusCode::NOT_IMPLEMENTED;
                    ("error", format!("{uri}: HTTP {s}"), again)
                }
                Err(e) => ("error", format!("{uri}: {e}"), true),
            };
        match RETRY_AFTER.get(tries - 1) {
            Some(pause) if again => {
                tracing::info!(%reason, "back-channel logout not delivered; trying again");
                tokio::time::sleep(*pause).await;
            }
            _ if tries > 1 => return (result, format!("{reason} (after {tries} tries)")),
            _ => return (result, reason),
        }
    }
}
