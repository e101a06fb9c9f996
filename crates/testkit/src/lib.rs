//! Test support: throwaway PostgreSQL databases, the `oathtool` peer and an OpenLDAP `slapd`.
//!
//! PostgreSQL comes from `TESSERA_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//! Tests that need it fail with a clear message when it is unreachable: the README's test command
//! starts one. They never skip silently.

#![allow(clippy::expect_used, clippy::panic)]

pub mod slapd;

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// The PostgreSQL server tests create their databases on.
pub fn pg_admin_url() -> String {
    std::env::var("TESSERA_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A database created for one test and dropped when the value is dropped.
#[derive(Debug)]
pub struct PgDatabase {
    pub url: String,
    name: String,
    admin_url: String,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl PgDatabase {
    pub async fn create() -> PgDatabase {
        let admin_url = pg_admin_url();
        let mut conn = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {admin_url} ({e}). The README's test command \
                 (scripts/test.sh) starts one; or set TESSERA_TEST_PG_URL."
            )
        });
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("tessera_t_{}_{}_{}", std::process::id(), n, nanos);
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(admin_url.clone());
        PgDatabase {
            url: format!("{base}/{name}"),
            name,
            admin_url,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Dropping runs outside any runtime's async context: use a small one of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

/// Runs `oathtool` (the independent OTP implementation tests compare against).
pub fn oathtool(args: &[&str]) -> String {
    let out = Command::new("oathtool")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("oathtool is not installed ({e}); the README's test command installs it")
        });
    assert!(
        out.status.success(),
        "oathtool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The TOTP code `oathtool` computes for a base32 secret at Unix time `at`.
pub fn oathtool_totp(base32: &str, at: i64, digits: u32, period: u32, algorithm: &str) -> String {
    let now = format!("@{at}");
    let digits = digits.to_string();
    let step = format!("{period}s");
    let alg = format!("--totp={}", algorithm.to_lowercase());
    oathtool(&["-b", &alg, "-d", &digits, "-s", &step, "-N", &now, base32])
}

/// The HOTP code `oathtool` computes for a base32 secret at `counter`.
pub fn oathtool_hotp(base32: &str, counter: u64, digits: u32) -> String {
    let c = counter.to_string();
    let d = digits.to_string();
    oathtool(&["-b", "-c", &c, "-d", &d, base32])
}
