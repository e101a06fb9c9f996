//! The page a link by mail opens: `GET /link/{transaction}/{token}` shows what is asked (sign in
//! as alice to vpn?) with buttons; `POST` answers. A GET never answers, so that mail scanners
//! that open links do not approve logins.

use crate::{HttpState, St};
use axum::Router;
use axum::extract::{ConnectInfo, Path};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;
use tessera_core::engine::{Door, LinkAnswer, RequestCtx};
use tessera_core::ids::TransactionId;

pub(crate) fn routes() -> Router<HttpState> {
    Router::new().route("/link/{tx}/{token}", get(show).post(answer))
}

/// HTML text: `<`, `>`, `&`, `"` and `'` escaped.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title></head><body><main><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title)
    );
    let mut res = (status, Html(html)).into_response();
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    res
}

fn invalid() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Link not valid",
        "<p>This link is unknown, has expired or was used already.</p>",
    )
}

fn parse(tx: &str, token: &str) -> Option<TransactionId> {
    (token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| TransactionId::parse(tx))
        .flatten()
}

async fn show(state: St, Path((tx, token)): Path<(String, String)>) -> Response {
    let Some(id) = parse(&tx, &token) else {
        return invalid();
    };
    match state.engine.link_info(&id, &token).await {
        Ok(Some(info)) => {
            let who = format!(
                "<p><strong>{}</strong> is signing in to <strong>{}</strong>.</p>",
                esc(&info.username),
                esc(&info.application)
            );
            let buttons = if info.manager {
                "<button name=\"action\" value=\"approve\">Approve</button> \
                 <button name=\"action\" value=\"reject\">Reject</button>"
            } else {
                "<button name=\"action\" value=\"approve\">Sign me in</button> \
                 <button name=\"action\" value=\"reject\">This was not me</button>"
            };
            page(
                StatusCode::OK,
                if info.manager {
                    "Approve a sign-in"
                } else {
                    "Confirm your sign-in"
                },
                &format!("{who}<form method=\"post\">{buttons}</form>"),
            )
        }
        Ok(None) => invalid(),
        Err(e) => {
            tracing::error!(error = %e, "link page failed");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "<p>Please try again.</p>",
            )
        }
    }
}

async fn answer(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((tx, token)): Path<(String, String)>,
    body: String,
) -> Response {
    let Some(id) = parse(&tx, &token) else {
        return invalid();
    };
    let approve = match form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "action")
        .map(|(_, v)| v.into_owned())
        .as_deref()
    {
        Some("approve") => true,
        Some("reject") => false,
        _ => {
            return page(
                StatusCode::BAD_REQUEST,
                "Choose an answer",
                "<p>Use one of the buttons of the page the link opened.</p>",
            );
        }
    };
    let ctx = RequestCtx {
        client_ip: Some(state.client_ip(peer, &headers, None)),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
        actor: "link".into(),
        ..RequestCtx::new(Door::Web)
    };
    match state.engine.answer_link(&id, &token, approve, &ctx).await {
        Ok(LinkAnswer::Approved) => page(
            StatusCode::OK,
            "Approved",
            "<p>The sign-in is approved. You can close this page.</p>",
        ),
        Ok(LinkAnswer::Rejected) => page(
            StatusCode::OK,
            "Rejected",
            "<p>The sign-in is rejected. If it was not you, tell your administrator.</p>",
        ),
        Ok(LinkAnswer::Invalid) => invalid(),
        Err(e) => {
            tracing::error!(error = %e, "link answer failed");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "<p>Please try again.</p>",
            )
        }
    }
}
