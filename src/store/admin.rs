//! What the admin API reads and changes: the user search, account changes made by an
//! admin, and pages of the audit trail.

use sea_orm::sea_query::{Cond, Expr};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect, Statement, Value,
};
use uuid::Uuid;

use super::entities::{account_tokens, audit_events, outbox, sessions, users};
use super::sessions::{end_sessions, end_user_sessions};
use super::users::{delete_account_rows, joined_roles};
use super::{Result, Store, UnitOfWork};
use crate::domain::events::{Event, EventType};
use crate::domain::types::{AuditEntry, AuditRecord, MessageKind, UnixMillis, User};

/// Which users to list, after which email, how many.
#[derive(Debug, Clone, Default)]
pub struct UserSearch {
    pub email: Option<String>,
    pub prefix: Option<String>,
    pub role: Option<String>,
    pub disabled: Option<bool>,
    pub after_email: Option<String>,
    pub limit: u64,
}

/// What an admin changes of an account; `None` leaves it as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    pub email: Option<String>,
    pub roles: Option<Vec<String>>,
    pub disabled: Option<bool>,
    pub email_verified: Option<bool>,
}

impl UserChange {
    /// The fields the change sets, as `user.updated` and the audit trail name them.
    pub fn fields(&self) -> Vec<&'static str> {
        [
            ("email", self.email.is_some()),
            ("roles", self.roles.is_some()),
            ("disabled", self.disabled.is_some()),
            ("email_verified", self.email_verified.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, given)| given.then_some(field))
        .collect()
    }
}

/// Which audit events, newest first, before which (time, id).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub user_id: Option<Uuid>,
    pub event: Option<String>,
    pub since: Option<UnixMillis>,
    pub before: Option<(UnixMillis, Uuid)>,
    pub limit: u64,
}

impl Store {
    /// Users in email order (bytewise), through the email index whatever the filters.
    pub async fn search_users(&self, search: &UserSearch) -> Result<Vec<User>> {
        let backend = self.db.get_database_backend();
        let postgres = backend == DbBackend::Postgres;
        // Bytewise order, where a prefix is one contiguous range of the index.
        let email = if postgres {
            r#"email COLLATE "C""#
        } else {
            "email"
        };
        let mut sql = String::from("SELECT * FROM users WHERE 1 = 1");
        let mut values: Vec<Value> = Vec::new();
        let mut bind = |sql: &mut String, clause: &str, value: Value| {
            values.push(value);
            let placeholder = if postgres {
                format!("${}", values.len())
            } else {
                "?".to_owned()
            };
            sql.push_str(&clause.replace('?', &placeholder));
        };
        if let Some(exact) = &search.email {
            bind(&mut sql, " AND email = ?", exact.clone().into());
        }
        if let Some(prefix) = &search.prefix {
            bind(
                &mut sql,
                &format!(" AND {email} >= ?"),
                prefix.clone().into(),
            );
            if let Some(end) = prefix_end(prefix) {
                bind(&mut sql, &format!(" AND {email} < ?"), end.into());
            }
        }
        if let Some(role) = &search.role {
            let find = if postgres { "strpos" } else { "instr" };
            bind(
                &mut sql,
                &format!(" AND {find}(' ' || roles || ' ', ?) > 0"),
                format!(" {role} ").into(),
            );
        }
        if let Some(disabled) = search.disabled {
            bind(&mut sql, " AND disabled = ?", disabled.into());
        }
        if let Some(after) = &search.after_email {
            bind(&mut sql, &format!(" AND {email} > ?"), after.clone().into());
        }
        let limit = i64::try_from(search.limit).unwrap_or(i64::MAX);
        bind(
            &mut sql,
            &format!(" ORDER BY {email} LIMIT ?"),
            limit.into(),
        );
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        rows.iter()
            .map(|row| Ok(User::from(users::Model::from_query_result(row, "")?)))
            .collect()
    }

    /// Inserts an account made by an admin (see [`Store::insert_user`] for registration).
    pub async fn insert_user_by_admin(
        &self,
        user: &User,
        password_hash: &str,
        audit: &AuditEntry<'_>,
    ) -> Result<()> {
        let mut work = self.begin().await?;
        users::Entity::insert(users::ActiveModel {
            id: Set(user.id),
            email: Set(user.email.clone()),
            password_hash: Set(password_hash.to_owned()),
            created_at: Set(user.created_at.millis()),
            email_verified: Set(user.email_verified),
            reset_sent_at: Set(None),
            verification_sent_at: Set(None),
            roles: Set(joined_roles(&user.roles)),
            disabled: Set(user.disabled),
            last_login_at: Set(None),
        })
        .exec_without_returning(work.db())
        .await?;
        work.emit(EventType::UserCreated, || {
            Event::user_created(user.id, &user.email)
        });
        work.commit(Some(audit)).await?;
        Ok(())
    }

    /// Applies an admin's change in one transaction: disabling ends every session; a new
    /// email is unverified unless the change says otherwise. Returns the account as it
    /// now is, `None` for an unknown id, [`super::StoreError::Duplicate`] for a taken email.
    pub async fn update_user(
        &self,
        id: Uuid,
        change: &UserChange,
        audit: &AuditEntry<'_>,
    ) -> Result<Option<(User, u64)>> {
        let mut work = self.begin().await?;
        let mut update = users::Entity::update_many().filter(users::Column::Id.eq(id));
        // Always one column, so the statement also locks the row of an empty change.
        update = update.col_expr(users::Column::Id, Expr::col(users::Column::Id));
        if let Some(email) = &change.email {
            update = update.col_expr(users::Column::Email, Expr::value(email.as_str()));
        }
        match (change.email_verified, &change.email) {
            (Some(verified), _) => {
                update = update.col_expr(users::Column::EmailVerified, Expr::value(verified));
            }
            // A changed address is unproven; the same one keeps its state.
            (None, Some(email)) => {
                let unchanged = users::Column::Email.eq(email.as_str());
                update = update.col_expr(
                    users::Column::EmailVerified,
                    Expr::case(unchanged, Expr::col(users::Column::EmailVerified))
                        .finally(Expr::value(false))
                        .into(),
                );
            }
            (None, None) => {}
        }
        if let Some(roles) = &change.roles {
            update = update.col_expr(users::Column::Roles, Expr::value(joined_roles(roles)));
        }
        if let Some(disabled) = change.disabled {
            update = update.col_expr(users::Column::Disabled, Expr::value(disabled));
        }
        let before = users::Entity::find_by_id(id).one(work.db()).await?;
        if update.exec(work.db()).await?.rows_affected != 1 {
            return Ok(None);
        }
        // Tokens sent to a former address prove nothing about the new one.
        if let (Some(before), Some(email)) = (&before, &change.email)
            && before.email != *email
        {
            account_tokens::Entity::update_many()
                .col_expr(account_tokens::Column::UsedAt, Expr::value(audit.at))
                .filter(account_tokens::Column::UserId.eq(id))
                .filter(account_tokens::Column::UsedAt.is_null())
                .exec(work.db())
                .await?;
            outbox::Entity::delete_many()
                .filter(outbox::Column::UserId.eq(id))
                .exec(work.db())
                .await?;
        }
        let ended = match change.disabled {
            Some(true) => end_user_sessions(&mut work, id, None, audit).await?,
            _ => 0,
        };
        work.emit_user_updated(id, &change.fields()).await?;
        let Some(row) = users::Entity::find_by_id(id).one(work.db()).await? else {
            return Ok(None);
        };
        work.commit(Some(audit)).await?;
        Ok(Some((row.into(), ended)))
    }

    /// Deletes an account, its sessions and tokens, as a deletion by the user does.
    pub async fn delete_user_by_id(&self, id: Uuid, audit: &AuditEntry<'_>) -> Result<bool> {
        let mut work = self.begin().await?;
        if !delete_account_rows(&mut work, id, audit).await? {
            return Ok(false);
        }
        work.commit(Some(audit)).await?;
        Ok(true)
    }

    /// Ends every session of a user; `None` for an unknown user.
    pub async fn logout_user(&self, id: Uuid, audit: &AuditEntry<'_>) -> Result<Option<u64>> {
        let mut work = self.begin().await?;
        if !lock_user(&work, id).await? {
            return Ok(None);
        }
        let ended = end_user_sessions(&mut work, id, None, audit).await?;
        work.commit(Some(audit)).await?;
        Ok(Some(ended))
    }

    /// Ends one live session, whoever's it is; false if it is not live.
    pub async fn end_session(&self, id: Uuid, audit: &AuditEntry<'_>) -> Result<bool> {
        let mut work = self.begin().await?;
        let which = Cond::all()
            .add(sessions::Column::Id.eq(id))
            .add(sessions::Column::ExpiresAt.gt(audit.at));
        if end_sessions(&mut work, which, audit).await?.len() != 1 {
            return Ok(false);
        }
        work.commit(Some(audit)).await?;
        Ok(true)
    }

    /// The user of a live session.
    pub async fn session_owner(&self, id: Uuid) -> Result<Option<Uuid>> {
        Ok(sessions::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(|row| row.user_id))
    }

    /// Stores a reset token handed to an admin for out-of-band delivery (no message).
    pub async fn insert_reset_token(
        &self,
        id: Uuid,
        user: &User,
        hash: &[u8],
        expires_at: UnixMillis,
        audit: &AuditEntry<'_>,
    ) -> Result<()> {
        let work = self.begin().await?;
        account_tokens::Entity::insert(account_tokens::ActiveModel {
            id: Set(id),
            user_id: Set(user.id),
            kind: Set(MessageKind::PasswordReset.as_str().to_owned()),
            email: Set(user.email.clone()),
            token_hash: Set(hash.to_vec()),
            created_at: Set(audit.at.millis()),
            expires_at: Set(expires_at.millis()),
            used_at: Set(None),
        })
        .exec_without_returning(work.db())
        .await?;
        work.commit(Some(audit)).await?;
        Ok(())
    }

    /// A page of the audit trail, newest first.
    pub async fn audit_page(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let mut select = audit_events::Entity::find()
            .order_by_desc(audit_events::Column::At)
            .order_by_desc(audit_events::Column::Id)
            .limit(query.limit);
        if let Some(user_id) = query.user_id {
            select = select.filter(audit_events::Column::UserId.eq(user_id));
        }
        if let Some(event) = &query.event {
            select = select.filter(audit_events::Column::Event.eq(event.as_str()));
        }
        if let Some(since) = query.since {
            select = select.filter(audit_events::Column::At.gte(since));
        }
        if let Some((at, id)) = query.before {
            select = select.filter(
                Cond::any().add(audit_events::Column::At.lt(at)).add(
                    Cond::all()
                        .add(audit_events::Column::At.eq(at))
                        .add(audit_events::Column::Id.lt(id)),
                ),
            );
        }
        Ok(select
            .all(&self.db)
            .await?
            .into_iter()
            .map(AuditRecord::from)
            .collect())
    }
}

/// Locks a user's row for the rest of the transaction; false if there is none.
async fn lock_user(work: &UnitOfWork<'_>, id: Uuid) -> Result<bool, sea_orm::DbErr> {
    Ok(users::Entity::update_many()
        .col_expr(users::Column::Id, Expr::col(users::Column::Id))
        .filter(users::Column::Id.eq(id))
        .exec(work.db())
        .await?
        .rows_affected
        == 1)
}

/// The least string above every string that starts with `prefix` (bytewise), if any.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_at_its_last_character_incremented() {
        assert_eq!(prefix_end("ann").as_deref(), Some("ano"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_end(""), None);
    }
}
