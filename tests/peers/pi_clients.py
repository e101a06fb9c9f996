#!/usr/bin/env python3
"""Drives Tessera with real privacyIDEA/eduMFA clients (the test peers of
crates/server/tests/pi_clients.rs).

    pi_clients.py CLIENT URL < steps.json

CLIENT is one of
  pi       privacyidea.lib.privacyideaserver.PrivacyIDEAServer (privacyIDEA 3.14's own client)
  edu      edumfa.lib.edumfaserver.eduMFAServer (eduMFA 2.9's own client)
  django   django_privacyidea_auth.privacyidea_auth.PrivacyIDEA (Django login backend, samlcheck)
  signed   requests, with each answer's signature checked by privacyIDEA 3.14's own Sign class

steps.json is a list of steps, run in order:
  {"call": "request", "user": ..., "pass": ...}                       -> the client's verdict
  {"call": "validate_check", "user": ..., "pass": ..., "realm": ...,
   "serial": ..., "answer": <index of an earlier step>}                -> the response body; with
        "answer", the transaction_id of that step's challenge is sent back (the second leg)
  {"call": "authenticate", "user": ..., "pass": ...}                   -> django: the user or null
  {"method": "POST", "path": "/validate/check", "params": {...},
   "public_key": PEM}                                                  -> signed: the status, the
        body, whether the signature verifies (as privacyIDEA verifies it: the answer without its
        signature, json.dumps(sort_keys=True)), whether a changed answer would verify, and whether
        the body is exactly what Python's json.dumps(sort_keys=True) writes

One JSON object per step is printed, as a list.
"""
import json
import sys
from types import SimpleNamespace


def run_pi_like(server_cls, url, steps):
    cfg = SimpleNamespace(url=url, tls=False)
    server = server_cls(cfg)
    out = []
    for step in steps:
        if step["call"] == "request":
            out.append({"verdict": bool(server_cls.request(cfg, step["user"], step["pass"]))})
            continue
        tx = None
        if "answer" in step:
            tx = out[step["answer"]]["body"]["detail"]["transaction_id"]
        r = server.validate_check(step.get("user"), step["pass"], serial=step.get("serial"),
                                  realm=step.get("realm"), transaction_id=tx)
        out.append({"status": r.status_code, "body": r.json()})
    return out


def run_django(url, steps):
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        PRIVACYIDEA={"url": url + "/validate/samlcheck", "create_user": True, "update_attributes": True},
        USE_TZ=True,
    )
    django.setup()
    from django.core.management import call_command
    call_command("migrate", verbosity=0)
    from django_privacyidea_auth.privacyidea_auth import PrivacyIDEA

    out = []
    for step in steps:
        user = PrivacyIDEA().authenticate(username=step["user"], password=step["pass"])
        out.append({"user": None if user is None else {
            "username": user.username, "email": user.email,
            "first_name": user.first_name, "last_name": user.last_name}})
    return out


def run_signed(url, steps):
    import requests
    from privacyidea.lib.crypto import Sign

    out = []
    for step in steps:
        params = step.get("params", {})
        if step["method"] == "GET":
            r = requests.get(url + step["path"], params=params, timeout=30)
        else:
            r = requests.post(url + step["path"], data=params, timeout=30)
        body = r.json()
        content = dict(body)
        signature = content.pop("signature", None)
        sign = Sign(public_key=step["public_key"].encode())
        verified = signature is not None and sign.verify(json.dumps(content, sort_keys=True), signature)
        content["result"] = dict(content["result"], status=not content["result"]["status"])
        tampered = signature is not None and sign.verify(json.dumps(content, sort_keys=True), signature)
        out.append({"status": r.status_code, "body": body, "verified": verified,
                    "tampered_verified": tampered,
                    "python_text": json.dumps(body, sort_keys=True) == r.text})
    return out


def main():
    client, url = sys.argv[1], sys.argv[2]
    steps = json.load(sys.stdin)
    if client == "pi":
        from privacyidea.lib.privacyideaserver import PrivacyIDEAServer
        result = run_pi_like(PrivacyIDEAServer, url, steps)
    elif client == "edu":
        from edumfa.lib.edumfaserver import eduMFAServer
        result = run_pi_like(eduMFAServer, url, steps)
    elif client == "signed":
        result = run_signed(url, steps)
    elif client == "django":
        result = run_django(url, steps)
    else:
        sys.exit(f"unknown client {client}")
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
