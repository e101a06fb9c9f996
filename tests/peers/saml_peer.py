"""A SAML 2.0 service provider that is not Tessera's: pysaml2 (which checks signatures with the
xmlsec1 program) makes the authentication requests and reads the responses, while a requests
session plays the browser on Tessera's login page.

Arguments: BASE_URL SP_ENTITY_ID ACS_URL SP_KEY SP_CERT WORKDIR. Reads a JSON object on stdin:
  {"cmd": "metadata"}: prints [{"metadata": the SP's metadata}]
  {"cmd": "sso", "username", "password", "totp_seed_b32", "runs": [{"binding": "redirect"|"post",
   "sign": bool, "acs": optional ACS URL to ask for, "entity": optional other entity ID,
   "key": optional other signing key, "context": optional {"comparison", "classes"} sent as
   RequestedAuthnContext, "new_browser": start without the SSO session's cookie, "username" and
   "password": another user for this run}]}:
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
from urllib.parse import parse_qs, urljoin, urlparse

import requests
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string
from saml2.samlp import RequestedAuthnContext
from saml2.saml import AuthnContextClassRef
from saml2.xmldsig import DIGEST_SHA1, DIGEST_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256


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
        "encryption_keypairs": [{"key_file": key, "cert_file": cert}],
        "xmlsec_binary": "/usr/bin/xmlsec1",
        "metadata": {"local": [idp_meta]} if idp_meta else {},
        "allow_unknown_attributes": True,
        "accepted_time_diff": 120,
        "service": {"sp": {
            "endpoints": {
                "assertion_consumer_service": [(acs, BINDING_HTTP_POST)],
                "single_logout_service": [(entity + "/slo", BINDING_HTTP_REDIRECT)],
            },
            "authn_requests_signed": True,
            "logout_requests_signed": True,
            "want_response_signed": True,
            "want_assertions_signed": True,
            "allow_unsolicited": True,
            "name_id_format": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
        }},
    })
    return conf


def query_of(url):
    return {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}


def sign_in(base, browser, client, idp_entity, steps):
    """An SP-initiated sign-in over the redirect binding; the browser passes the login page
    when it must. Returns (pages shown, the parsed response or None)."""
    reqid, info = client.prepare_for_authenticate(
        entityid=idp_entity, relay_state="r", binding=BINDING_HTTP_REDIRECT, sign=True,
        sigalg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256)
    r = browser.get(dict(info["headers"])["Location"], allow_redirects=False, timeout=10)
    pages = 0
    answers = [{"username": steps["username"], "answer": steps.get("password")}]
    if r.status_code == 303:
        r = browser.get(urljoin(base, r.headers["Location"]), timeout=10)
        pages += 1
        while "SAMLResponse" not in r.text and pages < 8:
            form = inputs(r.text)
            if "csrf" not in form or not steps.get("password"):
                return pages, None
            data = answers.pop(0) if answers else {"answer": totp(steps["totp_seed_b32"])}
            data["csrf"] = form["csrf"]
            r = browser.post(base + "/login", data=data, allow_redirects=False, timeout=10)
            pages += 1
    form = inputs(r.text)
    if "SAMLResponse" not in form:
        return pages, None
    return pages, client.parse_authn_request_response(
        form["SAMLResponse"], BINDING_HTTP_POST, outstanding={reqid: "/"})


def single_logout(base, entity, entity2, acs, key, cert, workdir, steps):
    """Signs in to two SPs (the second through the SSO session), logs out at the first: Tessera
    tells the second (which answers), then answers the first; a new sign-in needs the login
    page again."""
    idp_meta = workdir + "/idp-metadata.xml"
    with open(idp_meta, "w") as f:
        f.write(requests.get(base + "/saml/metadata", timeout=10).text)
    idp_entity = base + "/saml/metadata"
    a = Saml2Client(config=config(base, entity, acs, key, cert, workdir, idp_meta))
    b = Saml2Client(config=config(base, entity2, acs + "2", key, cert, workdir, idp_meta))
    browser = requests.Session()
    out = {}
    out["a_pages"], ra = sign_in(base, browser, a, idp_entity, steps)
    out["b_pages"], rb = sign_in(base, browser, b, idp_entity, steps)
    out["signed_in"] = ra is not None and rb is not None
    sent = a.global_logout(ra.name_id, sign=True, sign_alg=SIG_RSA_SHA256,
                           digest_alg=DIGEST_SHA256)
    binding, info = sent[idp_entity]
    out["a_binding"] = binding
    r = browser.get(dict(info["headers"])["Location"], allow_redirects=False, timeout=10)
    out["hops"] = []
    for _ in range(4):
        if r.status_code != 303:
            break
        location = r.headers["Location"]
        q = query_of(location)
        out["hops"].append(location.split("?")[0])
        if location.startswith(entity2 + "/slo") and "SAMLRequest" in q:
            req = b.parse_logout_request(q["SAMLRequest"], BINDING_HTTP_REDIRECT,
                                         relay_state=q.get("RelayState"),
                                         sigalg=q.get("SigAlg"), signature=q.get("Signature"))
            out["b_told"] = req.message.name_id.text == rb.name_id.text
            resp = b.create_logout_response(req.message, [BINDING_HTTP_REDIRECT])
            back = b.apply_binding(BINDING_HTTP_REDIRECT, str(resp), req.message.issuer.text
                                   and base + "/saml/slo", q.get("RelayState"), response=True,
                                   sign=True, sigalg=SIG_RSA_SHA256)
            r = browser.get(dict(back["headers"])["Location"], allow_redirects=False, timeout=10)
        elif location.startswith(entity + "/slo") and "SAMLResponse" in q:
            res = a.parse_logout_request_response(q["SAMLResponse"], BINDING_HTTP_REDIRECT)
            out["a_answered"] = res.status_ok()
            break
        else:
            break
    out["after_pages"], again = sign_in(base, browser, a, idp_entity, {"username": "x"})
    out["after_signed_in"] = again is not None
    if "second_user" in steps:
        # Another user, another browser: signs out on Tessera's own /logout page; Tessera tells
        # both SPs through the browser, then shows the signed-out page.
        a2 = Saml2Client(config=config(base, entity, acs, key, cert, workdir, idp_meta))
        b2 = Saml2Client(config=config(base, entity2, acs + "2", key, cert, workdir, idp_meta))
        browser2 = requests.Session()
        _, r2a = sign_in(base, browser2, a2, idp_entity, steps["second_user"])
        _, r2b = sign_in(base, browser2, b2, idp_entity, steps["second_user"])
        out["second_signed_in"] = r2a is not None and r2b is not None
        csrf = inputs(browser2.get(base + "/logout", timeout=10).text)["csrf"]
        r = browser2.post(base + "/logout", data={"csrf": csrf}, allow_redirects=False,
                          timeout=10)
        told = []
        for _ in range(4):
            if r.status_code != 303:
                break
            location = r.headers["Location"]
            q = query_of(location)
            client, name_id = (a2, r2a.name_id) if location.startswith(entity + "/slo") \
                else (b2, r2b.name_id)
            req = client.parse_logout_request(q["SAMLRequest"], BINDING_HTTP_REDIRECT,
                                              relay_state=q.get("RelayState"),
                                              sigalg=q.get("SigAlg"),
                                              signature=q.get("Signature"))
            told.append([location.split("?")[0], req.message.name_id.text == name_id.text])
            resp = client.create_logout_response(req.message, [BINDING_HTTP_REDIRECT])
            back = client.apply_binding(BINDING_HTTP_REDIRECT, str(resp), base + "/saml/slo",
                                        q.get("RelayState"), response=True, sign=True,
                                        sigalg=SIG_RSA_SHA256)
            r = browser2.get(dict(back["headers"])["Location"], allow_redirects=False,
                             timeout=10)
        out["logout_page_told"] = sorted(told)
        out["logout_page_final"] = r.status_code == 200 and "signed out" in r.text
    return out


def main():
    base, entity, acs, key, cert, workdir = sys.argv[1:7]
    steps = json.load(sys.stdin)
    if steps["cmd"] == "metadata":
        conf = config(base, entity, acs, key, cert, workdir, None)
        print(json.dumps([{"metadata": create_metadata_string(None, config=conf).decode()}]))
        return
    if steps["cmd"] == "slo":
        print(json.dumps([single_logout(base, entity, steps["entity2"], acs, key, cert, workdir,
                                        steps)]))
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
        conf = config(base, run.get("entity", entity), acs, run.get("key", key), cert, workdir,
                      idp_meta)
        client = Saml2Client(config=conf)
        binding = BINDING_HTTP_REDIRECT if run["binding"] == "redirect" else BINDING_HTTP_POST
        extra = {}
        if run.get("acs"):
            extra["assertion_consumer_service_urls"] = [run["acs"]]
        if run.get("context"):
            extra["requested_authn_context"] = RequestedAuthnContext(
                authn_context_class_ref=[AuthnContextClassRef(text=c)
                                         for c in run["context"]["classes"]],
                comparison=run["context"]["comparison"])
        if run.get("new_browser"):
            browser = requests.Session()
        reqid, info = client.prepare_for_authenticate(
            entityid=idp_entity, relay_state="relay-" + run["binding"], binding=binding,
            sign=run["sign"],
            sigalg=(SIG_RSA_SHA1 if run.get("sha1") else SIG_RSA_SHA256) if run["sign"] else None,
            digest_alg=DIGEST_SHA1 if run.get("sha1") else DIGEST_SHA256, **extra)
        if binding == BINDING_HTTP_REDIRECT:
            location = dict(info["headers"])["Location"]
            r = browser.get(location, allow_redirects=False, timeout=10)
        else:
            page = info["data"]
            r = browser.post(form_action(page), data=inputs(page), allow_redirects=False,
                             timeout=10)
        seen = {"pages": 0, "request_status": r.status_code}
        if r.status_code == 200 and form_action(r.text) == "/saml/sso":
            # Tessera's page posts a POST-binding request again from its own site (its
            # script does it in a browser), so that the SSO session's cookie goes along.
            again = inputs(r.text)
            seen["posted_again"] = sorted(again)
            r = browser.post(base + "/saml/sso", data=again, allow_redirects=False, timeout=10)
        answers = [{"username": run.get("username", steps["username"]),
                    "answer": run.get("password", steps["password"])}]
        while r.status_code == 303:
            location = r.headers["Location"]
            r = browser.get(urljoin(base, location), allow_redirects=False, timeout=10)
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
            seen["authn_context"] = [a[0] for a in resp.authn_info()]
        except Exception as e:  # the error pysaml2 raised: a SAML status, a bad signature...
            seen["error"] = type(e).__name__
            seen["error_text"] = str(e)
        out.append(seen)
    print(json.dumps([{"runs": out}]))


if __name__ == "__main__":
    main()
