//! authgate: a JWT authentication service.
//!
//! Layout: [`api`] (HTTP) → [`domain`] (use cases) → [`store`] (sea-orm), with
//! [`crypto`] for hashing and keys, [`config`] for the one typed configuration and
//! [`cli`] for the commands.
//! Access-token validation lives in the `authgate-verify` crate, shared with
//! downstream services.

#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod api;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod delivery;
pub mod domain;
pub mod metrics;
pub mod server;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod throttle;

pub use cli::execute;
