//! Creating the data a run needs: users `u0…uN-1`, each with one TOTP token whose seed is
//! derived from the user's number, so the load generator can compute codes without a table.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use tessera_core::admin::bootstrap_defaults;
use tessera_core::hashing::{HashCost, hash_blocking};
use tessera_core::ids::{Serial, SourceName, UserId};
use tessera_core::model::{NewLocalUser, NewToken, TokenKind, TokenState, User};
use tessera_core::store::ConfigStore;
use tessera_otp::{Algorithm, Digits};
use tessera_store::{MasterKey, SqlStore, StoreOptions};
use zeroize::Zeroizing;

/// The seed of user `i`.
pub fn seed(i: u64) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"tessera-bench-seed");
    h.update(i.to_be_bytes());
    h.finalize()[..20].to_vec()
}

pub const PIN: &str = "4711";

pub struct Plan {
    pub users: u64,
    pub pin: bool,
    pub cost: HashCost,
    pub user_cache_seconds: u32,
    /// Users get the password `PIN`, and the RADIUS client logs in to `radius-2fa`
    /// (password, then OTP).
    pub two_rounds: bool,
    /// Keep the per-address request budget as shipped (the flood mode measures it); otherwise
    /// it is off, since every load comes from one address.
    pub keep_budgets: bool,
    /// Keep account locking on (as shipped): every login then takes an attempt from the
    /// account's budget before its check, and a passed one clears it.
    pub account_locking: bool,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Writes the master key and provisions the store. Returns the key (base64) for the server.
pub async fn provision(data_dir: &Path, database_url: &str, plan: &Plan) -> Result<String> {
    std::fs::create_dir_all(data_dir)?;
    let (key, _) = MasterKey::load_or_create(&data_dir.join("master.key"))?;
    let store = Arc::new(
        SqlStore::open(database_url, &key, &StoreOptions::default())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let t = now();
    bootstrap_defaults(store.as_ref(), t).await?;
    // The benchmark measures OTP checking: no account lockout (unless asked for; a reject run
    // would lock the users), fail counters that do not lock tokens during a reject run, the
    // chosen hashing cost, and (but for the flood) no budget for the one address all its
    // requests come from.
    let mut settings = serde_json::json!({
        "account_locking": plan.account_locking,
        "default_max_fail": 1000,
        "argon2_memory_kib": plan.cost.memory_kib,
        "argon2_iterations": plan.cost.iterations,
        "argon2_parallelism": plan.cost.parallelism,
        "user_cache_seconds": plan.user_cache_seconds,
    });
    if !plan.keep_budgets {
        settings["api_requests_per_minute"] = serde_json::json!(0);
    }
    if let serde_json::Value::Object(m) = settings {
        store.put_settings(&m, t).await?;
    }
    // The NAS of the RADIUS mode: this machine, Message-Authenticator required.
    let app = serde_json::json!({
        "name": "radius-2fa",
        "factors": [{"methods": ["password"]}, {"methods": ["soft_otp"]}],
    });
    store
        .put_config_doc(
            tessera_core::store::ConfigKind::Application,
            "radius-2fa",
            &app,
            t,
        )
        .await?;
    let mut client_doc = serde_json::json!({
        "name": "bench",
        "nas_ip": ["127.0.0.1"],
        "secret": crate::radius_load::SECRET,
    });
    if plan.two_rounds {
        client_doc["application"] = serde_json::json!("radius-2fa");
    }
    let client: tessera_core::model::RadiusClient = serde_json::from_value(client_doc)?;
    let body = tessera_core::model::client::client_to_stored(store.as_ref(), &client)
        .map_err(|e| anyhow::anyhow!(e))?;
    store
        .put_config_doc(
            tessera_core::store::ConfigKind::RadiusClient,
            "bench",
            &body,
            t,
        )
        .await?;
    let pin_hash = if plan.pin || plan.two_rounds {
        Some(hash_blocking(PIN, plan.cost).map_err(|e| anyhow::anyhow!("{e}"))?)
    } else {
        None
    };
    let (password_hash, pin_hash) = match plan.two_rounds {
        true => (pin_hash, None),
        false => (None, pin_hash),
    };
    let source = SourceName::from("local");
    let batch = 20_000u64;
    let mut start = 0u64;
    while start < plan.users {
        let end = (start + batch).min(plan.users);
        let mut users = Vec::with_capacity((end - start) as usize);
        let mut tokens = Vec::with_capacity((end - start) as usize);
        for i in start..end {
            let id = UserId(format!("bench-{i}"));
            users.push(NewLocalUser {
                user: User::new(source.clone(), id.clone(), format!("u{i}")),
                password_hash: password_hash.clone(),
            });
            tokens.push(NewToken {
                serial: Serial(format!("BENCH{i:08}")),
                kind: TokenKind::Totp,
                owner: Some(tessera_core::ids::UserRef {
                    source: source.clone(),
                    id,
                }),
                description: String::new(),
                seed: Zeroizing::new(seed(i)),
                algorithm: Algorithm::Sha1,
                digits: Digits::Six,
                period: 30,
                counter: 0,
                window: 1,
                sync_window: 1000,
                pin_hash: pin_hash.clone(),
                max_fail: 1000,
                fail_count: 0,
                state: TokenState::Enabled,
                created_at: t,
            });
        }
        store
            .bulk_insert(&users, &tokens, t)
            .await
            .with_context(|| format!("provisioning users {start}..{end}"))?;
        start = end;
        if plan.users > 100_000 {
            eprintln!("  provisioned {end} of {} users", plan.users);
        }
    }
    store.close().await;
    Ok(key.to_base64().to_string())
}
