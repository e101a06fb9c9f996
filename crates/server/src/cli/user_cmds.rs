//! `tessera user …`

use super::PasswordArgs;
use crate::app::App;
use crate::output::{Out, fields, opt, opt_time, parse_date, table, time};
use anyhow::{Result, anyhow};
use clap::Subcommand;
use tessera_core::admin::{Actor, NewUserInput, UserInfo};
use tessera_core::engine::{Door, RequestCtx};
use tessera_core::model::UserPatch;

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a local user.
    Add {
        /// The user's login name.
        name: String,
        /// Local user source (default: the first local source of the default realm).
        #[arg(long)]
        source: Option<String>,
        #[command(flatten)]
        password: PasswordArgs,
        /// The given (first) name.
        #[arg(long)]
        given_name: Option<String>,
        /// The surname (family name).
        #[arg(long)]
        surname: Option<String>,
        /// The mail address (for codes and links by mail).
        #[arg(long)]
        email: Option<String>,
        /// The mobile number, international form (+905551234567), for codes by SMS.
        #[arg(long)]
        phone: Option<String>,
        /// Login name of the user's manager.
        #[arg(long)]
        manager: Option<String>,
        /// A group (repeat for several).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Create the account disabled.
        #[arg(long)]
        disabled: bool,
        /// Last day of the account: YYYY-MM-DD (UTC midnight) or RFC 3339.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List local users.
    List {
        /// Only users of this local user source.
        #[arg(long)]
        source: Option<String>,
        /// Part of the username, e-mail or name.
        #[arg(long)]
        search: Option<String>,
        /// At most this many users.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Skip this many users first (for paging).
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Show a local user.
    Show {
        /// The user's login name.
        name: String,
        /// The local user source the user is kept in (default: the first local source of the
        /// default realm).
        #[arg(long)]
        source: Option<String>,
    },
    /// Change a local user; an empty value ("") clears a field.
    Set {
        /// The user's login name.
        name: String,
        /// The local user source the user is kept in (default: the first local source of the
        /// default realm).
        #[arg(long)]
        source: Option<String>,
        #[command(flatten)]
        password: PasswordArgs,
        /// Remove the password (the user can then only use factors without it).
        #[arg(long, conflicts_with_all = ["password", "password_stdin"])]
        remove_password: bool,
        /// The given (first) name.
        #[arg(long)]
        given_name: Option<String>,
        /// The surname (family name).
        #[arg(long)]
        surname: Option<String>,
        /// The mail address (for codes and links by mail).
        #[arg(long)]
        email: Option<String>,
        /// The mobile number, international form (+905551234567), for codes by SMS.
        #[arg(long)]
        phone: Option<String>,
        /// Login name of the user's manager.
        #[arg(long)]
        manager: Option<String>,
        /// Replace the groups (repeat for several).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Remove all groups.
        #[arg(long, conflicts_with = "groups")]
        no_groups: bool,
        /// Enable the account.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Disable the account (sign-ins are refused; nothing is deleted).
        #[arg(long)]
        disable: bool,
        /// YYYY-MM-DD, RFC 3339, or "never".
        #[arg(long)]
        expires: Option<String>,
    },
    /// Delete a local user and the user's tokens.
    Delete {
        /// The user's login name.
        name: String,
        /// The local user source the user is kept in (default: the first local source of the
        /// default realm).
        #[arg(long)]
        source: Option<String>,
    },
    /// Set a user's password in the user's source: the local store, or the directory of an
    /// LDAP/Active Directory source (Password Modify, or unicodePwd over LDAPS).
    Passwd {
        /// Login name, or user@realm.
        name: String,
        /// The realm to find the user in (default: the default realm).
        #[arg(long)]
        realm: Option<String>,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Show a user's failed sign-in attempts and locks (of every form of the name, the MFA
    /// step, and per client address).
    Lockout {
        /// Login name, or user@realm.
        name: String,
        /// The realm to find the user in (default: the default realm, or the one in user@realm).
        #[arg(long)]
        realm: Option<String>,
    },
    /// Lift a user's locks after too many failed attempts (from every address, and of the MFA
    /// step) and forget the failed attempts. Token fail counters stay: `tessera token
    /// reset-failcount SERIAL` clears those.
    Unlock {
        /// Login name, or user@realm.
        name: String,
        /// The realm to find the user in (default: the default realm, or the one in user@realm).
        #[arg(long)]
        realm: Option<String>,
    },
    /// Remove a user's MFA password (the user sets up a new one at the next login that asks
    /// for it).
    ClearMfaPassword {
        /// Login name, or user@realm.
        name: String,
        /// The realm to find the user in (default: the default realm, or the one in user@realm).
        #[arg(long)]
        realm: Option<String>,
    },
}

fn clearable(v: Option<String>) -> Option<Option<String>> {
    v.map(|s| if s.is_empty() { None } else { Some(s) })
}

fn show(out: Out, u: &UserInfo) {
    out.either(u, || {
        fields(&[
            ("username", u.username.clone()),
            ("source", u.source.clone()),
            ("id", u.id.clone()),
            ("given name", opt(&u.given_name)),
            ("surname", opt(&u.surname)),
            ("email", opt(&u.email)),
            ("phone", opt(&u.phone)),
            ("manager", opt(&u.manager)),
            ("groups", u.groups.join(", ")),
            ("enabled", u.enabled.to_string()),
            ("expires", opt_time(u.expires_at)),
            (
                "password",
                if u.has_password { "set" } else { "none" }.into(),
            ),
            ("created", time(u.created_at)),
            ("updated", time(u.updated_at)),
        ])
    });
}

pub async fn run(app: &App, out: Out, cmd: UserCmd) -> Result<()> {
    let actor = Actor::cli();
    let admin = &app.admin;
    match cmd {
        UserCmd::Add {
            name,
            source,
            password,
            given_name,
            surname,
            email,
            phone,
            manager,
            groups,
            disabled,
            expires,
        } => {
            let expires_at = expires
                .map(|e| parse_date(&e))
                .transpose()
                .map_err(|e| anyhow!("--expires: {e}"))?;
            let input = NewUserInput {
                username: name,
                source,
                password: password.read()?,
                given_name,
                surname,
                email,
                phone,
                manager,
                groups,
                enabled: !disabled,
                expires_at,
            };
            let u = admin.create_user(&actor, input).await?;
            if !out.json {
                outln!("Created user '{}' in source '{}'.", u.username, u.source);
            }
            show(out, &u);
        }
        UserCmd::List {
            source,
            search,
            limit,
            offset,
        } => {
            let users = admin
                .list_users(source.as_deref(), search.as_deref(), limit, offset)
                .await?;
            out.either(&users, || {
                let rows: Vec<Vec<String>> = users
                    .iter()
                    .map(|u| {
                        vec![
                            u.username.clone(),
                            u.source.clone(),
                            [u.given_name.clone(), u.surname.clone()]
                                .into_iter()
                                .flatten()
                                .collect::<Vec<_>>()
                                .join(" "),
                            opt(&u.email),
                            if u.enabled { "yes" } else { "no" }.into(),
                            opt_time(u.expires_at),
                        ]
                    })
                    .collect();
                table(
                    &["username", "source", "name", "email", "enabled", "expires"],
                    &rows,
                );
            });
        }
        UserCmd::Show { name, source } => {
            let u = admin.get_user(source.as_deref(), &name).await?;
            show(out, &u);
        }
        UserCmd::Set {
            name,
            source,
            password,
            remove_password,
            given_name,
            surname,
            email,
            phone,
            manager,
            groups,
            no_groups,
            enable,
            disable,
            expires,
        } => {
            let expires_at = match expires.as_deref() {
                None => None,
                Some("never") => Some(None),
                Some(e) => Some(Some(parse_date(e).map_err(|e| anyhow!("--expires: {e}"))?)),
            };
            let patch = UserPatch {
                given_name: clearable(given_name),
                surname: clearable(surname),
                email: clearable(email),
                phone: clearable(phone),
                manager: clearable(manager),
                groups: if no_groups {
                    Some(Vec::new())
                } else if groups.is_empty() {
                    None
                } else {
                    Some(groups)
                },
                enabled: if enable {
                    Some(true)
                } else if disable {
                    Some(false)
                } else {
                    None
                },
                expires_at,
                password_hash: None,
            };
            let password = if remove_password {
                Some(None)
            } else {
                password.read()?.map(Some)
            };
            let u = admin
                .update_user(&actor, source.as_deref(), &name, patch, password)
                .await?;
            if !out.json {
                outln!("Updated user '{}'.", u.username);
            }
            show(out, &u);
        }
        UserCmd::Delete { name, source } => {
            let tokens = admin.delete_user(&actor, source.as_deref(), &name).await?;
            out.either(
                &serde_json::json!({"deleted": name, "tokens_deleted": tokens}),
                || outln!("Deleted user '{name}' and {tokens} token(s)."),
            );
        }
        UserCmd::Passwd {
            name,
            realm,
            password,
        } => {
            let new = password.required("the new password")?;
            let mut ctx = RequestCtx::new(Door::Api);
            ctx.actor = actor.name.clone();
            app.engine
                .change_password(&name, realm.as_deref(), None, &new, &ctx)
                .await
                .map_err(|e| anyhow!("{e}"))?;
            out.either(&serde_json::json!({"password_set": name}), || {
                outln!("Password of '{name}' set.")
            });
        }
        UserCmd::Lockout { name, realm } => {
            let report = admin.user_lockout(&name, realm.as_deref()).await?;
            crate::output::lockout(out, &report, true);
        }
        UserCmd::Unlock { name, realm } => {
            let report = admin.unlock_user(&actor, &name, realm.as_deref()).await?;
            crate::output::unlocked(out, &report);
        }
        UserCmd::ClearMfaPassword { name, realm } => {
            let removed = admin
                .clear_mfa_password(&actor, &name, realm.as_deref())
                .await?;
            out.either(
                &serde_json::json!({"user": name, "mfa_password_removed": removed}),
                || match removed {
                    true => outln!("MFA password of '{name}' removed."),
                    false => outln!("'{name}' had no MFA password."),
                },
            );
        }
    }
    Ok(())
}
