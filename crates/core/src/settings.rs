//! System settings: the run-time knobs an administrator changes while the server runs (seed 002's
//! system config and token defaults, seed 003's lockout settings). They live in the store, are
//! changed through the admin API, the CLI or `tessera apply`, and take effect on every node
//! without a restart.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::netmatch::ProxyChains;

/// Every system setting with its default. Field names are the keys used in the API, the CLI and
/// declarative files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SystemSettings {
    // --- general ---
    /// Split `user@realm` at the last `@` into login name and realm.
    pub split_at_sign: bool,
    /// The realm used when a request names none.
    pub default_realm: String,
    /// When no token's PIN matches, increase the fail counter of all the user's tokens.
    pub increase_failcounter_on_wrong_pin: bool,
    /// Minutes after the max fail count was reached until a correct PIN+OTP clears the fail
    /// counter again; 0 disables automatic clearing (the token stays locked until an
    /// administrator resets its fail counter).
    pub failcounter_clear_minutes: u32,
    /// Do not keep per-token authentication counters.
    pub no_auth_counter: bool,
    /// The token PIN is typed before the OTP (`pin123456`); false: after it (`123456pin`).
    pub prepend_pin: bool,
    /// Resynchronise a token from two consecutive OTPs given in two authentications.
    pub auto_resync: bool,
    /// Seconds within which the second OTP of an automatic resync must arrive.
    pub auto_resync_timeout_seconds: u32,
    /// Seconds a looked-up user stays cached on a node; 0 disables the user cache.
    pub user_cache_seconds: u32,
    /// Proxies allowed to name another client IP (`client` parameter, X-Forwarded-For), as
    /// comma-separated chains of networks: `10.0.0.1 > 192.168.0.0/16, 172.16.0.0/12`.
    pub override_client: String,
    /// `/validate/samlcheck` returns the user's attributes on success.
    pub include_saml_attributes: bool,
    /// … and also when authentication failed.
    pub include_saml_attributes_on_fail: bool,
    /// The attributes `/validate/samlcheck` returns, comma-separated: `username`, `realm`,
    /// `resolver`, `email`, `givenname`, `surname`, `mobile`, `phone`, `groups`, and any
    /// attribute a directory source reads (its `attributes.extra`, e.g. `department`).
    pub saml_attributes: String,
    /// Answer privacyIDEA's error 904 ("user not found") instead of the uniform reject. Off by
    /// default: the same answer for unknown users and wrong credentials prevents enumeration.
    pub unknown_user_error: bool,
    /// The application whose factor chain `/validate/*` requests go through.
    pub validate_application: String,
    /// The application whose factors sign users in to their own account pages (`/login`
    /// opened directly, then the list of their sessions); empty: `/login` only says that
    /// sign-ins start at an application.
    pub account_application: String,
    /// Refuse `/validate/check`, `/radiuscheck` and `/samlcheck` requests that carry `pass` in
    /// the URL's query string (GET, or POST to a URL with a query): proxies and web servers
    /// write URLs into their access logs. Off by default for clients that still send GET.
    pub refuse_pass_in_query: bool,
    /// Sign the answers of `/validate/*` and `/auth` as privacyIDEA does (a `signature` field,
    /// the request's `nonce` echoed) with the key imported by `tessera response-signing
    /// import-key`, for clients configured to check them.
    pub sign_responses: bool,
    /// Issuer shown by authenticator apps for enrolled tokens.
    pub otp_issuer: String,

    // --- token defaults (applied at enrollment) ---
    pub default_otp_length: u32,
    /// HOTP: how many counters ahead of the current one are checked.
    pub default_count_window: u32,
    /// TOTP: how many time steps before and after now are checked.
    pub default_totp_window: u32,
    pub default_totp_period: u32,
    pub default_hash: String,
    pub default_max_fail: u32,
    /// Counters (HOTP) or time steps (TOTP, before and after now) searched when resynchronising.
    pub default_sync_window: u32,
    /// Seconds a challenge (transaction) can be answered.
    pub challenge_validity_seconds: u32,

    // --- account lockout (per user, separate budgets for passwords and OTPs) ---
    pub account_locking: bool,
    pub max_password_attempts: u32,
    pub max_otp_attempts: u32,
    pub lock_period_minutes: u32,
    /// Failed attempts further apart than this start a new count.
    pub incorrect_attempt_interval_minutes: u32,
    /// Count failed attempts per user and client address: an address that uses up
    /// `max_password_attempts` or `max_otp_attempts` locks the user out for itself only, and the
    /// user is locked everywhere only after `lock_all_addresses_attempts` failures from all
    /// addresses together (also for administrator sign-ins).
    pub lock_per_client_address: bool,
    /// With `lock_per_client_address`: failed attempts of each kind from all addresses together
    /// after which the account is locked everywhere.
    pub lock_all_addresses_attempts: u32,
    /// Wrong answers to the second and later factors (the MFA step) have their own budgets and
    /// lock period (seed 003's CONF_ENABLE_ACCOUNT_LOCKING_MFA); off: they count towards the
    /// account lock like the first factor's.
    pub mfa_account_locking: bool,
    /// Wrong MFA codes (and, per session, wrong answers to later factors) allowed.
    pub mfa_max_otp_attempts: u32,
    pub mfa_max_password_attempts: u32,
    pub mfa_lock_period_minutes: u32,

    // --- the API's login sessions (seed 003's session, token and key settings) ---
    /// Minutes a session started by `/oauth/otp/generate` can be finished.
    pub api_session_minutes: u32,
    /// Minutes the MFA step of an API login can be finished.
    pub mfa_session_minutes: u32,
    /// Minutes a code sent in the MFA step of an API login (with the MFA_PENDING token, or by
    /// `/oauth/mfa/otp/generate`) can be entered, from when it was sent; never past the MFA
    /// session (seed 003's CONF_MFA_TOKEN_SESSION_EXPIRY_MINUTES).
    pub mfa_token_session_minutes: u32,
    /// Minutes an MFA_PENDING token is valid (at most the MFA session).
    pub mfa_token_minutes: u32,
    /// Refresh tokens ("regenerate keys") for logins with one factor, and after an MFA step.
    pub regenerate_token: bool,
    pub regenerate_mfa_token: bool,
    /// Refresh tokens end after a fixed time from the login (refreshing does not extend it).
    pub key_expiry: bool,
    pub key_expiry_minutes: u32,
    pub mfa_key_expiry_minutes: u32,
    /// Requests that send codes through the API (`/oauth/otp/generate`, `/oauth/mfa/otp/generate`,
    /// the password grant) must carry this header: `X-Edge-Auth` or `X-Edge-Auth: value`
    /// (seed 003's CONFIG_REJECT_NON_CF_CALLS). Empty: no check.
    pub otp_required_header: String,
    /// `/oauth/mfa/otp/generate` takes the user's own phone or mail when the request names none
    /// (seed 003's CONF_AUTO_FILL_2ND_FACTOR_IDENTIFIER); off: the request must name it.
    pub mfa_auto_fill_identifier: bool,
    /// `if_enrolled` factors are asked of every user (seed 003's CONF_FORCED_MFA): users
    /// without an MFA password set one up, users without other means are refused.
    pub forced_mfa: bool,
    /// A new MFA password must match this regular expression (seed 003's MFA_PASSWORD_REGEX).
    pub mfa_password_regex: String,
    /// Setting up an MFA password needs no code sent to the user first
    /// (CONF_SKIP_OTP_VALIDATE); resetting one needs none (CONF_SKIP_OTP_VALIDATE_RESET).
    pub mfa_skip_otp_validate: bool,
    pub mfa_skip_otp_validate_reset: bool,

    // --- web sign-in (login page, SSO sessions) ---
    /// Minutes an SSO session lasts from its sign-in.
    pub sso_session_minutes: u32,
    /// Minutes an SSO session may go unused.
    pub sso_idle_minutes: u32,
    /// Minutes between readings of SAML service providers' metadata addresses (0: never).
    pub saml_metadata_refresh_minutes: u32,
    /// The organisation's domain as SAML service providers check scoped attributes
    /// (`eduPersonPrincipalName` = `login@scope`): published as `<shibmd:Scope>` in the IdP
    /// metadata. Empty: no scope, no `eduPersonPrincipalName`.
    pub saml_scope: String,
    /// The authentication context class asserted after a sign-in that proved two kinds of
    /// factor, when the service provider asked for none (`https://refeds.org/profile/mfa`;
    /// another class a federation or SP expects, such as
    /// `http://schemas.microsoft.com/claims/multipleauthn`). Requests for it or for the REFEDS
    /// MFA profile are met by such a sign-in.
    pub saml_mfa_context_class: String,
    /// Days a refresh token given to an OpenID Connect client that asked for `offline_access`
    /// lasts from the sign-in (each refresh gives a new one with the same end).
    pub oidc_refresh_days: u32,
    /// Requests per minute one address may make to the web sign-in pages (`/login`,
    /// `/oidc/authorize`, `/saml/*`), per node (0: no limit).
    pub web_requests_per_minute: u32,
    /// Requests per minute one address may make to the doors that check credentials
    /// (`/validate/*`, `/auth`, `/oauth/token`), per node (0: no limit).
    pub api_requests_per_minute: u32,
    /// Networks exempt from the per-address budgets (`web_requests_per_minute`,
    /// `api_requests_per_minute`), comma-separated: servers that send every user's logins
    /// from one address (a FreeRADIUS or simpleSAMLphp in front of Tessera, an LDAP proxy).
    pub rate_limit_exempt: String,

    // --- codes sent by SMS and mail (methods sms_otp and mail_otp) ---
    /// Delivery profiles (HTTP gateways) that send SMS, comma-separated, tried in order.
    pub sms_delivery: String,
    /// The SMS text: `{otp}` (or `<%TOKEN%>`), `{validity_minutes}`, `{username}`, ...
    pub sms_template: String,
    /// Delivery profiles (SMTP servers) that send mail, comma-separated, tried in order.
    pub mail_delivery: String,
    pub mail_subject: String,
    pub mail_template: String,
    /// An HTML version of the code mail (optional; values are HTML-escaped).
    pub mail_html_template: String,
    /// Codes for phones go by this channel instead of SMS: `whatsapp` or `zalo` (seed 003's
    /// CONF_MOBILE_SUB_CHANNEL); empty: SMS.
    pub mobile_sub_channel: String,
    /// Delivery profiles (HTTP gateways) for WhatsApp and their text.
    pub whatsapp_delivery: String,
    pub whatsapp_template: String,
    /// Delivery profiles (HTTP gateways) for Zalo and their text.
    pub zalo_delivery: String,
    pub zalo_template: String,
    /// Codes of the MFA step (the second and later factors) go by this channel instead
    /// (seed 003's CONF_MFA_MOBILE_SUB_CHANNEL): `sms`, `whatsapp` or `zalo`; empty: as
    /// `mobile_sub_channel`.
    pub mfa_mobile_sub_channel: String,
    /// The WhatsApp and Zalo texts of the MFA step (seed 003's
    /// CONF_MFA_MOBILE_SUB_CHANNEL_PROPERTIES); empty: as `whatsapp_template`, `zalo_template`.
    pub mfa_whatsapp_template: String,
    pub mfa_zalo_template: String,
    /// Channels tried, in order, when the primary one fails; the only ones a request may ask
    /// for with `fallbackChannel` (seed 003's CONF_FALLBACK_CHANNELS): `sms`, `whatsapp`,
    /// `zalo`, `mail`.
    pub fallback_channels: String,
    /// Digits of a code sent by SMS or mail.
    pub sent_code_length: u32,
    /// Seconds a sent code can be answered.
    pub sent_code_validity_seconds: u32,
    /// Wrong answers after which a sent code is spent.
    pub sent_code_max_fails: u32,
    /// Codes sent to one user within an hour at most (0: no limit).
    pub sent_code_max_per_hour: u32,

    // --- links by mail (email_link) and manager approval (approved_otp) ---
    /// The address users and managers reach Tessera at, for links: `https://mfa.example.org`.
    pub public_url: String,

    // --- payload encryption (seed 003's CONF_ENABLE_ENCRYPTION ...) ---
    /// The endpoints in `encryption_endpoints` take only HPKE-sealed bodies.
    pub encryption_enabled: bool,
    /// Paths, comma-separated: `/oauth/token, /oauth/mfa, /validate/triggerchallenge`.
    pub encryption_endpoints: String,
    /// Seconds a sealed payload is valid around its timestamp.
    pub encryption_valid_seconds: u32,
    /// Seconds a link can be used.
    pub link_validity_seconds: u32,
    /// `user`: the user's own click signs in; `manager`: the user's manager must approve.
    pub email_link_mode: String,
    pub email_link_subject: String,
    /// Must contain `{link}`.
    pub email_link_template: String,
    /// An HTML version of the link mail (optional; must contain `{link}` when set).
    pub email_link_html_template: String,
    /// `approval`: the manager approves or rejects the login; `information`: the manager is
    /// told and the login goes on.
    pub approval_mode: String,
    /// How the manager is reached: `mail` or `sms`.
    pub approval_channel: String,
    pub approval_subject: String,
    /// `{link}` (approval mode), `{username}`, `{application}`, `{realm}`, `{client_ip}`.
    pub approval_template: String,
    /// Mail address (or phone, for SMS) used when the user has no manager with one.
    pub approval_default_recipient: String,

    // --- hashing of passwords and PINs (applies to new hashes) ---
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
}

impl Default for SystemSettings {
    fn default() -> Self {
        SystemSettings {
            split_at_sign: true,
            default_realm: "default".into(),
            increase_failcounter_on_wrong_pin: false,
            failcounter_clear_minutes: 30,
            no_auth_counter: false,
            prepend_pin: true,
            auto_resync: false,
            auto_resync_timeout_seconds: 300,
            user_cache_seconds: 0,
            override_client: String::new(),
            include_saml_attributes: true,
            include_saml_attributes_on_fail: false,
            saml_attributes: "username, realm, resolver, email, givenname, surname, mobile, phone, groups".into(),
            unknown_user_error: false,
            validate_application: "default".into(),
            account_application: "default".into(),
            refuse_pass_in_query: false,
            sign_responses: false,
            otp_issuer: "Tessera".into(),
            default_otp_length: 6,
            default_count_window: 10,
            default_totp_window: 1,
            default_totp_period: 30,
            default_hash: "SHA1".into(),
            default_max_fail: 10,
            default_sync_window: 1000,
            challenge_validity_seconds: 120,
            account_locking: true,
            max_password_attempts: 5,
            max_otp_attempts: 5,
            lock_period_minutes: 30,
            incorrect_attempt_interval_minutes: 30,
            lock_per_client_address: false,
            lock_all_addresses_attempts: 50,
            mfa_account_locking: false,
            mfa_max_otp_attempts: 5,
            mfa_max_password_attempts: 5,
            mfa_lock_period_minutes: 30,
            api_session_minutes: 15,
            mfa_token_session_minutes: 15,
            mfa_session_minutes: 15,
            mfa_token_minutes: 15,
            regenerate_token: true,
            regenerate_mfa_token: true,
            key_expiry: true,
            key_expiry_minutes: 60,
            mfa_key_expiry_minutes: 60,
            otp_required_header: String::new(),
            mfa_auto_fill_identifier: false,
            forced_mfa: false,
            mfa_password_regex: "^.{10,128}$".into(),
            mfa_skip_otp_validate: false,
            mfa_skip_otp_validate_reset: false,
            sso_session_minutes: 480,
            sso_idle_minutes: 60,
            saml_metadata_refresh_minutes: 1440,
            saml_scope: String::new(),
            saml_mfa_context_class: "https://refeds.org/profile/mfa".into(),
            oidc_refresh_days: 30,
            web_requests_per_minute: 300,
            api_requests_per_minute: 6000,
            rate_limit_exempt: String::new(),
            sms_delivery: String::new(),
            sms_template: "Your code: {otp} (valid {validity_minutes} min)".into(),
            mail_delivery: String::new(),
            mail_subject: "Your sign-in code".into(),
            mail_template:
                "Hello {username},\n\nyour sign-in code is {otp}. It is valid for {validity_minutes} minutes.\n\nIf you did not try to sign in, tell your administrator.\n"
                    .into(),
            mobile_sub_channel: String::new(),
            whatsapp_delivery: String::new(),
            whatsapp_template: "Your code: {otp}".into(),
            zalo_delivery: String::new(),
            zalo_template: "Your code: {otp}".into(),
            mfa_mobile_sub_channel: String::new(),
            mfa_whatsapp_template: String::new(),
            mfa_zalo_template: String::new(),
            fallback_channels: String::new(),
            mail_html_template: String::new(),
            email_link_html_template: String::new(),
            sent_code_length: 6,
            sent_code_validity_seconds: 300,
            sent_code_max_fails: 3,
            sent_code_max_per_hour: 10,
            public_url: String::new(),
            encryption_enabled: false,
            encryption_endpoints: String::new(),
            encryption_valid_seconds: 120,
            link_validity_seconds: 600,
            email_link_mode: "user".into(),
            email_link_subject: "Your sign-in link".into(),
            email_link_template: "Hello {username},\n\nopen this link to sign in to {application}: {link}\nIt is valid for {validity_minutes} minutes.\n\nIf you did not try to sign in, ignore this mail and tell your administrator.\n".into(),
            approval_mode: "approval".into(),
            approval_channel: "mail".into(),
            approval_subject: "Sign-in of {username} to {application}".into(),
            approval_template: "{username} wants to sign in to {application} from {client_ip}.\nApprove or reject: {link}\n".into(),
            approval_default_recipient: String::new(),
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            argon2_parallelism: 1,
        }
    }
}

/// One problem with one setting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SettingError {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for SettingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl SystemSettings {
    /// The header (lower-case name, and the value if one is asked for) that requests sending
    /// codes through the API must carry; None when none is asked for or it is malformed.
    pub fn required_header(&self) -> Option<(String, Option<String>)> {
        let raw = self.otp_required_header.trim();
        if raw.is_empty() {
            return None;
        }
        let (name, value) = match raw.split_once(':') {
            Some((n, v)) => (n.trim(), Some(v.trim().to_string())),
            None => (raw, None),
        };
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let value_ok = value
            .as_deref()
            .is_none_or(|v| !v.is_empty() && v.bytes().all(|b| (0x20..0x7f).contains(&b)));
        (valid && value_ok).then(|| (name.to_ascii_lowercase(), value))
    }

    /// A new MFA password fits `mfa_password_regex` (and is at most 1024 bytes).
    pub fn mfa_password_fits(&self, password: &str) -> bool {
        password.len() <= 1024
            && regex::Regex::new(&self.mfa_password_regex).is_ok_and(|r| r.is_match(password))
    }

    /// A request's headers carry the header `otp_required_header` asks for (its value compared
    /// in constant time: it is a secret shared with the front end). True when none is asked for.
    pub fn required_header_present<'a>(&self, values: impl Iterator<Item = &'a [u8]>) -> bool {
        if self.otp_required_header.trim().is_empty() {
            return true;
        }
        // A malformed setting cannot be saved; refuse rather than let everything through.
        let Some((_, want)) = self.required_header() else {
            return false;
        };
        let mut found = false;
        for got in values {
            found |= match &want {
                None => true,
                Some(want) => {
                    let got = got.trim_ascii();
                    got.len() == want.len()
                        && bool::from(subtle::ConstantTimeEq::ct_eq(got, want.as_bytes()))
                }
            };
        }
        found
    }

    /// The names of all settings.
    pub fn keys() -> Vec<String> {
        match serde_json::to_value(SystemSettings::default()) {
            Ok(Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// All settings as a JSON object.
    pub fn to_map(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }

    /// Builds settings from stored or submitted key/value pairs on top of `self`, checking every
    /// key and value and reporting every problem at once.
    pub fn merged(
        &self,
        changes: &Map<String, Value>,
    ) -> Result<SystemSettings, Vec<SettingError>> {
        let base = self.to_map();
        let mut errors = Vec::new();
        let mut merged = base.clone();
        for (key, value) in changes {
            if !base.contains_key(key) {
                errors.push(SettingError {
                    key: key.clone(),
                    message: "unknown setting".into(),
                });
                continue;
            }
            let value = coerce(&base[key], value);
            let mut single = base.clone();
            single.insert(key.clone(), value.clone());
            match serde_json::from_value::<SystemSettings>(Value::Object(single)) {
                Ok(_) => {
                    merged.insert(key.clone(), value);
                }
                Err(e) => errors.push(SettingError {
                    key: key.clone(),
                    message: type_message(&base[key], &e),
                }),
            }
        }
        let settings = match serde_json::from_value::<SystemSettings>(Value::Object(merged)) {
            Ok(s) => s,
            Err(e) => {
                errors.push(SettingError {
                    key: "*".into(),
                    message: e.to_string(),
                });
                return Err(errors);
            }
        };
        errors.extend(settings.problems());
        if errors.is_empty() {
            Ok(settings)
        } else {
            Err(errors)
        }
    }

    /// Range and consistency checks.
    pub fn problems(&self) -> Vec<SettingError> {
        let mut errs = Vec::new();
        let mut check = |ok: bool, key: &str, message: &str| {
            if !ok {
                errs.push(SettingError {
                    key: key.into(),
                    message: message.into(),
                });
            }
        };
        check(
            matches!(self.default_otp_length, 6 | 8),
            "default_otp_length",
            "must be 6 or 8",
        );
        check(
            (1..=100).contains(&self.default_count_window),
            "default_count_window",
            "must be between 1 and 100",
        );
        check(
            self.default_totp_window <= 10,
            "default_totp_window",
            "must be between 0 and 10 time steps",
        );
        check(
            matches!(self.default_totp_period, 30 | 60),
            "default_totp_period",
            "must be 30 or 60 seconds",
        );
        check(
            tessera_otp::Algorithm::parse(&self.default_hash).is_some(),
            "default_hash",
            "must be SHA1, SHA256 or SHA512",
        );
        check(
            (1..=1000).contains(&self.default_max_fail),
            "default_max_fail",
            "must be between 1 and 1000",
        );
        check(
            (1..=100_000).contains(&self.default_sync_window),
            "default_sync_window",
            "must be between 1 and 100000",
        );
        check(
            (10..=86_400).contains(&self.challenge_validity_seconds),
            "challenge_validity_seconds",
            "must be between 10 and 86400 seconds",
        );
        check(
            (1..=1000).contains(&self.max_password_attempts),
            "max_password_attempts",
            "must be between 1 and 1000",
        );
        check(
            (1..=1000).contains(&self.max_otp_attempts),
            "max_otp_attempts",
            "must be between 1 and 1000",
        );
        check(
            (1..=43_200).contains(&self.lock_period_minutes),
            "lock_period_minutes",
            "must be between 1 and 43200 minutes (30 days)",
        );
        check(
            (1..=100_000).contains(&self.lock_all_addresses_attempts),
            "lock_all_addresses_attempts",
            "must be between 1 and 100000",
        );
        check(
            (1..=1000).contains(&self.mfa_max_otp_attempts),
            "mfa_max_otp_attempts",
            "must be between 1 and 1000",
        );
        check(
            (1..=1000).contains(&self.mfa_max_password_attempts),
            "mfa_max_password_attempts",
            "must be between 1 and 1000",
        );
        check(
            (1..=43_200).contains(&self.mfa_lock_period_minutes),
            "mfa_lock_period_minutes",
            "must be between 1 and 43200 minutes (30 days)",
        );
        for (key, value) in [
            ("api_session_minutes", self.api_session_minutes),
            ("mfa_session_minutes", self.mfa_session_minutes),
            ("mfa_token_session_minutes", self.mfa_token_session_minutes),
            ("mfa_token_minutes", self.mfa_token_minutes),
        ] {
            check(
                (1..=1440).contains(&value),
                key,
                "must be between 1 and 1440 minutes",
            );
        }
        for (key, value) in [
            ("sso_session_minutes", self.sso_session_minutes),
            ("sso_idle_minutes", self.sso_idle_minutes),
            ("key_expiry_minutes", self.key_expiry_minutes),
            ("mfa_key_expiry_minutes", self.mfa_key_expiry_minutes),
        ] {
            check(
                (1..=525_600).contains(&value),
                key,
                "must be between 1 and 525600 minutes (a year)",
            );
        }
        check(
            self.saml_scope.is_empty()
                || (self.saml_scope.len() <= 253
                    && self.saml_scope.split('.').all(|label| {
                        !label.is_empty()
                            && label.len() <= 63
                            && !label.starts_with('-')
                            && !label.ends_with('-')
                            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    })),
            "saml_scope",
            "a domain name such as example.org (letters, digits, '-', dots), or empty",
        );
        check(
            url::Url::parse(&self.saml_mfa_context_class).is_ok()
                && self.saml_mfa_context_class.len() <= 1024
                && !self
                    .saml_mfa_context_class
                    .chars()
                    .any(|c| c.is_control() || c == ' '),
            "saml_mfa_context_class",
            "an absolute URI such as https://refeds.org/profile/mfa",
        );
        check(
            (1..=365).contains(&self.oidc_refresh_days),
            "oidc_refresh_days",
            "must be between 1 and 365 days",
        );
        check(
            self.saml_metadata_refresh_minutes <= 525_600,
            "saml_metadata_refresh_minutes",
            "must be between 0 (never) and 525600 minutes (a year)",
        );
        check(
            regex::Regex::new(&self.mfa_password_regex).is_ok()
                && self.mfa_password_regex.len() <= 1000,
            "mfa_password_regex",
            "must be a valid regular expression",
        );
        check(
            self.required_header().is_some() || self.otp_required_header.trim().is_empty(),
            "otp_required_header",
            "a header name (letters, digits, '-'), optionally followed by ': value'",
        );
        check(
            (1..=43_200).contains(&self.incorrect_attempt_interval_minutes),
            "incorrect_attempt_interval_minutes",
            "must be between 1 and 43200 minutes",
        );
        check(
            self.failcounter_clear_minutes <= 525_600,
            "failcounter_clear_minutes",
            "must be between 0 and 525600 minutes",
        );
        check(
            (1..=86_400).contains(&self.auto_resync_timeout_seconds),
            "auto_resync_timeout_seconds",
            "must be between 1 and 86400 seconds",
        );
        check(
            self.user_cache_seconds <= 86_400,
            "user_cache_seconds",
            "must be between 0 and 86400 seconds",
        );
        check(
            (8 * 1024..=1024 * 1024).contains(&self.argon2_memory_kib),
            "argon2_memory_kib",
            "must be between 8192 and 1048576 KiB",
        );
        check(
            (1..=20).contains(&self.argon2_iterations),
            "argon2_iterations",
            "must be between 1 and 20",
        );
        check(
            (1..=16).contains(&self.argon2_parallelism),
            "argon2_parallelism",
            "must be between 1 and 16",
        );
        check(
            (4..=10).contains(&self.sent_code_length),
            "sent_code_length",
            "must be between 4 and 10 digits",
        );
        check(
            (30..=86_400).contains(&self.sent_code_validity_seconds),
            "sent_code_validity_seconds",
            "must be between 30 and 86400 seconds",
        );
        check(
            (10..=3600).contains(&self.encryption_valid_seconds),
            "encryption_valid_seconds",
            "must be between 10 and 3600 seconds",
        );
        check(
            self.encryption_endpoints
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .all(|p| p.starts_with('/') && !p.contains(['?', ' '])),
            "encryption_endpoints",
            "paths such as /oauth/token, comma-separated",
        );
        check(
            !self.encryption_enabled || !self.encryption_endpoints.trim().is_empty(),
            "encryption_enabled",
            "name the endpoints in encryption_endpoints",
        );
        check(
            (60..=86_400).contains(&self.link_validity_seconds),
            "link_validity_seconds",
            "must be between 60 and 86400 seconds",
        );
        check(
            self.public_url.is_empty()
                || ((self.public_url.starts_with("https://")
                    || self.public_url.starts_with("http://"))
                    && !self.public_url.contains([' ', '?', '#'])),
            "public_url",
            "an http(s) address such as https://mfa.example.org (or empty: no links)",
        );
        check(
            matches!(self.email_link_mode.as_str(), "user" | "manager"),
            "email_link_mode",
            "must be user or manager",
        );
        check(
            self.mail_html_template.is_empty()
                || self.mail_html_template.contains("{otp}")
                || self.mail_html_template.contains("<%TOKEN%>"),
            "mail_html_template",
            "must contain {otp} when set",
        );
        check(
            self.email_link_html_template.is_empty()
                || self.email_link_html_template.contains("{link}"),
            "email_link_html_template",
            "must contain {link} when set",
        );
        check(
            self.email_link_template.contains("{link}"),
            "email_link_template",
            "must contain {link}",
        );
        check(
            matches!(self.approval_mode.as_str(), "approval" | "information"),
            "approval_mode",
            "must be approval or information",
        );
        check(
            matches!(self.approval_channel.as_str(), "mail" | "sms"),
            "approval_channel",
            "must be mail or sms",
        );
        check(
            self.approval_mode != "approval" || self.approval_template.contains("{link}"),
            "approval_template",
            "must contain {link} in approval mode",
        );
        for (key, s) in [
            ("email_link_subject", &self.email_link_subject),
            ("approval_subject", &self.approval_subject),
        ] {
            check(
                !s.contains(['\r', '\n']) && s.len() <= 200,
                key,
                "one line of at most 200 characters",
            );
        }
        check(
            self.sent_code_max_per_hour <= 1000,
            "sent_code_max_per_hour",
            "must be between 0 (no limit) and 1000",
        );
        check(
            (1..=20).contains(&self.sent_code_max_fails),
            "sent_code_max_fails",
            "must be between 1 and 20",
        );
        check(
            self.saml_attributes.len() <= 2000
                && self.saml_attributes.split(',').map(str::trim).all(|n| {
                    n.is_empty()
                        || n.len() <= 128
                            && n.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                }),
            "saml_attributes",
            "attribute names (letters, digits, '-', '_', '.') separated by commas",
        );
        check(
            matches!(
                self.mobile_sub_channel.trim().to_ascii_lowercase().as_str(),
                "" | "whatsapp" | "zalo"
            ),
            "mobile_sub_channel",
            "must be empty (SMS), whatsapp or zalo",
        );
        check(
            matches!(
                self.mfa_mobile_sub_channel
                    .trim()
                    .to_ascii_lowercase()
                    .as_str(),
                "" | "sms" | "whatsapp" | "zalo"
            ),
            "mfa_mobile_sub_channel",
            "must be empty (as mobile_sub_channel), sms, whatsapp or zalo",
        );
        for name in self
            .fallback_channels
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match crate::model::Channel::parse(name) {
                None => errs.push(SettingError {
                    key: "fallback_channels".into(),
                    message: format!("'{name}' is not one of sms, whatsapp, zalo, mail"),
                }),
                Some(c) if Some(c) == self.primary_mobile() => errs.push(SettingError {
                    key: "fallback_channels".into(),
                    message: format!("'{name}' is the primary channel already"),
                }),
                Some(_) => {}
            }
        }
        let mut check = |ok: bool, key: &str, message: &str| {
            if !ok {
                errs.push(SettingError {
                    key: key.into(),
                    message: message.into(),
                });
            }
        };
        for (key, t) in [
            ("sms_template", &self.sms_template),
            ("mail_template", &self.mail_template),
            ("whatsapp_template", &self.whatsapp_template),
            ("zalo_template", &self.zalo_template),
        ] {
            check(
                (t.contains("{otp}") || t.contains("<%TOKEN%>")) && t.len() <= 4000,
                key,
                "must contain {otp} (the code) and be at most 4000 characters",
            );
        }
        for (key, t) in [
            ("mfa_whatsapp_template", &self.mfa_whatsapp_template),
            ("mfa_zalo_template", &self.mfa_zalo_template),
        ] {
            check(
                t.trim().is_empty()
                    || (t.contains("{otp}") || t.contains("<%TOKEN%>")) && t.len() <= 4000,
                key,
                "must be empty (the first factor's text) or contain {otp} and be at most 4000 characters",
            );
        }
        check(
            !self.mail_subject.contains(['\r', '\n']) && self.mail_subject.len() <= 200,
            "mail_subject",
            "one line of at most 200 characters",
        );
        check(
            !self.default_realm.trim().is_empty(),
            "default_realm",
            "must not be empty",
        );
        check(
            !self.validate_application.trim().is_empty(),
            "validate_application",
            "must not be empty",
        );
        if let Err(e) = ProxyChains::parse(&self.override_client) {
            errs.push(SettingError {
                key: "override_client".into(),
                message: e,
            });
        }
        if let Err(e) = self.exempt_networks() {
            errs.push(SettingError {
                key: "rate_limit_exempt".into(),
                message: e,
            });
        }
        errs
    }

    /// The networks of `rate_limit_exempt`.
    pub fn exempt_networks(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.rate_limit_exempt
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(crate::netmatch::parse_net)
            .collect()
    }

    /// The channel codes for phones go by first.
    pub fn primary_mobile(&self) -> Option<crate::model::Channel> {
        match self.mobile_sub_channel.trim() {
            "" => Some(crate::model::Channel::Sms),
            other => crate::model::Channel::parse(other),
        }
    }

    /// The channel codes for phones go by first in the MFA step (`mfa`) or the first factor.
    pub fn primary_mobile_for(&self, mfa: bool) -> Option<crate::model::Channel> {
        match self.mfa_mobile_sub_channel.trim() {
            "" => self.primary_mobile(),
            other if mfa => crate::model::Channel::parse(other),
            _ => self.primary_mobile(),
        }
    }

    /// The text template of a channel in the MFA step (`mfa`) or the first factor.
    pub fn template_for(&self, channel: crate::model::Channel, mfa: bool) -> &str {
        let own = match channel {
            crate::model::Channel::Whatsapp => &self.mfa_whatsapp_template,
            crate::model::Channel::Zalo => &self.mfa_zalo_template,
            _ => return self.template_of(channel),
        };
        if mfa && !own.trim().is_empty() {
            own
        } else {
            self.template_of(channel)
        }
    }

    /// The fallback channels, in order.
    pub fn fallbacks(&self) -> Vec<crate::model::Channel> {
        let mut out = Vec::new();
        for c in self
            .fallback_channels
            .split(',')
            .filter_map(crate::model::Channel::parse)
        {
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }

    /// The text template of a channel.
    pub fn template_of(&self, channel: crate::model::Channel) -> &str {
        match channel {
            crate::model::Channel::Sms => &self.sms_template,
            crate::model::Channel::Whatsapp => &self.whatsapp_template,
            crate::model::Channel::Zalo => &self.zalo_template,
            crate::model::Channel::Mail => &self.mail_template,
        }
    }

    /// The delivery profiles of a channel, in order.
    pub fn delivery_of(&self, channel: crate::model::Channel) -> Vec<String> {
        let list = match channel {
            crate::model::Channel::Sms => &self.sms_delivery,
            crate::model::Channel::Whatsapp => &self.whatsapp_delivery,
            crate::model::Channel::Zalo => &self.zalo_delivery,
            crate::model::Channel::Mail => &self.mail_delivery,
        };
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// Values typed on a command line or in a form arrive as strings: turn `"true"`/`"30"` into the
/// JSON type the setting has.
fn coerce(default: &Value, value: &Value) -> Value {
    let Value::String(s) = value else {
        return value.clone();
    };
    match default {
        Value::Bool(_) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Value::Bool(true),
            "false" | "0" | "no" | "off" => Value::Bool(false),
            _ => value.clone(),
        },
        Value::Number(_) => s
            .trim()
            .parse::<u64>()
            .map(Value::from)
            .unwrap_or_else(|_| value.clone()),
        _ => value.clone(),
    }
}

fn type_message(default: &Value, err: &serde_json::Error) -> String {
    match default {
        Value::Bool(_) => "must be true or false".into(),
        Value::Number(_) => "must be a whole number".into(),
        Value::String(_) => "must be a string".into(),
        _ => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn defaults_are_valid() {
        assert!(SystemSettings::default().problems().is_empty());
    }

    #[test]
    fn merged_applies_changes_and_coerces_strings() {
        let s = SystemSettings::default()
            .merged(&map(
                json!({"prepend_pin": "false", "default_max_fail": "7"}),
            ))
            .unwrap();
        assert!(!s.prepend_pin);
        assert_eq!(s.default_max_fail, 7);
    }

    #[test]
    fn merged_reports_every_problem() {
        let errs = SystemSettings::default()
            .merged(&map(json!({
                "no_such_setting": 1,
                "prepend_pin": "maybe",
                "default_otp_length": 7,
                "lock_period_minutes": 99999,
                "override_client": "10.0.0.0/33",
                "saml_scope": "example.org/x",
                "saml_mfa_context_class": "refeds mfa"
            })))
            .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert!(keys.contains(&"no_such_setting"), "{errs:?}");
        assert!(keys.contains(&"prepend_pin"), "{errs:?}");
        assert!(keys.contains(&"default_otp_length"), "{errs:?}");
        assert!(keys.contains(&"lock_period_minutes"), "{errs:?}");
        assert!(keys.contains(&"override_client"), "{errs:?}");
        assert!(keys.contains(&"saml_scope"), "{errs:?}");
        assert!(keys.contains(&"saml_mfa_context_class"), "{errs:?}");
        let ok = SystemSettings::default()
            .merged(&map(json!({"saml_scope": "uni-x.example.org"})))
            .unwrap();
        assert_eq!(ok.saml_scope, "uni-x.example.org");
    }

    #[test]
    fn keys_lists_every_field() {
        let keys = SystemSettings::keys();
        assert!(keys.contains(&"split_at_sign".to_string()));
        assert!(keys.contains(&"incorrect_attempt_interval_minutes".to_string()));
    }
}
