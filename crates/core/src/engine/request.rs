//! What a front door hands the engine, and what it gets back.

use crate::ids::{AppName, RealmName, Serial, TransactionId};
use crate::model::{TokenKind, User};
use std::net::IpAddr;
use zeroize::Zeroizing;

/// The front door a request came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Door {
    /// The privacyIDEA-compatible validate API.
    Validate,
    Radius,
    Api,
    Web,
}

impl Door {
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Validate => "validate",
            Door::Radius => "radius",
            Door::Api => "api",
            Door::Web => "web",
        }
    }
}

/// One leg of a login, in protocol-neutral terms.
#[derive(Clone, Default)]
pub struct AuthRequest {
    /// The login name as typed, possibly `user@realm`.
    pub user: Option<String>,
    pub realm: Option<String>,
    /// What the user typed: password, PIN+OTP, OTP, … depending on the factor.
    pub pass: Zeroizing<String>,
    /// Continue this pending login.
    pub transaction_id: Option<TransactionId>,
    /// Only this token may answer.
    pub serial: Option<Serial>,
    /// Only tokens of this kind may answer.
    pub token_kind: Option<TokenKind>,
    /// `pass` is the OTP alone, without the token PIN.
    pub otp_only: bool,
    /// Send a code by this channel instead of the primary one (seed 003's `fallbackChannel`).
    pub fallback_channel: Option<String>,
    /// The login must start with a code sent now (`/oauth/otp/generate`): an application whose
    /// first factor is something else refuses it, without counting a failure.
    pub code_first: bool,
}

impl std::fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthRequest")
            .field("user", &self.user)
            .field("realm", &self.realm)
            .field("pass", &"***")
            .field("transaction_id", &self.transaction_id)
            .field("serial", &self.serial)
            .field("token_kind", &self.token_kind)
            .field("otp_only", &self.otp_only)
            .field("fallback_channel", &self.fallback_channel)
            .field("code_first", &self.code_first)
            .finish()
    }
}

/// Who is asking, from where.
#[derive(Clone, Debug)]
pub struct RequestCtx {
    pub door: Door,
    /// The client the request is for, after proxy resolution.
    pub client_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// The application the front door selected (its client's binding); `None` uses the
    /// `validate_application` setting.
    pub application: Option<AppName>,
    /// For the audit: `user`, or the service account acting for the user.
    pub actor: String,
    /// The authenticated client the request came through, where the door has one (the RADIUS
    /// client's name, the API client's name): a login started through one is finished through
    /// it only.
    pub client: Option<String>,
}

impl RequestCtx {
    pub fn new(door: Door) -> Self {
        RequestCtx {
            door,
            client_ip: None,
            user_agent: None,
            application: None,
            actor: "user".into(),
            client: None,
        }
    }
}

/// How a client should collect the answer to a challenge (privacyIDEA's `client_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientMode {
    /// Show an input field.
    Interactive,
    /// Poll the transaction, then finalise with an empty answer.
    Poll,
    /// Hand the sign request to the browser.
    Webauthn,
}

impl ClientMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientMode::Interactive => "interactive",
            ClientMode::Poll => "poll",
            ClientMode::Webauthn => "webauthn",
        }
    }
}

/// One way to answer a challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    /// The token that can answer; `None` for knowledge factors (the password).
    pub serial: Option<Serial>,
    /// `totp`, `hotp`, `password`, ….
    pub kind: String,
    pub client_mode: ClientMode,
    pub message: String,
}

#[derive(Clone, Debug)]
pub struct Accepted {
    pub user: User,
    pub realm: RealmName,
    pub application: AppName,
    /// The token that proved the last OTP factor, if any.
    pub serial: Option<Serial>,
    pub token_kind: Option<TokenKind>,
    /// A web sign-in proved something the user knows and something the user holds (REFEDS
    /// MFA), not counting factors skipped by rollout policies or enrolment. Worked out for the
    /// web door only (single sign-on asserts it); false at the others.
    pub mfa: bool,
    pub message: String,
}

#[derive(Clone, Debug)]
pub struct Challenged {
    pub transaction_id: TransactionId,
    pub prompts: Vec<Prompt>,
    pub message: String,
    pub user: User,
    pub realm: RealmName,
}

/// Why a login was refused. For the audit log and metrics only: every reason gets the same
/// answer on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    UnknownRealm,
    UnknownUser,
    UserDisabled,
    UserExpired,
    Locked,
    WrongPassword,
    WrongPin,
    WrongOtp,
    OtpReused,
    TokenLocked,
    NoUsableToken,
    BadTransaction,
    NoApplication,
    MissingInput,
    /// The user source (directory) could not be asked; the audit record says why.
    SourceUnavailable,
    /// The factor has rules and none matches the user.
    NoMatchingRule,
    /// The user had `sent_code_max_per_hour` codes sent within the hour.
    SendLimit,
    /// The approver rejected the login with the link.
    Declined,
    /// The link was not used yet (the client may ask again).
    NotYetAnswered,
    /// The session (transaction) had as many wrong answers as its factor allows.
    SessionRetries,
    /// The phone number or mail address the client named is not the user's.
    IdentifierMismatch,
    /// An MFA password set up over an existing one, or reset when there is none.
    MfaPasswordState,
    /// The login or realm name carries control characters (or is too long).
    BadLoginName,
    /// The application does not take users of the login's realm.
    RealmNotAllowed,
    /// The application takes validate requests only with an agent's access token.
    ClientTokenRequired,
    /// The request answers the pending factor in a way it does not take (an MFA password for
    /// a code, a login without a password where the first factor is one).
    WrongFactor,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::UnknownRealm => "unknown realm",
            RejectReason::UnknownUser => "unknown user",
            RejectReason::UserDisabled => "user disabled",
            RejectReason::UserExpired => "user account expired",
            RejectReason::Locked => "account locked after too many failed attempts",
            RejectReason::WrongPassword => "wrong password",
            RejectReason::WrongPin => "wrong token PIN",
            RejectReason::WrongOtp => "wrong OTP value",
            RejectReason::OtpReused => "OTP already used",
            RejectReason::TokenLocked => "token fail counter exceeded",
            RejectReason::NoUsableToken => "user has no usable authenticator",
            RejectReason::BadTransaction => "unknown, expired or finished transaction",
            RejectReason::NoApplication => "application not configured",
            RejectReason::MissingInput => "missing user or credentials",
            RejectReason::SourceUnavailable => "user source unavailable",
            RejectReason::NoMatchingRule => "no rule of the factor matches the user",
            RejectReason::SendLimit => "too many codes sent to the user within the hour",
            RejectReason::Declined => "rejected with the link",
            RejectReason::NotYetAnswered => "the link was not used yet",
            RejectReason::SessionRetries => "too many wrong answers in this session",
            RejectReason::IdentifierMismatch => "the identifier named is not the user's",
            RejectReason::WrongFactor => "the factor is not answered that way",
            RejectReason::RealmNotAllowed => "the application does not take users of this realm",
            RejectReason::ClientTokenRequired => {
                "the application takes validate requests only with an API client's token"
            }
            RejectReason::BadLoginName => {
                "the login or realm name holds control characters or is too long"
            }
            RejectReason::MfaPasswordState => {
                "the user already has an MFA password (reset it), or has none to reset"
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct Rejected {
    pub reason: RejectReason,
    /// The user, when one was identified (for `/validate/samlcheck` attributes on failure).
    pub user: Option<User>,
}

/// The engine's decision. A rejection is a value, not an error.
#[derive(Clone, Debug)]
pub enum Outcome {
    Accept(Box<Accepted>),
    Challenge(Box<Challenged>),
    Reject(Box<Rejected>),
}

impl Outcome {
    pub fn result_str(&self) -> &'static str {
        match self {
            Outcome::Accept(_) => "accept",
            Outcome::Challenge(_) => "challenge",
            Outcome::Reject(_) => "reject",
        }
    }
}

/// The uniform message of every rejection.
pub const REJECT_MESSAGE: &str = "Authentication failed.";

/// Status of a transaction as `/validate/polltransaction` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollStatus {
    Pending,
    Accept,
    Declined,
}
