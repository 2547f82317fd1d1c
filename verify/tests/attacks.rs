//! The attack corpus against a verifier holding the issuer's real key.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed step should fail the test"
)]

mod support;

use authgate_verify::{Claims, JwkSet, Verifier, VerifyError};
use serde_json::json;
use support::corpus::{Issuer, forged_tokens};
use support::*;

fn verifier() -> Verifier {
    let verifier = Verifier::new(ISSUER, AUDIENCE);
    let jwks: JwkSet = serde_json::from_value(json!({"keys": [jwk("k1", ISSUER_X)]})).unwrap();
    verifier.set_keys(&jwks);
    verifier
}

fn issuer() -> Issuer<'static> {
    Issuer {
        kid: "k1",
        private_pem: ISSUER_PRIVATE_PEM,
        public_x: ISSUER_X,
    }
}

#[test]
fn a_valid_token_verifies_into_its_claims() {
    let claims = claims();
    let verified = verifier()
        .verify_cached(&issuer_token("k1", &claims))
        .unwrap();
    assert_eq!(serde_json::to_value(verified).unwrap(), claims);
}

#[test]
fn every_forged_or_broken_token_is_refused() {
    let verifier = verifier();
    let corpus = forged_tokens(&issuer(), &claims());
    assert!(corpus.len() >= 30);
    for (attack, token) in corpus {
        let result = verifier.verify_cached(&token);
        assert!(result.is_err(), "accepted: {attack}");
    }
}

#[test]
fn refusals_give_a_reason_to_log() {
    let verifier = verifier();
    let reasons: std::collections::HashMap<&str, VerifyError> = forged_tokens(&issuer(), &claims())
        .into_iter()
        .map(|(attack, token)| (attack, verifier.verify_cached(&token).unwrap_err()))
        .collect();
    let expect = [
        ("alg none, no signature", VerifyError::Malformed),
        (
            "HS256 keyed with the issuer's public key",
            VerifyError::AlgorithmNotAllowed,
        ),
        (
            "RS256 by an attacker key under the real kid",
            VerifyError::AlgorithmNotAllowed,
        ),
        (
            "EdDSA by an attacker key under the real kid",
            VerifyError::BadSignature,
        ),
        (
            "EdDSA by an attacker key under an unknown kid",
            VerifyError::UnknownKey,
        ),
        (
            "embedded jwk names the attacker key",
            VerifyError::UnknownKey,
        ),
        ("jku points to an attacker JWKS", VerifyError::BadSignature),
        ("typ JWT (not an access token)", VerifyError::WrongType),
        (
            "payload tampered, signature kept",
            VerifyError::BadSignature,
        ),
        ("expired an hour ago", VerifyError::Expired),
        ("not valid for another hour", VerifyError::NotYetValid),
        ("wrong issuer", VerifyError::WrongIssuer),
        ("wrong audience", VerifyError::WrongAudience),
        ("oversized token", VerifyError::TooLong),
    ];
    for (attack, reason) in expect {
        assert_eq!(reasons[attack], reason, "{attack}");
    }
}

#[test]
fn leeway_tolerates_small_clock_skew_only() {
    let mut skewed = claims();
    skewed["exp"] = json!(now() - 30);
    skewed["nbf"] = json!(now() + 30);
    let token = issuer_token("k1", &skewed);
    assert!(verifier().verify_cached(&token).is_ok());
    assert!(matches!(
        verifier().with_leeway(0).verify_cached(&token),
        Err(VerifyError::Expired | VerifyError::NotYetValid)
    ));
}

#[test]
fn an_audience_list_containing_ours_is_accepted() {
    let mut claims = claims();
    claims["aud"] = json!(["other", AUDIENCE]);
    assert!(
        verifier()
            .verify_cached(&issuer_token("k1", &claims))
            .is_ok()
    );
}

#[test]
fn custom_claims_are_read_next_to_the_standard_ones() {
    #[derive(serde::Deserialize)]
    struct Tenant {
        tenant: String,
        plans: Vec<String>,
    }
    let mut claims = claims();
    claims["tenant"] = json!("acme");
    claims["plans"] = json!(["pro"]);
    let verified: Claims<Tenant> = verifier()
        .verify_cached_as(&issuer_token("k1", &claims))
        .unwrap();
    assert_eq!(verified.custom.tenant, "acme");
    assert_eq!(verified.custom.plans, ["pro"]);
    assert_eq!(verified.access.roles, ["support"]);
    assert_eq!(
        verified.access.aud,
        authgate_verify::Audience::One(AUDIENCE.into())
    );
}

#[tokio::test]
async fn a_static_pem_verifies_any_kid_and_still_refuses_the_corpus() {
    let verifier = Verifier::builder(ISSUER, AUDIENCE)
        .pem(ISSUER_PUBLIC_PEM)
        .build()
        .await
        .unwrap();
    assert!(
        verifier
            .verify(&issuer_token("any", &claims()))
            .await
            .is_ok()
    );
    for (attack, token) in forged_tokens(&issuer(), &claims()) {
        assert!(verifier.verify(&token).await.is_err(), "accepted: {attack}");
    }
}

#[tokio::test]
async fn a_builder_without_a_key_source_or_algorithms_is_refused() {
    assert!(Verifier::builder(ISSUER, AUDIENCE).build().await.is_err());
    let no_algorithms = Verifier::builder(ISSUER, AUDIENCE)
        .algorithms(&[])
        .pem(ISSUER_PUBLIC_PEM)
        .build()
        .await;
    assert!(no_algorithms.is_err());
}
