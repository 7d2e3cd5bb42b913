# SPDX-License-Identifier: MIT
"""The Phoenix 1.8 differences (../shared/design.md, observed on 1.8.12):
phxd-testserver --emulate reproduces each, checked here with raw frames,
and phxd works against both emulations. A raw websocket client and a
server that ignores the auth token, as a 1.7 one does, are written out
here so nothing between the test and the bytes can hide a difference."""
import base64
import hashlib
import json
import os
import socket
import struct
import threading

from harness import Daemon, TestServer, config, run, test, wait_until


class RawWs:
    """A websocket client that sends exactly the frames it is given."""

    def __init__(self, port, query="vsn=2.0.0", protocols=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = f"Sec-WebSocket-Protocol: {protocols}\r\n" if protocols else ""
        self.sock.sendall((f"GET /socket/websocket?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n")
                          .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1) if b"\r\n\r\n" in head else (head, b"")
        self.status = int(head.split(b" ", 2)[1]) if head else 0
        self.headers = head.decode(errors="replace").lower()

    def send(self, frame):
        data = json.dumps(frame).encode()
        mask = os.urandom(4)
        hdr = bytes([0x81]) + (bytes([0x80 | len(data)]) if len(data) < 126
                               else bytes([0x80 | 126]) + struct.pack(">H", len(data)))
        self.sock.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self):
        """The next text frame as JSON, or ("close", code)."""
        def need(n):
            while len(self.buf) < n:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError
                self.buf += chunk
            out, self.buf = self.buf[:n], self.buf[n:]
            return out
        b0, b1 = need(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", need(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", need(8))[0]
        data = need(n)
        if b0 & 0x0F == 8:
            return ("close", struct.unpack(">H", data[:2])[0] if len(data) >= 2 else None)
        return json.loads(data)

    def recv_until(self, pred):
        while True:
            m = self.recv()
            if pred(m):
                return m


def joined(ws, topic, jr):
    ws.send([jr, jr, topic, "phx_join", {}])
    r = ws.recv_until(lambda m: isinstance(m, list) and m[1] == jr)
    assert r[4]["status"] == "ok", r


@test
def leave_with_a_null_join_ref(w):
    for version, honoured in (("1.7.24", False), ("1.8.12", True)):
        ts = TestServer(w, "--emulate", version)
        ws = RawWs(ts.port)
        joined(ws, "rooms:l", "1")
        ws.send([None, "2", "rooms:l", "phx_leave", {}])
        ws.send([None, "3", "phoenix", "heartbeat", {}])
        got = []
        while True:
            m = ws.recv()
            got.append(m)
            if m[1] == "3":
                break
        events = [(m[3], m[4].get("status")) for m in got]
        if honoured:
            assert events[:2] == [("phx_reply", "ok"), ("phx_close", None)], (version, got)
        else:
            assert events == [("phx_reply", "ok")] and got[0][2] == "phoenix", (version, got)
        ts.stop()


@test
def phx_error_payload(w):
    for version, payload in (("1.8.9", {}), ("1.8.10", {"reason": "channel_crash"})):
        ts = TestServer(w, "--emulate", version)
        ws = RawWs(ts.port)
        joined(ws, "rooms:c", "1")
        ws.send(["1", "2", "rooms:c", "crash", {}])
        m = ws.recv_until(lambda m: m[3] == "phx_error")
        assert m[4] == payload, (version, m)
        ts.stop()


@test
def auth_token_answers(w):
    def bearer(token, pad=False):
        enc = base64.b64encode(token.encode()).decode()
        return "phoenix, base64url.bearer.phx." + (enc if pad else enc.rstrip("="))

    ts = TestServer(w, "--emulate", "1.8.12")
    ok = RawWs(ts.port, protocols=bearer("s3cret"))
    assert ok.status == 101 and "sec-websocket-protocol: phoenix" in ok.headers, ok.headers
    assert RawWs(ts.port, protocols=bearer("reject")).status == 403
    assert RawWs(ts.port, protocols=bearer("")).status == 403
    assert RawWs(ts.port, protocols=bearer("s3cret!", pad=True)).status == 500
    ts.stop()
    # 1.7 reads no token at all
    ts = TestServer(w, "--emulate", "1.7.24")
    assert RawWs(ts.port, protocols=bearer("reject")).status == 101
    ts.stop()


@test
def phxd_against_1_8_12(w):
    ts = TestServer(w, "--emulate", "1.8.12")
    tok = os.path.join(w, "token")
    with open(tok, "w") as f:
        f.write("s3cret\n")
    d = Daemon(w, config(ts.url, "rooms:a", extra=f"auth_token_file = {tok}\n"
                                                "rejoin_after_ms = 100\nreconnect_after_ms = 50"))
    d.wait_joined("rooms:a")
    c = d.client()
    r = c.ok("push", topic="rooms:a", event="whoami", **{"await": True})
    assert r["response"]["auth_token"] == "s3cret", r
    assert d.status()[0]["auth_token_ignored"] is False
    # a crash with {"reason": "channel_crash"} rejoins; a forced disconnect
    # (1001 on 1.8.12) reconnects
    c.ok("push", topic="rooms:a", event="crash")
    wait_until(lambda: d.status()[0]["topics"][0]["joins"] == 2, what="rejoined after the crash")
    c.ok("push", topic="rooms:a", event="disconnect_socket")
    wait_until(lambda: d.status()[0]["connects"] == 2 and d.topic_states()["rooms:a"] == "joined",
               what="reconnected after 1001")
    assert d.status()[0]["last_close_code"] == 1001
    # a token the server refuses: 403, retried slowly
    with open(tok, "w") as f:
        f.write("reject\n")
    c.ok("reload")
    st = wait_until(lambda: (s := d.status()[0]).get("last_http_status") == 403 and s,
                    what="403 for the refused token")
    assert st["retry_in_ms"] > 1000, st


def serve_like_phoenix_1_7(port_box, ready):
    """Accepts one websocket and answers 101 with no subprotocol, as a
    Phoenix 1.7 endpoint does whatever the client offered."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port_box.append(srv.getsockname()[1])
    ready.set()
    conn, _ = srv.accept()
    req = b""
    while b"\r\n\r\n" not in req:
        req += conn.recv(4096)
    key = [l.split(b":", 1)[1].strip() for l in req.split(b"\r\n")
           if l.lower().startswith(b"sec-websocket-key:")][0]
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                              .digest()).decode()
    conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode())
    conn.settimeout(10)
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass
    conn.close()
    srv.close()


@test
def a_server_that_ignores_the_token_is_reported(w):
    port, ready = [], threading.Event()
    threading.Thread(target=serve_like_phoenix_1_7, args=(port, ready), daemon=True).start()
    ready.wait(5)
    tok = os.path.join(w, "token")
    with open(tok, "w") as f:
        f.write("s3cret\n")
    d = Daemon(w, config(f"ws://127.0.0.1:{port[0]}/socket", extra=f"auth_token_file = {tok}"))
    st = wait_until(lambda: (s := d.status()[0])["state"] == "open" and s, what="open")
    assert st["auth_token_ignored"] is True, st
    d.wait_log("warning: demo: the server did not take the auth token")


run()
