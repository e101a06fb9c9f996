//! Tessera's core: the domain model and the authentication engine.
//!
//! Everything here is protocol-neutral. Front doors (the validate API, RADIUS, OAuth2, SAML,
//! web pages) turn their requests into [`engine::AuthRequest`]s and map the engine's
//! [`engine::Outcome`] back. State lives behind the [`store::Store`] port; time, randomness,
//! password hashing and user directories are ports too, so tests drive them by hand.
//!
//! May depend on: `tessera-otp` only. No sockets, HTTP, SQL or XML types.

pub mod admin;
pub mod clock;
pub mod engine;
pub mod hashing;
pub mod ids;
pub mod lockout;
pub mod model;
pub mod netmatch;
pub mod rng;
pub mod settings;
pub mod source;
pub mod store;
