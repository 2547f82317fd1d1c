//! Password-reset and email-verification tokens (stored as hashes) and the outbox their
//! messages wait in. A token and its message are written in one transaction; delivery
//! claims due messages so that one instance makes each attempt.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, ExprTrait,
    FromQueryResult, QueryFilter, Statement,
};
use uuid::Uuid;

use super::entities::{account_tokens, outbox, users};
use super::sessions::end_user_sessions;
use super::{Result, Store, UnitOfWork};
use crate::domain::events::{Event, EventType};
use crate::domain::types::{
    Account, AuditEntry, MessageKind, NewMessage, PendingMessage, Secret, UnixMillis,
};
use crate::telemetry::{self, Phase};

/// A message of each kind is queued at most once per account in this many seconds.
pub const MESSAGE_INTERVAL_SECS: u64 = 60;

/// An unspent, unexpired token as found by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveAccountToken {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The address it was sent to.
    pub email: String,
}

impl Store {
    /// Inserts a new account and, in the same transaction, its first message (email
    /// verification, when messages can be delivered).
    pub async fn insert_user(
        &self,
        account: &Account,
        message: Option<&NewMessage>,
        audit: &AuditEntry<'_>,
    ) -> Result<()> {
        let mut work = self.begin().await?;
        users::Entity::insert(users::ActiveModel {
            id: Set(account.user.id),
            email: Set(account.user.email.clone()),
            password_hash: Set(account.password_hash.clone()),
            created_at: Set(account.user.created_at.millis()),
            email_verified: Set(account.user.email_verified),
            reset_sent_at: Set(None),
            verification_sent_at: Set(None),
            roles: Set(super::users::joined_roles(&account.user.roles)),
            disabled: Set(account.user.disabled),
            last_login_at: Set(None),
        })
        .exec_without_returning(work.db())
        .await?;
        if let Some(message) = message {
            insert_message(&work, message).await?;
            note_message_sent(&work, message).await?;
        }
        work.emit(EventType::UserCreated, || {
            Event::user_created(account.user.id, &account.user.email)
        });
        work.commit(Some(audit)).await?;
        Ok(())
    }

    /// Stores the token of `message` and queues the message, in one transaction, unless
    /// one of its kind was queued for the account in the last minute, the account's
    /// email is no longer the message's, or (for verification) it is already verified.
    /// Returns whether it was queued.
    pub async fn queue_message(
        &self,
        message: &NewMessage,
        audit: Option<&AuditEntry<'_>>,
    ) -> Result<bool> {
        let work = self.begin().await?;
        if !note_message_sent(&work, message).await? {
            return Ok(false);
        }
        insert_message(&work, message).await?;
        work.commit(audit).await?;
        Ok(true)
    }

    /// The unspent, unexpired token of `kind` with this hash.
    pub async fn find_account_token(
        &self,
        kind: MessageKind,
        hash: &[u8],
        now: UnixMillis,
    ) -> Result<Option<LiveAccountToken>> {
        Ok(account_tokens::Entity::find()
            .filter(account_tokens::Column::TokenHash.eq(hash.to_vec()))
            .filter(account_tokens::Column::Kind.eq(kind.as_str()))
            .filter(account_tokens::Column::UsedAt.is_null())
            .filter(account_tokens::Column::ExpiresAt.gt(now))
            .one(&self.db)
            .await?
            .map(|row| LiveAccountToken {
                id: row.id,
                user_id: row.user_id,
                email: row.email,
            }))
    }

    /// Spends a reset token and every other outstanding one of the user, sets the new
    /// password hash, marks the email verified (if it is still the one the token went
    /// to) and ends every session of the user, in one transaction. Returns the sessions
    /// ended, or `None` (nothing changed) if the token was spent meanwhile.
    pub async fn reset_password(
        &self,
        token: &LiveAccountToken,
        new_hash: &str,
        audit: &AuditEntry<'_>,
    ) -> Result<Option<u64>> {
        let now = audit.at;
        let mut work = self.begin().await?;
        // The user's row first, as every other change of the account locks it: two
        // resets of one account queue here instead of deadlocking on each other's tokens.
        // The token alone authorizes the new password, whatever the current one is.
        let set = users::Entity::update_many()
            .col_expr(users::Column::PasswordHash, Expr::value(new_hash))
            .filter(users::Column::Id.eq(token.user_id))
            // A token sent to a former address resets nothing.
            .filter(users::Column::Email.eq(token.email.as_str()))
            .exec(work.db())
            .await?;
        if set.rows_affected != 1 || !spend_token(&work, token.id, now).await? {
            return Ok(None);
        }
        spend_tokens_of(&work, token.user_id, MessageKind::PasswordReset, now).await?;
        let was_verified = users::Entity::find_by_id(token.user_id)
            .one(work.db())
            .await?
            .is_some_and(|user| user.email_verified);
        mark_verified(&work, token).await?;
        let ended = end_user_sessions(&mut work, token.user_id, None, audit).await?;
        let changed: &[&str] = if was_verified {
            &["password"]
        } else {
            &["password", "email_verified"]
        };
        work.emit_user_updated(token.user_id, changed).await?;
        // The spent tokens' messages have nothing left to deliver.
        outbox::Entity::delete_many()
            .filter(outbox::Column::UserId.eq(token.user_id))
            .filter(outbox::Column::Kind.eq(MessageKind::PasswordReset.as_str()))
            .exec(work.db())
            .await?;
        work.commit(Some(audit)).await?;
        Ok(Some(ended))
    }

    /// Spends a verification token (and every other one of the user) and marks the email
    /// verified, if it is still the one the token went to. Returns whether it was.
    pub async fn verify_email(
        &self,
        token: &LiveAccountToken,
        audit: &AuditEntry<'_>,
    ) -> Result<bool> {
        let now = audit.at;
        let mut work = self.begin().await?;
        let was_verified = users::Entity::find_by_id(token.user_id)
            .one(work.db())
            .await?
            .is_some_and(|user| user.email_verified);
        // The user's row first (see `reset_password`).
        if !mark_verified(&work, token).await? || !spend_token(&work, token.id, now).await? {
            return Ok(false);
        }
        spend_tokens_of(&work, token.user_id, MessageKind::EmailVerification, now).await?;
        if !was_verified {
            work.emit_user_updated(token.user_id, &["email_verified"])
                .await?;
        }
        work.commit(Some(audit)).await?;
        Ok(true)
    }

    /// Claims up to `limit` due messages for one attempt each until `lease_until`: no
    /// other instance claims them before then. On PostgreSQL rows another instance is
    /// claiming are skipped, not waited for.
    pub async fn claim_due_messages(
        &self,
        now: UnixMillis,
        lease_until: UnixMillis,
        limit: u32,
    ) -> Result<Vec<PendingMessage>> {
        let backend = self.db.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => {
                "UPDATE outbox SET claimed_until = $2, attempts = attempts + 1
                  WHERE id IN (SELECT id FROM outbox WHERE due_at <= $1 AND claimed_until <= $1
                                  AND expires_at > $1 ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING *"
            }
            _ => {
                "UPDATE outbox SET claimed_until = ?2, attempts = attempts + 1
                  WHERE id IN (SELECT id FROM outbox WHERE due_at <= ?1 AND claimed_until <= ?1
                                  AND expires_at > ?1 ORDER BY due_at LIMIT ?3)
                 RETURNING *"
            }
        };
        let statement = Statement::from_sql_and_values(
            backend,
            sql,
            [now.into(), lease_until.into(), i64::from(limit).into()],
        );
        let work = self.begin().await?;
        let rows = work.db().query_all_raw(statement).await?;
        work.commit(None).await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let row = outbox::Model::from_query_result(&row, "")?;
            match MessageKind::parse(&row.kind) {
                Some(kind) => claimed.push(PendingMessage {
                    id: row.id,
                    kind,
                    user_id: row.user_id,
                    email: row.email,
                    sealed_token: Secret(row.sealed_token),
                    created_at: UnixMillis::from_millis(row.created_at),
                    expires_at: UnixMillis::from_millis(row.expires_at),
                    attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
                }),
                None => tracing::warn!(id = %row.id, "outbox row of an unknown kind left alone"),
            }
        }
        Ok(claimed)
    }

    /// Removes delivered (or undeliverable) messages, their sealed tokens with them.
    pub async fn remove_messages(&self, ids: &[Uuid]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let work = self.begin().await?;
        outbox::Entity::delete_many()
            .filter(outbox::Column::Id.is_in(ids.iter().copied()))
            .exec(work.db())
            .await?;
        work.commit(None).await?;
        Ok(())
    }

    /// Schedules the next attempt of each message (id, when).
    pub async fn retry_messages(&self, retries: &[(Uuid, UnixMillis)]) -> Result<()> {
        if retries.is_empty() {
            return Ok(());
        }
        let work = self.begin().await?;
        for &(id, due_at) in retries {
            outbox::Entity::update_many()
                .col_expr(outbox::Column::DueAt, Expr::value(due_at))
                .col_expr(outbox::Column::ClaimedUntil, Expr::value(0i64))
                .filter(outbox::Column::Id.eq(id))
                .exec(work.db())
                .await?;
        }
        work.commit(None).await?;
        Ok(())
    }

    /// Every pending message's sealed token (for `keys rewrap`).
    pub async fn sealed_message_tokens(&self) -> Result<Vec<(Uuid, String)>> {
        Ok(outbox::Entity::find()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| (row.id, row.sealed_token))
            .collect())
    }

    pub async fn store_sealed_message_tokens(&self, sealed: &[(Uuid, String)]) -> Result<()> {
        if sealed.is_empty() {
            return Ok(());
        }
        let work = self.begin().await?;
        for (id, token) in sealed {
            outbox::Entity::update_many()
                .col_expr(outbox::Column::SealedToken, Expr::value(token.as_str()))
                .filter(outbox::Column::Id.eq(*id))
                .exec(work.db())
                .await?;
        }
        work.commit(None).await?;
        Ok(())
    }
}

async fn insert_message(work: &UnitOfWork<'_>, message: &NewMessage) -> Result<(), DbErr> {
    account_tokens::Entity::insert(account_tokens::ActiveModel {
        id: Set(message.id),
        user_id: Set(message.user_id),
        kind: Set(message.kind.as_str().to_owned()),
        email: Set(message.email.clone()),
        token_hash: Set(message.token_hash.clone()),
        created_at: Set(message.created_at.millis()),
        expires_at: Set(message.expires_at.millis()),
        used_at: Set(None),
    })
    .exec_without_returning(work.db())
    .await?;
    let write = outbox::Entity::insert(outbox::ActiveModel {
        id: Set(message.id),
        kind: Set(message.kind.as_str().to_owned()),
        user_id: Set(message.user_id),
        email: Set(message.email.clone()),
        sealed_token: Set(message.sealed_token.clone()),
        created_at: Set(message.created_at.millis()),
        expires_at: Set(message.expires_at.millis()),
        due_at: Set(message.created_at.millis()),
        attempts: Set(0),
        claimed_until: Set(0),
    })
    .exec_without_returning(work.db());
    telemetry::timed(Phase::Outbox, "outbox write", write).await?;
    Ok(())
}

/// Records that a message of this kind is being queued now, unless one was queued in
/// the last minute, the account's email changed, or (verification) it is verified
/// already. Also locks the user's row for the rest of the transaction.
async fn note_message_sent(work: &UnitOfWork<'_>, message: &NewMessage) -> Result<bool, DbErr> {
    let now = message.created_at;
    let column = match message.kind {
        MessageKind::PasswordReset => users::Column::ResetSentAt,
        MessageKind::EmailVerification => users::Column::VerificationSentAt,
    };
    let mut update = users::Entity::update_many()
        .col_expr(column, Expr::value(now))
        .filter(users::Column::Id.eq(message.user_id))
        .filter(users::Column::Email.eq(message.email.as_str()))
        .filter(users::Column::Disabled.eq(false))
        .filter(
            column
                .is_null()
                .or(column.lte(now.minus_secs(MESSAGE_INTERVAL_SECS))),
        );
    if message.kind == MessageKind::EmailVerification {
        update = update.filter(users::Column::EmailVerified.eq(false));
    }
    Ok(update.exec(work.db()).await?.rows_affected == 1)
}

async fn spend_token(work: &UnitOfWork<'_>, id: Uuid, now: UnixMillis) -> Result<bool, DbErr> {
    let spent = account_tokens::Entity::update_many()
        .col_expr(account_tokens::Column::UsedAt, Expr::value(now))
        .filter(account_tokens::Column::Id.eq(id))
        .filter(account_tokens::Column::UsedAt.is_null())
        .filter(account_tokens::Column::ExpiresAt.gt(now))
        .exec(work.db())
        .await?;
    Ok(spent.rows_affected == 1)
}

async fn spend_tokens_of(
    work: &UnitOfWork<'_>,
    user_id: Uuid,
    kind: MessageKind,
    now: UnixMillis,
) -> Result<u64, DbErr> {
    Ok(account_tokens::Entity::update_many()
        .col_expr(account_tokens::Column::UsedAt, Expr::value(now))
        .filter(account_tokens::Column::UserId.eq(user_id))
        .filter(account_tokens::Column::Kind.eq(kind.as_str()))
        .filter(account_tokens::Column::UsedAt.is_null())
        .exec(work.db())
        .await?
        .rows_affected)
}

/// Marks the user's email verified if it is still the address the token went to.
async fn mark_verified(work: &UnitOfWork<'_>, token: &LiveAccountToken) -> Result<bool, DbErr> {
    Ok(users::Entity::update_many()
        .col_expr(users::Column::EmailVerified, Expr::value(true))
        .filter(users::Column::Id.eq(token.user_id))
        .filter(users::Column::Email.eq(token.email.as_str()))
        .exec(work.db())
        .await?
        .rows_affected
        == 1)
}
