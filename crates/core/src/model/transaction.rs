//! The pending state between two legs of a login.

use crate::ids::{AppName, RealmName, Serial, TransactionId, UserRef};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxStatus {
    /// Waiting for the answer to the factor `next_factor`.
    Pending,
    /// Answered out of band (e.g. a push approved); the client finalises with `/validate/check`.
    Answered,
    /// Declined out of band ("this was not me").
    Declined,
    /// The login finished; the id can no longer be used.
    Completed,
}

impl TxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TxStatus::Pending => "pending",
            TxStatus::Answered => "answered",
            TxStatus::Declined => "declined",
            TxStatus::Completed => "completed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(TxStatus::Pending),
            "answered" => Some(TxStatus::Answered),
            "declined" => Some(TxStatus::Declined),
            "completed" => Some(TxStatus::Completed),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    pub id: TransactionId,
    pub user: UserRef,
    pub username: String,
    pub realm: RealmName,
    pub application: AppName,
    /// Index into the application's factor chain of the factor to be answered next.
    pub next_factor: u32,
    pub status: TxStatus,
    /// Tokens the challenge was issued for; any of them may answer.
    pub serials: Vec<Serial>,
    /// The code sent by SMS or mail for the pending factor, if any.
    pub code: Option<SentCode>,
    pub created_at: i64,
    pub expires_at: i64,
    /// Where the login started; its later legs must come the same way. `None` for
    /// transactions kept before origins were (they go on as before).
    pub origin: Option<TxOrigin>,
}

/// Where a login started: the door, the client it came through where the door authenticates
/// one (a RADIUS client's name, an API client's name), and the application the door chose. A
/// later leg from anywhere else is refused: a RADIUS `State` cannot be finished at
/// `/validate/check`, nor an OAuth MFA step by another client or outside the OAuth API (where
/// the session's retry budget would not count it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TxOrigin {
    pub door: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    pub application: String,
}

/// What a transaction's secret answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeKind {
    /// A code sent by SMS or mail, typed back.
    Code,
    /// A link token, clicked.
    Link,
}

impl CodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeKind::Code => "code",
            CodeKind::Link => "link",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "code" => Some(CodeKind::Code),
            "link" => Some(CodeKind::Link),
            _ => None,
        }
    }
}

/// A code or link sent for one factor of a transaction: only its hash is kept. It answers that
/// factor only, once; moving the transaction on clears it.
#[derive(Clone, PartialEq, Eq)]
pub struct SentCode {
    /// SHA-256 (hex) of the kind, the transaction id and the secret.
    pub hash: String,
    pub kind: CodeKind,
    /// The factor it answers.
    pub factor: u32,
    /// Answers tried so far.
    pub fails: u32,
    /// It can be answered until then (Unix seconds).
    pub expires_at: i64,
}

impl std::fmt::Debug for SentCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash of a 6-digit code is reversed in an instant: never shown.
        f.debug_struct("SentCode")
            .field("kind", &self.kind)
            .field("factor", &self.factor)
            .field("fails", &self.fails)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl SentCode {
    pub fn hash_of(tx: &TransactionId, kind: CodeKind, secret: &str) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(kind.as_str().as_bytes());
        h.update(b":");
        h.update(tx.as_str().as_bytes());
        h.update(b":");
        h.update(secret.as_bytes());
        data_encoding::HEXLOWER.encode(&h.finalize())
    }
}
