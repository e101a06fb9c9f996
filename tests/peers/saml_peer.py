"""A SAML 2.0 service provider that is not Tessera's: pysaml2 (which checks signatures with the
xmlsec1 program) makes the authentication requests and reads the responses, while a requests
session plays the browser on Tessera's login page.

Arguments: BASE_URL SP_ENTITY_ID ACS_URL SP_KEY SP_CERT WORKDIR. Reads a JSON object on stdin:
  {"cmd": "metadata"}: prints [{"metadata": the SP's metadata}]
  {"cmd": "sso", "username", "password", "totp_seed_b32", "runs": [{"binding": "redirect"|"post",
   "sign": bool, "acs": optional ACS URL to ask for, "entity": optional other entity ID}]}:
   prints [{"runs": [what each run saw]}]: the pages shown, the HTTP status, the response XML,
   the relay state, and what pysaml2 made of it (NameID, attributes) or the error it raised.
"""
import base64
import hashlib
import hmac
import html
import json
import re
import struct
import sys
import time
from urllib.parse import urljoin

import requests
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256


def totp(seed_b32, at=None):
    """RFC 6238 with SHA-1, 6 digits, 30 s: written here, not Tessera's."""
    key = base64.b32decode(seed_b32)
    counter = int((at or time.time()) // 30)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{code:06d}"


def inputs(page):
    """The hidden inputs of an HTML form, unescaped."""
    return {m.group(1): html.unescape(m.group(2))
            for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)}


def form_action(page):
    m = re.search(r'<form[^>]*action="([^"]+)"', page)
    return html.unescape(m.group(1)) if m else None


def config(base, entity, acs, key, cert, workdir, idp_meta):
    conf = SPConfig()
    conf.load({
        "entityid": entity,
        "key_file": key,
        "cert_file": cert,
        "xmlsec_binary": "/usr/bin/xmlsec1",
        "metadata": {"local": [idp_meta]} if idp_meta else {},
        "allow_unknown_attributes": True,
        "accepted_time_diff": 120,
        "service": {"sp": {
            "endpoints": {
                "assertion_consumer_service": [(acs, BINDING_HTTP_POST)],
                "single_logout_service": [(base + "/sp-slo", BINDING_HTTP_REDIRECT)],
            },
            "authn_requests_signed": True,
            "want_response_signed": True,
            "want_assertions_signed": True,
            "allow_unsolicited": True,
            "name_id_format": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
        }},
    })
    return conf


def main():
    base, entity, acs, key, cert, workdir = sys.argv[1:7]
    steps = json.load(sys.stdin)
    if steps["cmd"] == "metadata":
        conf = config(base, entity, acs, key, cert, workdir, None)
        print(json.dumps([{"metadata": create_metadata_string(None, config=conf).decode()}]))
        return
    idp_meta = workdir + "/idp-metadata.xml"
    r = requests.get(base + "/saml/metadata", timeout=10)
    r.raise_for_status()
    with open(idp_meta, "w") as f:
        f.write(r.text)
    idp_entity = base + "/saml/metadata"
    browser = requests.Session()
    out = []
    for run in steps["runs"]:
        conf = config(base, run.get("entity", entity), acs, key, cert, workdir, idp_meta)
        client = Saml2Client(config=conf)
        binding = BINDING_HTTP_REDIRECT if run["binding"] == "redirect" else BINDING_HTTP_POST
        extra = {}
        if run.get("acs"):
            extra["assertion_consumer_service_urls"] = [run["acs"]]
        reqid, info = client.prepare_for_authenticate(
            entityid=idp_entity, relay_state="relay-" + run["binding"], binding=binding,
            sign=run["sign"], sigalg=SIG_RSA_SHA256 if run["sign"] else None,
            digest_alg=DIGEST_SHA256, **extra)
        if binding == BINDING_HTTP_REDIRECT:
            location = dict(info["headers"])["Location"]
            r = browser.get(location, allow_redirects=False, timeout=10)
        else:
            page = info["data"]
            r = browser.post(form_action(page), data=inputs(page), allow_redirects=False,
                             timeout=10)
        seen = {"pages": 0, "request_status": r.status_code}
        answers = [{"username": steps["username"], "answer": steps["password"]}]
        while r.status_code == 303:
            r = browser.get(urljoin(base, r.headers["Location"]), timeout=10)
            seen["pages"] += 1
            while "SAMLResponse" not in r.text and seen["pages"] < 8:
                form = inputs(r.text)
                if "csrf" not in form:
                    break
                data = answers.pop(0) if answers else {"answer": totp(steps["totp_seed_b32"])}
                data["csrf"] = form["csrf"]
                r = browser.post(base + "/login", data=data, allow_redirects=False, timeout=10)
                seen["pages"] += 1
        seen["status"] = r.status_code
        seen["csp"] = r.headers.get("Content-Security-Policy")
        form = inputs(r.text)
        if "SAMLResponse" not in form:
            seen["page"] = r.text
            out.append(seen)
            continue
        seen["acs"] = form_action(r.text)
        seen["relay_state"] = form.get("RelayState")
        xml = base64.b64decode(form["SAMLResponse"]).decode()
        seen["xml"] = xml
        try:
            resp = client.parse_authn_request_response(
                form["SAMLResponse"], BINDING_HTTP_POST, outstanding={reqid: "/"})
            seen["name_id"] = resp.name_id.text
            seen["name_id_format"] = resp.name_id.format
            seen["ava"] = resp.ava
            seen["issuer"] = resp.issuer()
            seen["in_response_to"] = resp.in_response_to == reqid
        except Exception as e:  # the error pysaml2 raised: a SAML status, a bad signature...
            seen["error"] = type(e).__name__
            seen["error_text"] = str(e)
        out.append(seen)
    print(json.dumps([{"runs": out}]))


if __name__ == "__main__":
    main()
