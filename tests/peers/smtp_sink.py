"""A real SMTP server (aiosmtpd) on a loopback port the OS picks, for Tessera's tests.

Arguments: FILE [CERT KEY] — with a certificate and key, the server requires STARTTLS.
Prints the port on the first line of stdout, then appends every message it receives to the
file named by the first argument, one JSON object per line: {"from", "to", "subject", "body"
(the text part), "html" (the HTML part, or null)}.
Runs until killed.
"""
import asyncio
import email
import email.policy
import json
import socket
import ssl
import sys

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, path):
        self.path = path

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "subject": str(msg.get("Subject", "")),
            "body": body.get_content() if body is not None else "",
            "html": html.get_content() if html is not None else None,
        }
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return "250 Message accepted for delivery"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    port = free_port()
    kwargs = {}
    if len(sys.argv) > 3:
        # STARTTLS required, with this certificate and key.
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
        kwargs = {"tls_context": ctx, "require_starttls": True}
    controller = Controller(Sink(sys.argv[1]), hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    print(port, flush=True)
    try:
        asyncio.get_event_loop().run_forever()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
