// Verify an authgate access token with `jose`, using only the public JWKS.
//
// Usage: JOSE_DIR=<dir containing node_modules/jose> node verify_jose.mjs BASE_URL ACCESS_TOKEN
// Prints the jose version on success; exits 1 with a one-line reason otherwise.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

// jose lives in a cache dir, not next to this script, and ESM ignores
// NODE_PATH: resolve it from that dir and import it by file URL.
const req = createRequire(`${process.env.JOSE_DIR ?? process.cwd()}/`);
const jose = await import(pathToFileURL(req.resolve("jose")).href);
const version = JSON.parse(readFileSync(req.resolve("jose/package.json"), "utf8")).version;

const fail = (reason) => {
  console.error(`jose ${version}: ${reason}`);
  process.exit(1);
};

const base = process.argv[2].replace(/\/+$/, "");
const token = process.argv[3];
const JWKS = jose.createRemoteJWKSet(new URL(`${base}/.well-known/jwks.json`));

// Algorithm allow-list and typ are explicit: never trust the token's own header.
const verify = (jwt, audience = "authgate") =>
  jose.jwtVerify(jwt, JWKS, {
    issuer: base,
    audience,
    algorithms: ["EdDSA"],
    typ: "at+jwt",
    requiredClaims: ["exp", "iat", "nbf", "sub", "sid", "jti"],
  });

// Re-encode the payload with a different `sub` but keep the signature, so that
// only the signature check can reject it (a flipped character may break the JSON).
const tamper = (jwt) => {
  const [h, p, s] = jwt.split(".");
  const claims = JSON.parse(Buffer.from(p, "base64url"));
  claims.sub = "00000000-0000-0000-0000-000000000000";
  return [h, Buffer.from(JSON.stringify(claims)).toString("base64url"), s].join(".");
};

// Expect `promise` to reject with jose error `code`; a verifier that accepts
// these would make the positive check meaningless.
const expectRejected = async (promise, code, what) => {
  try {
    await promise;
  } catch (e) {
    if (e.code === code) return;
    fail(`${what}: rejected with ${e.code ?? e}, want ${code}`);
  }
  fail(`accepted ${what}`);
};

try {
  await verify(token);
} catch (e) {
  fail(`rejected the access token: ${e.code ?? "error"}: ${e.message}`);
}
await expectRejected(verify(tamper(token)), "ERR_JWS_SIGNATURE_VERIFICATION_FAILED", "a token with a tampered payload");
await expectRejected(verify(token, "other"), "ERR_JWT_CLAIM_VALIDATION_FAILED", "the token for audience 'other'");

console.log(version);
