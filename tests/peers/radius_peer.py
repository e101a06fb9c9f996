#!/usr/bin/env python3
"""pyrad (PyPI) as a RADIUS client of Tessera: the test peer of crates/server/tests/radius.rs.

    radius_peer.py HOST AUTH_PORT ACCT_PORT < steps.json

Each step is a JSON object; one result per step is printed, as a JSON list:
  {"op": "auth", "user": .., "password": .., "secret": .., "ma": true, "state_from": i,
   "state": hex, "source": "127.0.0.2", "attrs": {"NAS-Identifier": ..}}
                                                -> the reply, or {"timeout": true}
  {"op": "acct", "secret": .., "attrs": {..}}   -> the reply, or {"timeout": true}
  {"op": "duplicate", <auth step>}              -> the same packet sent twice: both replies
  {"op": "raw", "hex": ..}                      -> a datagram as given: {"timeout": true} or
                                                   {"reply_hex": ..}
  {"op": "burst", "user": .., "passwords": [..], "secret": .., "attrs": {..}}
                                                -> one Access-Request per password, all sent
                                                   at once (a socket each) before any reply is
                                                   read: {"codes": [code or null, ..]}
A reply is {"code": .., "attrs": {name: [values]}, "ma_first": bool, "state": hex}.
"""
import binascii
import json
import os
import socket
import sys

from pyrad import packet
from pyrad.client import Client, Timeout
from pyrad.dictionary import Dictionary

HERE = os.path.dirname(os.path.abspath(__file__))
DICT = Dictionary(os.path.join(HERE, "radius", "dictionary"))
TIMEOUT = 1.5


def client(host, auth_port, acct_port, secret):
    c = Client(server=host, authport=auth_port, acctport=acct_port,
               secret=secret.encode(), dict=DICT)
    c.timeout = TIMEOUT
    c.retries = 1
    c.enforce_ma = True
    return c


def describe(reply):
    attrs = {}
    for key in reply.keys():
        name = key if isinstance(key, str) else str(key)
        values = []
        for v in reply[key]:
            if isinstance(v, bytes):
                try:
                    v = v.decode()
                except UnicodeDecodeError:
                    v = binascii.hexlify(v).decode()
            values.append(v if isinstance(v, (str, int)) else str(v))
        attrs[name] = values
    raw = reply.raw_packet or b""
    state = reply.get(24) or reply.get("State")
    return {
        "code": reply.code,
        "attrs": attrs,
        "ma_first": len(raw) > 20 and raw[20] == 80,
        "state": binascii.hexlify(state[0]).decode() if state else None,
    }


def auth_packet(c, step, results):
    pkt = c.CreateAuthPacket(code=packet.AccessRequest, User_Name=step["user"],
                             message_authenticator=step.get("ma", True))
    if "password" in step:
        pkt["User-Password"] = pkt.PwCrypt(step["password"])
    for name, value in step.get("attrs", {}).items():
        pkt[name] = value
    if "state_from" in step:
        pkt["State"] = binascii.unhexlify(results[step["state_from"]]["state"])
    if "state" in step:
        pkt["State"] = binascii.unhexlify(step["state"])
    return pkt


def send(c, pkt):
    try:
        return describe(c.SendPacket(pkt))
    except Timeout:
        return {"timeout": True}


def main():
    host, auth_port, acct_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    steps = json.load(sys.stdin)
    results = []
    for step in steps:
        op = step["op"]
        if op == "raw":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(TIMEOUT)
            s.sendto(binascii.unhexlify(step["hex"]), (host, step.get("port", auth_port)))
            try:
                data = s.recv(4096)
                results.append({"reply_hex": binascii.hexlify(data).decode()})
            except socket.timeout:
                results.append({"timeout": True})
            continue
        c = client(host, auth_port, acct_port, step["secret"])
        if "source" in step:
            # Another NAS: the request comes from this local address.
            c.bind((step["source"], 0))
        if op == "auth":
            results.append(send(c, auth_packet(c, step, results)))
        elif op == "duplicate":
            pkt = auth_packet(c, step, results)
            raw = pkt.RequestPacket()
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(TIMEOUT)
            replies = []
            for _ in range(2):
                s.sendto(raw, (host, auth_port))
                try:
                    replies.append(binascii.hexlify(s.recv(4096)).decode())
                except socket.timeout:
                    replies.append(None)
            results.append({"replies": replies,
                            "codes": [int(r[:2], 16) if r else None for r in replies]})
        elif op == "burst":
            sent = []
            for password in step["passwords"]:
                pkt = auth_packet(c, dict(step, password=password), results)
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.settimeout(10)
                sent.append(s)
                s.sendto(pkt.RequestPacket(), (host, auth_port))
            codes = []
            for s in sent:
                try:
                    codes.append(s.recv(4096)[0])
                except socket.timeout:
                    codes.append(None)
                s.close()
            results.append({"codes": codes})
        elif op == "acct":
            pkt = c.CreateAcctPacket(message_authenticator=step.get("ma", False))
            for name, value in step.get("attrs", {}).items():
                pkt[name] = value
            results.append(send(c, pkt))
        else:
            raise SystemExit(f"unknown op {op}")
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
