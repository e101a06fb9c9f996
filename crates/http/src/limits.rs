//! What stands between one client address and the doors that cost: request budgets per address
//! and minute (per node), the hashing queue's caller (each address takes its turn), and the time
//! a request body may take to arrive.

use crate::{HttpState, St};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

/// Requests counted per key and minute. Bounded: when it holds many keys, the counts of past
/// minutes go, and if this minute's alone are too many they start again (rather than a scan at
/// every request).
#[derive(Debug)]
pub(crate) struct MinuteCounts<K> {
    counts: Mutex<HashMap<K, (i64, u32)>>,
    max_keys: usize,
}

impl<K> Default for MinuteCounts<K> {
    fn default() -> Self {
        MinuteCounts {
            counts: Mutex::new(HashMap::new()),
            max_keys: 50_000,
        }
    }
}

impl<K: Hash + Eq> MinuteCounts<K> {
    /// Counts a request of `key` in `minute`: true when it is over `limit` (0: no limit).
    pub(crate) fn over(&self, key: K, minute: i64, limit: u32) -> bool {
        if limit == 0 {
            return false;
        }
        let Ok(mut counts) = self.counts.lock() else {
            return false;
        };
        if counts.len() > self.max_keys {
            counts.retain(|_, (m, _)| *m == minute);
            if counts.len() > self.max_keys / 2 {
                counts.clear();
            }
        }
        let entry = counts.entry(key).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 > limit
    }
}

/// The paths whose requests count against `api_requests_per_minute`: those that check users'
/// or administrators' credentials.
fn budgeted(path: &str) -> bool {
    path.starts_with("/validate/") || path == "/auth" || path == "/oauth/token"
}

/// Every request: its client address (a trusted proxy's word taken, per `override_client`)
/// names the caller whose turn its password checks wait for; the checking doors count it
/// against the address's budget (`api_requests_per_minute`, except `rate_limit_exempt`
/// networks), and answer 429 with `Retry-After` beyond it.
pub(crate) async fn per_address(state: St, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let ip = state.client_ip(peer, req.headers(), None);
    let path = req.uri().path();
    if budgeted(path) && over_budget(&state, ip) {
        tracing::warn!(%ip, path, "request budget of the address used up");
        return too_many(&state, path);
    }
    tessera_core::hashing::as_caller(Some(ip), next.run(req)).await
}

/// Counts a request of `ip` against its budget: true when it is over.
fn over_budget(state: &HttpState, ip: IpAddr) -> bool {
    let snap = state.engine.snapshot();
    let limit = snap.settings.api_requests_per_minute;
    if limit == 0 || snap.rate_limit_exempt.iter().any(|n| n.contains(&ip)) {
        return false;
    }
    let minute = state.engine.clock().now() / 60;
    state
        .api_rates
        .over(tessera_core::netmatch::client_group(ip), minute, limit)
}

/// 429 in the door's own format, with the seconds until the next minute's budget.
fn too_many(state: &HttpState, path: &str) -> Response {
    let wait = u32::try_from(60 - state.engine.clock().now().rem_euclid(60)).unwrap_or(60);
    if path == "/oauth/token" {
        return crate::oauth::OAuthError::TooManyRequests {
            why: "too many requests from this address; try again in a minute".into(),
            retry_after: u64::from(wait),
        }
        .into_response();
    }
    crate::pi::PiError::too_many(wait).into_response()
}

/// Every request body arrives within the read deadline (`http.read_timeout_secs`, as the
/// headers) and within [`crate::MAX_BODY`], or the request is answered 408 (413) before any
/// handler waits for it. A token file for `/api/v1/tokens/import` may be up to
/// [`crate::MAX_IMPORT_BODY`] — for a signed-in administrator only: nobody else gets more than
/// the usual read.
pub(crate) async fn body_deadline(state: St, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let administrator = || async {
        match crate::oauth::bearer(&parts.headers) {
            Some(token) => matches!(state.admin.session(token).await, Ok(Some(_))),
            None => false,
        }
    };
    let limit = if parts.uri.path() == "/api/v1/tokens/import" && administrator().await {
        crate::MAX_IMPORT_BODY
    } else {
        crate::MAX_BODY
    };
    let read = axum::body::to_bytes(body, limit);
    let refusal = match tokio::time::timeout(state.read_timeout, read).await {
        Ok(Ok(bytes)) => {
            return next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
        }
        Ok(Err(e)) if is_too_large(&e) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over {limit} bytes"),
        ),
        Ok(Err(_)) => (
            StatusCode::BAD_REQUEST,
            "the request body could not be read".to_string(),
        ),
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time".to_string(),
        ),
    };
    // The validate API and /auth answer in privacyIDEA's format (error 905), as for any other
    // bad parameter.
    let path = parts.uri.path();
    if path.starts_with("/validate/") || path == "/auth" {
        let mut err = crate::pi::PiError::parameter(refusal.1);
        err.http = refusal.0;
        return err.into_response();
    }
    (refusal.0, format!("{}\n", refusal.1)).into_response()
}

/// Whether reading a body failed on its length limit.
fn is_too_large(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_minute_and_bounded() {
        let c: MinuteCounts<u32> = MinuteCounts {
            counts: Mutex::new(HashMap::new()),
            max_keys: 4,
        };
        assert!(!c.over(1, 10, 2));
        assert!(!c.over(1, 10, 2));
        assert!(c.over(1, 10, 2));
        // The next minute starts afresh; no limit counts nothing.
        assert!(!c.over(1, 11, 2));
        assert!(!c.over(2, 11, 0));
        for k in 3..20 {
            c.over(k, 11, 5);
        }
        assert!(c.counts.lock().unwrap().len() <= 5);
    }
}
