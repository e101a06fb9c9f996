//! The domain model: what the store keeps and the engine reasons about.

pub mod admin;
pub mod api_client;
pub mod app;
pub mod audit;
pub mod branding;
pub mod client;
pub mod delivery;
pub mod ldap;
pub mod rules;
pub mod saml;
pub mod sso;
pub mod syslog;
pub mod token;
pub mod transaction;
pub mod user;

pub use admin::{AdminAccount, AdminRole, AdminSession};
pub use api_client::{ApiClient, ApiClientKind};
pub use app::{AppKind, Application, Factor, Method, Realm, UserSourceDef, UserSourceKind};
pub use audit::{AuditQuery, AuditRecord};
pub use branding::Branding;
pub use client::{
    AppRule, DeviceType, Net, RadiusClient, ReplyMode, ReplyRule, ReplyTexts, SharedSecret,
};
pub use delivery::{
    AttemptResult, Channel, DeliveryKind, DeliveryProfile, Leg, OutboxMessage, OutboxStatus,
};
pub use ldap::{AttributeMap, DirectoryType, GroupConfig, GroupMode, LdapProfile};
pub use rules::{Condition, MethodRule, Pattern, Route};
pub use saml::{
    ATTRNAME_BASIC, ATTRNAME_URI, AttributeNames, NameIdFormat, STANDARD_ATTRIBUTES, SamlAttribute,
    SamlServiceProvider,
};
pub use sso::{SamlParticipant, SsoSession, SsoSessionInfo};
pub use syslog::{SyslogProfile, SyslogProtocol};
pub use token::{NewToken, Token, TokenKind, TokenPatch, TokenState};
pub use transaction::{CodeKind, SentCode, Transaction, TxOrigin, TxStatus};
pub use user::{LocalUser, NewLocalUser, User, UserPatch};
