//! Integration tests: each test spawns the real application on a random port against
//! its own fresh database (SQLite, or PostgreSQL with `TEST_DATABASE_URL`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed step should fail the test"
)]

mod abuse;
mod accounts;
mod admin;
mod audit;
mod cli;
mod clients;
mod connections;
mod delivery;
mod edges;
mod events;
mod helpers;
mod keys;
mod maintenance;
mod my_account;
mod observability;
mod readiness;
mod receivers;
mod recovery;
mod revocations;
mod sessions;
mod tokens;
mod traces;
mod upgrade;
