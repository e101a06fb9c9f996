//! An LDAP source's definition resolved for use: servers, TLS, filters, attribute mapping,
//! group reading.

use std::collections::HashSet;
use std::sync::Arc;
use tessera_core::model::{DirectoryType, GroupMode, LdapProfile};

/// Login names longer than this find nobody (no directory allows them).
pub(super) const MAX_LOGIN_LEN: usize = 256;

/// Nested groups are followed this deep at most, and this many groups are read at most.
pub(super) const MAX_GROUP_DEPTH: usize = 8;

pub(super) const MAX_GROUPS: usize = 1000;

/// AD's LDAP_MATCHING_RULE_IN_CHAIN: membership through nested groups in one search.
pub(super) const IN_CHAIN: &str = "1.2.840.113556.1.4.1941";

/// The profile with the directory type's defaults filled in.
#[derive(Clone, Debug)]
pub(super) struct Resolved {
    pub(super) directory: DirectoryType,
    pub(super) base_dn: String,
    pub(super) user_filter: String,
    pub(super) login_attributes: Vec<String>,
    pub(super) unique_id: Option<String>,
    pub(super) username: String,
    pub(super) given_name: String,
    pub(super) surname: String,
    pub(super) mail: String,
    pub(super) phone: String,
    pub(super) manager: String,
    pub(super) extra: Vec<String>,
    pub(super) group_mode: GroupMode,
    pub(super) group_base: String,
    pub(super) group_filter: String,
    pub(super) group_name: String,
    pub(super) nested: bool,
    pub(super) encrypted: bool,
}

impl Resolved {
    pub(super) fn of(p: &LdapProfile) -> Self {
        let ad = p.directory == DirectoryType::ActiveDirectory;
        let or = |v: &Option<String>, d: &str| v.clone().unwrap_or_else(|| d.to_string());
        let login_attributes = if !p.login_attributes.is_empty() {
            p.login_attributes.clone()
        } else if ad {
            vec!["sAMAccountName".into(), "userPrincipalName".into()]
        } else {
            vec!["uid".into()]
        };
        let unique_id = match (&p.attributes.unique_id, p.directory) {
            (Some(a), _) if a.is_empty() || a.eq_ignore_ascii_case("dn") => None,
            (Some(a), _) => Some(a.clone()),
            (None, DirectoryType::ActiveDirectory) => Some("objectGUID".into()),
            (None, DirectoryType::Openldap) => Some("entryUUID".into()),
            (None, DirectoryType::Generic) => None,
        };
        Resolved {
            directory: p.directory,
            base_dn: p.base_dn.trim().to_string(),
            user_filter: p.user_filter.clone().unwrap_or_else(|| match p.directory {
                DirectoryType::ActiveDirectory => "(&(objectCategory=person)(objectClass=user))".into(),
                DirectoryType::Openldap => "(objectClass=inetOrgPerson)".into(),
                DirectoryType::Generic => "(objectClass=*)".into(),
            }),
            username: or(
                &p.attributes.username,
                if ad { "sAMAccountName" } else { &login_attributes[0] },
            ),
            login_attributes,
            unique_id,
            given_name: or(&p.attributes.given_name, "givenName"),
            surname: or(&p.attributes.surname, "sn"),
            mail: or(&p.attributes.mail, "mail"),
            phone: or(&p.attributes.phone, "mobile"),
            manager: or(&p.attributes.manager, "manager"),
            extra: p.attributes.extra.clone(),
            group_mode: p.groups.mode.unwrap_or(if ad {
                GroupMode::MemberOf
            } else {
                GroupMode::Search
            }),
            group_base: p.groups.base_dn.clone().unwrap_or_else(|| p.base_dn.clone()),
            group_filter: p.groups.filter.clone().unwrap_or_else(|| {
                if ad {
                    "(objectClass=group)".into()
                } else {
                    "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))".into()
                }
            }),
            group_name: or(&p.groups.name_attribute, "cn"),
            nested: p.groups.nested.unwrap_or(true),
            encrypted: p.encrypted(),
        }
    }

    /// The attributes read for a user.
    pub(super) fn user_attributes(&self) -> Vec<String> {
        let mut attrs = vec![
            self.username.clone(),
            self.given_name.clone(),
            self.surname.clone(),
            self.mail.clone(),
            self.phone.clone(),
            self.manager.clone(),
        ];
        attrs.extend(self.unique_id.iter().cloned());
        attrs.extend(self.extra.iter().cloned());
        if self.group_mode == GroupMode::MemberOf {
            attrs.push("memberOf".into());
        }
        if self.directory == DirectoryType::ActiveDirectory {
            attrs.push("userAccountControl".into());
            attrs.push("accountExpires".into());
        } else {
            // Locked by OpenLDAP's password policy; locked in 389 DS / FreeIPA.
            attrs.push("pwdAccountLockedTime".into());
            attrs.push("nsAccountLock".into());
        }
        let mut seen = HashSet::new();
        attrs.retain(|a| seen.insert(a.to_ascii_lowercase()));
        attrs
    }
}

/// The TLS client configuration of a profile: its pinned CAs, or none (ldap3 then uses the
/// system's roots, or skips verification when the profile says so).
pub(super) fn tls_config(p: &LdapProfile) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = match (&p.ca_pem, &p.ca_file) {
        (Some(pem), _) => pem.clone(),
        (None, Some(path)) => {
            std::fs::read_to_string(path).map_err(|e| format!("ca_file {path}: {e}"))?
        }
        (None, None) => return Ok(None),
    };
    let mut roots = rustls::RootCertStore::empty();
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("CA certificate: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("CA certificate: {e}"))?;
        count += 1;
    }
    if count == 0 {
        return Err("no CA certificate found in ca_pem/ca_file".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}
