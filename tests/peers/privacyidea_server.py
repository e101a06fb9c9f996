#!/usr/bin/env python3
"""privacyIDEA 3.14 itself (the server package from PyPI, no web server), as the other side of
Tessera's imports (crates/server/tests/token_import.rs):

    privacyidea_server.py WORKDIR < steps.json

WORKDIR gets a pi.cfg, an encryption key file and an SQLite database, as an installation has.
steps.json is a list of steps, run in order:
  {"call": "init_token", "params": {...}}           -> init_token(params) (type, otpkey, serial,
                                                       otplen, hashlib, timeStep, description, pin)
  {"call": "check", "serial": S, "pass": P}         -> check_serial_pass(S, P): {"ok": bool}
  {"call": "export_pskc", "serials": [...], "psk": HEX, "file": PATH}
                                                    -> export_pskc() written to PATH: {"count": n}
  {"call": "parse_csv", "file": PATH}               -> parseOATHcsv(): {serial: {type, otplen,
                                                       hashlib, counter, timeStep, user}}
  {"call": "token", "serial": S}                    -> {"count", "failcount", "active"}

One JSON object per step is printed, as a list.
"""
import json
import os
import sys


def main():
    workdir = sys.argv[1]
    os.makedirs(workdir, exist_ok=True)
    enckey = os.path.join(workdir, "enckey")
    if not os.path.exists(enckey):
        with open(enckey, "wb") as f:
            f.write(os.urandom(96))
    cfg = os.path.join(workdir, "pi.cfg")
    with open(cfg, "w") as f:
        f.write(f"SQLALCHEMY_DATABASE_URI = 'sqlite:///{workdir}/pi.sqlite'\n"
                f"PI_ENCFILE = '{enckey}'\n"
                "SECRET_KEY = 'tessera-test'\nPI_PEPPER = 'tessera-test'\n"
                "PI_AUDIT_NO_SIGN = True\nPI_LOGLEVEL = 40\n")
    steps = json.load(sys.stdin)

    from privacyidea.app import create_app
    from privacyidea.models import db

    app = create_app("production", cfg, silent=True)
    out = []
    with app.app_context():
        db.create_all()
        from privacyidea.lib.importotp import export_pskc, parseOATHcsv
        from privacyidea.lib.token import check_serial_pass, get_one_token, init_token

        for step in steps:
            call = step["call"]
            if call == "init_token":
                init_token(step["params"])
                out.append({})
            elif call == "check":
                ok, _ = check_serial_pass(step["serial"], step["pass"])
                out.append({"ok": bool(ok)})
            elif call == "export_pskc":
                tokens = [get_one_token(serial=s) for s in step["serials"]]
                _, count, soup = export_pskc(tokens, step["psk"])
                with open(step["file"], "w") as f:
                    f.write(str(soup))
                out.append({"count": count})
            elif call == "parse_csv":
                with open(step["file"]) as f:
                    parsed = parseOATHcsv(f.read())
                out.append({serial: {k: v for k, v in t.items() if k != "otpkey"}
                            for serial, t in parsed.items()})
            elif call == "token":
                t = get_one_token(serial=step["serial"]).token
                out.append({"count": t.count, "failcount": t.failcount, "active": t.active})
            else:
                sys.exit(f"unknown call {call}")
    json.dump(out, sys.stdout, default=str)


if __name__ == "__main__":
    main()
