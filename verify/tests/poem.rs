//! The poem and poem-openapi extractors: status codes, problem bodies and RFC 6750
//! challenges, typed and custom claims, scopes, and the security scheme in the spec.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed step should fail the test"
)]

mod support;

use std::sync::Arc;

use authgate_verify::poem::{
    AllOf, AnyOf, AuthFailures, Jwt, JwtAuth, RequireRole, RequireScope, Role, Scope, WithRole,
    WithScope,
};
use authgate_verify::{AccessClaims, Caller, Claims, ClientClaims, JwkSet, Verifier};
use poem::test::TestClient;
use poem::{EndpointExt, Route, get, handler};
use poem_openapi::payload::PlainText;
use poem_openapi::{OpenApi, OpenApiService};
use serde_json::{Value, json};
use support::*;

struct Admin;
impl Scope for Admin {
    const NAME: &'static str = "admin";
}

struct Read;
impl Scope for Read {
    const NAME: &'static str = "read";
}

struct Write;
impl Scope for Write {
    const NAME: &'static str = "write";
}

struct Support;
impl Role for Support {
    const NAME: &'static str = "support";
}

struct Auditor;
impl Role for Auditor {
    const NAME: &'static str = "auditor";
}

#[derive(serde::Deserialize)]
struct Tenant {
    tenant: String,
}

struct Api;

#[OpenApi]
impl Api {
    #[oai(path = "/whoami", method = "get")]
    async fn whoami(&self, auth: JwtAuth) -> Result<PlainText<String>, AuthFailures> {
        Ok(PlainText(auth.0.sub.to_string()))
    }

    #[oai(path = "/tenant", method = "get")]
    async fn tenant(&self, auth: JwtAuth<Claims<Tenant>>) -> PlainText<String> {
        PlainText(auth.0.custom.tenant)
    }

    #[oai(path = "/admin", method = "get")]
    async fn admin(
        &self,
        auth: WithScope<Admin>,
    ) -> Result<PlainText<String>, AuthFailures<WithScope<Admin>>> {
        Ok(PlainText(auth.claims().sub.to_string()))
    }

    #[oai(path = "/support", method = "get")]
    async fn support(
        &self,
        auth: WithRole<Support>,
    ) -> Result<PlainText<String>, AuthFailures<WithRole<Support>>> {
        Ok(PlainText(auth.claims().roles.join(",")))
    }

    #[oai(path = "/anyone", method = "get")]
    async fn anyone(&self, auth: JwtAuth<Caller>) -> PlainText<String> {
        PlainText(match auth.claims() {
            Caller::User(claims) => format!("user {}", claims.sid),
            Caller::Client(claims) => format!("client {}", claims.client_id),
        })
    }

    #[oai(path = "/services", method = "get")]
    async fn services(&self, auth: JwtAuth<ClientClaims>) -> PlainText<String> {
        PlainText(auth.client_id.clone())
    }

    #[oai(path = "/admin-any", method = "get")]
    async fn admin_any(&self, auth: WithScope<Admin, Caller>) -> PlainText<String> {
        PlainText(auth.subject())
    }

    #[oai(path = "/read-and-write", method = "get")]
    async fn read_and_write(&self, _auth: WithScope<AllOf<(Read, Write)>>) -> PlainText<String> {
        PlainText("both".into())
    }

    #[oai(path = "/write-or-admin", method = "get")]
    async fn write_or_admin(&self, _auth: WithScope<AnyOf<(Write, Admin)>>) -> PlainText<String> {
        PlainText("either".into())
    }

    #[oai(path = "/audit", method = "get")]
    async fn audit(&self, _auth: WithRole<Auditor>) -> PlainText<String> {
        PlainText("audited".into())
    }
}

#[handler]
fn plain_role(Jwt(claims): Jwt<AccessClaims>) -> poem::Result<String> {
    claims.require_role("auditor")?;
    Ok(claims.sid.to_string())
}

#[handler]
fn plain(Jwt(claims): Jwt<AccessClaims>) -> poem::Result<String> {
    claims.require_scope("write")?;
    Ok(claims.sid.to_string())
}

/// Scopes named at run time, e.g. from the path: `tenant:<name>:read` and `…:write`.
#[handler]
fn plain_tenant(
    Jwt(claims): Jwt<AccessClaims>,
    poem::web::Path(tenant): poem::web::Path<String>,
) -> poem::Result<String> {
    let read = format!("tenant:{tenant}:read");
    let write = format!("tenant:{tenant}:write");
    claims.require_any_scope(&[&read, &write])?;
    claims.require_all_scopes(&[&read])?;
    Ok(tenant)
}

fn app() -> impl poem::Endpoint {
    let verifier = Verifier::new(ISSUER, AUDIENCE);
    let jwks: JwkSet = serde_json::from_value(json!({"keys": [jwk("k1", ISSUER_X)]})).unwrap();
    verifier.set_keys(&jwks);
    Route::new()
        .nest("/", OpenApiService::new(Api, "test", "1"))
        .at("/plain", get(plain))
        .at("/plain-role", get(plain_role))
        .at("/tenants/:tenant", get(plain_tenant))
        .data(Arc::new(verifier))
}

fn token_with(extra: Value) -> String {
    let mut claims = claims();
    for (key, value) in extra.as_object().unwrap() {
        claims[key] = value.clone();
    }
    issuer_token("k1", &claims)
}

async fn problem(response: poem::test::TestResponse, status: u16) -> (Value, String) {
    response.assert_status(poem::http::StatusCode::from_u16(status).unwrap());
    response.assert_header("content-type", "application/problem+json");
    let challenge = response
        .0
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: Value =
        serde_json::from_str(&response.0.into_body().into_string().await.unwrap()).unwrap();
    assert_eq!(body["status"], status);
    (body, challenge)
}

#[tokio::test]
async fn a_missing_token_gets_401_with_a_bare_bearer_challenge() {
    let client = TestClient::new(app());
    for path in ["/whoami", "/admin", "/plain"] {
        let (body, challenge) = problem(client.get(path).send().await, 401).await;
        assert_eq!(challenge, "Bearer", "{path}");
        assert_eq!(body["type"], "urn:authgate:problem:missing-token");
    }
    let basic = client
        .get("/whoami")
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await;
    assert_eq!(problem(basic, 401).await.1, "Bearer");
}

#[tokio::test]
async fn an_invalid_token_gets_401_invalid_token() {
    let client = TestClient::new(app());
    let mut expired = claims();
    expired["exp"] = json!(now() - 3600);
    for token in [
        "nonsense".to_owned(),
        issuer_token("k1", &expired),
        issuer_token("k9", &claims()),
    ] {
        for path in ["/whoami", "/plain"] {
            let response = client
                .get(path)
                .header("authorization", format!("Bearer {token}"))
                .send()
                .await;
            let (body, challenge) = problem(response, 401).await;
            assert!(
                challenge.starts_with(r#"Bearer error="invalid_token", error_description=""#),
                "{challenge}"
            );
            assert_eq!(body["type"], "urn:authgate:problem:invalid-token");
        }
    }
}

#[tokio::test]
async fn a_valid_token_hands_the_handler_typed_claims() {
    let client = TestClient::new(app());
    let claims = claims();
    let token = issuer_token("k1", &claims);

    let response = client
        .get("/whoami")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await;

    response.assert_status_is_ok();
    response.assert_text(claims["sub"].as_str().unwrap()).await;
    let tenant = client
        .get("/tenant")
        .header(
            "authorization",
            format!("bearer {}", token_with(json!({"tenant": "acme"}))),
        )
        .send()
        .await;
    tenant.assert_text("acme").await;
}

#[tokio::test]
async fn a_missing_scope_gets_403_insufficient_scope() {
    let client = TestClient::new(app());
    let reader = token_with(json!({"scope": "read"}));
    for path in ["/admin", "/plain"] {
        let response = client
            .get(path)
            .header("authorization", format!("Bearer {reader}"))
            .send()
            .await;
        let (body, challenge) = problem(response, 403).await;
        assert!(
            challenge.starts_with(r#"Bearer error="insufficient_scope""#),
            "{challenge}"
        );
        assert_eq!(body["type"], "urn:authgate:problem:insufficient-scope");
    }
    let admin = token_with(json!({"scope": "read admin write"}));
    for path in ["/admin", "/plain"] {
        let response = client
            .get(path)
            .header("authorization", format!("Bearer {admin}"))
            .send()
            .await;
        response.assert_status_is_ok();
    }
}

#[tokio::test]
async fn all_of_any_of_and_run_time_scopes_admit_exactly_the_tokens_that_meet_them() {
    let client = TestClient::new(app());
    let cases: [(&str, &str, u16); 12] = [
        ("/read-and-write", "read write", 200),
        ("/read-and-write", "write read other", 200),
        ("/read-and-write", "read", 403),
        ("/read-and-write", "", 403),
        ("/write-or-admin", "write", 200),
        ("/write-or-admin", "admin", 200),
        ("/write-or-admin", "read", 403),
        ("/write-or-admin", "writer", 403),
        ("/tenants/acme", "tenant:acme:read", 200),
        ("/tenants/acme", "tenant:acme:write", 403),
        ("/tenants/acme", "tenant:other:read", 403),
        ("/tenants/other", "tenant:other:read", 200),
    ];
    for (path, scope, status) in cases {
        let response = client
            .get(path)
            .header(
                "authorization",
                format!("Bearer {}", token_with(json!({"scope": scope}))),
            )
            .send()
            .await;
        if status == 200 {
            response.assert_status_is_ok();
            continue;
        }
        let (body, challenge) = problem(response, status).await;
        assert!(
            challenge.starts_with(r#"Bearer error="insufficient_scope""#),
            "{path} with {scope:?}: {challenge}"
        );
        assert_eq!(body["type"], "urn:authgate:problem:insufficient-scope");
    }
}

#[tokio::test]
async fn the_spec_declares_the_bearer_security_scheme_on_protected_operations() {
    let spec: Value = serde_json::from_str(&OpenApiService::new(Api, "test", "1").spec()).unwrap();
    assert_eq!(
        spec["components"]["securitySchemes"]["AuthgateBearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        spec["paths"]["/whoami"]["get"]["security"][0]["AuthgateBearer"],
        json!([])
    );
}

#[tokio::test]
async fn the_spec_lists_the_refusals_and_names_the_scope_or_role_an_operation_demands() {
    let spec: Value = serde_json::from_str(&OpenApiService::new(Api, "test", "1").spec()).unwrap();
    let responses = |path: &str| spec["paths"][path]["get"]["responses"].clone();
    let any_token = responses("/whoami");
    assert!(
        any_token["401"]["headers"]["WWW-AUTHENTICATE"].is_object(),
        "{any_token}"
    );
    assert!(
        any_token["503"]["headers"]["RETRY-AFTER"].is_object(),
        "{any_token}"
    );
    assert!(
        any_token["403"].is_null(),
        "any valid token: no 403 ({any_token})"
    );
    let scope = responses("/admin")["403"]["description"].clone();
    assert!(scope.as_str().unwrap().contains("scope `admin`"), "{scope}");
    let role = responses("/support")["403"]["description"].clone();
    assert!(role.as_str().unwrap().contains("role `support`"), "{role}");
    // Generated again, the same text (made once, not once per generation).
    let again: Value = serde_json::from_str(&OpenApiService::new(Api, "test", "1").spec()).unwrap();
    assert_eq!(
        again["paths"]["/admin"]["get"]["responses"]["403"]["description"],
        scope
    );
}

#[tokio::test]
async fn a_verifier_missing_from_the_app_is_a_500_not_a_panic() {
    let client = TestClient::new(Route::new().at("/plain", get(plain)));
    let response = client
        .get("/plain")
        .header("authorization", "Bearer x")
        .send()
        .await;
    response.assert_status(poem::http::StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn a_role_requirement_admits_tokens_with_the_role_and_refuses_others_with_403() {
    let client = TestClient::new(app());
    // support/mod.rs's tokens carry the role `support`.
    let token = token_with(json!({}));
    let response = client
        .get("/support")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await;
    response.assert_status_is_ok();
    response.assert_text("support").await;
    for path in ["/audit", "/plain-role"] {
        let response = client
            .get(path)
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await;
        let (body, challenge) = problem(response, 403).await;
        assert_eq!(
            body["type"], "urn:authgate:problem:insufficient-role",
            "{path}"
        );
        assert!(
            challenge.contains(r#"error="insufficient_scope""#),
            "{challenge}"
        );
    }
    let without_roles = token_with(json!({"roles": []}));
    let response = client
        .get("/support")
        .header("authorization", format!("Bearer {without_roles}"))
        .send()
        .await;
    problem(response, 403).await;
}

/// A client-credentials token as authgate makes them: `sub` = `client_id`, no `sid`.
fn client_token(scope: Option<&str>) -> String {
    let now = now();
    let mut claims = json!({
        "iss": ISSUER, "sub": "cl_robot", "client_id": "cl_robot", "aud": AUDIENCE,
        "exp": now + 300, "iat": now, "nbf": now, "jti": uuid::Uuid::new_v4(),
    });
    if let Some(scope) = scope {
        claims["scope"] = scope.into();
    }
    issuer_token("k1", &claims)
}

#[tokio::test]
async fn routes_take_user_tokens_client_tokens_or_either() {
    let client = TestClient::new(app());
    let get = |path: &'static str, token: String| {
        let client = &client;
        async move {
            client
                .get(path)
                .header("authorization", format!("Bearer {token}"))
                .send()
                .await
        }
    };
    let user = token_with(json!({"scope": "admin"}));
    let robot = client_token(Some("admin"));

    get("/anyone", user.clone()).await.assert_status_is_ok();
    let answer = get("/anyone", robot.clone()).await;
    answer.assert_status_is_ok();
    answer.assert_text("client cl_robot").await;
    let answer = get("/services", robot.clone()).await;
    answer.assert_text("cl_robot").await;
    problem(get("/services", user.clone()).await, 401).await;
    problem(get("/whoami", robot.clone()).await, 401).await;
    // Scope requirements hold for either kind.
    get("/admin-any", robot.clone())
        .await
        .assert_text("cl_robot")
        .await;
    get("/admin-any", user).await.assert_status_is_ok();
    let (body, _) = problem(get("/admin-any", client_token(None)).await, 403).await;
    assert_eq!(body["type"], "urn:authgate:problem:insufficient-scope");
}
