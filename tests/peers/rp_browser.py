#!/usr/bin/env python3
"""A browser (a requests session) signing in to a relying party that is not Tessera's — Apache
with mod_auth_openidc or another module — through Tessera's login page
(crates/server/tests/relying_parties.rs):

    rp_browser.py START_URL < steps.json

It opens START_URL and follows every redirect by itself, between the relying party and
Tessera; on Tessera's sign-in page it posts the user name and password, then (when asked) the
TOTP code; a SAML response page it posts on to the service provider. steps.json: {"username",
"password", "totp_seed_b32" (optional), "then" (optional: what the same browser does after — a URL
to open, {"run": [a command and its arguments]} to run, {"sleep": seconds})}. Prints [{"status",
"url", "headers", "body", "pages", "trail", "then": [the same for each further URL; a command's
{"exit", "stdout", "stderr"}]}]: the last answer, the pages it filled in, and every hop.
"""
import base64
import hashlib
import hmac
import html
import json
import re
import struct
import subprocess
import sys
import time
from urllib.parse import urljoin

import requests


def totp(seed_b32):
    key = base64.b32decode(seed_b32)
    mac = hmac.new(key, struct.pack(">Q", int(time.time() // 30)), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    return f"{(struct.unpack('>I', mac[off:off + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def csrf_of(html):
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    return m.group(1) if m else ""


def visit(browser, url, steps):
    trail, pages = [], 0
    r = browser.get(url, allow_redirects=False, timeout=20)
    for _ in range(40):
        trail.append({"url": url, "status": r.status_code, "location": r.headers.get("Location")})
        if r.status_code in (301, 302, 303, 307, 308):
            url = urljoin(url, r.headers["Location"])
            r = browser.get(url, allow_redirects=False, timeout=20)
            continue
        if r.status_code == 200 and 'name="SAMLResponse"' in r.text:
            # Tessera's page posts the SAML response to the SP (its script does it in a browser).
            action = html.unescape(re.search(r'<form[^>]*action="([^"]+)"', r.text).group(1))
            fields = {k: html.unescape(v) for k, v in
                      re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', r.text)}
            url = urljoin(url, action)
            r = browser.post(url, data=fields, allow_redirects=False, timeout=20)
            continue
        if r.status_code == 200 and 'name="csrf"' in r.text and 'action="/login"' in r.text \
                and pages < 4:
            pages += 1
            form = {"csrf": csrf_of(r.text)}
            if pages == 1:
                form.update({"username": steps["username"], "answer": steps["password"]})
            else:
                form["answer"] = totp(steps["totp_seed_b32"])
            url = urljoin(url, "/login")
            r = browser.post(url, data=form, allow_redirects=False, timeout=20)
            continue
        break
    return {"status": r.status_code, "url": url, "headers": dict(r.headers),
            "body": r.text[:4000], "pages": pages, "trail": trail}


def main():
    steps = json.load(sys.stdin)
    browser = requests.Session()
    seen = visit(browser, sys.argv[1], steps)
    seen["then"] = []
    for step in steps.get("then", []):
        if isinstance(step, str):
            seen["then"].append(visit(browser, step, steps))
        elif "run" in step:
            done = subprocess.run(step["run"], capture_output=True, text=True, timeout=60)
            seen["then"].append({"exit": done.returncode, "stdout": done.stdout,
                                 "stderr": done.stderr})
        else:
            time.sleep(step["sleep"])
            seen["then"].append({"slept": step["sleep"]})
    print(json.dumps([seen]))


if __name__ == "__main__":
    main()
