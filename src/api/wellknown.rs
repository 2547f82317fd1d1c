//! Key publication and discovery, so any JWT library can verify access tokens offline.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};

use crate::domain::keys::KeyRing;

#[derive(Tags)]
enum ApiTags {
    /// Public keys and OpenID discovery.
    Discovery,
}

/// A public signing key (RFC 8037 OKP).
#[derive(Object)]
pub struct PublicJwk {
    /// `OKP`.
    pub kty: String,
    /// `Ed25519`.
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    /// Key id, as in the access token's header.
    pub kid: String,
    /// `EdDSA`.
    pub alg: String,
    /// `sig`.
    #[oai(rename = "use")]
    pub key_use: String,
}

/// JSON Web Key Set (RFC 7517).
#[derive(Object)]
pub struct Jwks {
    pub keys: Vec<PublicJwk>,
}

/// OpenID Provider metadata (the subset that describes access-token verification).
#[derive(Object)]
pub struct DiscoveryDocument {
    pub issuer: String,
    pub jwks_uri: String,
    /// The client-credentials grant (`POST /v1/oauth/token`).
    pub token_endpoint: String,
    pub introspection_endpoint: String,
    pub revocation_endpoint: String,
    pub userinfo_endpoint: String,
    pub grant_types_supported: Vec<String>,
    pub response_types_supported: Vec<String>,
    pub subject_types_supported: Vec<String>,
    pub id_token_signing_alg_values_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    /// The revocation feed: sessions that ended while their tokens may be unexpired.
    pub revocation_feed_endpoint: String,
}

/// How service clients authenticate at the OAuth endpoints.
const CLIENT_AUTH_METHODS: [&str; 2] = ["client_secret_basic", "client_secret_post"];

/// Lets verifiers cache keys briefly: a rotated-in key is published before it signs.
const KEYS_CACHE_CONTROL: &str = "public, max-age=60";

#[derive(ApiResponse)]
pub enum JwksResponse {
    /// The public keys that verify current access tokens.
    #[oai(status = 200)]
    Ok(Json<Jwks>, #[oai(header = "Cache-Control")] String),
}

#[derive(ApiResponse)]
pub enum DiscoveryResponse {
    /// Issuer metadata.
    #[oai(status = 200)]
    Ok(
        Json<DiscoveryDocument>,
        #[oai(header = "Cache-Control")] String,
    ),
}

/// The issuer as configured, for discovery.
#[derive(Clone)]
pub struct Issuer(pub String);

pub struct WellKnownApi;

#[OpenApi(prefix_path = "/.well-known", tag = "ApiTags::Discovery")]
impl WellKnownApi {
    /// The JSON Web Key Set that verifies access tokens.
    #[oai(path = "/jwks.json", method = "get")]
    async fn jwks(&self, keys: Data<&Arc<KeyRing>>) -> JwksResponse {
        let keys = keys
            .jwks()
            .keys
            .iter()
            .filter_map(|jwk| match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(okp) => Some(PublicJwk {
                    kty: "OKP".to_owned(),
                    crv: "Ed25519".to_owned(),
                    x: okp.x.clone(),
                    kid: jwk.common.key_id.clone()?,
                    alg: "EdDSA".to_owned(),
                    key_use: "sig".to_owned(),
                }),
                _ => None,
            })
            .collect();
        JwksResponse::Ok(Json(Jwks { keys }), KEYS_CACHE_CONTROL.to_owned())
    }

    /// OpenID discovery document.
    #[oai(path = "/openid-configuration", method = "get")]
    async fn openid_configuration(&self, issuer: Data<&Issuer>) -> DiscoveryResponse {
        let issuer = issuer.0.0.clone();
        let base = issuer.trim_end_matches('/');
        let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
        DiscoveryResponse::Ok(
            Json(DiscoveryDocument {
                jwks_uri: format!("{base}/.well-known/jwks.json"),
                token_endpoint: format!("{base}/v1/oauth/token"),
                introspection_endpoint: format!("{base}/v1/oauth/introspect"),
                revocation_endpoint: format!("{base}/v1/auth/revoke"),
                userinfo_endpoint: format!("{base}/v1/auth/me"),
                grant_types_supported: strings(&["client_credentials"]),
                response_types_supported: strings(&["token"]),
                subject_types_supported: strings(&["public"]),
                id_token_signing_alg_values_supported: strings(&["EdDSA"]),
                token_endpoint_auth_methods_supported: strings(&CLIENT_AUTH_METHODS),
                introspection_endpoint_auth_methods_supported: strings(&CLIENT_AUTH_METHODS),
                revocation_feed_endpoint: format!("{base}/v1/auth/revocations"),
                issuer,
            }),
            KEYS_CACHE_CONTROL.to_owned(),
        )
    }
}
