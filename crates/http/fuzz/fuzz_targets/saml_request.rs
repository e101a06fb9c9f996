//! SAML requests as the SSO and SLO endpoints read them from anyone: the HTTP-Redirect binding's
//! query string (base64, DEFLATE, XML) and the HTTP-POST binding's form body, read as
//! AuthnRequest, LogoutRequest and LogoutResponse. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Query string and body: split at the first 0xff.
    let (query, body) = match data.iter().position(|b| *b == 0xff) {
        Some(i) => (Some(String::from_utf8_lossy(&data[..i]).into_owned()), &data[i + 1..]),
        None => (None, data),
    };
    tessera_http::saml::read_untrusted(query.as_deref(), body);
    // The same bytes as a SAMLRequest of each binding, encoded as a client would.
    let b64 = data_encoding::BASE64.encode(data);
    let form = format!("SAMLRequest={}", b64.replace('+', "%2B").replace('=', "%3D"));
    tessera_http::saml::read_untrusted(Some(&form), form.as_bytes());
});
