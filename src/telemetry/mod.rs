//! Where a request's time went. The phases (database statements and batches, the wait
//! for and the run of password hashing, token signing, outbox writes) are timed where
//! they happen and reported twice: summed per request for `Server-Timing`
//! (`AUTHGATE_SERVER_TIMING`), and as child spans of the request's trace for the OTLP
//! exporter (`AUTHGATE_OTLP_ENDPOINT`, see [`export`]). With neither on, a phase costs a
//! clock read and a task-local lookup that finds nothing.

pub mod export;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A kind of work a request waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A database statement, a batch of them run for several requests, a commit, or the
    /// wait for SQLite's one writer.
    Db,
    /// Queued for a password-hashing thread.
    HashWait,
    /// Hashing or verifying a password.
    Hash,
    /// Signing an access token.
    Sign,
    /// Writing the events of a change to the outbox. Its statements are `Db` time
    /// already, so `Server-Timing` does not count it again.
    Outbox,
}

impl Phase {
    /// The name in `Server-Timing` and in the `authgate.phase` span attribute.
    pub fn name(self) -> &'static str {
        match self {
            Self::Db => "db",
            Self::HashWait => "hash-wait",
            Self::Hash => "hash",
            Self::Sign => "sign",
            Self::Outbox => "outbox",
        }
    }
}

/// Time spent per phase by one request, in nanoseconds.
#[derive(Debug, Default)]
pub struct Timings {
    db: AtomicU64,
    hash_wait: AtomicU64,
    hash: AtomicU64,
    sign: AtomicU64,
}

impl Timings {
    fn add(&self, phase: Phase, spent: Duration) {
        let counter = match phase {
            Phase::Db => &self.db,
            Phase::HashWait => &self.hash_wait,
            Phase::Hash => &self.hash,
            Phase::Sign => &self.sign,
            Phase::Outbox => return,
        };
        let nanos = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        counter.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The `Server-Timing` value: every phase (0 when the request had none of it) and
    /// `total`, in milliseconds.
    pub fn header_value(&self, total: Duration) -> String {
        let ms = |nanos: u64| nanos as f64 / 1e6;
        format!(
            "db;dur={:.3}, hash-wait;dur={:.3}, hash;dur={:.3}, sign;dur={:.3}, total;dur={:.3}",
            ms(self.db.load(Ordering::Relaxed)),
            ms(self.hash_wait.load(Ordering::Relaxed)),
            ms(self.hash.load(Ordering::Relaxed)),
            ms(self.sign.load(Ordering::Relaxed)),
            total.as_secs_f64() * 1e3,
        )
    }
}

/// Where the phases of the request a task is handling are reported.
#[derive(Clone, Default)]
pub struct RequestTelemetry {
    /// Summed for `Server-Timing`.
    pub timings: Option<Arc<Timings>>,
    /// The request's server span, parent of a span per phase.
    pub trace: Option<export::ServerSpan>,
}

tokio::task_local! {
    static REQUEST: RequestTelemetry;
}

/// Runs `request` with its phases reported to `telemetry`.
pub async fn observed<F: Future>(telemetry: RequestTelemetry, request: F) -> F::Output {
    REQUEST.scope(telemetry, request).await
}

/// Records that the current request spent `started..ended` in `phase`, doing `what`
/// (the span's name: an operation, never a value).
pub fn record(phase: Phase, what: &str, started: Instant, ended: Instant) {
    let _ = REQUEST.try_with(|request| {
        if let Some(timings) = &request.timings {
            timings.add(phase, ended - started);
        }
        if let Some(trace) = &request.trace {
            trace.child(phase, what, started, ended, &[]);
        }
    });
}

/// Records that the current request spent from `started` until now in `phase`.
pub fn record_since(phase: Phase, what: &str, started: Instant) {
    record(phase, what, started, Instant::now());
}

/// Times `work` as `phase`.
pub async fn timed<F: Future>(phase: Phase, what: &str, work: F) -> F::Output {
    let started = Instant::now();
    let output = work.await;
    record_since(phase, what, started);
    output
}

/// Records one database statement that has just run for `elapsed`, as sea-orm reports it.
/// A statement run by a batch's own task belongs to no request: the requests it served
/// each count their wait for the batch instead.
pub fn statement(backend: &'static str, sql: &str, elapsed: Duration, failed: bool) {
    let _ = REQUEST.try_with(|request| {
        if let Some(timings) = &request.timings {
            timings.add(Phase::Db, elapsed);
        }
        if let Some(trace) = &request.trace {
            let ended = Instant::now();
            let started = ended.checked_sub(elapsed).unwrap_or(ended);
            let (operation, table) = statement_summary(sql);
            let name = match table {
                Some(table) => format!("{operation} {table}"),
                None => operation.to_owned(),
            };
            let attributes = [
                ("db.system.name", backend),
                ("db.operation.name", operation),
                ("db.collection.name", table.unwrap_or("")),
                ("error.type", if failed { "db_error" } else { "" }),
            ];
            trace.child(Phase::Db, &name, started, ended, &attributes);
        }
    });
}

/// The operation and the table a statement works on, from its SQL text: no value of a
/// statement ever reaches a span (sea-orm binds them as parameters, and only these two
/// words are kept in any case).
fn statement_summary(sql: &str) -> (&'static str, Option<&str>) {
    let mut words = sql.split_whitespace();
    let first = words.next().unwrap_or("");
    let (operation, table_after) = match first.to_ascii_uppercase().as_str() {
        "SELECT" => ("SELECT", Some("FROM")),
        "INSERT" => ("INSERT", Some("INTO")),
        "UPDATE" => ("UPDATE", None),
        "DELETE" => ("DELETE", Some("FROM")),
        "WITH" => ("WITH", None),
        "BEGIN" => ("BEGIN", None),
        "COMMIT" => ("COMMIT", None),
        "ROLLBACK" => ("ROLLBACK", None),
        _ => ("statement", None),
    };
    let table = match (operation, table_after) {
        ("UPDATE", _) => words.next(),
        (_, Some(keyword)) => words
            .skip_while(|word| !word.eq_ignore_ascii_case(keyword))
            .nth(1),
        _ => None,
    };
    let table = table
        .map(|word| word.trim_matches(|c: char| c == '"' || c == '`' || c == '(' || c == ','))
        .filter(|word| {
            !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    (operation, table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_is_named_by_its_operation_and_table_only() {
        assert_eq!(
            statement_summary(r#"SELECT "users"."id" FROM "users" WHERE "email" = $1"#),
            ("SELECT", Some("users"))
        );
        assert_eq!(
            statement_summary(r#"INSERT INTO "sessions" ("id") VALUES (?)"#),
            ("INSERT", Some("sessions"))
        );
        assert_eq!(
            statement_summary(r#"UPDATE "refresh_tokens" SET "spent_at" = ?"#),
            ("UPDATE", Some("refresh_tokens"))
        );
        assert_eq!(
            statement_summary("DELETE FROM sessions WHERE id IN (SELECT id FROM x)"),
            ("DELETE", Some("sessions"))
        );
        assert_eq!(
            statement_summary("SELECT 'a@b.example' = ?"),
            ("SELECT", None)
        );
        assert_eq!(statement_summary("PRAGMA x"), ("statement", None));
    }

    #[tokio::test]
    async fn phases_of_a_request_are_summed_and_the_outbox_is_not_counted_twice() {
        let timings = Arc::new(Timings::default());
        let telemetry = RequestTelemetry {
            timings: Some(timings.clone()),
            trace: None,
        };
        observed(telemetry, async {
            let start = Instant::now();
            record(Phase::Db, "a", start, start + Duration::from_millis(2));
            record(Phase::Db, "b", start, start + Duration::from_millis(3));
            record(Phase::Hash, "h", start, start + Duration::from_millis(20));
            record(Phase::Outbox, "o", start, start + Duration::from_millis(7));
        })
        .await;
        // Outside a request: counted nowhere.
        let start = Instant::now();
        record(Phase::Sign, "s", start, start + Duration::from_millis(1));
        assert_eq!(
            timings.header_value(Duration::from_millis(30)),
            "db;dur=5.000, hash-wait;dur=0.000, hash;dur=20.000, sign;dur=0.000, total;dur=30.000"
        );
    }
}
