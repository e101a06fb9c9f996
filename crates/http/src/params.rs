//! Request parameters the way privacyIDEA accepts them: query string and body merged, the body
//! form-encoded or JSON, for GET and POST alike.
//!
//! Like privacyIDEA and eduMFA (`check_unquote`), form and query values are percent-decoded a
//! second time unless the client identifies itself (User-Agent) as one of the plugins known to
//! send them encoded once only: the credential providers, the LDAP proxies and simpleSAMLphp.
//! Clients such as privacyIDEA's own Python client quote `user` and `pass` before form-encoding
//! and rely on this. JSON values are taken as they are.

use crate::pi::PiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use std::collections::HashMap;

/// Longest value accepted for any parameter.
const MAX_VALUE: usize = 4096;

#[derive(Debug, Default, Clone)]
pub struct Params(pub HashMap<String, String>);

impl Params {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A non-empty value.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(
            self.get(key).map(|v| v.to_ascii_lowercase()).as_deref(),
            Some("1" | "true" | "yes" | "on")
        )
    }

    fn insert(&mut self, key: String, value: String) -> Result<(), PiError> {
        if value.len() > MAX_VALUE || key.len() > 256 {
            return Err(PiError::parameter(format!(
                "Parameter '{}' is too long",
                key.chars().take(64).collect::<String>()
            )));
        }
        self.0.insert(key, value);
        Ok(())
    }

    pub fn parse(
        query: Option<&str>,
        content_type: &str,
        body: &[u8],
        user_agent: &str,
    ) -> Result<Self, PiError> {
        let mut params = Params::default();
        let unquote = wants_unquote(user_agent);
        let value = |v: std::borrow::Cow<'_, str>| {
            if unquote {
                percent_encoding::percent_decode_str(&v)
                    .decode_utf8_lossy()
                    .into_owned()
            } else {
                v.into_owned()
            }
        };
        if let Some(q) = query {
            for (k, v) in form_urlencoded::parse(q.as_bytes()) {
                params.insert(k.into_owned(), value(v))?;
            }
        }
        if body.is_empty() {
            return Ok(params);
        }
        if content_type.starts_with("application/json") {
            let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
                PiError::parameter(format!("The request body is not valid JSON: {e}"))
            })?;
            let serde_json::Value::Object(map) = value else {
                return Err(PiError::parameter("The JSON body must be an object"));
            };
            for (k, v) in map {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => String::new(),
                    serde_json::Value::Bool(b) => (if b { "1" } else { "0" }).to_string(),
                    other => other.to_string(),
                };
                params.insert(k, text)?;
            }
        } else {
            for (k, v) in form_urlencoded::parse(body) {
                params.insert(k.into_owned(), value(v))?;
            }
        }
        Ok(params)
    }
}

/// Plugins that send values encoded once (privacyIDEA's and eduMFA's `NO_UNQUOTE_USER_AGENTS`).
const NO_UNQUOTE: &[&str] = &[
    "privacyidea-cp",
    "privacyidea-ldap-proxy",
    "simplesamlphp",
    "edumfa-cp",
    "edumfa-ldap-proxy",
];

/// Whether form values are percent-decoded once more: yes, unless the User-Agent's product
/// name (`Name/Version …`) is one of [`NO_UNQUOTE`]. No User-Agent: yes.
fn wants_unquote(user_agent: &str) -> bool {
    let name: String = user_agent
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    !NO_UNQUOTE.iter().any(|n| n.eq_ignore_ascii_case(&name))
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = PiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let query = req.uri().query().map(str::to_string);
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let user_agent = req
            .headers()
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            let mut err = PiError::parameter(format!("Cannot read the request body: {e}"));
            // Keep 413 for bodies over the limit.
            err.http = e.status();
            err
        })?;
        Params::parse(query.as_deref(), &content_type, &body, &user_agent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_query_and_form() {
        let p = Params::parse(
            Some("user=alice&realm=r"),
            "application/x-www-form-urlencoded",
            b"pass=12%2B34",
            "curl/8",
        )
        .unwrap();
        assert_eq!(p.get("user"), Some("alice"));
        assert_eq!(p.get("pass"), Some("12+34"));
        assert_eq!(p.get("realm"), Some("r"));
    }

    #[test]
    fn json_values_become_text() {
        let p = Params::parse(
            None,
            "application/json",
            br#"{"user":"bob","pass":123456,"otponly":true,"x":null}"#,
            "",
        )
        .unwrap();
        assert_eq!(p.get("pass"), Some("123456"));
        assert!(p.flag("otponly"));
        assert_eq!(p.get("x"), Some(""));
    }

    #[test]
    fn bad_json_and_huge_values_are_errors() {
        assert!(Params::parse(None, "application/json", b"{nope", "").is_err());
        assert!(Params::parse(None, "application/json", b"[1,2]", "").is_err());
        let big = format!("pass={}", "1".repeat(5000));
        assert!(Params::parse(None, "", big.as_bytes(), "").is_err());
    }

    #[test]
    fn form_values_are_unquoted_again_except_for_known_plugins() {
        // privacyIDEA's Python client quotes "pin 12&34" before form-encoding it.
        let body = b"user=alice&pass=pin%252012%252634";
        let p = Params::parse(
            None,
            "application/x-www-form-urlencoded",
            body,
            "python-requests/2.32",
        )
        .unwrap();
        assert_eq!(p.get("pass"), Some("pin 12&34"));
        let p = Params::parse(None, "", body, "").unwrap();
        assert_eq!(p.get("pass"), Some("pin 12&34"));
        for ua in [
            "privacyidea-cp/3.5 Windows/10",
            "simpleSAMLphp/2.0",
            "eduMFA-LDAP-Proxy/1.0",
        ] {
            let p = Params::parse(None, "", body, ua).unwrap();
            assert_eq!(p.get("pass"), Some("pin%2012%2634"), "{ua}");
        }
        // JSON is never unquoted.
        let p = Params::parse(None, "application/json", br#"{"pass":"a%20b"}"#, "curl/8").unwrap();
        assert_eq!(p.get("pass"), Some("a%20b"));
    }
}
