//! What an operator does through the admin API: find, create, change and delete
//! accounts, end their sessions, hand out a reset token, read the audit trail. Every
//! change is audited with the admin key's name as the actor.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use super::accounts::{normalize_email, normalize_password, validate_email, validate_password};
use super::roles::normalize_roles;
use super::types::{Actor, AuditEntry, AuditEvent, AuditRecord, Session, UnixMillis, User};
use super::{AuthService, Client, Fault};
use crate::crypto::refresh;
use crate::store::{AuditQuery, StoreError, UserChange, UserSearch};

/// Whoever holds an admin key, as the audit trail names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCaller {
    pub key_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no account has this id")]
    UserNotFound,
    #[error("no live session has this id")]
    SessionNotFound,
    #[error("no event delivery has this id")]
    DeliveryNotFound,
    #[error("no client has this id")]
    ClientNotFound,
    #[error("invalid client: {0}")]
    InvalidClient(String),
    #[error("another account has this email")]
    EmailTaken,
    #[error("invalid email: {0}")]
    InvalidEmail(&'static str),
    #[error("invalid password: {0}")]
    InvalidPassword(&'static str),
    #[error("invalid roles: {0}")]
    InvalidRoles(String),
    #[error("{0}")]
    BadParameter(String),
    #[error("the server is busy hashing passwords; retry shortly")]
    Overloaded,
    #[error(transparent)]
    Fault(Fault),
}

faults_convert!(AdminError);
hashing_converts!(AdminError);

/// A page of results and the cursor of the next one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The filters of `GET /admin/v1/users`, as given.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub email: Option<String>,
    pub q: Option<String>,
    pub role: Option<String>,
    pub disabled: Option<bool>,
    pub limit: u64,
    pub cursor: Option<String>,
}

/// The filters of `GET /admin/v1/audit`, as given.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub user_id: Option<Uuid>,
    pub event: Option<String>,
    pub since: Option<UnixMillis>,
    pub limit: u64,
    pub cursor: Option<String>,
}

/// An account an admin creates.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub email: String,
    pub password: Option<String>,
    pub roles: Option<Vec<String>>,
    pub email_verified: Option<bool>,
}

impl AuthService {
    pub(super) fn admin_actor(caller: &AdminCaller, client: &Client) -> Actor {
        Actor {
            name: Some(caller.key_name.clone()),
            ..client.actor()
        }
    }

    pub async fn admin_find_users(&self, filter: UserFilter) -> Result<Page<User>, AdminError> {
        let role = match filter.role {
            Some(role) => Some(
                normalize_roles(&[role])
                    .map_err(AdminError::BadParameter)?
                    .remove(0),
            ),
            None => None,
        };
        let search = UserSearch {
            email: filter
                .email
                .map(|email| email_parameter(&email))
                .transpose()?,
            prefix: filter.q.map(|q| email_parameter(&q)).transpose()?,
            role,
            disabled: filter.disabled,
            after_email: filter
                .cursor
                .as_deref()
                .map(|cursor| email_parameter(&decode_cursor(cursor)?))
                .transpose()?,
            limit: filter.limit + 1,
        };
        let mut users = self.store.search_users(&search).await?;
        let next_cursor = (users.len() as u64 > filter.limit).then(|| {
            users.truncate(filter.limit as usize);
            users.last().map(|user| encode_cursor(&user.email))
        });
        Ok(Page {
            items: users,
            next_cursor: next_cursor.flatten(),
        })
    }

    pub async fn admin_user(&self, id: Uuid) -> Result<User, AdminError> {
        self.store
            .find_user(id)
            .await?
            .ok_or(AdminError::UserNotFound)
    }

    /// Creates an account. Without a password it gets the hash of a random secret
    /// nobody knows: logins fail as a wrong password (same timing) until a reset.
    pub async fn admin_create_user(
        &self,
        caller: &AdminCaller,
        client: &Client,
        new: NewUser,
    ) -> Result<User, AdminError> {
        let email = normalize_email(&new.email);
        validate_email(&email).map_err(AdminError::InvalidEmail)?;
        let roles = match &new.roles {
            Some(roles) => normalize_roles(roles).map_err(AdminError::InvalidRoles)?,
            None => self.roles.default_roles.clone(),
        };
        let password = match &new.password {
            Some(password) => {
                let password = normalize_password(password);
                validate_password(&password).map_err(AdminError::InvalidPassword)?;
                password
            }
            None => URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<32>()),
        };
        let password_hash = self.hasher.hash(password).await?;
        let user = User {
            id: Uuid::new_v4(),
            email,
            created_at: UnixMillis::now(),
            email_verified: new.email_verified.unwrap_or(false),
            roles,
            disabled: false,
            last_login_at: None,
        };
        let actor = Self::admin_actor(caller, client);
        let audit = AuditEntry::new(AuditEvent::UserCreated, &actor, user.created_at).user(user.id);
        match self
            .store
            .insert_user_by_admin(&user, &password_hash, &audit)
            .await
        {
            Ok(()) => Ok(user),
            Err(StoreError::Duplicate) => Err(AdminError::EmailTaken),
            Err(err) => Err(err.into()),
        }
    }

    /// Changes an account. Disabling it ends every session in the same transaction.
    pub async fn admin_update_user(
        &self,
        caller: &AdminCaller,
        client: &Client,
        id: Uuid,
        mut change: UserChange,
    ) -> Result<User, AdminError> {
        if let Some(email) = &change.email {
            let email = normalize_email(email);
            validate_email(&email).map_err(AdminError::InvalidEmail)?;
            change.email = Some(email);
        }
        if let Some(roles) = &change.roles {
            change.roles = Some(normalize_roles(roles).map_err(AdminError::InvalidRoles)?);
        }
        let changed = change.fields();
        let actor = Self::admin_actor(caller, client);
        let audit = AuditEntry::new(AuditEvent::UserUpdated, &actor, UnixMillis::now())
            .user(id)
            .detail(changed.join(","));
        match self.store.update_user(id, &change, &audit).await {
            Ok(Some((user, ended))) => {
                self.metrics.revoked("disabled", ended);
                Ok(user)
            }
            Ok(None) => Err(AdminError::UserNotFound),
            Err(StoreError::Duplicate) => Err(AdminError::EmailTaken),
            Err(err) => Err(err.into()),
        }
    }

    pub async fn admin_delete_user(
        &self,
        caller: &AdminCaller,
        client: &Client,
        id: Uuid,
    ) -> Result<(), AdminError> {
        let actor = Self::admin_actor(caller, client);
        let audit = AuditEntry::new(AuditEvent::AccountDeleted, &actor, UnixMillis::now()).user(id);
        match self.store.delete_user_by_id(id, &audit).await? {
            true => Ok(()),
            false => Err(AdminError::UserNotFound),
        }
    }

    pub async fn admin_user_sessions(&self, id: Uuid) -> Result<Vec<Session>, AdminError> {
        self.admin_user(id).await?;
        Ok(self.store.live_sessions_of(id, UnixMillis::now()).await?)
    }

    pub async fn admin_logout_user(
        &self,
        caller: &AdminCaller,
        client: &Client,
        id: Uuid,
    ) -> Result<(), AdminError> {
        let actor = Self::admin_actor(caller, client);
        let audit = AuditEntry::new(AuditEvent::LogoutAll, &actor, UnixMillis::now()).user(id);
        let ended = self
            .store
            .logout_user(id, &audit)
            .await?
            .ok_or(AdminError::UserNotFound)?;
        self.metrics.revoked("admin", ended);
        Ok(())
    }

    pub async fn admin_end_session(
        &self,
        caller: &AdminCaller,
        client: &Client,
        id: Uuid,
    ) -> Result<(), AdminError> {
        let owner = self
            .store
            .session_owner(id)
            .await?
            .ok_or(AdminError::SessionNotFound)?;
        let actor = Self::admin_actor(caller, client);
        let audit = AuditEntry::new(AuditEvent::SessionRevoked, &actor, UnixMillis::now())
            .user(owner)
            .session(id);
        match self.store.end_session(id, &audit).await? {
            true => {
                self.metrics.revoked("admin", 1);
                Ok(())
            }
            false => Err(AdminError::SessionNotFound),
        }
    }

    /// A reset token for the admin to hand over out of band (nothing is sent).
    pub async fn admin_reset_token(
        &self,
        caller: &AdminCaller,
        client: &Client,
        id: Uuid,
    ) -> Result<(String, UnixMillis), AdminError> {
        let user = self.admin_user(id).await?;
        let (token, hash) = refresh::generate();
        let actor = Self::admin_actor(caller, client);
        let now = UnixMillis::now();
        let expires_at = now.plus_secs(self.policy.reset_ttl_secs);
        let audit = AuditEntry::new(AuditEvent::PasswordResetRequested, &actor, now)
            .user(user.id)
            .detail("out of band");
        self.store
            .insert_reset_token(Uuid::new_v4(), &user, &hash, expires_at, &audit)
            .await?;
        Ok((token, expires_at))
    }

    pub async fn admin_audit(&self, filter: AuditFilter) -> Result<Page<AuditRecord>, AdminError> {
        let before = match &filter.cursor {
            Some(cursor) => {
                let text = decode_cursor(cursor)?;
                let parsed = text.split_once(' ').and_then(|(at, id)| {
                    Some((UnixMillis::from_millis(at.parse().ok()?), id.parse().ok()?))
                });
                Some(parsed.ok_or_else(|| AdminError::BadParameter("malformed cursor".into()))?)
            }
            None => None,
        };
        if let Some(event) = &filter.event
            && (event.len() > 64 || event.chars().any(char::is_control))
        {
            return Err(AdminError::BadParameter("event: not an event name".into()));
        }
        let query = AuditQuery {
            user_id: filter.user_id,
            event: filter.event,
            since: filter.since,
            before,
            limit: filter.limit + 1,
        };
        let mut events = self.store.audit_page(&query).await?;
        let next_cursor = (events.len() as u64 > filter.limit).then(|| {
            events.truncate(filter.limit as usize);
            events
                .last()
                .map(|event| encode_cursor(&format!("{} {}", event.at.millis(), event.id)))
        });
        Ok(Page {
            items: events,
            next_cursor: next_cursor.flatten(),
        })
    }
}

/// An email (or its prefix) as a search parameter: normalized like stored emails; text
/// no email can hold (control characters, which PostgreSQL also refuses) is a 400.
fn email_parameter(text: &str) -> Result<String, AdminError> {
    let email = normalize_email(text);
    if email.chars().count() > super::accounts::EMAIL_MAX_CHARS
        || email.chars().any(char::is_control)
    {
        return Err(AdminError::BadParameter(
            "not an email or email prefix".into(),
        ));
    }
    Ok(email)
}

pub(super) fn encode_cursor(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(position)
}

pub(super) fn decode_cursor(cursor: &str) -> Result<String, AdminError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| AdminError::BadParameter("malformed cursor".into()))
}
