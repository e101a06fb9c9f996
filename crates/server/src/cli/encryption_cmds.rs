//! `tessera encryption …`: the public key integrators seal payloads to, and a helper that seals
//! one (for testing and for integrators' reference).

use crate::app::App;
use crate::output::Out;
use anyhow::{Result, anyhow};
use clap::Subcommand;
use serde_json::json;
use tessera_core::clock::Clock;
use tessera_core::rng::{OsRng, random_hex};

#[derive(Debug, Subcommand)]
pub enum EncryptionCmd {
    /// Print the installation's public key (base64 X25519), made on first use.
    Key,
    /// Use the organisation's own key pair instead of the one Tessera made (seed 003's
    /// CONF_ENCRYPTION_PRIVATE_KEY / _PUBLIC_KEY): the X25519 private key in base64 (32 bytes)
    /// or PEM (`openssl genpkey -algorithm X25519`). Payloads sealed to the previous key are
    /// refused from then on. Prints the public key.
    ImportKey {
        /// The file holding the private key, or - for standard input.
        file: String,
        /// The organisation's public key (base64), checked against the private key.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Seal a request body for an endpoint that takes encrypted payloads; prints the JSON
    /// envelope to send as the body.
    Seal {
        /// The body as the endpoint would take it unencrypted (form-encoded), e.g.
        /// `grant_type=password&username=alice&password=...`; `-` reads it from standard input.
        body: String,
        /// The installation's public key (default: this installation's).
        #[arg(long)]
        public_key: Option<String>,
    },
}

pub async fn run(app: &App, out: Out, cmd: EncryptionCmd) -> Result<()> {
    let keys = app.engine.keys();
    match cmd {
        EncryptionCmd::Key => {
            let key = tessera_http::payload::public_key(keys)
                .await
                .map_err(|e| anyhow!(e))?;
            out.either(&json!({"public_key": key, "suite": "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM"}), || {
                outln!("{key}");
            });
        }
        EncryptionCmd::ImportKey { file, public_key } => {
            let text = zeroize::Zeroizing::new(if file == "-" {
                super::read_stdin_all("the private key")?
            } else {
                std::fs::read_to_string(&file).map_err(|e| anyhow!("reading {file}: {e}"))?
            });
            let key = tessera_http::payload::import_key(keys, &text, public_key.as_deref())
                .await
                .map_err(|e| anyhow!(e))?;
            out.either(&json!({"public_key": key}), || {
                outln!("The organisation's key pair is in use. Its public key:\n{key}");
            });
        }
        EncryptionCmd::Seal { body, public_key } => {
            let body = if body == "-" {
                super::read_stdin_line("the body")?.to_string()
            } else {
                body
            };
            let key = match public_key {
                Some(k) => k,
                None => tessera_http::payload::public_key(keys)
                    .await
                    .map_err(|e| anyhow!(e))?,
            };
            let sealed = tessera_http::payload::seal(
                &key,
                &body,
                tessera_core::clock::SystemClock.now(),
                &random_hex(&OsRng, 16),
            )
            .map_err(|e| anyhow!(e))?;
            outln!("{sealed}");
        }
    }
    Ok(())
}
