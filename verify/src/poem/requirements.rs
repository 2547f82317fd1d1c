//! What an operation demands beyond a valid token: scopes (one, all of several, any of
//! several) and roles, as extractor types known at compile time, or checked in a handler
//! with names known only at run time.

use std::marker::PhantomData;
use std::ops::Deref;

use poem::{Request, RequestBody};
use poem_openapi::registry::Registry;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use serde::de::DeserializeOwned;

use super::{Rejection, SECURITY_SCHEME, authenticate, register_scheme};
use crate::{AccessClaims, Grants};

/// A scope an operation demands: `struct Write; impl Scope for Write { const NAME: &'static
/// str = "orders:write"; }`, then `WithScope<Write>`.
pub trait Scope {
    const NAME: &'static str;
}

/// A role an operation demands; see [`WithRole`].
pub trait Role {
    const NAME: &'static str;
}

/// What [`WithScope`] checks: a [`Scope`], or [`AllOf`] / [`AnyOf`] a tuple of them.
pub trait ScopeRequirement {
    /// Whether `claims` meet it.
    fn is_met_by(claims: &dyn Grants) -> bool;
    /// How a refusal names it: `a` for one scope, `a b` for all of several, `a|b` for any.
    fn describe() -> String;
}

impl<S: Scope> ScopeRequirement for S {
    fn is_met_by(claims: &dyn Grants) -> bool {
        claims.has_scope(S::NAME)
    }

    fn describe() -> String {
        S::NAME.to_owned()
    }
}

/// Every scope of the tuple: `WithScope<AllOf<(Read, Write)>>`.
pub struct AllOf<T>(PhantomData<T>);

/// At least one scope of the tuple: `WithScope<AnyOf<(Read, Admin)>>`.
pub struct AnyOf<T>(PhantomData<T>);

macro_rules! tuple_requirements {
    ($($scope:ident),+) => {
        impl<$($scope: Scope),+> ScopeRequirement for AllOf<($($scope,)+)> {
            fn is_met_by(claims: &dyn Grants) -> bool {
                true $(&& claims.has_scope($scope::NAME))+
            }

            fn describe() -> String {
                [$($scope::NAME),+].join(" ")
            }
        }

        impl<$($scope: Scope),+> ScopeRequirement for AnyOf<($($scope,)+)> {
            fn is_met_by(claims: &dyn Grants) -> bool {
                false $(|| claims.has_scope($scope::NAME))+
            }

            fn describe() -> String {
                [$($scope::NAME),+].join("|")
            }
        }
    };
}

tuple_requirements!(A);
tuple_requirements!(A, B);
tuple_requirements!(A, B, C);
tuple_requirements!(A, B, C, D);

/// Like [`super::JwtAuth`], and the token must meet the scope requirement `S` (403
/// `insufficient-scope` otherwise): a [`Scope`], [`AllOf`] or [`AnyOf`].
pub struct WithScope<S: ScopeRequirement, T = AccessClaims>(pub T, PhantomData<S>);

/// Like [`super::JwtAuth`], and the token's `roles` claim must hold `R::NAME` (403
/// `insufficient-role` otherwise).
pub struct WithRole<R: Role, T = AccessClaims>(pub T, PhantomData<R>);

macro_rules! requirement_extractor {
    ($extractor:ident, $bound:ident, $check:expr) => {
        impl<R: $bound, T> $extractor<R, T> {
            pub fn claims(&self) -> &T {
                &self.0
            }
        }

        impl<R: $bound, T> Deref for $extractor<R, T> {
            type Target = T;
            fn deref(&self) -> &T {
                &self.0
            }
        }

        impl<'a, R: $bound + Send, T: DeserializeOwned + Grants + Send> ApiExtractor<'a>
            for $extractor<R, T>
        {
            const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
            type ParamType = ();
            type ParamRawType = ();

            fn register(registry: &mut Registry) {
                register_scheme(registry);
            }

            fn security_schemes() -> Vec<&'static str> {
                vec![SECURITY_SCHEME]
            }

            async fn from_request(
                req: &'a Request,
                _body: &mut RequestBody,
                _param_opts: ExtractParamOptions<Self::ParamType>,
            ) -> poem::Result<Self> {
                let claims: T = authenticate(req).await?;
                let check: fn(&dyn Grants) -> Result<(), Rejection> = $check;
                check(&claims)?;
                Ok(Self(claims, PhantomData))
            }
        }
    };
}

requirement_extractor!(WithScope, ScopeRequirement, |claims| {
    if R::is_met_by(claims) {
        Ok(())
    } else {
        Err(Rejection::InsufficientScope(R::describe()))
    }
});

requirement_extractor!(WithRole, Role, |claims| claims.require_role(R::NAME));

/// For plain poem handlers and scopes known at run time: `claims.require_scope("write")?`.
pub trait RequireScope {
    fn require_scope(&self, scope: &str) -> Result<(), Rejection>;
    /// Every one of `scopes`.
    fn require_all_scopes(&self, scopes: &[&str]) -> Result<(), Rejection>;
    /// At least one of `scopes` (none given: refused).
    fn require_any_scope(&self, scopes: &[&str]) -> Result<(), Rejection>;
}

impl<T: Grants + ?Sized> RequireScope for T {
    fn require_scope(&self, scope: &str) -> Result<(), Rejection> {
        self.require_all_scopes(&[scope])
    }

    fn require_all_scopes(&self, scopes: &[&str]) -> Result<(), Rejection> {
        if scopes.iter().all(|scope| self.has_scope(scope)) {
            Ok(())
        } else {
            Err(Rejection::InsufficientScope(scopes.join(" ")))
        }
    }

    fn require_any_scope(&self, scopes: &[&str]) -> Result<(), Rejection> {
        if scopes.iter().any(|scope| self.has_scope(scope)) {
            Ok(())
        } else {
            Err(Rejection::InsufficientScope(scopes.join("|")))
        }
    }
}

/// For plain poem handlers: `claims.require_role("admin")?`.
pub trait RequireRole {
    fn require_role(&self, role: &str) -> Result<(), Rejection>;
}

impl<T: Grants + ?Sized> RequireRole for T {
    fn require_role(&self, role: &str) -> Result<(), Rejection> {
        if self.has_role(role) {
            Ok(())
        } else {
            Err(Rejection::InsufficientRole(role.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Read;
    impl Scope for Read {
        const NAME: &'static str = "orders:read";
    }
    struct Write;
    impl Scope for Write {
        const NAME: &'static str = "orders:write";
    }

    fn with_scope(scope: Option<&str>) -> AccessClaims {
        AccessClaims {
            iss: "i".into(),
            sub: uuid::Uuid::nil(),
            aud: crate::Audience::One("a".into()),
            exp: 0,
            iat: 0,
            nbf: 0,
            jti: uuid::Uuid::nil(),
            sid: uuid::Uuid::nil(),
            email_verified: false,
            roles: Vec::new(),
            scope: scope.map(str::to_owned),
        }
    }

    #[test]
    fn all_of_needs_every_scope_and_any_of_one() {
        let read = with_scope(Some("orders:read"));
        let both = with_scope(Some("orders:read orders:write"));
        let none = with_scope(None);
        assert!(AllOf::<(Read, Write)>::is_met_by(&both));
        assert!(!AllOf::<(Read, Write)>::is_met_by(&read));
        assert!(AnyOf::<(Read, Write)>::is_met_by(&read));
        assert!(!AnyOf::<(Read, Write)>::is_met_by(&none));
        assert_eq!(
            AllOf::<(Read, Write)>::describe(),
            "orders:read orders:write"
        );
        assert_eq!(
            AnyOf::<(Read, Write)>::describe(),
            "orders:read|orders:write"
        );
    }

    #[test]
    fn scopes_known_at_run_time_are_checked_the_same_way() {
        let read = with_scope(Some("orders:read"));
        let wanted = String::from("orders:read");
        assert!(read.require_scope(&wanted).is_ok());
        assert!(
            read.require_all_scopes(&["orders:read", "orders:write"])
                .is_err()
        );
        assert!(
            read.require_any_scope(&["orders:write", "orders:read"])
                .is_ok()
        );
        assert!(read.require_any_scope(&[]).is_err());
        assert_eq!(
            read.require_scope("orders:write"),
            Err(Rejection::InsufficientScope("orders:write".into()))
        );
    }
}
