//! What proves the account's password: log in, change the password, delete the account,
//! and the throttled check the three share.

use uuid::Uuid;

use super::accounts::{normalize_email, normalize_password, validate_email, validate_password};
use super::types::{Account, AuditEntry, AuditEvent, Session, UnixMillis};
use super::{AuthService, Authenticated, Client, Fault, TokenPair};
use crate::crypto::password::Verified;
use crate::crypto::refresh;
use crate::store::{PasswordChange, PasswordSwap};
use crate::throttle::RetryAfter;

/// Why a password could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum PasswordCheckError {
    #[error("too many failed password checks for this account from this address")]
    Throttled(RetryAfter),
    #[error("the server is busy hashing passwords; retry shortly")]
    Overloaded,
    #[error(transparent)]
    Fault(Fault),
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown account and wrong password alike.
    #[error("wrong email or password")]
    InvalidCredentials,
    /// The right password, but `AUTHGATE_REQUIRE_VERIFIED_EMAIL` is set.
    #[error("the email address of this account is not verified yet")]
    EmailNotVerified,
    /// The right password, but an admin disabled the account.
    #[error("this account is disabled")]
    AccountDisabled,
    #[error("too many failed logins for this account from this address")]
    Throttled(RetryAfter),
    #[error("the server is busy hashing passwords; retry shortly")]
    Overloaded,
    #[error(transparent)]
    Fault(Fault),
}

faults_convert!(PasswordCheckError, LoginError);
hashing_converts!(PasswordCheckError, LoginError);
password_check_converts!(LoginError);

/// Whether the password was the account's.
pub(super) enum PasswordCheck {
    Right {
        account: Account,
        needs_rehash: bool,
    },
    /// A wrong password, or an account that does not exist: told apart only in the audit trail.
    Wrong,
}

#[derive(Debug, thiserror::Error)]
pub enum ChangePasswordError {
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("invalid new password: {0}")]
    InvalidPassword(&'static str),
    #[error("the session of this access token has ended")]
    SessionEnded,
    #[error("too many failed password checks for this account from this address")]
    Throttled(RetryAfter),
    #[error("the server is busy hashing passwords; retry shortly")]
    Overloaded,
    #[error(transparent)]
    Fault(Fault),
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteAccountError {
    #[error("the password is wrong")]
    WrongPassword,
    #[error("too many failed password checks for this account from this address")]
    Throttled(RetryAfter),
    #[error("the server is busy hashing passwords; retry shortly")]
    Overloaded,
    #[error(transparent)]
    Fault(Fault),
}

faults_convert!(ChangePasswordError, DeleteAccountError);
hashing_converts!(ChangePasswordError, DeleteAccountError);
password_check_converts!(ChangePasswordError, DeleteAccountError);

impl AuthService {
    /// Unknown accounts and wrong passwords take the same path: one argon2 verification
    /// (against a dummy hash for the former) and the same error.
    /// A throttled (account, address) is refused before any hashing.
    pub async fn login(
        &self,
        email: &str,
        password: String,
        client: &Client,
    ) -> Result<TokenPair, LoginError> {
        let result = self.login_unmetered(email, password, client).await;
        self.metrics.login(match &result {
            Ok(_) => "ok",
            Err(LoginError::InvalidCredentials) => "invalid_credentials",
            Err(LoginError::EmailNotVerified) => "email_not_verified",
            Err(LoginError::AccountDisabled) => "account_disabled",
            Err(LoginError::Throttled(_)) => "throttled",
            Err(LoginError::Overloaded) => "overloaded",
            Err(LoginError::Fault(_)) => "error",
        });
        result
    }

    async fn login_unmetered(
        &self,
        email: &str,
        password: String,
        client: &Client,
    ) -> Result<TokenPair, LoginError> {
        let email = normalize_email(email);
        let actor = client.actor();
        let (account, upgraded_hash) = match self
            .check_password_throttled(&email, &password, client)
            .await?
        {
            PasswordCheck::Right {
                account,
                needs_rehash,
            } => {
                let upgraded_hash = match needs_rehash {
                    true => Some(self.hasher.hash(normalize_password(&password)).await?),
                    false => None,
                };
                (account, upgraded_hash)
            }
            PasswordCheck::Wrong => return Err(LoginError::InvalidCredentials),
        };
        let user = &account.user;
        if user.disabled {
            return Err(LoginError::AccountDisabled);
        }
        if self.require_verified_email && !user.email_verified {
            return Err(LoginError::EmailNotVerified);
        }

        let now = UnixMillis::now();
        let session = Session {
            // Time-ordered: new rows go to the end of the B-trees, not anywhere in them.
            id: Uuid::now_v7(),
            user_id: user.id,
            created_at: now,
            expires_at: now.plus_secs(self.policy.session_ttl_secs),
            refreshed_at: None,
            revoked_at: None,
            client: actor.clone(),
        };
        let (refresh_token, hash) = refresh::generate();
        let new_token = self.new_refresh_token(hash, &session, now);
        let refresh_expires_at = new_token.expires_at;
        let started = AuditEntry::new(AuditEvent::Login, &actor, now)
            .user(user.id)
            .session(session.id);
        let password = PasswordSwap {
            user_id: user.id,
            checked: &account.password_hash,
            new: upgraded_hash.as_deref().unwrap_or(&account.password_hash),
            logged_in_at: Some(now),
        };
        // A password change, deletion or disabling that committed since the check wins.
        let Some(subject) = self
            .store
            .start_session(&session, new_token, password, &started)
            .await?
        else {
            return Err(LoginError::InvalidCredentials);
        };
        Ok(self.token_pair(&session, &subject, refresh_token, refresh_expires_at, now)?)
    }

    /// Checks `password` against the account of `email` under the failed-login throttle:
    /// the attempt is reserved before any hashing, so concurrent guesses cannot all slip
    /// past the limit while the first ones are being hashed; a wrong password keeps its
    /// reservation and is recorded as a failed login, the right one clears the count.
    pub(super) async fn check_password_throttled(
        &self,
        email: &str,
        password: &str,
        client: &Client,
    ) -> Result<PasswordCheck, PasswordCheckError> {
        let reserved = match self.throttle.reserve_login_attempt(email, client.ip).await {
            Ok(Ok(())) => true,
            Ok(Err(retry)) => return Err(PasswordCheckError::Throttled(retry)),
            // Availability over strictness: the per-IP rate limit still applies.
            Err(err) => {
                tracing::error!(error = %err, "login throttle unavailable; not enforced");
                false
            }
        };
        let (account, verified) = match self.check_password(email, password).await {
            Ok(checked) => checked,
            Err(err) => {
                if reserved
                    && let Err(err) = self.throttle.release_login_attempt(email, client.ip).await
                {
                    tracing::error!(error = %err, "cannot release a login attempt");
                }
                return Err(err);
            }
        };
        match (account, verified) {
            (Some(account), Verified::Correct | Verified::CorrectNeedsRehash) => {
                if let Err(err) = self.throttle.clear_login_failures(email, client.ip).await {
                    tracing::error!(error = %err, "cannot clear failed logins");
                }
                Ok(PasswordCheck::Right {
                    account,
                    needs_rehash: verified == Verified::CorrectNeedsRehash,
                })
            }
            (account, _) => {
                let actor = client.actor();
                let failed = AuditEntry::new(AuditEvent::LoginFailed, &actor, UnixMillis::now());
                let failed = match account {
                    Some(account) => failed.user(account.user.id),
                    None => failed.detail("unknown account"),
                };
                self.store.record(&failed).await?;
                Ok(PasswordCheck::Wrong)
            }
        }
    }

    /// The account of `email` and whether `password` (NFKC-normalized here) is its
    /// password. An email that could never have registered is not looked up (PostgreSQL
    /// refuses NUL bytes, for one), but still costs one hash, like an unknown account.
    async fn check_password(
        &self,
        email: &str,
        password: &str,
    ) -> Result<(Option<Account>, Verified), PasswordCheckError> {
        let account = match validate_email(email) {
            Ok(()) => self.store.find_account_by_email(email).await?,
            Err(_) => None,
        };
        let stored_hash = account
            .as_ref()
            .map(|account| account.password_hash.clone());
        let normalized = normalize_password(password);
        let verified = self
            .hasher
            .verify(normalized.clone(), stored_hash.clone())
            .await?;
        // A hash made before passwords were normalized holds the password as it was
        // typed; the next login stores the normalized one. Unknown accounts take the
        // second hash too, so the timing tells nothing.
        if verified == Verified::Wrong && normalized != password {
            let legacy = self.hasher.verify(password.to_owned(), stored_hash).await?;
            if legacy != Verified::Wrong {
                return Ok((account, Verified::CorrectNeedsRehash));
            }
        }
        Ok((account, verified))
    }

    /// Sets a new password after checking the current one, and ends every other session
    /// of the user in the same transaction; the caller's session keeps working.
    pub async fn change_password(
        &self,
        caller: &Authenticated,
        current_password: &str,
        new_password: &str,
        client: &Client,
    ) -> Result<(), ChangePasswordError> {
        let new_password = normalize_password(new_password);
        validate_password(&new_password).map_err(ChangePasswordError::InvalidPassword)?;
        let Some(account) = self
            .check_callers_password(caller, current_password, client)
            .await?
        else {
            return Err(ChangePasswordError::WrongPassword);
        };
        if new_password == normalize_password(current_password) {
            return Err(ChangePasswordError::InvalidPassword(
                "the same as the current password",
            ));
        }
        let new_hash = self.hasher.hash(new_password).await?;
        let actor = client.actor();
        let changed = AuditEntry::new(AuditEvent::PasswordChanged, &actor, UnixMillis::now())
            .user(account.user.id)
            .session(caller.claims.sid);
        let swap = PasswordSwap {
            user_id: account.user.id,
            checked: &account.password_hash,
            new: &new_hash,
            logged_in_at: None,
        };
        match self
            .store
            .change_password(swap, caller.claims.sid, &changed)
            .await?
        {
            PasswordChange::Changed { sessions_ended } => {
                self.metrics.revoked("password_changed", sessions_ended);
                Ok(())
            }
            // Another change committed since the check: the password given is no longer
            // the current one.
            PasswordChange::Stale => Err(ChangePasswordError::WrongPassword),
            PasswordChange::CallerSessionEnded => Err(ChangePasswordError::SessionEnded),
        }
    }

    /// Deletes the caller's account, its sessions and its tokens in one transaction,
    /// after checking its password; the audit trail keeps the event.
    pub async fn delete_account(
        &self,
        caller: &Authenticated,
        password: &str,
        client: &Client,
    ) -> Result<(), DeleteAccountError> {
        let Some(account) = self
            .check_callers_password(caller, password, client)
            .await?
        else {
            return Err(DeleteAccountError::WrongPassword);
        };
        let actor = client.actor();
        let deleted = AuditEntry::new(AuditEvent::AccountDeleted, &actor, UnixMillis::now())
            .user(account.user.id);
        let checked = PasswordSwap {
            user_id: account.user.id,
            checked: &account.password_hash,
            new: &account.password_hash,
            logged_in_at: None,
        };
        // A password change that committed since the check wins.
        if !self.store.delete_user(checked, &deleted).await? {
            return Err(DeleteAccountError::WrongPassword);
        }
        Ok(())
    }

    /// The caller's account if `password` is its password (throttled like a login).
    /// Looked up by email for the throttle's key, and only taken if it is the caller's.
    async fn check_callers_password(
        &self,
        caller: &Authenticated,
        password: &str,
        client: &Client,
    ) -> Result<Option<Account>, PasswordCheckError> {
        Ok(
            match self
                .check_password_throttled(&caller.user.email, password, client)
                .await?
            {
                PasswordCheck::Right { account, .. } if account.user.id == caller.user.id => {
                    Some(account)
                }
                PasswordCheck::Right { .. } | PasswordCheck::Wrong => None,
            },
        )
    }
}
