//! A token verified once is remembered (the verified-token cache): what can change after
//! its first verification must still be checked on every later use.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed step should fail the test"
)]

mod support;

use std::time::Duration;

use authgate_verify::{AccessClaims, Claims, JwkSet, Verifier, VerifyError};
use serde_json::json;
use support::corpus::{Issuer, forged_tokens};
use support::*;

fn keys(kids: &[&str]) -> JwkSet {
    let keys: Vec<_> = kids.iter().map(|kid| jwk(kid, ISSUER_X)).collect();
    serde_json::from_value(json!({ "keys": keys })).unwrap()
}

fn verifier() -> Verifier {
    let verifier = Verifier::new(ISSUER, AUDIENCE);
    verifier.set_keys(&keys(&["k1"]));
    verifier
}

#[test]
fn a_remembered_token_expires_on_time() {
    let mut claims = claims();
    // Valid for a second or two: long enough to be verified twice, with no leeway.
    let exp = now() + 1;
    claims["exp"] = json!(exp);
    let token = issuer_token("k1", &claims);
    let verifier = verifier().with_leeway(0);
    verifier.verify_cached(&token).unwrap();
    verifier.verify_cached(&token).unwrap();
    while now() <= exp {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        verifier.verify_cached(&token).unwrap_err(),
        VerifyError::Expired
    );
}

#[test]
fn a_remembered_token_is_refused_once_its_key_is_withdrawn_and_accepted_when_it_returns() {
    let verifier = verifier();
    let token = issuer_token("k1", &claims());
    verifier.verify_cached(&token).unwrap();
    verifier.set_keys(&keys(&["k2"]));
    assert_eq!(
        verifier.verify_cached(&token).unwrap_err(),
        VerifyError::UnknownKey
    );
    verifier.set_keys(&keys(&["k2", "k1"]));
    verifier.verify_cached(&token).unwrap();
}

#[test]
fn a_remembered_token_reads_into_any_claims_type_as_the_first_time() {
    #[derive(serde::Deserialize)]
    struct Tenant {
        tenant: String,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code, reason = "only its failure to deserialize is checked")]
    struct NeedsPlan {
        plan: String,
    }
    let mut claims = claims();
    claims["tenant"] = json!("acme");
    let token = issuer_token("k1", &claims);
    let verifier = verifier();
    for _ in 0..2 {
        let access: AccessClaims = verifier.verify_cached(&token).unwrap();
        assert_eq!(access.sid.to_string(), claims["sid"].as_str().unwrap());
        let custom: Claims<Tenant> = verifier.verify_cached_as(&token).unwrap();
        assert_eq!(custom.custom.tenant, "acme");
        assert!(matches!(
            verifier.verify_cached_as::<Claims<NeedsPlan>>(&token),
            Err(VerifyError::BadClaims(_))
        ));
    }
}

#[test]
fn forgeries_of_a_remembered_token_are_still_refused() {
    let verifier = verifier();
    let claims = claims();
    verifier
        .verify_cached(&issuer_token("k1", &claims))
        .unwrap();
    let issuer = Issuer {
        kid: "k1",
        private_pem: ISSUER_PRIVATE_PEM,
        public_x: ISSUER_X,
    };
    for (attack, token) in forged_tokens(&issuer, &claims) {
        assert!(
            verifier.verify_cached(&token).is_err(),
            "accepted: {attack}"
        );
    }
}

#[test]
fn without_the_cache_a_token_verifies_the_same() {
    let verifier = verifier().with_verified_cache(0);
    let token = issuer_token("k1", &claims());
    verifier.verify_cached(&token).unwrap();
    verifier.verify_cached(&token).unwrap();
    verifier.set_keys(&keys(&["k2"]));
    assert_eq!(
        verifier.verify_cached(&token).unwrap_err(),
        VerifyError::UnknownKey
    );
}
