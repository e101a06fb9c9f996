//! `tessera response-signing …`: the key that signs the validate API's answers as privacyIDEA
//! signs them (the `sign_responses` setting).

use crate::app::App;
use crate::output::Out;
use anyhow::{Context, Result, anyhow};
use clap::Subcommand;
use serde_json::json;
use tessera_http::rsa_key::{self, RESPONSE_KEY};

#[derive(Debug, Subcommand)]
pub enum ResponseCmd {
    /// Import the RSA private key that signs the answers of /validate/* and /auth (PEM,
    /// PKCS#8, at least 2048 bits: `openssl genpkey -algorithm RSA -pkeyopt
    /// rsa_keygen_bits:3072 -out response-sign.pem`, or privacyIDEA's PI_AUDIT_KEY_PRIVATE
    /// converted with `openssl pkcs8 -topk8 -nocrypt`); it replaces the one before, is kept
    /// sealed, and its public key is printed for the clients. `-` reads standard input.
    ImportKey {
        /// The PEM file, or - for standard input.
        file: String,
    },
    /// Print the public key clients check the signatures with (PEM), and whether signing is on.
    Show,
    /// Forget the key (turn `sign_responses` off first: answers then go out unsigned).
    RemoveKey,
}

pub async fn run(app: &App, out: Out, cmd: ResponseCmd) -> Result<()> {
    let keys = app.engine.keys();
    let on = app.engine.snapshot().settings.sign_responses;
    match cmd {
        ResponseCmd::ImportKey { file } => {
            let pem = if file == "-" {
                super::read_stdin_all("the PEM key")?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?
            };
            let key = rsa_key::import(keys, &RESPONSE_KEY, &pem)
                .await
                .map_err(|e| anyhow!(e))?;
            out.either(
                &json!({ "kid": key.kid, "public_key": key.public_pem, "sign_responses": on }),
                || {
                    outln!("Response-signing key imported (kid {}).", key.kid);
                    outln!("Clients check signatures with this public key:\n");
                    out!("{}", key.public_pem);
                    if !on {
                        outln!(
                            "\nAnswers are signed once the setting is on: tessera settings set sign_responses=true"
                        );
                    }
                },
            );
        }
        ResponseCmd::Show => {
            let key = rsa_key::stored(keys, &RESPONSE_KEY)
                .await
                .map_err(|e| anyhow!(e))?;
            match key {
                Some(key) => out.either(
                    &json!({ "kid": key.kid, "public_key": key.public_pem, "sign_responses": on }),
                    || {
                        outln!(
                            "Response-signing key {} ({}).\n",
                            key.kid,
                            if on {
                                "answers are signed"
                            } else {
                                "answers are not signed: sign_responses is off"
                            }
                        );
                        out!("{}", key.public_pem);
                    },
                ),
                None => {
                    return Err(anyhow!(
                        "no response-signing key was imported: tessera response-signing import-key FILE"
                    ));
                }
            }
        }
        ResponseCmd::RemoveKey => {
            if on {
                return Err(anyhow!(
                    "sign_responses is on: turn it off first (tessera settings set sign_responses=false), or import another key instead"
                ));
            }
            rsa_key::remove(keys, &RESPONSE_KEY)
                .await
                .map_err(|e| anyhow!(e))?;
            out.either(&json!({ "removed": true }), || {
                outln!("Response-signing key removed.")
            });
        }
    }
    Ok(())
}
