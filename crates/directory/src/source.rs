//! The LDAP user source: finding users, binding as them, reading their groups and attributes,
//! testing the connection, and changing passwords.

use super::*;
use async_trait::async_trait;
use data_encoding::BASE64;
use ldap3::exop::PasswordModify;
use ldap3::{Mod, Scope, SearchEntry, SearchOptions, ldap_escape};
use pool::{Conn, OpError, Pool, Role, Unreachable, guarded, is_connection_error, rc_text};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};
use tessera_core::ids::{SourceName, UserId};
use tessera_core::model::{DirectoryType, GroupMode, User, UserSourceDef};
use tessera_core::model::{UserSourceKind, ldap::check_filter};
use tessera_core::source::{PasswordChangeError, SourceError, UserSource};

/// A user source backed by an LDAP directory or Active Directory.
#[derive(Debug)]
pub struct LdapSource {
    pub(super) name: SourceName,
    pub(super) cfg: Resolved,
    pub(super) pool: Pool,
}

/// What `tessera ldap test` reports.
#[derive(Debug)]
pub struct TestReport {
    /// Each server: connected (and bound) in how long, or why not.
    pub servers: Vec<(String, Result<Duration, String>)>,
    /// The user looked up, when one was named.
    pub user: Option<Result<Option<User>, String>>,
    pub service_account: bool,
}

impl LdapSource {
    pub fn new(def: &UserSourceDef) -> Result<Self, String> {
        let profile = def
            .ldap
            .as_ref()
            .ok_or("an ldap user source needs its [ldap] profile")?;
        let mut problems = profile.problems();
        if profile.bind_dn.is_some() && profile.bind_password.is_none() {
            problems.push("bind_password: required with bind_dn".into());
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        if !profile.encrypted() {
            tracing::warn!(source = %def.name, "LDAP user source without TLS: passwords cross the network in clear (use ldaps:// or starttls)");
        }
        let tls = tls_config(profile)?;
        let cfg = Resolved::of(profile);
        for f in [&cfg.user_filter, &cfg.group_filter] {
            check_filter(f)?;
        }
        Ok(LdapSource {
            name: def.name.clone(),
            pool: Pool::new(def.name.as_str(), profile, tls),
            cfg,
        })
    }

    pub(super) fn unavailable(&self, detail: impl Into<String>) -> SourceError {
        SourceError::Unavailable {
            source_name: self.name.0.clone(),
            detail: detail.into(),
        }
    }

    /// Runs a search with the service account, retrying once on a fresh connection when a
    /// reused one turns out to be dead. `partial`: more entries than `size_limit` is an
    /// answer (the caller looks at the count); otherwise it is an error, so that nothing is
    /// decided on a truncated list.
    pub(super) async fn search(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[String],
        size_limit: i32,
        partial: bool,
    ) -> Result<Vec<SearchEntry>, SourceError> {
        let mut retried = false;
        loop {
            let mut conn = self
                .pool
                .get(Role::Service)
                .await
                .map_err(|Unreachable(e)| self.unavailable(e))?;
            let result = guarded(
                self.pool.timeout,
                conn.ldap
                    .with_search_options(SearchOptions::new().sizelimit(size_limit))
                    .search(base, scope, filter, attrs),
            )
            .await;
            let (entries, res) = match result {
                Ok(ldap3::SearchResult(entries, res)) => (entries, res),
                // A dead idle connection: once more on a new one.
                Err(OpError::Ldap(e)) if conn.reused && !retried && is_connection_error(&e) => {
                    self.pool.clear_idle();
                    retried = true;
                    continue;
                }
                Err(e) => return Err(self.unavailable(format!("search under {base}: {e}"))),
            };
            // 32: the base does not exist, which finds nobody. 4: more than asked for.
            let truncated = res.rc == 4 || (res.rc == 0 && entries.len() > size_limit as usize);
            if (res.rc != 0 && res.rc != 4 && res.rc != 32) || (truncated && !partial) {
                // The directory answered: the connection is fine.
                conn.keep();
                return Err(self.unavailable(format!(
                    "search under {base} failed: {}",
                    rc_text(res.rc, &res.text)
                )));
            }
            let mut out = Vec::with_capacity(entries.len());
            for e in entries {
                // ldap3 panics on a malformed entry; a broken server must not take a worker
                // thread with it.
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    SearchEntry::construct(e)
                })) {
                    Ok(entry) => out.push(entry),
                    Err(_) => return Err(self.unavailable("the directory sent a malformed entry")),
                }
            }
            conn.keep();
            return Ok(out);
        }
    }

    /// The one user entry matching `filter` under the base DN; none when there are several.
    pub(super) async fn find_entry(
        &self,
        filter: &str,
    ) -> Result<Option<SearchEntry>, SourceError> {
        let filter = format!("(&{}{})", self.cfg.user_filter, filter);
        let mut entries = self
            .search(
                &self.cfg.base_dn,
                Scope::Subtree,
                &filter,
                &self.cfg.user_attributes(),
                2,
                true,
            )
            .await?;
        match entries.len() {
            0 => Ok(None),
            1 => Ok(entries.pop()),
            _ => {
                tracing::warn!(source = %self.name, "a login name matches several directory entries; nobody is found");
                Ok(None)
            }
        }
    }

    pub(super) async fn user_of(&self, entry: SearchEntry) -> Result<Option<User>, SourceError> {
        let cfg = &self.cfg;
        let first = |attr: &str| -> Option<String> {
            entry
                .attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(attr))
                .and_then(|(_, v)| v.first().cloned())
                .filter(|v| !v.is_empty())
        };
        let all = |attr: &str| -> Vec<String> {
            entry
                .attrs
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(attr))
                .flat_map(|(_, v)| v.iter().cloned())
                .collect()
        };
        // An attribute's values as bytes: ldap3 reads a value that is valid UTF-8 as text (as
        // one objectGUID in some thousands happens to be) and the others as binary.
        let raw = |attr: &str| -> Vec<Vec<u8>> {
            let text = entry
                .attrs
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(attr))
                .flat_map(|(_, v)| v.iter().map(|s| s.as_bytes().to_vec()));
            let bin = entry
                .bin_attrs
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(attr))
                .flat_map(|(_, v)| v.iter().cloned());
            text.chain(bin).collect()
        };
        let id = match &cfg.unique_id {
            None => entry.dn.clone(),
            Some(attr) if attr.eq_ignore_ascii_case("objectGUID") => {
                match raw(attr).first().and_then(|b| ad::guid_to_string(b)) {
                    Some(g) => g,
                    None => {
                        tracing::warn!(source = %self.name, dn = %entry.dn, "entry has no objectGUID; ignored");
                        return Ok(None);
                    }
                }
            }
            Some(attr) => match first(attr) {
                Some(v) => v,
                None => {
                    tracing::warn!(source = %self.name, dn = %entry.dn, attribute = %attr, "entry has no unique id attribute; ignored");
                    return Ok(None);
                }
            },
        };
        let Some(username) = first(&cfg.username) else {
            tracing::warn!(source = %self.name, dn = %entry.dn, attribute = %cfg.username, "entry has no login name attribute; ignored");
            return Ok(None);
        };
        let mut attributes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        attributes.insert("dn".into(), vec![entry.dn.clone()]);
        for a in &cfg.extra {
            // Binary values (AD's objectGUID, mS-DS-ConsistencyGuid, objectSid, a photo; any
            // value not UTF-8 or with control characters) are given in base64, as ldapsearch
            // shows them and as Microsoft's ImmutableID is.
            let v = if ad::BINARY_ATTRIBUTES
                .iter()
                .any(|b| b.eq_ignore_ascii_case(a))
            {
                raw(a).iter().map(|b| BASE64.encode(b)).collect()
            } else {
                // Text with control characters (a binary value that happens to be UTF-8) is no
                // text: XML, templates and logs could not carry it.
                let mut v: Vec<String> = all(a)
                    .into_iter()
                    .map(|t| {
                        if t.chars()
                            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
                        {
                            BASE64.encode(t.as_bytes())
                        } else {
                            t
                        }
                    })
                    .collect();
                v.extend(
                    entry
                        .bin_attrs
                        .iter()
                        .filter(|(k, _)| k.eq_ignore_ascii_case(a))
                        .flat_map(|(_, v)| v.iter().map(|b| BASE64.encode(b))),
                );
                v
            };
            if !v.is_empty() {
                attributes.insert(a.to_ascii_lowercase(), v);
            }
        }
        // An account the directory disables or locks cannot sign in, also with factors that
        // never bind (an OTP alone).
        let (enabled, expires_at) = if cfg.directory == DirectoryType::ActiveDirectory {
            (
                // Unreadable: taken as disabled rather than guessed enabled.
                first("userAccountControl")
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_some_and(|uac| uac & ad::ACCOUNT_DISABLE == 0),
                first("accountExpires").and_then(|v| ad::filetime_to_unix(&v)),
            )
        } else {
            // Only ppolicy's administrative lock: a lock for failed binds ends by itself, and
            // the directory clears the attribute only at the next bind (which it refuses while
            // the lock lasts).
            let locked = first("pwdAccountLockedTime").is_some_and(|v| v == "000001010000Z")
                || first("nsAccountLock").is_some_and(|v| v.eq_ignore_ascii_case("true"));
            (!locked, None)
        };
        let manager = match first(&cfg.manager) {
            Some(m) if looks_like_dn(&m) => Some(self.login_of(&m).await.unwrap_or(m)),
            other => other,
        };
        let (groups, group_dns) = self.groups_of(&entry, &username).await?;
        if !group_dns.is_empty() {
            attributes.insert("memberof".into(), group_dns);
        }
        Ok(Some(User {
            source: self.name.clone(),
            id: UserId(id),
            username,
            given_name: first(&cfg.given_name),
            surname: first(&cfg.surname),
            email: first(&cfg.mail),
            phone: first(&cfg.phone),
            manager,
            groups,
            enabled,
            expires_at,
            attributes,
        }))
    }

    /// The login name of the entry at `dn` (the manager of a user), if it can be read.
    pub(super) async fn login_of(&self, dn: &str) -> Option<String> {
        let entries = self
            .search(
                dn,
                Scope::Base,
                "(objectClass=*)",
                std::slice::from_ref(&self.cfg.username),
                1,
                true,
            )
            .await
            .ok()?;
        entries.into_iter().next().and_then(|e| {
            e.attrs
                .into_iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&self.cfg.username))
                .and_then(|(_, v)| v.into_iter().next())
        })
    }

    /// The user's group names and DNs (nested ones included when configured).
    pub(super) async fn groups_of(
        &self,
        entry: &SearchEntry,
        login: &str,
    ) -> Result<(Vec<String>, Vec<String>), SourceError> {
        let cfg = &self.cfg;
        let mut dns: BTreeSet<String> = BTreeSet::new();
        let mut names: Vec<String> = Vec::new();
        let mut add = |dn: String, name: Option<String>, names: &mut Vec<String>| {
            let name = name.or_else(|| first_rdn_value(&dn));
            if dns.insert(dn.to_ascii_lowercase())
                && let Some(n) = name
                && !names.iter().any(|x| x.eq_ignore_ascii_case(&n))
            {
                names.push(n);
            }
        };
        let mut group_dns: Vec<String> = Vec::new();
        match cfg.group_mode {
            GroupMode::None => {}
            GroupMode::MemberOf => {
                let direct: Vec<String> = entry
                    .attrs
                    .iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case("memberOf"))
                    .flat_map(|(_, v)| v.iter().cloned())
                    .collect();
                for dn in &direct {
                    add(dn.clone(), None, &mut names);
                    group_dns.push(dn.clone());
                }
                if cfg.nested && cfg.directory == DirectoryType::ActiveDirectory {
                    let filter = format!(
                        "(&{}(member:{IN_CHAIN}:={}))",
                        cfg.group_filter,
                        ldap_escape(entry.dn.as_str())
                    );
                    for g in self
                        .search(
                            &cfg.group_base,
                            Scope::Subtree,
                            &filter,
                            std::slice::from_ref(&cfg.group_name),
                            MAX_GROUPS as i32,
                            false,
                        )
                        .await?
                    {
                        let name = first_value(&g, &cfg.group_name);
                        if !group_dns.iter().any(|d| d.eq_ignore_ascii_case(&g.dn)) {
                            group_dns.push(g.dn.clone());
                        }
                        add(g.dn, name, &mut names);
                    }
                }
            }
            GroupMode::Search => {
                let mut level = vec![entry.dn.clone()];
                let mut first_level = true;
                for _ in 0..MAX_GROUP_DEPTH {
                    if level.is_empty() {
                        break;
                    }
                    if group_dns.len() >= MAX_GROUPS {
                        return Err(self.unavailable(format!(
                            "{login} is in more than {MAX_GROUPS} groups; rules cannot be decided on a partial list"
                        )));
                    }
                    let mut terms = String::new();
                    for dn in &level {
                        let dn = ldap_escape(dn.as_str());
                        terms.push_str(&format!("(member={dn})(uniqueMember={dn})"));
                    }
                    if first_level {
                        terms.push_str(&format!("(memberUid={})", ldap_escape(login)));
                    }
                    let filter = format!("(&{}(|{terms}))", cfg.group_filter);
                    let found = self
                        .search(
                            &cfg.group_base,
                            Scope::Subtree,
                            &filter,
                            std::slice::from_ref(&cfg.group_name),
                            MAX_GROUPS as i32,
                            false,
                        )
                        .await?;
                    let mut next = Vec::new();
                    for g in found {
                        if group_dns.iter().any(|d| d.eq_ignore_ascii_case(&g.dn)) {
                            continue;
                        }
                        group_dns.push(g.dn.clone());
                        next.push(g.dn.clone());
                        let name = first_value(&g, &cfg.group_name);
                        add(g.dn, name, &mut names);
                    }
                    if !cfg.nested {
                        break;
                    }
                    level = next;
                    first_level = false;
                }
            }
        }
        Ok((names, group_dns))
    }

    /// The DN to bind as for `user`.
    pub(super) async fn dn_of(&self, user: &User) -> Result<Option<String>, SourceError> {
        if let Some(dn) = user.attributes.get("dn").and_then(|v| v.first()) {
            return Ok(Some(dn.clone()));
        }
        Ok(self
            .get(&user.id)
            .await?
            .and_then(|u| u.attributes.get("dn").and_then(|v| v.first().cloned())))
    }

    /// Binds as `dn` on an authentication connection. The connection is handed back for a
    /// following operation as that user.
    pub(super) async fn bind_as(
        &self,
        dn: &str,
        password: &str,
    ) -> Result<(Bind, Option<Conn<'_>>), SourceError> {
        // Never an unauthenticated bind (an empty password or DN), which directories accept.
        if dn.is_empty() || password.is_empty() || password.contains('\0') {
            return Ok((Bind::Refused(String::new()), None));
        }
        let mut retried = false;
        loop {
            let mut conn = self
                .pool
                .get(Role::Auth)
                .await
                .map_err(|Unreachable(e)| self.unavailable(e))?;
            match guarded(self.pool.timeout, conn.ldap.simple_bind(dn, password)).await {
                Ok(r) if r.rc == 0 => {
                    conn.keep();
                    return Ok((Bind::Accepted, Some(conn)));
                }
                // Busy, unavailable, limits, other, or signing/TLS required: the directory's
                // fault (or its configuration's), not the user's, and not counted against them.
                Ok(r) if matches!(r.rc, 1 | 2 | 3 | 8 | 11 | 13 | 51 | 52 | 80) => {
                    return Err(self.unavailable(format!("bind: {}", rc_text(r.rc, &r.text))));
                }
                Ok(r) => {
                    if r.rc != 49 {
                        tracing::info!(source = %self.name, result = %rc_text(r.rc, &r.text), "user bind refused");
                    }
                    conn.keep();
                    return Ok((Bind::Refused(r.text), Some(conn)));
                }
                // A dead idle connection: once more on a new one. Not after a timeout: the
                // directory may have counted the attempt (AD's badPwdCount).
                Err(OpError::Ldap(e)) if conn.reused && !retried && is_connection_error(&e) => {
                    self.pool.clear_idle();
                    retried = true;
                }
                Err(e) => return Err(self.unavailable(format!("bind: {e}"))),
            }
        }
    }

    /// Connects to each server and binds the service account, then looks `user` up:
    /// what `tessera ldap test` shows.
    pub async fn test(&self, user: Option<&str>) -> TestReport {
        let mut servers = Vec::new();
        for url in self.pool.servers() {
            let started = Instant::now();
            let result = async {
                let mut ldap = self.pool.open_to(url).await?;
                self.pool.bind_service(&mut ldap).await?;
                let _ = guarded(self.pool.timeout, ldap.unbind()).await;
                Ok::<_, Unreachable>(started.elapsed())
            }
            .await
            .map_err(|Unreachable(e)| e);
            servers.push((url.to_string(), result));
        }
        let user = match user {
            Some(login) => Some(self.find(login).await.map_err(|e| e.to_string())),
            None => None,
        };
        TestReport {
            servers,
            user,
            service_account: self.pool.has_service_account(),
        }
    }

    pub(super) fn is_ad(&self) -> bool {
        self.cfg.directory == DirectoryType::ActiveDirectory
    }
}

#[async_trait]
impl UserSource for LdapSource {
    fn name(&self) -> &SourceName {
        &self.name
    }

    fn kind(&self) -> UserSourceKind {
        UserSourceKind::Ldap
    }

    async fn find(&self, login: &str) -> Result<Option<User>, SourceError> {
        if login.is_empty() || login.len() > MAX_LOGIN_LEN || login.chars().any(char::is_control) {
            return Ok(None);
        }
        let value = ldap_escape(login);
        let terms: String = self
            .cfg
            .login_attributes
            .iter()
            .map(|a| format!("({a}={value})"))
            .collect();
        let Some(entry) = self.find_entry(&format!("(|{terms})")).await? else {
            return Ok(None);
        };
        self.user_of(entry).await
    }

    async fn get(&self, id: &UserId) -> Result<Option<User>, SourceError> {
        let entry = match &self.cfg.unique_id {
            None => {
                let mut entries = self
                    .search(
                        id.as_str(),
                        Scope::Base,
                        &self.cfg.user_filter,
                        &self.cfg.user_attributes(),
                        1,
                        true,
                    )
                    .await?;
                entries.pop()
            }
            Some(attr) if attr.eq_ignore_ascii_case("objectGUID") => {
                let Some(bytes) = ad::guid_from_string(id.as_str()) else {
                    return Ok(None);
                };
                let escaped: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
                self.find_entry(&format!("({attr}={escaped})")).await?
            }
            Some(attr) => {
                self.find_entry(&format!("({attr}={})", ldap_escape(id.as_str())))
                    .await?
            }
        };
        match entry {
            Some(e) => self.user_of(e).await,
            None => Ok(None),
        }
    }

    async fn verify_password(&self, user: &User, password: &str) -> Result<bool, SourceError> {
        // An empty password would be an unauthenticated bind, which directories accept.
        if password.is_empty() || password.contains('\0') {
            return Ok(false);
        }
        let Some(dn) = self.dn_of(user).await? else {
            return Ok(false);
        };
        Ok(self.bind_as(&dn, password).await?.0 == Bind::Accepted)
    }

    async fn waste_verify(&self) -> Result<(), SourceError> {
        // A bind as an entry that does not exist, with a password nobody has: the directory
        // answers "invalid credentials" after about the time a real check takes.
        let dn = format!("cn=tessera-no-such-user,{}", self.cfg.base_dn);
        let _ = self.bind_as(&dn, "tessera-no-such-password").await;
        Ok(())
    }

    async fn change_password(
        &self,
        user: &User,
        old: Option<&str>,
        new: &str,
    ) -> Result<(), PasswordChangeError> {
        if new.is_empty() || new.chars().any(char::is_control) {
            return Err(PasswordChangeError::PolicyViolation(
                "empty or with control characters".into(),
            ));
        }
        if self.is_ad() && !self.cfg.encrypted {
            return Err(PasswordChangeError::NotSupported(
                "Active Directory changes passwords only over LDAPS or StartTLS".into(),
            ));
        }
        let Some(dn) = self.dn_of(user).await? else {
            return Err(PasswordChangeError::Refused(
                "the user's entry is gone".into(),
            ));
        };
        if old.is_some_and(|o| o.is_empty() || o.contains('\0')) {
            return Err(PasswordChangeError::WrongOldPassword);
        }
        // The user's own change runs bound as the user (the old password proves it); an
        // administrator's reset runs as the service account. An AD user whose password
        // expired or must be changed cannot bind: AD then checks the old password in the
        // delete-and-add of unicodePwd done by the service account.
        let service = || async {
            if !self.pool.has_service_account() {
                return Err(PasswordChangeError::NotSupported(
                    "this needs a service account (bind_dn) allowed to write passwords".into(),
                ));
            }
            self.pool
                .get(Role::Service)
                .await
                .map_err(|Unreachable(e)| PasswordChangeError::from(self.unavailable(e)))
        };
        let mut conn = match old {
            Some(old) => match self.bind_as(&dn, old).await? {
                (Bind::Accepted, Some(conn)) => conn,
                (Bind::Refused(text), auth)
                    if self.is_ad() && matches!(ad_data_code(&text), Some("532" | "773")) =>
                {
                    // Back to the pool before taking a service connection.
                    drop(auth);
                    service().await?
                }
                (Bind::Accepted, None) => return Err(PasswordChangeError::WrongOldPassword),
                (Bind::Refused(text), _) => {
                    return Err(match ad_data_code(&text) {
                        Some("775") if self.is_ad() => PasswordChangeError::Refused(
                            "the account is locked in the directory".into(),
                        ),
                        Some("533") if self.is_ad() => PasswordChangeError::Refused(
                            "the account is disabled in the directory".into(),
                        ),
                        _ => PasswordChangeError::WrongOldPassword,
                    });
                }
            },
            None => service().await?,
        };
        // Whatever happens next (a cancelled caller included), this connection is not reused.
        conn.discard();
        let timeout = self.pool.timeout;
        let result = if self.is_ad() {
            let new_value = ad::unicode_pwd(new);
            let mods = match old {
                Some(old) => vec![
                    Mod::Delete(
                        b"unicodePwd".to_vec(),
                        HashSet::from([ad::unicode_pwd(old)]),
                    ),
                    Mod::Add(b"unicodePwd".to_vec(), HashSet::from([new_value])),
                ],
                None => vec![Mod::Replace(
                    b"unicodePwd".to_vec(),
                    HashSet::from([new_value]),
                )],
            };
            guarded(timeout, conn.ldap.modify(&dn, mods))
                .await
                .map(|r| (r.rc, r.text))
        } else {
            guarded(
                timeout,
                conn.ldap.extended(PasswordModify {
                    user_id: Some(&dn),
                    old_pass: old,
                    new_pass: Some(new),
                }),
            )
            .await
            .map(|r| (r.1.rc, r.1.text))
        };
        match result {
            Ok((0, _)) => {
                tracing::info!(source = %self.name, user = %user.username, "directory password changed");
                Ok(())
            }
            Ok((rc, text)) => Err(password_error(rc, &text, self.is_ad())),
            Err(e) if e.is_connection() => Err(PasswordChangeError::from(
                self.unavailable(format!("password change: {e}")),
            )),
            Err(e) => Err(PasswordChangeError::Refused(e.to_string())),
        }
    }
}
