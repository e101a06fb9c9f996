//! Configuration objects (applications, realms, user sources, RADIUS, API and SAML clients):
//! one set of generic routes per kind, and what differs for API clients and SAML metadata.

use super::*;
use crate::{HttpState, St};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tessera_core::admin::{Actor, ConfigObject};
use tessera_core::model::{Application, Net, RadiusClient, Realm, UserSourceDef};

/// The JSON key of a kind's list (`{"applications": [...]}`).
pub(super) trait Collection: ConfigObject + DeserializeOwned {
    const COLLECTION: &'static str;
    /// The object as answers show it: without secrets.
    fn public(self) -> Self {
        self
    }
}

impl Collection for RadiusClient {
    const COLLECTION: &'static str = "radius_clients";
    fn public(mut self) -> Self {
        self.secret = None;
        self
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct SecretQuery {
    /// Include shared secrets (administrators only).
    #[serde(default)]
    pub(super) show_secret: bool,
}

impl Collection for Application {
    const COLLECTION: &'static str = "applications";
}

impl Collection for Realm {
    const COLLECTION: &'static str = "realms";
}

impl Collection for UserSourceDef {
    const COLLECTION: &'static str = "user_sources";
    fn public(mut self) -> Self {
        if let Some(l) = &mut self.ldap {
            l.bind_password = None;
        }
        self
    }
}

impl Collection for tessera_core::model::SamlServiceProvider {
    const COLLECTION: &'static str = "saml_sps";
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImportQuery {
    pub(super) name: String,
    pub(super) application: String,
}

/// `POST /saml-sps/import?name=&application=`: a service provider from its metadata (the
/// request body, XML).
pub(super) async fn import_saml_sp(
    state: St,
    auth: Authed,
    Query(q): Query<ImportQuery>,
    bytes: Bytes,
) -> ApiResult<Response> {
    use tessera_core::model::SamlServiceProvider;
    let actor = auth.write()?;
    let xml = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::bad_request("the metadata is not UTF-8"))?;
    let sp: SamlServiceProvider = crate::saml::sp_from_metadata(xml, &q.name, &q.application)
        .map_err(ApiError::bad_request)?;
    create(&state, &actor, sp).await
}

pub(super) async fn list_objects<T: Collection>(state: St, auth: Authed) -> ApiResult<Json<Value>> {
    auth.read()?;
    let objects: Vec<T> = state
        .admin
        .list::<T>()
        .into_iter()
        .map(Collection::public)
        .collect();
    Ok(Json(json!({ T::COLLECTION: objects })))
}

pub(super) async fn post_objects<T: Collection>(
    state: St,
    auth: Authed,
    bytes: Bytes,
) -> ApiResult<Response> {
    let actor = auth.write()?;
    let object: T = body(&bytes)?;
    create(&state, &actor, object).await
}

/// Creates an object that does not exist yet: 201 with it, or 409.
pub(super) async fn create<T: Collection>(
    state: &HttpState,
    actor: &Actor,
    object: T,
) -> ApiResult<Response> {
    if state.admin.get::<T>(object.name()).is_ok() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("{} '{}' already exists", T::LABEL, object.name()),
        ));
    }
    let saved = state.admin.put(actor, object).await.api(state)?;
    Ok((StatusCode::CREATED, Json(json!(saved.public()))).into_response())
}

pub(super) async fn get_object<T: Collection>(
    state: St,
    auth: Authed,
    Path(name): Path<String>,
    Query(q): Query<SecretQuery>,
) -> ApiResult<Json<Value>> {
    auth.read()?;
    let object = state.admin.get::<T>(&name).api(&state)?;
    if q.show_secret {
        auth.write()?;
        return Ok(Json(json!(object)));
    }
    Ok(Json(json!(object.public())))
}

pub(super) async fn put_object<T: Collection>(
    state: St,
    auth: Authed,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    let object: T = body(&bytes)?;
    if !name.eq_ignore_ascii_case(object.name()) {
        return Err(ApiError::bad_request(format!(
            "name: the body names '{}' but the path names '{name}'",
            object.name()
        )));
    }
    let saved = state.admin.put(&actor, object).await.api(&state)?;
    Ok(Json(json!(saved.public())))
}

pub(super) async fn delete_object<T: Collection>(
    state: St,
    auth: Authed,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    state.admin.delete::<T>(&actor, &name).await.api(&state)?;
    Ok(Json(json!({ "deleted": name })))
}

impl Collection for tessera_core::model::ApiClient {
    const COLLECTION: &'static str = "api_clients";
    fn public(mut self) -> Self {
        self.secret_hash = None;
        self
    }
}

pub(super) async fn get_api_clients(state: St, auth: Authed) -> ApiResult<Json<Value>> {
    auth.read()?;
    let clients: Vec<_> = state
        .admin
        .list::<tessera_core::model::ApiClient>()
        .into_iter()
        .map(Collection::public)
        .collect();
    Ok(Json(json!({ "api_clients": clients })))
}

pub(super) async fn get_api_client(
    state: St,
    auth: Authed,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.read()?;
    let c = state
        .admin
        .get::<tessera_core::model::ApiClient>(&name)
        .api(&state)?;
    Ok(Json(json!(c.public())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewApiClientBody {
    pub(super) name: String,
    #[serde(rename = "type", default)]
    pub(super) kind: tessera_core::model::ApiClientKind,
    #[serde(default)]
    pub(super) application: Option<String>,
    #[serde(default)]
    pub(super) scopes: Vec<String>,
    #[serde(default)]
    pub(super) allowed_ips: Vec<Net>,
    #[serde(default)]
    pub(super) rate_limit_per_minute: u32,
    #[serde(default)]
    pub(super) token_lifetime_seconds: Option<u32>,
    #[serde(default)]
    pub(super) description: String,
    #[serde(default)]
    pub(super) redirect_uris: Vec<String>,
    #[serde(default)]
    pub(super) id_token_alg: Option<String>,
    #[serde(default)]
    pub(super) backchannel_logout_uri: Option<String>,
    #[serde(default)]
    pub(super) backchannel_ca_pem: Option<String>,
    #[serde(default)]
    pub(super) post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    pub(super) require_pkce: Option<bool>,
    /// A public OIDC client: no secret, PKCE always.
    #[serde(default)]
    pub(super) public: bool,
}

/// Creates an API client with a new client id and secret; the secret is in this answer only
/// (none for a public client).
pub(super) async fn post_api_clients(state: St, auth: Authed, bytes: Bytes) -> ApiResult<Response> {
    let actor = auth.write()?;
    let b: NewApiClientBody = body(&bytes)?;
    let created = state
        .admin
        .create_api_client(
            &actor,
            tessera_core::admin::NewApiClient {
                name: b.name,
                kind: b.kind,
                application: b.application,
                scopes: b.scopes,
                allowed_ips: b.allowed_ips,
                rate_limit_per_minute: b.rate_limit_per_minute,
                token_lifetime_seconds: b.token_lifetime_seconds,
                description: b.description,
                redirect_uris: b.redirect_uris,
                id_token_alg: b.id_token_alg,
                backchannel_logout_uri: b.backchannel_logout_uri,
                backchannel_ca_pem: b.backchannel_ca_pem,
                post_logout_redirect_uris: b.post_logout_redirect_uris,
                require_pkce: b.require_pkce,
                public: b.public,
            },
        )
        .await
        .api(&state)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "api_client": created.client.public(),
            "client_secret": created.client_secret.as_ref().map(|s| s.as_str()),
        })),
    )
        .into_response())
}

pub(super) async fn patch_api_client(
    state: St,
    auth: Authed,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let actor = auth.write()?;
    let patch: tessera_core::admin::ApiClientPatch = body(&bytes)?;
    let c = state
        .admin
        .update_api_client(&actor, &name, patch)
        .await
        .api(&state)?;
    Ok(Json(json!(c.public())))
}

/// The routes of one kind of configuration object under `base`.
pub(super) fn object_routes<T: Collection>(
    router: Router<HttpState>,
    base: &str,
) -> Router<HttpState> {
    router
        .route(base, get(list_objects::<T>).post(post_objects::<T>))
        .route(
            &format!("{base}/{{name}}"),
            get(get_object::<T>)
                .put(put_object::<T>)
                .delete(delete_object::<T>),
        )
}
