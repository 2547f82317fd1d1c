//! Validation of authgate access tokens (RFC 9068 JWT profile, EdDSA), for authgate
//! itself and for downstream services.
//!
//! A [`Verifier`] checks the signature against keys it was given (a static PEM, a JWKS
//! URL or the issuer's discovery document; never a key or URL named by the token:
//! `jku`, `x5u`, `jwk` and `x5c` are ignored; remote ones over `https://` unless the
//! host is loopback), an explicit algorithm allow-list, `typ`,
//! `iss`, `aud`, `exp` and `nbf` with leeway. The [`poem`] module turns it
//! into extractors that answer 401/403 `application/problem+json` with RFC 6750
//! `WWW-Authenticate` challenges. No database or password-hashing code is compiled.
#![doc = include_str!("../README.md")]

/// The workspace README's Rust examples compile too.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct WorkspaceReadme;

mod http;
mod jwks;
pub mod poem;
pub mod problem;
mod revocations;
mod verified;
mod verifier;

pub use jsonwebtoken::Algorithm;
pub use jsonwebtoken::jwk::{Jwk, JwkSet};
pub use jwks::JwksOptions;
pub use verified::DEFAULT_VERIFIED_CACHE;
pub use verifier::{DEFAULT_REVOCATION_INTERVAL, InitError, Verifier, VerifierBuilder};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The `typ` header of an RFC 9068 access token.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Tokens longer than this are refused before any parsing; authgate's are ~450 bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// JWKS and discovery responses longer than this (64 KiB) are refused; reading stops
/// at the cap.
pub const MAX_KEYS_RESPONSE_LEN: usize = 64 * 1024;

/// Claims of an authgate access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    /// The user id.
    pub sub: Uuid,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    /// Unique per token.
    pub jti: Uuid,
    /// The session the token was issued in; it ends on logout, revocation or theft detection.
    pub sid: Uuid,
    /// Whether the user proved they receive mail at their address (authgate states it
    /// in every user token; absent is false).
    #[serde(default)]
    pub email_verified: bool,
    /// The user's roles (RFC 9068 §2.2.3.1), read afresh at every login and refresh;
    /// absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Space-separated scopes (RFC 9068 §2.2.3), when the issuer grants any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl AccessClaims {
    pub fn has_role(&self, wanted: &str) -> bool {
        self.roles.iter().any(|role| role == wanted)
    }

    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scope
            .as_deref()
            .is_some_and(|scopes| scopes.split(' ').any(|scope| scope == wanted))
    }
}

/// Claims of a client-credentials token (`authgate`'s `POST /v1/oauth/token`): a
/// service acting for itself, not a user, so no `sid`. `sub` and `client_id` are both
/// the client's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: Uuid,
    pub client_id: String,
    /// Space-separated scopes, when the client was granted any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl ClientClaims {
    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scope
            .as_deref()
            .is_some_and(|scopes| scopes.split(' ').any(|scope| scope == wanted))
    }
}

/// Whoever a token stands for: a user (with `sid`) or a service client (with
/// `client_id`). Take `JwtAuth<Caller>` where either may call, `JwtAuth` (users only) or
/// `JwtAuth<ClientClaims>` (clients only) where one may.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Caller {
    User(AccessClaims),
    Client(ClientClaims),
}

impl Caller {
    /// The user id, or the client id.
    pub fn subject(&self) -> String {
        match self {
            Self::User(claims) => claims.sub.to_string(),
            Self::Client(claims) => claims.client_id.clone(),
        }
    }

    /// The session of a user token; `None` for a client.
    pub fn sid(&self) -> Option<Uuid> {
        match self {
            Self::User(claims) => Some(claims.sid),
            Self::Client(_) => None,
        }
    }

    pub fn has_scope(&self, wanted: &str) -> bool {
        match self {
            Self::User(claims) => claims.has_scope(wanted),
            Self::Client(claims) => claims.has_scope(wanted),
        }
    }

    /// The space-separated scopes, if any.
    pub fn scope(&self) -> Option<&str> {
        match self {
            Self::User(claims) => claims.scope.as_deref(),
            Self::Client(claims) => claims.scope.as_deref(),
        }
    }

    /// A user's roles; a client has none.
    pub fn roles(&self) -> &[String] {
        match self {
            Self::User(claims) => &claims.roles,
            Self::Client(_) => &[],
        }
    }
}

/// The standard claims plus a service's own (`C` is any `Deserialize` type; its fields
/// are read from the same JSON object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims<C> {
    #[serde(flatten)]
    pub access: AccessClaims,
    #[serde(flatten)]
    pub custom: C,
}

/// Claims that carry the standard access-token claims; lets scope checks work on
/// custom claim types.
pub trait HasAccessClaims {
    fn access_claims(&self) -> &AccessClaims;
}

impl HasAccessClaims for AccessClaims {
    fn access_claims(&self) -> &AccessClaims {
        self
    }
}

impl<C> HasAccessClaims for Claims<C> {
    fn access_claims(&self) -> &AccessClaims {
        &self.access
    }
}

/// What a token grants, for the scope and role checks of every claims type: user tokens
/// ([`AccessClaims`], [`Claims`]), client tokens ([`ClientClaims`], which hold no roles)
/// and either ([`Caller`]).
pub trait Grants {
    fn has_scope(&self, scope: &str) -> bool;
    fn has_role(&self, role: &str) -> bool;
}

impl Grants for AccessClaims {
    fn has_scope(&self, scope: &str) -> bool {
        AccessClaims::has_scope(self, scope)
    }
    fn has_role(&self, role: &str) -> bool {
        AccessClaims::has_role(self, role)
    }
}

impl<C> Grants for Claims<C> {
    fn has_scope(&self, scope: &str) -> bool {
        self.access.has_scope(scope)
    }
    fn has_role(&self, role: &str) -> bool {
        self.access.has_role(role)
    }
}

impl Grants for ClientClaims {
    fn has_scope(&self, scope: &str) -> bool {
        ClientClaims::has_scope(self, scope)
    }
    fn has_role(&self, _role: &str) -> bool {
        false
    }
}

impl Grants for Caller {
    fn has_scope(&self, scope: &str) -> bool {
        Caller::has_scope(self, scope)
    }
    fn has_role(&self, role: &str) -> bool {
        match self {
            Self::User(claims) => claims.has_role(role),
            Self::Client(_) => false,
        }
    }
}

/// `aud` is a single string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Why a token was refused; meant for logs, not for the client.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token type is not the required one")]
    WrongType,
    #[error("algorithm is not allowed")]
    AlgorithmNotAllowed,
    #[error("token has no kid or an unknown kid")]
    UnknownKey,
    #[error("signature does not verify")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("missing or malformed claim: {0}")]
    BadClaims(String),
    #[error("no verification keys could be loaded")]
    KeysUnavailable,
    #[error("the token's session has ended (revocation feed)")]
    SessionEnded,
}
