//! The validate API's parameter parser (`/validate/*`, `/auth`, `/api/v1` forms): a query
//! string and a body, form-encoded or JSON, as any client sends them. Nothing may panic, every
//! value stays within the limit, and a key is never taken from nowhere.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_http::Params;

const CONTENT_TYPES: [&str; 4] = [
    "application/x-www-form-urlencoded",
    "application/json",
    "",
    "text/plain; charset=utf-8",
];
const USER_AGENTS: [&str; 3] = ["privacyidea-cp/3.8", "python-requests/2.32", ""];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    // Query string and body: split at the first 0xff (never part of a UTF-8 query).
    let (query, body) = match rest.iter().position(|b| *b == 0xff) {
        Some(i) => (Some(String::from_utf8_lossy(&rest[..i]).into_owned()), &rest[i + 1..]),
        None => (None, rest),
    };
    let content_type = CONTENT_TYPES[usize::from(selector & 3)];
    let user_agent = USER_AGENTS[usize::from((selector >> 2) % 3)];
    if let Ok(p) = Params::parse(query.as_deref(), content_type, body, user_agent) {
        for (k, v) in &p.0 {
            assert!(v.len() <= 4096, "value of {k} over the limit");
            assert!(k.len() <= 256);
            assert_eq!(p.get(k), Some(v.as_str()));
        }
        let _ = p.flag("otponly");
        let _ = p.non_empty("user");
    }
});
