//! `tessera oidc …`: the RS256 key of ID tokens for relying parties that need RS256.

use crate::app::App;
use crate::output::Out;
use anyhow::{Context, Result, anyhow};
use clap::Subcommand;
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum OidcCmd {
    /// Import the RSA private key that signs RS256 ID tokens (PEM, PKCS#8, at least 2048 bits:
    /// `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out oidc-rs256.pem`);
    /// it replaces the one before and is kept sealed. `-` reads standard input.
    ImportKey {
        /// The PEM file, or - for standard input.
        file: String,
    },
}

pub async fn run(app: &App, out: Out, cmd: OidcCmd) -> Result<()> {
    match cmd {
        OidcCmd::ImportKey { file } => {
            let pem = if file == "-" {
                super::read_stdin_all("the PEM key")?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?
            };
            let kid = tessera_http::rsa_key::import(
                app.engine.keys(),
                &tessera_http::rsa_key::OIDC_KEY,
                &pem,
            )
            .await
            .map_err(|e| anyhow!(e))?
            .kid;
            out.either(&json!({ "kid": kid }), || {
                outln!("RS256 key imported (kid {kid}); it is published at /oauth/jwks.")
            });
        }
    }
    Ok(())
}
