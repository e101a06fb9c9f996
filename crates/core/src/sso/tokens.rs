//! The token policy of OAuth2 API clients: what a token given after a login step is — its
//! role, lifetime, scope and audience — and whether a refresh token comes with it and until
//! when. Pure: the door signs what this grants.

use crate::model::ApiClient;
use crate::settings::SystemSettings;

/// What a token lets its holder do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRole {
    /// Every factor passed: an access token of the user.
    User,
    /// A login that waits for the code of its first factor (`/oauth/otp/generate`).
    OtpPending,
    /// A login that waits for a later factor (`/oauth/mfa`).
    MfaPending,
}

impl TokenRole {
    /// The `role` claim.
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenRole::User => "USER",
            TokenRole::OtpPending => "OTP_PENDING",
            TokenRole::MfaPending => "MFA_PENDING",
        }
    }
}

/// A token to be given to an API client.
#[derive(Clone, Copy, Debug)]
pub struct TokenAsk<'a> {
    pub role: TokenRole,
    /// The login had an MFA step (its refresh token follows the MFA settings).
    pub mfa_done: bool,
    /// When refreshing: the end of the login's refresh tokens (a renewed one keeps the first
    /// one's end).
    pub key_expires_at: Option<i64>,
    /// The scope of a refreshed token (at most the one granted); none: the client's.
    pub scope: Option<&'a str>,
}

/// What the token is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenGrant {
    pub role: TokenRole,
    /// Seconds.
    pub lifetime: i64,
    pub scope: String,
    /// `tessera`, or `tessera-mfa` for a pending login's token: not an access token to
    /// anything but the next step, and introspection reports it inactive.
    pub audience: &'static str,
    /// A refresh token comes with it, ending then (Unix seconds).
    pub refresh_until: Option<i64>,
}

/// A refresh token that does not end by time (`key_expiry` off) ends this far ahead.
const NO_KEY_EXPIRY_SECONDS: i64 = 100 * 365 * 86_400;

/// The token `client` gets for `ask` at `now`.
pub fn grant(
    settings: &SystemSettings,
    client: &ApiClient,
    ask: TokenAsk<'_>,
    now: i64,
) -> TokenGrant {
    let (lifetime, scope, audience) = match ask.role {
        TokenRole::User => (
            i64::from(client.token_lifetime_seconds),
            ask.scope
                .map_or_else(|| client.granted_scopes().join(" "), str::to_string),
            "tessera",
        ),
        TokenRole::OtpPending => (
            i64::from(settings.api_session_minutes) * 60,
            "mfa".to_string(),
            "tessera-mfa",
        ),
        TokenRole::MfaPending => (
            i64::from(settings.mfa_token_minutes.min(settings.mfa_session_minutes)) * 60,
            "mfa".to_string(),
            "tessera-mfa",
        ),
    };
    // A user's token comes with a refresh token (seed 003's "regenerate key"; single use,
    // renewed with each refresh, ending at the same time as the first). A refreshed login was
    // given refresh tokens when it began: it keeps them.
    let regenerate = ask.key_expires_at.is_some()
        || if ask.mfa_done {
            settings.regenerate_mfa_token
        } else {
            settings.regenerate_token
        };
    let refresh_until = (ask.role == TokenRole::User && regenerate).then(|| {
        let minutes = if ask.mfa_done {
            settings.mfa_key_expiry_minutes
        } else {
            settings.key_expiry_minutes
        };
        ask.key_expires_at.unwrap_or(if settings.key_expiry {
            now + i64::from(minutes) * 60
        } else {
            now + NO_KEY_EXPIRY_SECONDS
        })
    });
    TokenGrant {
        role: ask.role,
        lifetime,
        scope,
        audience,
        refresh_until,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn client() -> ApiClient {
        let mut c: ApiClient = serde_json::from_value(serde_json::json!({
            "name": "app", "client_id": "app-id", "type": "user",
        }))
        .unwrap();
        c.token_lifetime_seconds = 300;
        c.scopes = vec!["validate".into(), "profile".into()];
        c
    }

    fn ask(role: TokenRole) -> TokenAsk<'static> {
        TokenAsk {
            role,
            mfa_done: false,
            key_expires_at: None,
            scope: None,
        }
    }

    fn settings() -> SystemSettings {
        SystemSettings {
            api_session_minutes: 7,
            mfa_token_minutes: 9,
            mfa_session_minutes: 11,
            key_expiry_minutes: 60,
            mfa_key_expiry_minutes: 20,
            ..SystemSettings::default()
        }
    }

    #[test]
    fn a_users_token_has_the_clients_lifetime_and_scopes_and_a_refresh_token() {
        let g = grant(&settings(), &client(), ask(TokenRole::User), NOW);
        assert_eq!(
            g,
            TokenGrant {
                role: TokenRole::User,
                lifetime: 300,
                scope: "validate profile".into(),
                audience: "tessera",
                refresh_until: Some(NOW + 3600),
            }
        );
        assert_eq!(g.role.as_str(), "USER");
        // After an MFA step the MFA settings say when its refresh tokens end.
        let mfa = TokenAsk {
            mfa_done: true,
            ..ask(TokenRole::User)
        };
        assert_eq!(
            grant(&settings(), &client(), mfa, NOW).refresh_until,
            Some(NOW + 1200)
        );
    }

    #[test]
    fn a_refreshed_token_keeps_the_logins_end_and_may_narrow_its_scope() {
        let s = SystemSettings {
            regenerate_token: false,
            ..settings()
        };
        let refreshed = TokenAsk {
            key_expires_at: Some(NOW + 42),
            scope: Some("validate"),
            ..ask(TokenRole::User)
        };
        let g = grant(&s, &client(), refreshed, NOW);
        assert_eq!(
            (g.scope.as_str(), g.refresh_until),
            ("validate", Some(NOW + 42))
        );
    }

    #[test]
    fn refresh_tokens_follow_the_regenerate_and_expiry_settings() {
        let off = SystemSettings {
            regenerate_token: false,
            ..settings()
        };
        assert_eq!(
            grant(&off, &client(), ask(TokenRole::User), NOW).refresh_until,
            None
        );
        let forever = SystemSettings {
            key_expiry: false,
            ..settings()
        };
        assert_eq!(
            grant(&forever, &client(), ask(TokenRole::User), NOW).refresh_until,
            Some(NOW + NO_KEY_EXPIRY_SECONDS)
        );
        let mfa_off = SystemSettings {
            regenerate_mfa_token: false,
            ..settings()
        };
        let mfa = TokenAsk {
            mfa_done: true,
            ..ask(TokenRole::User)
        };
        assert_eq!(grant(&mfa_off, &client(), mfa, NOW).refresh_until, None);
    }

    #[test]
    fn a_pending_logins_token_opens_only_the_next_step() {
        let mfa = grant(&settings(), &client(), ask(TokenRole::MfaPending), NOW);
        assert_eq!(
            mfa,
            TokenGrant {
                role: TokenRole::MfaPending,
                lifetime: 9 * 60,
                scope: "mfa".into(),
                audience: "tessera-mfa",
                refresh_until: None,
            }
        );
        let otp = grant(&settings(), &client(), ask(TokenRole::OtpPending), NOW);
        assert_eq!(
            (otp.lifetime, otp.audience, otp.refresh_until),
            (7 * 60, "tessera-mfa", None)
        );
        assert_eq!(otp.role.as_str(), "OTP_PENDING");
    }
}
