//! Any string presented as a token: the verifier answers Ok or Err, never panics, and
//! never accepts what the issuer did not sign.
#![no_main]

use std::sync::LazyLock;

use authgate_verify::{JwkSet, Verifier};
use libfuzzer_sys::fuzz_target;

static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
    let verifier = Verifier::new("https://issuer.test", "api");
    let jwks: JwkSet = serde_json::from_value(serde_json::json!({"keys": [{
        "kty": "OKP", "crv": "Ed25519", "kid": "k1", "alg": "EdDSA", "use": "sig",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    }]}))
    .expect("static JWKS");
    verifier.set_keys(&jwks);
    verifier
});

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        // A forged token verifying would need an Ed25519 forgery: treat it as a finding.
        assert!(VERIFIER.verify_cached(token).is_err());
    }
});
