//! Accounts: registration, and the rules emails and passwords follow.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use uuid::Uuid;

use super::types::{Account, AuditEntry, AuditEvent, MessageKind, UnixMillis, User};
use super::{AuthService, Client, Fault};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("invalid email: {0}")]
    InvalidEmail(&'static str),
    #[error("invalid password: {0}")]
    InvalidPassword(&'static str),
    #[error("email is already registered")]
    EmailTaken,
    #[error("the server is busy hashing passwords; retry shortly")]
    Overloaded,
    #[error(transparent)]
    Fault(Fault),
}

faults_convert!(RegisterError);
hashing_converts!(RegisterError);

pub const EMAIL_MAX_CHARS: usize = 254;
pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_CHARS: usize = 1024;

impl AuthService {
    pub async fn register(
        &self,
        email: &str,
        password: String,
        client: &Client,
    ) -> Result<User, RegisterError> {
        let email = normalize_email(email);
        validate_email(&email).map_err(RegisterError::InvalidEmail)?;
        let password = normalize_password(&password);
        validate_password(&password).map_err(RegisterError::InvalidPassword)?;
        let password_hash = self.hasher.hash(password).await?;
        let account = Account {
            user: User {
                id: Uuid::new_v4(),
                email,
                created_at: UnixMillis::now(),
                email_verified: false,
                roles: self.roles.default_roles.clone(),
                disabled: false,
                last_login_at: None,
            },
            password_hash,
        };
        let actor = client.actor();
        let now = account.user.created_at;
        let audit = AuditEntry::new(AuditEvent::Register, &actor, now).user(account.user.id);
        // With a delivery channel, the new address is asked to verify itself at once.
        let verification = self.new_message(MessageKind::EmailVerification, &account.user, now);
        match self
            .store
            .insert_user(&account, verification.as_ref(), &audit)
            .await
        {
            Ok(()) => {
                if verification.is_some() {
                    self.message_queued(MessageKind::EmailVerification);
                }
                Ok(account.user)
            }
            Err(StoreError::Duplicate) => Err(RegisterError::EmailTaken),
            Err(err) => Err(err.into()),
        }
    }
}

/// Emails are trimmed, lower-cased and NFC-normalized before they are stored or
/// compared, so one address typed on two keyboards is one account.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase().nfc().collect()
}

/// Passwords are NFKC-normalized before hashing and verifying: the same characters
/// typed as precomposed or combining sequences, or as compatibility forms, are one
/// password (NIST SP 800-63B §5.1.1.2).
pub fn normalize_password(password: &str) -> String {
    password.nfkc().collect()
}

/// Why an email cannot be an account's, if it cannot.
pub(super) fn validate_email(email: &str) -> Result<(), &'static str> {
    if email.chars().count() > EMAIL_MAX_CHARS {
        return Err("longer than 254 characters");
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters");
    }
    // Invisible characters (U+200B and the like) would let two accounts look alike.
    if email
        .chars()
        .any(|c| c.general_category() == GeneralCategory::Format)
    {
        return Err("contains invisible format characters");
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err("missing @");
    };
    if local.is_empty() || local.chars().count() > 64 || local.contains('@') {
        return Err("the part before @ must be 1 to 64 characters, without @");
    }
    let labels_ok = domain.split('.').count() >= 2
        && domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
    if !labels_ok {
        return Err("the domain must be a dotted name like example.com");
    }
    Ok(())
}

/// Why a (normalized) password is refused, if it is.
pub(super) fn validate_password(password: &str) -> Result<(), &'static str> {
    let chars = password.chars().count();
    if chars < PASSWORD_MIN_CHARS {
        return Err("shorter than 8 characters");
    }
    if chars > PASSWORD_MAX_CHARS {
        return Err("longer than 1024 characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(normalize_email("  Ann@Example.COM \n"), "ann@example.com");
    }

    #[test]
    fn malformed_emails_are_invalid() {
        for bad in [
            "",
            "ann",
            "@example.com",
            "ann@",
            "ann@example",
            "a b@example.com",
            "ann@exa..mple.com",
        ] {
            assert!(validate_email(bad).is_err(), "{bad:?} passed");
        }
        let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(186));
        assert_eq!(long.len(), 255);
        assert!(validate_email(&long).is_err());
        assert!(validate_email("ann.lee+tag@mail.example.com").is_ok());
    }

    #[test]
    fn emails_are_nfc_and_invisible_characters_are_invalid() {
        assert_eq!(
            normalize_email("Jose\u{301}@example.com"),
            "jos\u{e9}@example.com"
        );
        assert!(validate_email("ann\u{200b}@example.com").is_err());
        assert!(validate_email("ann@exam\u{feff}ple.com").is_err());
        assert!(validate_email("jos\u{e9}@example.com").is_ok());
    }

    #[test]
    fn passwords_are_nfkc() {
        assert_eq!(
            normalize_password("cafe\u{301} \u{FB01}ne"),
            "caf\u{e9} fine"
        );
    }

    #[test]
    fn password_length_counts_unicode_characters() {
        assert!(validate_password("ééééééé").is_err()); // 7 characters, 14 bytes
        assert!(validate_password("éééééééé").is_ok());
        assert!(validate_password(&"x".repeat(1024)).is_ok());
        assert!(validate_password(&"x".repeat(1025)).is_err());
    }
}
