//! A corpus of forged and broken access tokens (the attacks of RFC 8725 and the
//! OWASP JWT cheat sheet), shared by the verify crate's tests and authgate's own.
//! Test-only keys: generated for these tests, never used anywhere else.

#![allow(dead_code)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const ATTACKER_ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIHOr2sNRXZAvheUbvqpgHHHfkqjPcmoKSJkynR7LVi7P\n-----END PRIVATE KEY-----\n";
/// The public half of `ATTACKER_ED25519_PEM`, base64url.
pub const ATTACKER_ED25519_X: &str = "HN5oq5oUN1rsJ1KBqrSRv1wxhu4otuWih6DiLY7hrBI";
pub const ATTACKER_RSA_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCYAyJSIVNDkBiu\nXJQ0jMyXSqfuj4GS3CtLmmCmv+6bIeUxM172aD7CUuilX8aXSEch3+nj2aY/Fnvo\nyOsw+uKiQ5fk1hurIIC9drwuK78O2NeJ3pcu2sqzmzmRah/IrOqwA0OBwKlq1C2E\ndlo7GTgj0ZMLANx4C/QqPH/WLo+8YLtuX7EUIavzxdYBcdRKSW24XC1izy8ldZ9l\nblqmTaVOrCv7qPbIOeb8/x/gCuLiYM9E9RXkNNKP2D+gkFCWR6KG2Ac46367BuYe\nf2/CZ4H5jX+xj/ez+jRp6Nlu/11eC9rcFfsf1y5VGZL68EYjUcmSRiafBnsZNuKb\nfQ6KRedpAgMBAAECggEACkrwCHqcLi90FF5NZK+B7N6Pt139KooA3noiADhvug5V\n+/pb/Dg7w6GkggoVosmwk1Ebf6ONl6j4k98C2cqrDMyh3MtIjVJClVGUVVX99k3l\nbj7lorUK05V3lOqII2jd7TQTXpZCgmrCeD0hR+4huH8owy54PyKkEjYNe92kOt+B\nKGg/RLrzygeRvmjmzt7AevVZ16gp+DVfeAmSV+EQhCGuHJ0ZQwF6ZWzNh/QICCy8\n827D4dsrt5xOesHHOmW38o2cIDDVwoy0+AwqlNzpS7pGeeFJEBplPJQSBiONBBwZ\nqkE/Vrb2BdpiVsYhwiZwXDdZMFTDHTs7rTnIEt+YzwKBgQDKNmJSOktrfJT1eIT5\nbLLB/fLn2r+TjPDXyePO9+6CqIGplQi26E6Ciroqks1AFeu+J6MYtHFXe6reZv0n\nUaiIR7OuKA7MW5dTx1o+DGe15Z/V+ujFb8xBmPGi6otBzvVy6Vi0aJftIFR0qfNg\nZye5snO3rBBnpWZofd57f1G1vwKBgQDAcmCsiDFQiIj0RB8Px9X+jx/fVTxPc8AT\nL9TUHSu9Thc6EcBrQGvYWfhn6tFaNmsjC9tF/AqUY3iS3RUqsz7TnkUMQ1B71Vs8\nG5nsOLJWyShomeiIooi7seG/DtGsED/BB7b7jDjHmyWB8Cga/t8fNf/BJax3bgZ6\n9F+WnFK81wKBgQDFXw/Y8s1qvM8oSdqBGnfgod7WL82OV6M8/PI+sgE7xv3IaI94\n+IapJH9RzrhINR1FHas0EewPV8YQDrZKCopVeqcG9lJ7ZWrve0W6CqGwCdFZKu7I\nx7a20HIKcqQ6N6eb4eeTMAQaj9Pfi4LiNc2wk14fiPL6N5cdpr3iDQPUQQKBgE7Q\niPcf79JjmHMxUudLmEBgrVTxu3lulkNFW4xjRf6JdMm7a2qBP6mjbzBf4s1nbAk2\nWd8Xkd2jv0WmdXy/XAOe1fhnuRZ+EpdTVn5/2cnhKENuhOUwa38zIpj0oLovDW0o\nk7ABhV96EqpciJBFwWsu2kdn/nILBWxlmKA99USRAoGANuVY3L5QRlxZbUKgtUnz\nZaq8OQHJwCndGBqwTLCew0yTr/T7aswQsZzNJ28rPqE36t6uF7oNPCshavCtYVET\ngWTrxf/fjtdm9CE5buJmEX9PIy/ZQkctiS86iHLggqufvzJUUYIRFnEuvTrtA7cl\n70g7I2hhNRlAd8EQdzAHS/Y=\n-----END PRIVATE KEY-----\n";
pub const ATTACKER_P256_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgDMtCylu8B4aVByAH\nKWJZTlloL+M06GO6JVCDUYaHoYKhRANCAAT7/8LNGQi5coJ1qt7Ih8tJeW60DyPU\n4vDn15jl1Nz6BbGbbR1Z0Ik9ZAKsMkW3iHkwG/Gy2tdN+0Eh5/JV3Z5U\n-----END PRIVATE KEY-----\n";

/// The issuer's real signing material, as the attacker cannot have it (except `x`).
pub struct Issuer<'a> {
    pub kid: &'a str,
    pub private_pem: &'a str,
    /// The public key, base64url (the JWK `x`): public, so an attacker has it.
    pub public_x: &'a str,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn header(alg: Algorithm, typ: Option<&str>, kid: Option<&str>) -> Header {
    let mut header = Header::new(alg);
    header.typ = typ.map(str::to_owned);
    header.kid = kid.map(str::to_owned);
    header
}

fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).expect("test token")
}

/// Hand-assembled `header.payload.signature` with any header JSON.
fn raw(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        signature
    )
}

/// Every token is named by the attack it stands for; a verifier must refuse them all.
/// `claims` are otherwise valid claims for the verifier under test.
pub fn forged_tokens(issuer: &Issuer, claims: &Value) -> Vec<(&'static str, String)> {
    let real = EncodingKey::from_ed_pem(issuer.private_pem.as_bytes()).expect("issuer key");
    let attacker = EncodingKey::from_ed_pem(ATTACKER_ED25519_PEM.as_bytes()).expect("attacker key");
    let rsa = EncodingKey::from_rsa_pem(ATTACKER_RSA_PEM.as_bytes()).expect("rsa key");
    let p256 = EncodingKey::from_ec_pem(ATTACKER_P256_PEM.as_bytes()).expect("p256 key");
    let public_key = URL_SAFE_NO_PAD.decode(issuer.public_x).expect("x");
    let kid = Some(issuer.kid);
    let at = Some("at+jwt");
    let now = claims["iat"].as_i64().expect("iat");

    let valid = sign(&header(Algorithm::EdDSA, at, kid), claims, &real);
    let mut tampered_claims = claims.clone();
    tampered_claims["sub"] = json!("00000000-0000-4000-8000-000000000000");
    let (head, rest) = valid.split_once('.').expect("jwt");
    let signature = rest.rsplit_once('.').expect("jwt").1;
    let tampered = format!(
        "{head}.{}.{signature}",
        b64(tampered_claims.to_string().as_bytes())
    );

    let with_claim = |name: &str, value: Value| {
        let mut changed = claims.clone();
        changed[name] = value;
        sign(&header(Algorithm::EdDSA, at, kid), &changed, &real)
    };
    let without_claim = |name: &str| {
        let mut changed = claims.clone();
        changed.as_object_mut().expect("object").remove(name);
        sign(&header(Algorithm::EdDSA, at, kid), &changed, &real)
    };
    let attacker_jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": ATTACKER_ED25519_X});

    vec![
        (
            "alg none, no signature",
            raw(
                &json!({"alg": "none", "typ": "at+jwt", "kid": issuer.kid}),
                claims,
                "",
            ),
        ),
        (
            "alg None, no signature",
            raw(
                &json!({"alg": "None", "typ": "at+jwt", "kid": issuer.kid}),
                claims,
                "",
            ),
        ),
        (
            "HS256 keyed with the issuer's public key",
            sign(
                &header(Algorithm::HS256, at, kid),
                claims,
                &EncodingKey::from_secret(&public_key),
            ),
        ),
        (
            "HS256 keyed with the public key's base64 text",
            sign(
                &header(Algorithm::HS256, at, kid),
                claims,
                &EncodingKey::from_secret(issuer.public_x.as_bytes()),
            ),
        ),
        (
            "RS256 by an attacker key under the real kid",
            sign(&header(Algorithm::RS256, at, kid), claims, &rsa),
        ),
        (
            "ES256 by an attacker key under the real kid",
            sign(&header(Algorithm::ES256, at, kid), claims, &p256),
        ),
        (
            "EdDSA by an attacker key under the real kid",
            sign(&header(Algorithm::EdDSA, at, kid), claims, &attacker),
        ),
        (
            "EdDSA by an attacker key under an unknown kid",
            sign(
                &header(Algorithm::EdDSA, at, Some("attacker")),
                claims,
                &attacker,
            ),
        ),
        (
            "kid path traversal",
            sign(
                &header(Algorithm::EdDSA, at, Some("../../../../dev/null")),
                claims,
                &attacker,
            ),
        ),
        (
            "kid SQL injection",
            sign(
                &header(Algorithm::EdDSA, at, Some("' OR 1=1--")),
                claims,
                &attacker,
            ),
        ),
        (
            "10 KB kid",
            sign(
                &header(Algorithm::EdDSA, at, Some(&"k".repeat(10_000))),
                claims,
                &attacker,
            ),
        ),
        (
            "no kid, attacker key",
            sign(&header(Algorithm::EdDSA, at, None), claims, &attacker),
        ),
        ("embedded jwk names the attacker key", {
            let mut h = header(Algorithm::EdDSA, at, Some("attacker"));
            h.jwk = serde_json::from_value(attacker_jwk.clone()).ok();
            sign(&h, claims, &attacker)
        }),
        ("jku points to an attacker JWKS", {
            let mut h = header(Algorithm::EdDSA, at, kid);
            h.jku = Some("http://127.0.0.1:9/evil-jwks.json".to_owned());
            sign(&h, claims, &attacker)
        }),
        ("x5u points to an attacker certificate", {
            let mut h = header(Algorithm::EdDSA, at, kid);
            h.x5u = Some("http://127.0.0.1:9/evil.pem".to_owned());
            sign(&h, claims, &attacker)
        }),
        (
            "typ JWT (not an access token)",
            sign(&header(Algorithm::EdDSA, Some("JWT"), kid), claims, &real),
        ),
        (
            "no typ",
            sign(&header(Algorithm::EdDSA, None, kid), claims, &real),
        ),
        ("payload tampered, signature kept", tampered),
        (
            "signature stripped",
            format!("{head}.{}.", rest.rsplit_once('.').expect("jwt").0),
        ),
        ("expired an hour ago", with_claim("exp", json!(now - 3600))),
        (
            "not valid for another hour",
            with_claim("nbf", json!(now + 3600)),
        ),
        ("no exp", without_claim("exp")),
        ("no nbf", without_claim("nbf")),
        ("exp is a string", with_claim("exp", json!("never"))),
        (
            "wrong issuer",
            with_claim("iss", json!("https://evil.example")),
        ),
        (
            "wrong audience",
            with_claim("aud", json!("another-service")),
        ),
        (
            "audience list without ours",
            with_claim("aud", json!(["a", "b"])),
        ),
        ("oversized token", format!("{valid}{}", "A".repeat(20_000))),
        ("empty string", String::new()),
        ("two segments", "abc.def".to_owned()),
        ("four segments", format!("{valid}.extra")),
        ("not base64", "!!!.???.***".to_owned()),
        (
            "header is not JSON",
            format!("{}.{}.", b64(b"not json"), b64(b"{}")),
        ),
    ]
}
