//! Small readers of entries and distinguished names.

use ldap3::SearchEntry;

pub(super) fn first_value(e: &SearchEntry, attr: &str) -> Option<String> {
    e.attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .and_then(|(_, v)| v.first().cloned())
}

pub(super) fn looks_like_dn(s: &str) -> bool {
    s.contains('=') && s.contains(',')
}

/// `vpn-admins` of `CN=vpn-admins,OU=Groups,DC=example,DC=org` (escaped commas kept).
pub(super) fn first_rdn_value(dn: &str) -> Option<String> {
    let mut out = String::new();
    let mut escaped = false;
    let mut after_eq = false;
    for c in dn.chars() {
        if escaped {
            if after_eq {
                out.push(c);
            }
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            ',' | '+' => break,
            '=' if !after_eq => after_eq = true,
            _ if after_eq => out.push(c),
            _ => {}
        }
    }
    let out = out.trim().to_string();
    (!out.is_empty()).then_some(out)
}
