//! Local users.

use super::{Actor, Admin, AdminError, AdminResult, Target};
use crate::ids::{SourceName, UserId};
use crate::model::{LocalUser, NewLocalUser, User, UserPatch, UserSourceKind};
use crate::rng::random_hex;
use crate::store::UserFilter;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// A new local user as an administrator submits it.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUserInput {
    pub username: String,
    /// The local user source; default: the first local source of the default realm.
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub password: Option<Zeroizing<String>>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub surname: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub manager: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// Unix seconds.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

fn enabled_default() -> bool {
    true
}

impl std::fmt::Debug for NewUserInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUserInput")
            .field("username", &self.username)
            .field("source", &self.source)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// A local user as shown to administrators (never the password hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub source: String,
    pub id: String,
    pub username: String,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub manager: Option<String>,
    pub groups: Vec<String>,
    pub enabled: bool,
    pub expires_at: Option<i64>,
    pub has_password: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<LocalUser> for UserInfo {
    fn from(u: LocalUser) -> Self {
        UserInfo {
            source: u.user.source.0,
            id: u.user.id.0,
            username: u.user.username,
            given_name: u.user.given_name,
            surname: u.user.surname,
            email: u.user.email,
            phone: u.user.phone,
            manager: u.user.manager,
            groups: u.user.groups,
            enabled: u.user.enabled,
            expires_at: u.user.expires_at,
            has_password: u.password_hash.is_some(),
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

fn check_text(field: &str, v: &str, max: usize, errs: &mut Vec<String>) {
    if v.is_empty() || v.chars().count() > max {
        errs.push(format!("{field}: must be 1 to {max} characters"));
    } else if v.chars().any(char::is_control) {
        errs.push(format!("{field}: must not contain control characters"));
    } else if v.trim() != v {
        errs.push(format!("{field}: must not start or end with spaces"));
    }
}

pub(crate) fn check_username(v: &str, errs: &mut Vec<String>) {
    check_text("username", v, 256, errs);
}

fn check_optional(u: &Option<String>, field: &str, max: usize, errs: &mut Vec<String>) {
    if let Some(v) = u {
        check_text(field, v, max, errs);
    }
}

fn check_email(v: &Option<String>, errs: &mut Vec<String>) {
    if let Some(e) = v {
        check_text("email", e, 254, errs);
        if !e.contains('@') || e.contains(' ') || e.starts_with('@') || e.ends_with('@') {
            errs.push(format!("email: '{e}' is not an e-mail address"));
        }
    }
}

fn check_phone(v: &Option<String>, errs: &mut Vec<String>) {
    if let Some(p) = v {
        let ok_chars = p
            .chars()
            .all(|c| c.is_ascii_digit() || " +-()/.".contains(c));
        let digits = p.chars().filter(char::is_ascii_digit).count();
        if !ok_chars || !(3..=20).contains(&digits) || p.len() > 32 {
            errs.push(format!(
                "phone: '{p}' is not a phone number (digits, spaces, + - ( ) / . allowed)"
            ));
        }
    }
}

pub(crate) fn check_password(p: &str, errs: &mut Vec<String>) {
    let n = p.chars().count();
    if !(8..=1024).contains(&n) {
        errs.push("password: must be 8 to 1024 characters".into());
    }
}

fn check_groups(groups: &[String], errs: &mut Vec<String>) {
    for g in groups {
        check_text("groups", g, 256, errs);
    }
}

impl Admin {
    /// The local source named, or the default one for new users.
    fn local_source(&self, name: Option<&str>) -> AdminResult<SourceName> {
        let snap = self.engine.snapshot();
        let is_local = |n: &str| {
            snap.source_defs
                .get(&n.to_lowercase())
                .is_some_and(|d| d.kind == UserSourceKind::Local)
        };
        if let Some(n) = name {
            if !snap.source_defs.contains_key(&n.to_lowercase()) {
                return Err(AdminError::NotFound(format!("user source '{n}'")));
            }
            if !is_local(n) {
                return Err(AdminError::invalid(format!(
                    "user source '{n}' is not a local source; its users are managed in the directory"
                )));
            }
            return Ok(snap.source_defs[&n.to_lowercase()].name.clone());
        }
        let from_default = snap
            .default_realm()
            .and_then(|r| r.sources.iter().find(|s| is_local(s.as_str())).cloned());
        let any_local = snap
            .source_defs
            .values()
            .find(|d| d.kind == UserSourceKind::Local)
            .map(|d| d.name.clone());
        from_default
            .or(any_local)
            .ok_or_else(|| AdminError::invalid("there is no local user source; create one first"))
    }

    async fn find_local(&self, source: Option<&str>, username: &str) -> AdminResult<LocalUser> {
        let source = self.local_source(source)?;
        self.engine
            .store()
            .local_user_by_name(&source, username)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("user '{username}' in source '{source}'")))
    }

    pub async fn create_user(&self, actor: &Actor, input: NewUserInput) -> AdminResult<UserInfo> {
        let mut errs = Vec::new();
        check_username(&input.username, &mut errs);
        check_optional(&input.given_name, "given_name", 256, &mut errs);
        check_optional(&input.surname, "surname", 256, &mut errs);
        check_optional(&input.manager, "manager", 256, &mut errs);
        check_email(&input.email, &mut errs);
        check_phone(&input.phone, &mut errs);
        check_groups(&input.groups, &mut errs);
        if let Some(p) = &input.password {
            check_password(p, &mut errs);
        }
        let source = match self.local_source(input.source.as_deref()) {
            Ok(s) => Some(s),
            Err(AdminError::Invalid(e)) => {
                errs.extend(e);
                None
            }
            Err(e) => return Err(e),
        };
        if !errs.is_empty() {
            return Err(AdminError::Invalid(errs));
        }
        let Some(source) = source else {
            return Err(AdminError::invalid("no user source"));
        };
        let password_hash = match &input.password {
            Some(p) => Some(
                self.engine
                    .ports()
                    .hasher
                    .hash(p)
                    .await
                    .map_err(crate::engine::EngineError::from)?,
            ),
            None => None,
        };
        let user = User {
            source: source.clone(),
            id: UserId(random_hex(self.engine.ports().rng.as_ref(), 16)),
            username: input.username.clone(),
            given_name: input.given_name,
            surname: input.surname,
            email: input.email,
            phone: input.phone,
            manager: input.manager,
            groups: input.groups,
            enabled: input.enabled,
            expires_at: input.expires_at,
            attributes: Default::default(),
        };
        let now = self.now();
        self.engine
            .store()
            .create_local_user(
                &NewLocalUser {
                    user: user.clone(),
                    password_hash,
                },
                now,
            )
            .await?;
        self.audit(
            actor,
            "user_create",
            Target {
                user: Some(&user.username),
                ..Target::default()
            },
            "ok",
            &format!("created in source '{source}'"),
        )
        .await?;
        self.engine.forget_users();
        self.get_user(Some(source.as_str()), &user.username).await
    }

    pub async fn get_user(&self, source: Option<&str>, username: &str) -> AdminResult<UserInfo> {
        Ok(self.find_local(source, username).await?.into())
    }

    pub async fn list_users(
        &self,
        source: Option<&str>,
        search: Option<&str>,
        limit: u32,
        offset: u32,
    ) -> AdminResult<Vec<UserInfo>> {
        let source = match source {
            Some(s) => Some(self.local_source(Some(s))?),
            None => None,
        };
        let users = self
            .engine
            .store()
            .list_local_users(&UserFilter {
                source,
                search: search.map(str::to_string),
                limit: limit.clamp(1, 10_000),
                offset,
            })
            .await?;
        Ok(users.into_iter().map(UserInfo::from).collect())
    }

    /// Changes attributes and, with `password`, the password (`Some(None)` removes it).
    pub async fn update_user(
        &self,
        actor: &Actor,
        source: Option<&str>,
        username: &str,
        mut patch: UserPatch,
        password: Option<Option<Zeroizing<String>>>,
    ) -> AdminResult<UserInfo> {
        let mut errs = Vec::new();
        if let Some(v) = &patch.given_name {
            check_optional(v, "given_name", 256, &mut errs);
        }
        if let Some(v) = &patch.surname {
            check_optional(v, "surname", 256, &mut errs);
        }
        if let Some(v) = &patch.manager {
            check_optional(v, "manager", 256, &mut errs);
        }
        if let Some(v) = &patch.email {
            check_email(v, &mut errs);
        }
        if let Some(v) = &patch.phone {
            check_phone(v, &mut errs);
        }
        if let Some(g) = &patch.groups {
            check_groups(g, &mut errs);
        }
        if let Some(Some(p)) = &password {
            check_password(p, &mut errs);
        }
        if !errs.is_empty() {
            return Err(AdminError::Invalid(errs));
        }
        let current = self.find_local(source, username).await?;
        patch.password_hash = match password {
            Some(Some(p)) => Some(Some(
                self.engine
                    .ports()
                    .hasher
                    .hash(&p)
                    .await
                    .map_err(crate::engine::EngineError::from)?,
            )),
            Some(None) => Some(None),
            None => None,
        };
        let changed_password = patch.password_hash.is_some();
        self.engine
            .store()
            .update_local_user(&current.user.source, &current.user.id, &patch, self.now())
            .await?;
        self.audit(
            actor,
            "user_update",
            Target {
                user: Some(&current.user.username),
                ..Target::default()
            },
            "ok",
            if changed_password {
                "attributes and password changed"
            } else {
                "attributes changed"
            },
        )
        .await?;
        self.engine.forget_users();
        self.get_user(Some(current.user.source.as_str()), username)
            .await
    }

    /// Deletes a local user and the user's tokens.
    pub async fn delete_user(
        &self,
        actor: &Actor,
        source: Option<&str>,
        username: &str,
    ) -> AdminResult<u64> {
        let current = self.find_local(source, username).await?;
        let store = self.engine.store();
        let tokens = store.delete_tokens_of(&current.user.user_ref()).await?;
        store.delete_mfa_password(&current.user.user_ref()).await?;
        store
            .delete_local_user(&current.user.source, &current.user.id)
            .await?;
        self.audit(
            actor,
            "user_delete",
            Target {
                user: Some(&current.user.username),
                ..Target::default()
            },
            "ok",
            &format!("deleted with {tokens} token(s)"),
        )
        .await?;
        self.engine.forget_users();
        Ok(tokens)
    }
}
