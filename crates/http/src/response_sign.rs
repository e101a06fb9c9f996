//! privacyIDEA's response signatures: with the `sign_responses` setting on, every JSON answer of
//! the validate API and `/auth` carries a `signature` field, as privacyIDEA adds it unless
//! `PI_NO_RESPONSE_SIGN` is set. The request's `nonce` parameter, when given, is copied into the
//! answer first; the signature is `rsa_sha256_pss:` and the hex of an RSASSA-PSS (SHA-256)
//! signature over Python's `json.dumps(answer, sort_keys=True)`, made with the key imported by
//! `tessera response-signing import-key`. The answer is sent in that same form, so a client
//! that parses it, removes `signature` and serialises it again as Python does gets the signed
//! text back.

use crate::params::Params;
use crate::rsa_key::{RESPONSE_KEY, signer_in};
use crate::{HttpState, St};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::fmt::Write as _;

/// Signs the answers of the routes it wraps when the setting asks for it.
pub(crate) async fn sign_responses(
    axum::extract::State(state): St,
    req: Request,
    next: Next,
) -> Response {
    if !state.engine.snapshot().settings.sign_responses {
        return next.run(req).await;
    }
    // The body arrived whole already (`limits::body_deadline`); read it to find the nonce and
    // hand it on unchanged.
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, crate::MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return crate::pi::PiError::parameter("the request body could not be read")
                .into_response();
        }
    };
    let header_text = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    // A request whose parameters do not parse is answered by its handler with error 905; that
    // answer is signed too, without a nonce.
    let nonce = Params::parse(
        parts.uri.query(),
        &header_text(header::CONTENT_TYPE).to_ascii_lowercase(),
        &bytes,
        &header_text(header::USER_AGENT),
    )
    .ok()
    .and_then(|p| p.non_empty("nonce").map(str::to_string));
    let res = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    sign(&state, res, nonce).await
}

async fn sign(state: &HttpState, res: Response, nonce: Option<String>) -> Response {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return res;
    }
    let signer = match signer_in(state, &RESPONSE_KEY).await {
        Ok(Some(signer)) => signer,
        Ok(None) => {
            tracing::error!(
                advice = "import one with tessera response-signing import-key, or turn sign_responses off",
                "sign_responses is on but no response-signing key was imported: answers go out unsigned"
            );
            return res;
        }
        Err(e) => {
            tracing::error!(error = %e, "the response-signing key cannot be read: answers go out unsigned");
            return res;
        }
    };
    let (mut parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return crate::pi::PiError::internal("response-body").into_response();
    };
    let Ok(Value::Object(mut content)) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    if let Some(nonce) = nonce {
        content.insert("nonce".into(), Value::String(nonce));
    }
    let mut content = Value::Object(content);
    let signed = python_dumps(&content);
    let signature = match signer.sign_pss(signed.as_bytes()) {
        Ok(sig) => format!("rsa_sha256_pss:{}", data_encoding::HEXLOWER.encode(&sig)),
        Err(e) => {
            tracing::error!(error = %e, "signing an answer failed: it goes out unsigned");
            return Response::from_parts(parts, Body::from(bytes));
        }
    };
    content["signature"] = Value::String(signature);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(python_dumps(&content)))
}

/// The text Python's `json.dumps(value, sort_keys=True)` writes: keys sorted by code point,
/// `", "` and `": "` between items, every character outside printable ASCII escaped as `\uXXXX`
/// (surrogate pairs above U+FFFF), floats as `repr` writes them.
pub(crate) fn python_dumps(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => {
                let _ = write!(out, "{i}");
            }
            (None, Some(u), _) => {
                let _ = write!(out, "{u}");
            }
            (None, None, Some(f)) => out.push_str(&python_float(f)),
            (None, None, None) => out.push_str(&n.to_string()),
        },
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(out, key);
                out.push_str(": ");
                write_value(out, &map[key]);
            }
            out.push('}');
        }
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// `repr(float)`: the shortest text that reads back as the same number, in positional notation
/// from 1e-4 up to 1e16 and in scientific notation (`1e+16`, `1.5e-05`) outside, where Rust's
/// own shortest form (`1e16`, `1.5e-5`) differs only in how the exponent is written.
fn python_float(f: f64) -> String {
    let text = format!("{f:?}");
    let Some((mantissa, exponent)) = text.split_once('e') else {
        return text;
    };
    let (sign, digits) = match exponent.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exponent),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_what_python_writes() {
        // Each expected text is what CPython's json.dumps(value, sort_keys=True) prints.
        let value = json!({
            "result": {"value": true, "status": true},
            "detail": {"message": "Gönder \u{1F600} \"q\"\n\u{7f}", "serial": null, "n": [1, -2, 3.5]},
            "id": 2,
            "time": 1764873600.123456,
        });
        assert_eq!(
            python_dumps(&value),
            r#"{"detail": {"message": "G\u00f6nder \ud83d\ude00 \"q\"\n\u007f", "n": [1, -2, 3.5], "serial": null}, "id": 2, "result": {"status": true, "value": true}, "time": 1764873600.123456}"#
        );
    }

    #[test]
    fn floats_as_repr() {
        for (f, want) in [
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (123456789012345.6, "123456789012345.6"),
            (2.5e-300, "2.5e-300"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ] {
            assert_eq!(python_float(f), want, "{f}");
        }
    }
}
