//! Roles and the scopes they grant. A role is a name an admin gives an account; the
//! configuration file maps roles to scopes; access tokens carry both, read afresh at
//! every login and refresh.

use std::collections::{BTreeMap, BTreeSet};

/// At most this many roles per account.
pub const MAX_ROLES: usize = 32;

/// Why a role or a set of roles is refused.
pub fn validate_role(role: &str) -> Result<(), String> {
    let mut chars = role.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, ':' | '.' | '_' | '-')
    });
    if first_ok && rest_ok && role.len() <= 64 {
        Ok(())
    } else {
        Err(format!(
            "{role:?} is not a role: 1 to 64 of a-z 0-9 : . _ - starting with a letter or digit"
        ))
    }
}

/// The roles of an account as stored: valid, sorted, without duplicates, at most 32.
pub fn normalize_roles<S: AsRef<str>>(roles: &[S]) -> Result<Vec<String>, String> {
    let mut set = BTreeSet::new();
    for role in roles {
        validate_role(role.as_ref())?;
        set.insert(role.as_ref().to_owned());
    }
    if set.len() > MAX_ROLES {
        return Err(format!("at most {MAX_ROLES} roles per account"));
    }
    Ok(set.into_iter().collect())
}

/// Whether `scope` is an RFC 6749 scope-token (printable ASCII but space, `"` and `\`).
pub fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

/// Roles new accounts get, and the scopes each role grants.
#[derive(Debug, Clone, Default)]
pub struct RolePolicy {
    pub default_roles: Vec<String>,
    pub scopes: BTreeMap<String, BTreeSet<String>>,
}

impl RolePolicy {
    /// The `scope` claim of a token with these roles: the sorted union of their scopes,
    /// space-separated; `None` when empty.
    pub fn scope_of(&self, roles: &[String]) -> Option<String> {
        let scopes: BTreeSet<&str> = roles
            .iter()
            .filter_map(|role| self.scopes.get(role))
            .flatten()
            .map(String::as_str)
            .collect();
        (!scopes.is_empty()).then(|| scopes.into_iter().collect::<Vec<_>>().join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_contract_pattern() {
        for good in ["admin", "0", "editor:eu", "a.b_c-d", &"x".repeat(64)] {
            assert!(validate_role(good).is_ok(), "{good}");
        }
        for bad in ["", "Admin", "-x", ":x", "a b", "é", &"x".repeat(65)] {
            assert!(validate_role(bad).is_err(), "{bad}");
        }
        assert_eq!(normalize_roles(&["b", "a", "b"]).unwrap(), ["a", "b"]);
        let many: Vec<String> = (0..33).map(|n| format!("r{n}")).collect();
        assert!(normalize_roles(&many).is_err());
    }

    #[test]
    fn the_scope_is_the_sorted_union_of_the_roles_scopes() {
        let mut policy = RolePolicy::default();
        policy.scopes.insert(
            "editor".into(),
            ["articles:write", "articles:read"].map(String::from).into(),
        );
        policy
            .scopes
            .insert("reader".into(), ["articles:read"].map(String::from).into());
        let roles = ["editor", "reader", "unmapped"].map(String::from);
        assert_eq!(
            policy.scope_of(&roles).as_deref(),
            Some("articles:read articles:write")
        );
        assert_eq!(policy.scope_of(&["unmapped".into()]), None);
        assert!(is_scope_token("reports:read") && !is_scope_token("a b") && !is_scope_token(""));
    }
}
