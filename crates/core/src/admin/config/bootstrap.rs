//! The objects a new installation starts with.

use crate::ids::{AppName, RealmName};
use crate::model::{AppKind, Application, Factor, Method, Realm, UserSourceDef};
use crate::store::{ConfigKind, Store, StoreResult};
use serde_json::Value;

/// Creates the objects a new installation starts with, once: the local user source, the
/// `default` realm searching it, and the `default` application (one factor: soft OTP with the
/// token PIN, as privacyIDEA's `/validate/check` behaves).
pub async fn bootstrap_defaults(store: &dyn Store, now: i64) -> StoreResult<bool> {
    if store.meta("bootstrapped").await?.is_some() {
        return Ok(false);
    }
    let source = UserSourceDef {
        description: "Users kept in Tessera".into(),
        ..UserSourceDef::local("local")
    };
    let realm = Realm {
        name: RealmName::from("default"),
        sources: vec![source.name.clone()],
        description: "The default realm".into(),
    };
    let app = Application {
        name: AppName::from("default"),
        kind: AppKind::Normal,
        description: "Token PIN + OTP, as privacyIDEA's /validate/check".into(),
        factors: vec![Factor::of(vec![Method::SoftOtp])],
        routes: Vec::new(),
        sso_session_minutes: None,
        sso_idle_minutes: None,
        branding: None,
        realms: Vec::new(),
        require_client_token: false,
        challenge_response: false,
        pass_on_no_token: false,
        passthru: false,
        pass_on_no_user: false,
    };
    let to_value = |v: serde_json::Result<Value>| {
        v.map_err(|e| crate::store::StoreError::Backend(e.to_string()))
    };
    store
        .put_config_doc(
            ConfigKind::UserSource,
            source.name.as_str(),
            &to_value(serde_json::to_value(&source))?,
            now,
        )
        .await?;
    store
        .put_config_doc(
            ConfigKind::Realm,
            realm.name.as_str(),
            &to_value(serde_json::to_value(&realm))?,
            now,
        )
        .await?;
    store
        .put_config_doc(
            ConfigKind::Application,
            app.name.as_str(),
            &to_value(serde_json::to_value(&app))?,
            now,
        )
        .await?;
    store.set_meta("bootstrapped", &now.to_string()).await?;
    Ok(true)
}
