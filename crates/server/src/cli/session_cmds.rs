//! `tessera session …`: a user's web SSO sessions, listed and ended by an administrator.

use crate::app::App;
use crate::output::{Out, table, time};
use anyhow::Result;
use clap::Subcommand;
use tessera_core::admin::Actor;

#[derive(Debug, Subcommand)]
pub enum SessionCmd {
    /// List a user's live SSO sessions (address, browser, applications, times).
    List {
        /// Login name, or user@realm.
        user: String,
        /// The user's realm (default: the default realm, or the one in user@realm).
        #[arg(long)]
        realm: Option<String>,
    },
    /// End one of a user's SSO sessions (`--id`), or all of them.
    End {
        /// Login name, or user@realm.
        user: String,
        /// The user's realm (default: the default realm, or the one in user@realm).
        #[arg(long)]
        realm: Option<String>,
        /// The session's id (from `tessera session list`); default: every session.
        #[arg(long)]
        id: Option<String>,
    },
}

pub async fn run(app: &App, out: Out, cmd: SessionCmd) -> Result<()> {
    let admin = &app.admin;
    match cmd {
        SessionCmd::List { user, realm } => {
            let sessions = admin.sso_sessions(&user, realm.as_deref()).await?;
            out.either(&serde_json::json!({ "sessions": sessions }), || {
                let rows: Vec<Vec<String>> = sessions
                    .iter()
                    .map(|s| {
                        vec![
                            s.id.chars().take(16).collect(),
                            s.session.client_ip.clone(),
                            s.session.user_agent.chars().take(40).collect(),
                            s.session.apps.join(","),
                            time(s.session.created_at),
                            time(s.session.last_seen),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "id",
                        "address",
                        "browser",
                        "applications",
                        "since",
                        "last used",
                    ],
                    &rows,
                );
            });
        }
        SessionCmd::End { user, realm, id } => {
            // A listed id may be shortened to its first 16 characters.
            let id = match id {
                Some(short) if short.trim().is_empty() => {
                    anyhow::bail!("--id: give a session id (or its first characters), as listed")
                }
                Some(short) => {
                    let sessions = admin.sso_sessions(&user, realm.as_deref()).await?;
                    let found: Vec<_> = sessions
                        .iter()
                        .filter(|s| s.id.starts_with(&short))
                        .collect();
                    match found.as_slice() {
                        [one] => Some(one.id.clone()),
                        [] => anyhow::bail!("no session '{short}' of '{user}'"),
                        _ => anyhow::bail!("'{short}' names several sessions: give more of the id"),
                    }
                }
                None => None,
            };
            let gone = admin
                .end_sso_sessions(&Actor::cli(), &user, realm.as_deref(), id.as_deref())
                .await?;
            // Relying parties with a back-channel logout address are told by the running
            // server (within a second; one that is down is tried again for about a minute).
            let told = gone.iter().filter(|s| !s.oidc.is_empty()).count();
            let ended = gone.len();
            out.either(
                &serde_json::json!({ "ended": ended, "backchannel_due": told }),
                || {
                    outln!("{ended} session(s) of '{user}' ended.");
                    if told > 0 {
                        outln!(
                            "The running server tells their OpenID Connect clients (back-channel logout; see `tessera audit` for oidc_backchannel_logout)."
                        );
                    }
                },
            );
        }
    }
    Ok(())
}
