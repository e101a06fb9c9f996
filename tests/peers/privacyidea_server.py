#!/usr/bin/env python3
"""privacyIDEA 3.14 itself (the server package from PyPI, no web server), as the other side of
Tessera's imports and migrations (crates/server/tests/token_import.rs, migrate.rs):

    privacyidea_server.py WORKDIR [DATABASE_URL] < steps.json

WORKDIR gets a pi.cfg and an encryption key file, as an installation has, and the database
(SQLite in WORKDIR unless DATABASE_URL names another, e.g. postgresql+psycopg2://…).
steps.json is a list of steps, run in order:
  {"call": "resolver", "params": {...}}             -> save_resolver(params) (resolver, type, ...)
  {"call": "realm", "name": R, "resolvers": [...]}  -> set_realm(R, resolvers), the first one the
                                                       default realm
  {"call": "init_token", "params": {...},
   "user": LOGIN, "realm": R}                       -> init_token(params, User(LOGIN, R)) (type,
                                                       otpkey, serial, otplen, hashlib, timeStep,
                                                       description, pin, phone, email)
  {"call": "disable", "serial": S}                  -> enable_token(S, False)
  {"call": "pin_hash", "serial": S, "pin": P,
   "scheme": "pbkdf2_sha512"}                       -> the token's PIN hashed by passlib with that
                                                       scheme, as PI_HASH_ALGO_LIST makes it
  {"call": "policy", "name": N, "scope": S, "action": A} -> set_policy(N, S, A)
  {"call": "sqlite", "file": PATH, "sql": [...]}     -> the statements run on that SQLite file (a
                                                       user table for an SQL resolver)
  {"call": "encrypt_enckey", "password": P, "file": PATH}
                                                    -> the key file encrypted with the password,
                                                       as `pi-manage setup encrypt_enckey` does
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
    database = sys.argv[2] if len(sys.argv) > 2 else f"sqlite:///{workdir}/pi.sqlite"
    os.makedirs(workdir, exist_ok=True)
    enckey = os.path.join(workdir, "enckey")
    if not os.path.exists(enckey):
        with open(enckey, "wb") as f:
            f.write(os.urandom(96))
    cfg = os.path.join(workdir, "pi.cfg")
    with open(cfg, "w") as f:
        f.write(f"SQLALCHEMY_DATABASE_URI = '{database}'\n"
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
        from privacyidea.lib.realm import set_default_realm, set_realm
        from privacyidea.lib.resolver import save_resolver
        from privacyidea.lib.token import check_serial_pass, enable_token, get_one_token, init_token
        from privacyidea.lib.user import User

        first_realm = True

        for step in steps:
            call = step["call"]
            if call == "resolver":
                save_resolver(step["params"])
                out.append({})
            elif call == "realm":
                set_realm(step["name"], [{"name": r} for r in step["resolvers"]])
                if first_realm:
                    set_default_realm(step["name"])
                    first_realm = False
                out.append({})
            elif call == "init_token":
                user = User(step["user"], step["realm"]) if "user" in step else None
                init_token(step["params"], user=user)
                out.append({})
            elif call == "pin_hash":
                from passlib.context import CryptContext
                token = get_one_token(serial=step["serial"]).token
                token.pin_hash = CryptContext([step["scheme"]]).hash(step["pin"])
                token.save()
                out.append({"pin_hash": token.pin_hash})
            elif call == "sqlite":
                import sqlite3
                con = sqlite3.connect(step["file"])
                for statement in step["sql"]:
                    con.execute(statement)
                con.commit()
                con.close()
                out.append({})
            elif call == "encrypt_enckey":
                from privacyidea.lib.security.default import DefaultSecurityModule
                with open(enckey, "rb") as f:
                    keys = f.read()
                with open(step["file"], "w") as f:
                    f.write(DefaultSecurityModule.password_encrypt(keys, step["password"]))
                out.append({})
            elif call == "policy":
                from privacyidea.lib.policy import set_policy
                set_policy(step["name"], scope=step["scope"], action=step["action"])
                out.append({})
            elif call == "disable":
                enable_token(step["serial"], False)
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
