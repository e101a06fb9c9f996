//! API clients: created with a generated client id and secret (shown once).

use super::{Actor, Admin, AdminError, AdminResult};
use crate::ids::AppName;
use crate::model::{ApiClient, ApiClientKind, Net};
use crate::rng::{random_hex, random_token};
use zeroize::Zeroizing;

/// A new API client as an administrator asks for it.
#[derive(Clone, Debug, Default)]
pub struct NewApiClient {
    pub name: String,
    pub kind: ApiClientKind,
    pub application: Option<String>,
    pub scopes: Vec<String>,
    pub allowed_ips: Vec<Net>,
    pub rate_limit_per_minute: u32,
    pub token_lifetime_seconds: Option<u32>,
    pub description: String,
    /// Where an OIDC client's users are sent back to.
    pub redirect_uris: Vec<String>,
    /// `ES256` (default) or `RS256`.
    pub id_token_alg: Option<String>,
    pub backchannel_logout_uri: Option<String>,
    /// The CA certificates (PEM) the back-channel address is checked with instead of the
    /// system's.
    pub backchannel_ca_pem: Option<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// An OIDC client must send PKCE; none: yes.
    pub require_pkce: Option<bool>,
    /// A public OIDC client: no secret, PKCE always.
    pub public: bool,
}

/// A created client and its secret, which is shown this once (none for a public client).
#[derive(Debug)]
pub struct CreatedApiClient {
    pub client: ApiClient,
    pub client_secret: Option<Zeroizing<String>>,
}

impl Admin {
    /// Creates an API client with a new client id and secret.
    pub async fn create_api_client(
        &self,
        actor: &Actor,
        input: NewApiClient,
    ) -> AdminResult<CreatedApiClient> {
        if self.get::<ApiClient>(&input.name).is_ok() {
            return Err(AdminError::Conflict(format!(
                "API client '{}' already exists",
                input.name
            )));
        }
        let rng = self.engine.ports().rng.clone();
        let secret = Zeroizing::new(random_token(rng.as_ref()));
        let client = ApiClient {
            name: input.name,
            description: input.description,
            client_id: format!("tc-{}", random_hex(rng.as_ref(), 10)),
            kind: input.kind,
            application: input.application.map(AppName),
            // None named: what the type needs (an agent checks users' credentials, a user
            // client signs them in through every factor).
            scopes: match input.scopes.is_empty() {
                false => input.scopes,
                true => ApiClient::default_scopes(input.kind)
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            },
            allowed_ips: input.allowed_ips,
            rate_limit_per_minute: input.rate_limit_per_minute,
            token_lifetime_seconds: input.token_lifetime_seconds.unwrap_or(3600),
            secret_hash: (!input.public).then(|| ApiClient::hash_secret(&secret)),
            redirect_uris: input.redirect_uris,
            id_token_alg: input.id_token_alg,
            backchannel_logout_uri: input.backchannel_logout_uri,
            backchannel_ca_pem: input.backchannel_ca_pem,
            post_logout_redirect_uris: input.post_logout_redirect_uris,
            require_pkce: input.require_pkce.unwrap_or(true),
            public: input.public,
        };
        let client = self.put(actor, client).await?;
        Ok(CreatedApiClient {
            client_secret: (!client.public).then_some(secret),
            client,
        })
    }
}

/// Changes to an API client: only the fields given change. Its client id and secret stay.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiClientPatch {
    pub description: Option<String>,
    pub application: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub allowed_ips: Option<Vec<Net>>,
    pub rate_limit_per_minute: Option<u32>,
    pub token_lifetime_seconds: Option<u32>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// `Some("")` removes it.
    pub backchannel_logout_uri: Option<String>,
    /// `Some("")` removes them (the system's CA certificates again).
    pub backchannel_ca_pem: Option<String>,
    /// `Some("")` goes back to ES256.
    pub id_token_alg: Option<String>,
    pub require_pkce: Option<bool>,
}

impl Admin {
    /// Changes an API client (checked as a whole; nothing changes on error).
    pub async fn update_api_client(
        &self,
        actor: &Actor,
        name: &str,
        patch: ApiClientPatch,
    ) -> AdminResult<ApiClient> {
        let mut c = self.get::<ApiClient>(name)?;
        let empty_to_none = |v: String| (!v.trim().is_empty()).then_some(v);
        if let Some(v) = patch.description {
            c.description = v;
        }
        if let Some(v) = patch.application {
            c.application = empty_to_none(v).map(AppName);
        }
        if let Some(v) = patch.scopes {
            c.scopes = v;
        }
        if let Some(v) = patch.allowed_ips {
            c.allowed_ips = v;
        }
        if let Some(v) = patch.rate_limit_per_minute {
            c.rate_limit_per_minute = v;
        }
        if let Some(v) = patch.token_lifetime_seconds {
            c.token_lifetime_seconds = v;
        }
        if let Some(v) = patch.redirect_uris {
            c.redirect_uris = v;
        }
        if let Some(v) = patch.post_logout_redirect_uris {
            c.post_logout_redirect_uris = v;
        }
        if let Some(v) = patch.backchannel_logout_uri {
            c.backchannel_logout_uri = empty_to_none(v);
        }
        if let Some(v) = patch.backchannel_ca_pem {
            c.backchannel_ca_pem = empty_to_none(v);
        }
        if let Some(v) = patch.id_token_alg {
            c.id_token_alg = empty_to_none(v);
        }
        if let Some(v) = patch.require_pkce {
            c.require_pkce = v;
        }
        self.put(actor, c).await
    }
}

impl super::config::ConfigObject for ApiClient {
    const KIND: crate::store::ConfigKind = crate::store::ConfigKind::ApiClient;
    const LABEL: &'static str = "API client";
    fn name(&self) -> &str {
        &self.name
    }
    fn of(decl: &super::Declaration) -> &Vec<Self> {
        &decl.api_clients
    }
    fn of_declaration(decl: &mut super::Declaration) -> &mut Vec<Self> {
        &mut decl.api_clients
    }
    fn of_snapshot(snap: &crate::engine::Snapshot) -> Vec<Self> {
        snap.api_clients.values().cloned().collect()
    }
    /// Only while it keeps its client id.
    fn keep_stored_secret(&mut self, stored: &Self) {
        if self.secret_hash.is_none() && stored.client_id == self.client_id {
            self.secret_hash = stored.secret_hash.clone();
        }
    }
}

impl super::config::ConfigObject for crate::model::SamlServiceProvider {
    const KIND: crate::store::ConfigKind = crate::store::ConfigKind::SamlSp;
    const LABEL: &'static str = "SAML service provider";
    fn name(&self) -> &str {
        &self.name
    }
    fn of(decl: &super::Declaration) -> &Vec<Self> {
        &decl.saml_sps
    }
    fn of_declaration(decl: &mut super::Declaration) -> &mut Vec<Self> {
        &mut decl.saml_sps
    }
    fn of_snapshot(snap: &crate::engine::Snapshot) -> Vec<Self> {
        snap.saml_sps.values().cloned().collect()
    }
}
