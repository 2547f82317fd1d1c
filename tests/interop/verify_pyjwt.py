"""Verify an authgate access token with PyJWT, using only the public JWKS.

Usage: verify_pyjwt.py BASE_URL ACCESS_TOKEN
Prints the PyJWT version on success; exits 1 with a one-line reason otherwise.
"""
import base64
import json
import sys

import jwt


def fail(reason):
    print(f"PyJWT {jwt.__version__}: {reason}", file=sys.stderr)
    sys.exit(1)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def tampered(token):
    # Re-encode the payload with a different `sub` but keep the original
    # signature: the result is well-formed, so only the signature check can
    # reject it (a random flipped character might just break the JSON).
    header, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "00000000-0000-0000-0000-000000000000"
    return ".".join([header, b64url(json.dumps(claims).encode()), sig])


def decode(token, key, base, audience="authgate"):
    # Algorithm allow-list is explicit: never trust the token's own `alg`.
    return jwt.decode(
        token,
        key,
        algorithms=["EdDSA"],
        audience=audience,
        issuer=base,
        options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub"]},
    )


def main():
    base, token = sys.argv[1].rstrip("/"), sys.argv[2]
    jwks = jwt.PyJWKClient(base + "/.well-known/jwks.json")
    try:
        key = jwks.get_signing_key_from_jwt(token).key
    except jwt.PyJWTError as e:
        fail(f"no JWKS key for the token's kid: {e}")

    typ = jwt.get_unverified_header(token).get("typ")
    if typ != "at+jwt":
        fail(f"header typ is {typ!r}, want 'at+jwt' (RFC 9068)")

    try:
        claims = decode(token, key, base)
    except jwt.PyJWTError as e:
        fail(f"rejected the access token: {type(e).__name__}: {e}")
    missing = [c for c in ("sid", "jti") if not claims.get(c)]
    if missing:
        fail(f"claims missing: {', '.join(missing)}")

    # A verifier that accepts these would prove nothing above.
    try:
        decode(tampered(token), key, base)
        fail("accepted a token with a tampered payload")
    except jwt.InvalidSignatureError:
        pass
    try:
        decode(token, key, base, audience="other")
        fail("accepted the token for audience 'other'")
    except jwt.InvalidAudienceError:
        pass

    print(jwt.__version__)


if __name__ == "__main__":
    main()
