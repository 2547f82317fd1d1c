//! The password-hash compare-and-swap that login, password change and account deletion
//! each run first in their transaction: what they checked must still be what is stored,
//! and the account must not have been disabled meanwhile.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::entities::users;

/// The password hash a request checked, and the one to store in its place (the same,
/// or a new one).
#[derive(Debug, Clone, Copy)]
pub struct PasswordSwap<'a> {
    pub user_id: Uuid,
    pub checked: &'a str,
    pub new: &'a str,
    /// A login records its time.
    pub logged_in_at: Option<crate::domain::types::UnixMillis>,
}

/// Replaces the checked password hash, only if it is still the stored one: a change
/// that committed meanwhile wins, and this request is answered as if its password were
/// wrong. Also locks the user's row for the rest of the transaction.
pub(super) async fn swap_password_hash(
    db: &impl sea_orm::ConnectionTrait,
    swap: PasswordSwap<'_>,
) -> Result<bool, DbErr> {
    let mut update = users::Entity::update_many()
        .col_expr(users::Column::PasswordHash, Expr::value(swap.new))
        .filter(users::Column::Id.eq(swap.user_id))
        .filter(users::Column::PasswordHash.eq(swap.checked))
        .filter(users::Column::Disabled.eq(false));
    if let Some(at) = swap.logged_in_at {
        update = update.col_expr(users::Column::LastLoginAt, Expr::value(at));
    }
    let swapped = update.exec(db).await?;
    Ok(swapped.rows_affected == 1)
}
