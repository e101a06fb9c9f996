//! Syslog profiles: where audit events are forwarded (RFC 5424 over UDP, TCP or TLS).

use crate::model::app::check_name;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SyslogProtocol {
    /// One datagram per event (RFC 5426).
    #[default]
    Udp,
    /// Octet-counted frames over TCP (RFC 6587).
    Tcp,
    /// Octet-counted frames over TLS (RFC 5425).
    Tls,
}

/// A syslog receiver and the audit events it gets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogProfile {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub host: String,
    /// Default: 514 (UDP, TCP), 6514 (TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default)]
    pub protocol: SyslogProtocol,
    /// `auth`, `authpriv` (default), `daemon`, `user`, `local0` … `local7`.
    #[serde(default = "default_facility")]
    pub facility: String,
    /// TLS: trust only these CA certificates (PEM) instead of the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// The audit actions forwarded (`authenticate`, `deliver`, `token_enroll`, `config_apply`,
    /// ... or a prefix ending in `*`, such as `token_*`); empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
}

fn default_facility() -> String {
    "authpriv".into()
}

/// The facility's number (RFC 5424 table 1).
pub fn facility_code(name: &str) -> Option<u8> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "kern" => 0,
        "user" => 1,
        "mail" => 2,
        "daemon" => 3,
        "auth" => 4,
        "syslog" => 5,
        "authpriv" => 10,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => return None,
    })
}

impl SyslogProfile {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.protocol {
            SyslogProtocol::Tls => 6514,
            _ => 514,
        })
    }

    /// Whether the profile forwards events of `action`.
    pub fn wants(&self, action: &str) -> bool {
        self.events.is_empty()
            || self.events.iter().any(|e| match e.strip_suffix('*') {
                Some(prefix) => action.starts_with(prefix),
                None => e == action,
            })
    }

    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if let Err(e) = check_name(&self.name) {
            errs.push(format!("name: {e}"));
        }
        if self.host.trim().is_empty() || self.host.contains(['/', ' ']) {
            errs.push("host: a host name or address".into());
        }
        if facility_code(&self.facility).is_none() {
            errs.push(format!(
                "facility: '{}' is not one of auth, authpriv, daemon, user, local0..local7",
                self.facility
            ));
        }
        if self.ca_pem.is_some() && self.protocol != SyslogProtocol::Tls {
            errs.push("ca_pem: only for protocol = \"tls\"".into());
        }
        if let Some(pem) = &self.ca_pem
            && !pem.contains("-----BEGIN CERTIFICATE-----")
        {
            errs.push("ca_pem: no PEM certificate found".into());
        }
        if self.events.iter().any(|e| e.is_empty() || e.len() > 64) {
            errs.push("events: audit action names of 1 to 64 characters".into());
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_problems() {
        let p: SyslogProfile = serde_json::from_value(serde_json::json!({
            "name": "siem", "host": "10.0.0.5", "protocol": "tcp",
            "events": ["authenticate", "token_*"]
        }))
        .unwrap();
        assert!(p.problems().is_empty());
        assert_eq!(p.port(), 514);
        assert!(p.wants("authenticate") && p.wants("token_enroll") && !p.wants("deliver"));
        let bad: SyslogProfile = serde_json::from_value(serde_json::json!({
            "name": "x", "host": "", "facility": "nope", "ca_pem": "x"
        }))
        .unwrap();
        assert_eq!(bad.problems().len(), 4, "{:?}", bad.problems());
    }
}
