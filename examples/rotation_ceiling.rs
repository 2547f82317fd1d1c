//! The refresh ceiling the load harness compares authgate with: the database executing
//! one rotation transaction (`UPDATE refresh_tokens … WHERE id = ? AND spent_at IS NULL`,
//! `INSERT` the successor, `COMMIT`) back to back, and nothing else: no HTTP, no lookup,
//! no signing, no audit row.
//!
//! It uses authgate's own pool settings (`store::connect_options`: WAL with
//! `synchronous=FULL` on SQLite, 16 connections), schema and entities. Each of
//! `ROTATION_WORKERS` tasks (default 16) rotates its own chain of tokens in one session;
//! on SQLite the workers queue for the one writer as authgate's do. One thread, like the
//! server under test when pinned to one core. Prints
//! `ROTATIONS transactions=N duration_us=D`.
//!
//! `ROTATION_DATABASE_URL=sqlite://ceiling.db?mode=rwc ROTATION_SECONDS=10 \
//!    cargo run --release --example rotation_ceiling`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a measuring tool: a failure should stop it loudly"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use authgate::store::entities::{refresh_tokens, sessions, users};
use migration::MigratorTrait;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Database, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter, Set,
    TransactionTrait,
};
use uuid::Uuid;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn token(id: Uuid, session_id: Uuid, now: i64) -> refresh_tokens::ActiveModel {
    refresh_tokens::ActiveModel {
        id: Set(id),
        session_id: Set(session_id),
        token_hash: Set(Uuid::new_v4().as_bytes().repeat(2)),
        created_at: Set(now),
        expires_at: Set(now + 86_400_000),
        spent_at: Set(None),
        successor_id: Set(None),
        sealed_successor: Set(None),
    }
}

/// Rotates `previous` into a new token; returns the new token's id.
async fn rotate(db: &DatabaseConnection, session_id: Uuid, previous: Uuid) -> Result<Uuid, DbErr> {
    let now = authgate::domain::UnixMillis::now().millis();
    let successor = Uuid::new_v4();
    let txn = db.begin().await?;
    let spent = refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::SpentAt, Expr::value(now))
        .col_expr(refresh_tokens::Column::SuccessorId, Expr::value(successor))
        .filter(refresh_tokens::Column::Id.eq(previous))
        .filter(refresh_tokens::Column::SpentAt.is_null())
        .exec(&txn)
        .await?;
    if spent.rows_affected != 1 {
        return Err(DbErr::Custom(format!("token {previous} was not unspent")));
    }
    refresh_tokens::Entity::insert(token(successor, session_id, now))
        .exec_without_returning(&txn)
        .await?;
    txn.commit().await?;
    Ok(successor)
}

async fn run() -> Result<(), DbErr> {
    let url = std::env::var("ROTATION_DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://rotation-ceiling.db?mode=rwc".into());
    let duration = Duration::from_secs_f64(env_or("ROTATION_SECONDS", 10.0));
    let workers = env_or("ROTATION_WORKERS", 16usize);

    let db = Database::connect(authgate::store::connect_options(&url)).await?;
    migration::Migrator::up(&db, None).await?;
    let now = authgate::domain::UnixMillis::now().millis();
    let (user_id, session_id) = (Uuid::new_v4(), Uuid::new_v4());
    users::Entity::insert(users::ActiveModel {
        id: Set(user_id),
        email: Set(format!("{user_id}@rotation.invalid")),
        password_hash: Set(String::new()),
        created_at: Set(now),
        ..Default::default()
    })
    .exec_without_returning(&db)
    .await?;
    sessions::Entity::insert(sessions::ActiveModel {
        id: Set(session_id),
        user_id: Set(user_id),
        created_at: Set(now),
        expires_at: Set(now + 86_400_000),
        refreshed_at: Set(None),
        revoked_at: Set(None),
        client_ip: Set(None),
        user_agent: Set(None),
    })
    .exec_without_returning(&db)
    .await?;

    let sqlite_writer = Arc::new(tokio::sync::Mutex::new(()));
    let is_sqlite = db.get_database_backend() == DbBackend::Sqlite;
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (db, sqlite_writer) = (db.clone(), sqlite_writer.clone());
        tasks.push(tokio::spawn(async move {
            let mut previous = Uuid::new_v4();
            refresh_tokens::Entity::insert(token(previous, session_id, now))
                .exec_without_returning(&db)
                .await?;
            let mut rotations = 0u64;
            while Instant::now() < deadline {
                let _writer = if is_sqlite {
                    Some(sqlite_writer.lock().await)
                } else {
                    None
                };
                previous = rotate(&db, session_id, previous).await?;
                rotations += 1;
            }
            Ok::<u64, DbErr>(rotations)
        }));
    }
    let mut transactions = 0;
    for task in tasks {
        transactions += task.await.map_err(|err| DbErr::Custom(err.to_string()))??;
    }
    println!(
        "ROTATIONS transactions={transactions} duration_us={}",
        started.elapsed().as_micros()
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run())?;
    Ok(())
}
