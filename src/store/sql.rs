//! Putting statements together: several as one execution, numbered parameters rewritten
//! so that each value still meets its placeholder.

use sea_orm::{DbBackend, Statement};

/// Two statements without results (inserts) as one: on SQLite one after the other, on
/// PostgreSQL the first in a `WITH` clause, its parameters renumbered after the second's.
pub(super) fn together(first: Statement, second: Statement) -> Statement {
    let values = |statement: &Statement| {
        statement
            .values
            .as_ref()
            .map(|values| values.0.clone())
            .unwrap_or_default()
    };
    let (first_values, second_values) = (values(&first), values(&second));
    let (sql, in_order) = match first.db_backend {
        DbBackend::Postgres => (
            format!(
                "WITH first AS ({}) {}",
                renumbered(&first.sql, second_values.len()),
                second.sql
            ),
            [second_values, first_values].concat(),
        ),
        _ => (
            format!("{};\n{}", first.sql, second.sql),
            [first_values, second_values].concat(),
        ),
    };
    Statement::from_sql_and_values(first.db_backend, sql, in_order)
}

/// `sql` with each PostgreSQL parameter `$N` made `$(N + by)`. Only for statements sea-query
/// built, which carry every value as a parameter, so no `$` stands in a literal.
fn renumbered(sql: &str, by: usize) -> String {
    each_parameter(sql, '$', |digits| match digits.parse::<usize>() {
        Ok(number) => (number + by).to_string(),
        Err(_) => digits.to_owned(),
    })
}

/// `sql` with every numbered parameter `?N` turned into a plain `?`, and the values in
/// the order the plain parameters take them. sqlx binds a multi-statement SQLite query
/// with one running count across statements, which skips numbered parameters that come
/// after a gap (a statement using `?3` but not `?2`); plain parameters have no gaps.
pub(super) fn positional(sql: &str, numbered: &[sea_orm::Value]) -> (String, Vec<sea_orm::Value>) {
    let mut values = Vec::new();
    let plain = each_parameter(sql, '?', |digits| {
        let number: usize = digits.parse().unwrap_or_default();
        values.extend(number.checked_sub(1).and_then(|i| numbered.get(i)).cloned());
        String::new()
    });
    (plain, values)
}

/// `sql` with the digits after each `marker` replaced by what `rewrite` makes of them
/// (an empty string for a plain marker).
fn each_parameter(sql: &str, marker: char, mut rewrite: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(at) = rest.find(marker) {
        out.push_str(&rest[..=at]);
        let digits = rest[at + 1..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        out.push_str(&rewrite(&rest[at + 1..at + 1 + digits]));
        rest = &rest[at + 1 + digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_run_together_keep_each_value_with_its_placeholder() {
        let statement = |backend, sql: &str, values: Vec<sea_orm::Value>| {
            Statement::from_sql_and_values(backend, sql, values)
        };
        let first = |backend, sql| statement(backend, sql, vec![1i64.into(), 2i64.into()]);
        let second = |backend, sql| statement(backend, sql, vec![3i64.into()]);

        let postgres = together(
            first(DbBackend::Postgres, "INSERT INTO a VALUES ($1, $2)"),
            second(DbBackend::Postgres, "INSERT INTO b VALUES ($1)"),
        );
        assert_eq!(
            postgres.sql,
            "WITH first AS (INSERT INTO a VALUES ($2, $3)) INSERT INTO b VALUES ($1)"
        );
        let values = |statement: &Statement| statement.values.clone().unwrap().0;
        assert_eq!(values(&postgres), [3i64.into(), 1i64.into(), 2i64.into()]);

        let sqlite = together(
            first(DbBackend::Sqlite, "INSERT INTO a VALUES (?, ?)"),
            second(DbBackend::Sqlite, "INSERT INTO b VALUES (?)"),
        );
        assert_eq!(
            sqlite.sql,
            "INSERT INTO a VALUES (?, ?);\nINSERT INTO b VALUES (?)"
        );
        assert_eq!(values(&sqlite), [1i64.into(), 2i64.into(), 3i64.into()]);
    }

    #[test]
    fn a_plain_marker_is_kept_and_takes_no_value() {
        assert_eq!(renumbered("VALUES ($1, $)", 2), "VALUES ($3, $)");
        let (sql, values) = positional("VALUES (?)", &[1i64.into()]);
        assert_eq!((sql.as_str(), values.len()), ("VALUES (?)", 0));
    }

    #[test]
    fn numbered_parameters_become_plain_ones_taking_values_in_order() {
        let numbered: Vec<sea_orm::Value> = (1..=12i64).map(Into::into).collect();
        let (sql, values) = positional("UPDATE t SET a = ?1 WHERE b = ?12 AND c = ?1;", &numbered);
        assert_eq!(sql, "UPDATE t SET a = ? WHERE b = ? AND c = ?;");
        assert_eq!(values, [1i64.into(), 12i64.into(), 1i64.into()]);
    }
}
