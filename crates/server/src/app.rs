//! Opening the data: master key, store, defaults, engine. Shared by `serve` and the CLI.

use crate::config::Config;
use anyhow::{Context, Result, anyhow};
use std::sync::Arc;
use tessera_core::admin::{Admin, bootstrap_defaults};
use tessera_core::clock::Clock;
use tessera_core::engine::{Engine, Ports};
use tessera_core::hashing::{Argon2Hasher, HashCost};
use tessera_core::rng::OsRng;
use tessera_core::store::Store;
use tessera_directory::SourceFactory;
use tessera_store::{MasterKey, SqlStore, StoreOptions};

/// Everything opened.
#[derive(Debug, Clone)]
pub struct App {
    pub store: Arc<SqlStore>,
    pub engine: Arc<Engine>,
    pub admin: Admin,
    /// A new master key file was written.
    pub key_created: bool,
    /// The defaults (local source, default realm and application) were just created.
    pub bootstrapped: bool,
}

fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Opens (creating on first use) the data directory, master key and database.
pub async fn open(config: &Config, clock: Arc<dyn Clock>) -> Result<App> {
    if config.is_sqlite() || config.master_key.is_none() {
        create_private_dir(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
    }
    let (key, key_created) = match &config.master_key {
        Some(text) => (MasterKey::parse(text, "in TESSERA_MASTER_KEY")?, false),
        None => MasterKey::load_or_create(&config.master_key_file)?,
    };
    let options = StoreOptions {
        max_connections: config.max_connections,
        sqlite_readers: config.sqlite_readers,
    };
    let store = SqlStore::open(&config.database_url, &key, &options)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let store = Arc::new(store);
    let bootstrapped = bootstrap_defaults(store.as_ref(), clock.now())
        .await
        .context("cannot create the default configuration")?;
    let dyn_store: Arc<dyn Store> = store.clone();
    let hasher = Arc::new(Argon2Hasher::new(
        config.hash_concurrency,
        HashCost::default(),
    ));
    let ports = Ports {
        store: dyn_store.clone(),
        hasher: hasher.clone(),
        clock: clock.clone(),
        rng: Arc::new(OsRng),
        sources: Arc::new(SourceFactory::new(dyn_store, hasher, clock)),
    };
    let engine = Arc::new(
        Engine::new(ports)
            .await
            .context("cannot load the configuration")?,
    );
    for p in &engine.snapshot().problems {
        tracing::warn!(problem = %p, "configuration object ignored");
    }
    Ok(App {
        admin: Admin::new(engine.clone())
            .with_attribute_check(Arc::new(tessera_radius::DictionaryCheck)),
        store,
        engine,
        key_created,
        bootstrapped,
    })
}
