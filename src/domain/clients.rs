//! Service clients: made by the CLI or the admin API; the client-credentials grant (RFC
//! 6749 §4.4) and token introspection (RFC 7662) for them.

use authgate_verify::{AccessClaims, Audience, Caller, ClientClaims};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::Client;
use super::admin::{AdminCaller, AdminError};
use super::roles::is_scope_token;
use super::types::{AuditEntry, AuditEvent, UnixMillis};
use super::{AuthService, Fault};
use crate::crypto::refresh;
use crate::store::{ClientRecord, Store, StoreError};

/// The scope that opens the admin API to a client token.
pub const ADMIN_SCOPE: &str = "authgate:admin";
/// A client may be allowed this many scopes.
const MAX_SCOPES: usize = 64;

/// A client as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub client_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: UnixMillis,
}

/// A client just made: its secret is in here and nowhere else.
#[derive(Clone, PartialEq, Eq)]
pub struct NewClient {
    pub info: ClientInfo,
    pub client_secret: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("name: 1 to 64 characters, no control characters")]
    InvalidName,
    #[error("scopes: {0}")]
    InvalidScopes(String),
    #[error(transparent)]
    Fault(Fault),
}

faults_convert!(ClientError);

/// Makes a client with these allowed scopes; its secret is returned once.
pub async fn create_client(
    store: &Store,
    name: &str,
    scopes: &[String],
    audit: Option<&AuditEntry<'_>>,
) -> Result<NewClient, ClientError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ClientError::InvalidName);
    }
    let mut allowed: Vec<String> = Vec::new();
    for scope in scopes.iter().flat_map(|scope| scope.split_whitespace()) {
        if !is_scope_token(scope) {
            return Err(ClientError::InvalidScopes(format!(
                "{scope:?} is not a scope (printable ASCII, no spaces or quotes)"
            )));
        }
        if !allowed.iter().any(|known| known == scope) {
            allowed.push(scope.to_owned());
        }
    }
    if allowed.len() > MAX_SCOPES {
        return Err(ClientError::InvalidScopes(format!("at most {MAX_SCOPES}")));
    }
    // Both base64url: URL-unreserved characters only.
    let client_id = format!(
        "cl_{}",
        URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<12>())
    );
    let client_secret = URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<32>());
    let record = ClientRecord {
        client_id,
        secret_hash: refresh::hash(&client_secret).to_vec(),
        name: name.to_owned(),
        scopes: allowed,
        created_at: UnixMillis::now(),
    };
    store.insert_client(&record, audit).await?;
    Ok(NewClient {
        info: ClientInfo::from(record),
        client_secret,
    })
}

pub async fn clients(store: &Store) -> Result<Vec<ClientInfo>, StoreError> {
    Ok(store
        .clients()
        .await?
        .into_iter()
        .map(ClientInfo::from)
        .collect())
}

/// Deletes a client: its tokens stop working with authgate at once (introspection, the
/// admin API) and with verifiers when they expire.
pub async fn delete_client(
    store: &Store,
    client_id: &str,
    audit: Option<&AuditEntry<'_>>,
) -> Result<bool, StoreError> {
    store.delete_client(client_id, audit).await
}

impl From<ClientRecord> for ClientInfo {
    fn from(record: ClientRecord) -> Self {
        Self {
            client_id: record.client_id,
            name: record.name,
            scopes: record.scopes,
            created_at: record.created_at,
        }
    }
}

impl AuthService {
    /// `POST /admin/v1/clients`, audited with the admin as actor.
    pub async fn admin_create_client(
        &self,
        caller: &AdminCaller,
        client: &Client,
        name: &str,
        scopes: &[String],
    ) -> Result<NewClient, AdminError> {
        let actor = Self::admin_actor(caller, client);
        let audit =
            AuditEntry::new(AuditEvent::ClientCreated, &actor, UnixMillis::now()).detail(name);
        match create_client(&self.store, name, scopes, Some(&audit)).await {
            Ok(made) => Ok(made),
            Err(ClientError::Fault(fault)) => Err(AdminError::Fault(fault)),
            Err(invalid) => Err(AdminError::InvalidClient(invalid.to_string())),
        }
    }

    pub async fn admin_clients(&self) -> Result<Vec<ClientInfo>, AdminError> {
        Ok(clients(&self.store).await?)
    }

    pub async fn admin_delete_client(
        &self,
        caller: &AdminCaller,
        client: &Client,
        client_id: &str,
    ) -> Result<(), AdminError> {
        let actor = Self::admin_actor(caller, client);
        let audit =
            AuditEntry::new(AuditEvent::ClientDeleted, &actor, UnixMillis::now()).detail(client_id);
        match delete_client(&self.store, client_id, Some(&audit)).await? {
            true => Ok(()),
            false => Err(AdminError::ClientNotFound),
        }
    }
}

/// RFC 6749 §5.2 errors of the OAuth endpoints.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("unknown client or wrong secret")]
    InvalidClient,
    #[error("only grant_type=client_credentials is supported")]
    UnsupportedGrantType,
    #[error("a requested scope is not allowed for this client")]
    InvalidScope,
    #[error(transparent)]
    Fault(Fault),
}

faults_convert!(OAuthError);

/// How a client authenticated: its id and secret, from the `Authorization: Basic`
/// header or the form.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: String,
}

/// A client-credentials access token.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientToken {
    pub access_token: String,
    pub expires_in: u64,
    /// Space-separated; empty when the client has no scopes.
    pub scope: String,
}

/// What introspection says of a token (RFC 7662 §2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Introspection {
    pub active: bool,
    pub token_type: Option<&'static str>,
    pub sub: Option<String>,
    pub client_id: Option<String>,
    pub sid: Option<Uuid>,
    pub scope: Option<String>,
    pub roles: Option<Vec<String>>,
    pub exp: Option<i64>,
    pub iat: Option<i64>,
    pub iss: Option<String>,
    pub aud: Option<String>,
}

impl AuthService {
    /// The client these credentials belong to; the secret's hash is compared in
    /// constant time, and hashed even for an unknown id.
    pub async fn authenticate_client(
        &self,
        credentials: &ClientCredentials,
    ) -> Result<ClientRecord, OAuthError> {
        let presented = refresh::hash(&credentials.client_secret);
        let client = self.store.find_client(&credentials.client_id).await?;
        match client {
            Some(client)
                if bool::from(client.secret_hash.as_slice().ct_eq(presented.as_slice())) =>
            {
                Ok(client)
            }
            _ => Err(OAuthError::InvalidClient),
        }
    }

    /// `grant_type=client_credentials`: a token for the client, with the requested
    /// scopes (all of them must be allowed) or, without `scope`, every allowed one.
    pub async fn client_credentials_token(
        &self,
        credentials: &ClientCredentials,
        requested: Option<&str>,
    ) -> Result<ClientToken, OAuthError> {
        let client = self.authenticate_client(credentials).await?;
        let scopes: Vec<String> = match requested {
            None => client.scopes.clone(),
            Some(text) => {
                let mut granted: Vec<String> = Vec::new();
                for scope in text.split_whitespace() {
                    if !client.scopes.iter().any(|allowed| allowed == scope) {
                        return Err(OAuthError::InvalidScope);
                    }
                    if !granted.iter().any(|known| known == scope) {
                        granted.push(scope.to_owned());
                    }
                }
                granted
            }
        };
        let scope = scopes.join(" ");
        let now = UnixMillis::now().secs();
        let ttl = self.policy.client_token_ttl_secs;
        let claims = ClientClaims {
            iss: self.policy.issuer.clone(),
            sub: client.client_id.clone(),
            aud: Audience::One(self.policy.audience.clone()),
            exp: now + i64::try_from(ttl).unwrap_or(i64::MAX / 2),
            iat: now,
            nbf: now,
            jti: Uuid::new_v4(),
            client_id: client.client_id,
            scope: (!scope.is_empty()).then(|| scope.clone()),
        };
        let access_token = self.keys.signer()?.sign_access_token(&claims)?;
        Ok(ClientToken {
            access_token,
            expires_in: ttl,
            scope,
        })
    }

    /// RFC 7662: whether a token authgate issued is in use now, asked by an
    /// authenticated client. Access tokens (user or client) and refresh tokens; anything
    /// expired, ended, of a deleted or disabled account or of a deleted client, or
    /// signed by a revoked key is inactive.
    pub async fn introspect(
        &self,
        credentials: &ClientCredentials,
        token: &str,
    ) -> Result<Introspection, OAuthError> {
        self.authenticate_client(credentials).await?;
        let now = UnixMillis::now();
        // A JWT has two dots; a refresh token (base64url) none.
        if token.contains('.') {
            return Ok(match self.verifier.verify_cached_as::<Caller>(token) {
                Ok(Caller::User(claims)) => self.introspect_user_token(claims, now).await?,
                Ok(Caller::Client(claims)) => self.introspect_client_token(claims).await?,
                Err(_) => Introspection::default(),
            });
        }
        let Some((stored, session)) = self.store.find_refresh_token(&refresh::hash(token)).await?
        else {
            return Ok(Introspection::default());
        };
        let live = stored.spent_at.is_none()
            && stored.expires_at > now
            && session.revoked_at.is_none()
            && session.expires_at > now;
        if !live {
            return Ok(Introspection::default());
        }
        let Some(user) = self
            .store
            .live_session_user(session.id, session.user_id, now)
            .await?
        else {
            return Ok(Introspection::default());
        };
        Ok(Introspection {
            active: true,
            token_type: Some("refresh_token"),
            sub: Some(user.id.to_string()),
            sid: Some(session.id),
            scope: self.roles.scope_of(&user.roles),
            roles: Some(user.roles),
            exp: Some(stored.expires_at.secs()),
            // The unspent token of a session is its newest: made at the latest refresh.
            iat: Some(session.refreshed_at.unwrap_or(session.created_at).secs()),
            iss: Some(self.policy.issuer.clone()),
            aud: Some(self.policy.audience.clone()),
            client_id: None,
        })
    }

    async fn introspect_user_token(
        &self,
        claims: AccessClaims,
        now: UnixMillis,
    ) -> Result<Introspection, OAuthError> {
        if self
            .store
            .live_session_user(claims.sid, claims.sub, now)
            .await?
            .is_none()
        {
            return Ok(Introspection::default());
        }
        Ok(Introspection {
            active: true,
            token_type: Some("access_token"),
            sub: Some(claims.sub.to_string()),
            sid: Some(claims.sid),
            scope: claims.scope,
            roles: (!claims.roles.is_empty()).then_some(claims.roles),
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            iss: Some(claims.iss),
            aud: Some(self.policy.audience.clone()),
            client_id: None,
        })
    }

    async fn introspect_client_token(
        &self,
        claims: ClientClaims,
    ) -> Result<Introspection, OAuthError> {
        if self.store.find_client(&claims.client_id).await?.is_none() {
            return Ok(Introspection::default());
        }
        Ok(Introspection {
            active: true,
            token_type: Some("access_token"),
            sub: Some(claims.sub),
            client_id: Some(claims.client_id),
            scope: claims.scope,
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            iss: Some(claims.iss),
            aud: Some(self.policy.audience.clone()),
            ..Introspection::default()
        })
    }

    /// The admin caller a client token stands for: a live client whose token carries
    /// [`ADMIN_SCOPE`]. Named `client:<name>` in the audit trail.
    pub async fn authenticate_admin_client(&self, token: &str) -> Result<Option<String>, Fault> {
        let Ok(claims) = self.verifier.verify_cached_as::<ClientClaims>(token) else {
            return Ok(None);
        };
        if !claims.has_scope(ADMIN_SCOPE) {
            return Ok(None);
        }
        Ok(self
            .store
            .find_client(&claims.client_id)
            .await?
            .map(|client| format!("client:{}", client.name)))
    }
}
