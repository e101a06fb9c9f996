"""An OAuth2 client that is not Tessera's: authlib obtains tokens, PyJWT verifies them.

Arguments: BASE_URL CLIENT_ID CLIENT_SECRET. Reads {"scope": "..."} (an agent) or
{"username": ..., "password": ...} (a user client) on stdin and prints a JSON list of what it saw:
for an agent the token responses and verified claims (against the server's JWKS, found through
its RFC 8414 metadata) with client_secret_basic and client_secret_post; for a user the claims of
the password-grant token and of the refreshed one, and the answer to reusing a refresh token.
"""
import json
import sys

import jwt
import requests
from authlib.integrations.requests_client import OAuth2Session


def main():
    base, client_id, secret = sys.argv[1], sys.argv[2], sys.argv[3]
    steps = json.load(sys.stdin)
    meta = requests.get(base + "/.well-known/oauth-authorization-server", timeout=10).json()
    out = [{"metadata": meta}]
    jwks = jwt.PyJWKClient(meta["jwks_uri"])

    def verify(token):
        key = jwks.get_signing_key_from_jwt(token)
        return jwt.decode(token, key.key, algorithms=["ES256"], audience="tessera",
                          issuer=meta["issuer"])

    if "username" in steps:
        # A user client: the password grant, then a refresh; the old refresh token is spent.
        session = OAuth2Session(client_id, secret)
        token = session.fetch_token(meta["token_endpoint"], username=steps["username"],
                                    password=steps["password"])
        first = verify(token["access_token"])
        old_refresh = token["refresh_token"]
        renewed = session.refresh_token(meta["token_endpoint"])
        second = verify(renewed["access_token"])
        reuse = requests.post(meta["token_endpoint"], auth=(client_id, secret), timeout=10,
                              data={"grant_type": "refresh_token", "refresh_token": old_refresh})
        out.append({"first": first, "second": second,
                    "renewed_refresh": renewed.get("refresh_token") != old_refresh,
                    "reuse_status": reuse.status_code, "reuse": reuse.json()})
        print(json.dumps(out))
        return
    for method in ("client_secret_basic", "client_secret_post"):
        session = OAuth2Session(client_id, secret, token_endpoint_auth_method=method,
                                scope=steps.get("scope"))
        token = session.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
        claims = verify(token["access_token"])
        header = jwt.get_unverified_header(token["access_token"])
        out.append({"method": method, "token": token, "claims": claims, "header": header})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
