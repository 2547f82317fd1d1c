//! What needs the account's password: the throttled check that login, change password
//! and delete account share, and the latter two.

use super::accounts::{normalize_password, validate_email, validate_password};
use super::types::{Account, AuditEntry, AuditEvent, UnixMillis};
use super::{AuthService, Authenticated, Client, Fault};
use crate::crypto::password::Verified;
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

faults_convert!(PasswordCheckError);
hashing_converts!(PasswordCheckError);

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
