"""An OAuth2 client that is not Tessera's: authlib obtains tokens, PyJWT verifies them.

Arguments: BASE_URL CLIENT_ID CLIENT_SECRET. Reads {"scope": "..."} (an agent) or
{"username": ..., "password": ...} (a user client) on stdin and prints a JSON list of what it saw:
for an agent the token responses and verified claims (against the server's JWKS, found through
its RFC 8414 metadata) with client_secret_basic and client_secret_post; for a user the claims of
the password-grant token and of the refreshed one, and the answer to reusing a refresh token.
With {"seal": BODY, "public_key": B64} it seals BODY for the server with pyhpke (an HPKE
implementation that is not Tessera's: X25519, HKDF-SHA256, AES-256-GCM, base mode) and posts it
to the token endpoint, printing the status and answer.
"""
import json
import sys

import base64
import os
import time

import jwt
import requests
from pyhpke import AEADId, CipherSuite, KDFId, KEMId
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

    if "seal" in steps:
        suite = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256,
                                AEADId.AES256_GCM)
        pk = suite.kem.deserialize_public_key(base64.b64decode(steps["public_key"]))
        enc, sender = suite.create_sender_context(pk, info=b"tessera payload v1")
        plain = json.dumps({"ts": int(time.time()), "nonce": os.urandom(12).hex(),
                            "body": steps["seal"]})
        ct = sender.seal(plain.encode(), aad=b"")
        sealed = {"enc": base64.b64encode(enc).decode(), "ct": base64.b64encode(ct).decode()}
        r = requests.post(meta["token_endpoint"], auth=(client_id, secret), json=sealed,
                          timeout=10)
        out.append({"status": r.status_code, "answer": r.json()})
        print(json.dumps(out))
        return
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
