"""An OpenID Connect relying party that is not Tessera's: authlib runs the authorization code
flow with PKCE (S256) while a requests session plays the browser on Tessera's login page; PyJWT
verifies the ID token against the JWKS named by the discovery document.

Arguments: BASE_URL CLIENT_ID CLIENT_SECRET REDIRECT_URI. Reads {"username", "password",
"totp_seed_b32", "alg" (ES256 unless given)} on stdin; prints a JSON object with what it saw: the discovery document, the
pages shown, the ID token's claims, the userinfo answer, and whether a second sign-in in the
same browser went through the SSO session without a page.
"""
import base64
import hashlib
import hmac
import json
import re
import struct
import sys
import time
from urllib.parse import parse_qs, urljoin, urlparse

import jwt
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session


def totp(seed_b32, at=None):
    """RFC 6238 with SHA-1, 6 digits, 30 s: written here, not Tessera's."""
    key = base64.b32decode(seed_b32)
    counter = int((at or time.time()) // 30)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{code:06d}"


def csrf_of(html):
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    return m.group(1) if m else None


def main():
    base, client_id, secret, redirect_uri = sys.argv[1:5]
    steps = json.load(sys.stdin)
    meta = requests.get(base + "/.well-known/openid-configuration", timeout=10).json()
    out = {"discovery": meta, "pages": []}
    browser = requests.Session()

    def sign_in():
        client = OAuth2Session(client_id, secret, scope="openid profile email",
                               redirect_uri=redirect_uri, code_challenge_method="S256")
        verifier = generate_token(48)
        nonce = generate_token(20)
        url, _state = client.create_authorization_url(
            meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
        r = browser.get(url, allow_redirects=False, timeout=10)
        pages = 0
        answers = [("username", steps["username"]), ("answer", steps["password"])]
        while r.status_code == 303 and not r.headers["Location"].startswith(redirect_uri):
            page = browser.get(urljoin(base, r.headers["Location"]), timeout=10)
            pages += 1
            out["pages"].append({"status": page.status_code, "headers": dict(page.headers),
                                 "html": page.text})
            form = {"csrf": csrf_of(page.text)}
            form.update(answers)
            r = browser.post(base + "/login", data=form, allow_redirects=False, timeout=10)
            while r.status_code == 200:
                # Another factor: the page asks for it (a few times at most).
                out["pages"].append({"status": r.status_code, "html": r.text})
                pages += 1
                if pages > 4:
                    return {"pages": pages, "stuck": True}
                r = browser.post(base + "/login", allow_redirects=False, timeout=10, data={
                    "csrf": csrf_of(r.text), "answer": totp(steps["totp_seed_b32"])})
        location = r.headers.get("Location", "")
        back = parse_qs(urlparse(location).query)
        token = client.fetch_token(meta["token_endpoint"], authorization_response=location,
                                   code_verifier=verifier)
        key = jwt.PyJWKClient(meta["jwks_uri"]).get_signing_key_from_jwt(token["id_token"])
        alg = steps.get("alg", "ES256")
        claims = jwt.decode(token["id_token"], key.key, algorithms=[alg], audience=client_id,
                            issuer=meta["issuer"])
        info = requests.get(meta["userinfo_endpoint"], timeout=10,
                            headers={"Authorization": "Bearer " + token["access_token"]}).json()
        return {"pages": pages, "iss": back.get("iss"), "claims": claims,
                "nonce_ok": claims.get("nonce") == nonce, "userinfo": info,
                "code": back.get("code", [""])[0]}

    if "logout_tokens" in steps:
        # Back-channel logout tokens a relying party received: verified as the RP would (the
        # JWKS, audience, issuer), with their headers.
        jwks = jwt.PyJWKClient(meta["jwks_uri"])
        seen = []
        for t in steps["logout_tokens"]:
            key = jwks.get_signing_key_from_jwt(t)
            claims = jwt.decode(t, key.key, algorithms=["ES256", "RS256"], audience=client_id,
                                issuer=meta["issuer"])
            seen.append({"header": jwt.get_unverified_header(t), "claims": claims})
        print(json.dumps([{"discovery": meta, "logout": seen}]))
        return
    out["first"] = sign_in()
    out["second"] = sign_in()
    print(json.dumps([out]))


if __name__ == "__main__":
    main()
