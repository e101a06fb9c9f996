"""An OAuth2 client that is not Tessera's: authlib obtains tokens, PyJWT verifies them.

Arguments: BASE_URL CLIENT_ID CLIENT_SECRET. Reads {"scope": "..."} (optional) on stdin and
prints a JSON list of what it saw: the token response, the verified claims (against the server's
JWKS, found through its RFC 8414 metadata), the same with client_secret_post.
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
    for method in ("client_secret_basic", "client_secret_post"):
        session = OAuth2Session(client_id, secret, token_endpoint_auth_method=method,
                                scope=steps.get("scope"))
        token = session.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
        jwks = jwt.PyJWKClient(meta["jwks_uri"])
        key = jwks.get_signing_key_from_jwt(token["access_token"])
        claims = jwt.decode(token["access_token"], key.key, algorithms=["ES256"],
                            audience="tessera", issuer=meta["issuer"])
        header = jwt.get_unverified_header(token["access_token"])
        out.append({"method": method, "token": token, "claims": claims, "header": header})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
