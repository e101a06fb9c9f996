//! Tessera's core: the domain model and the authentication engine.
//!
//! Everything here is protocol-neutral. Front doors (the validate API, RADIUS, OAuth2, SAML,
//! web pages) turn their requests into [`engine::AuthRequest`]s and map the engine's
//! [`engine::Outcome`] back. What a web sign-in leaves behind (SSO sessions, codes, refresh
//! tokens) is kept by [`sso::Sso`], the server's own keys by [`keys::Keys`]; doors reach both
//! through the engine and never hold the store. State lives behind the [`store::Store`] port,
//! split into role traits each service takes alone; time, randomness, password hashing and user
//! directories are ports too, so tests drive them by hand (`testing` has in-memory roles, with
//! the `testing` feature).
//!
//! May depend on: `tessera-otp` only. No sockets, HTTP, SQL or XML types.

pub mod admin;
pub mod clock;
pub mod engine;
pub mod hashing;
pub mod ids;
pub mod keys;
pub mod lockout;
pub mod model;
pub mod netmatch;
pub mod rng;
pub mod settings;
pub mod source;
pub mod sso;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
