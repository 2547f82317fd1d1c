"""An off-the-shelf OAuth 2.0 client library, Authlib, against authgate: it reads the
discovery document, gets client-credentials tokens with both client authentication
methods, introspects one, and calls the downstream example with it.

    oauth_authlib.py AUTHGATE_BASE CLIENT_ID CLIENT_SECRET DOWNSTREAM_BASE
"""
import sys

import authlib
import requests
from authlib.integrations.requests_client import OAuth2Session

base, client_id, client_secret, downstream = sys.argv[1:5]
discovery = requests.get(f"{base}/.well-known/openid-configuration", timeout=10).json()
assert "client_credentials" in discovery["grant_types_supported"], discovery

tokens = {}
for method in ("client_secret_basic", "client_secret_post"):
    assert method in discovery["token_endpoint_auth_methods_supported"], discovery
    session = OAuth2Session(client_id, client_secret, token_endpoint_auth_method=method,
                            scope="reports:read")
    token = session.fetch_token(discovery["token_endpoint"], grant_type="client_credentials")
    assert token["token_type"] == "Bearer" and token["scope"] == "reports:read", token
    assert "refresh_token" not in token, token
    tokens[method] = session

session = tokens["client_secret_basic"]
access_token = session.token["access_token"]
found = session.introspect_token(discovery["introspection_endpoint"], token=access_token).json()
assert found["active"] is True and found["client_id"] == client_id, found

# The downstream example accepts it: /hello says who (no session), /reports by scope.
hello = session.get(f"{downstream}/hello", timeout=10)
assert hello.status_code == 200, (hello.status_code, hello.text)
assert hello.json() == {"sub": client_id, "sid": None}, hello.json()
reports = tokens["client_secret_post"].get(f"{downstream}/reports", timeout=10)
assert reports.status_code == 200, (reports.status_code, reports.text)
# /admin wants the role admin: a client's token is valid but holds no role.
admin = session.get(f"{downstream}/admin", timeout=10)
assert admin.status_code == 403, (admin.status_code, admin.text)
print(f"Authlib {authlib.__version__}")
