# SPDX-License-Identifier: MIT
"""A websocket server written here, byte by byte, that breaks RFC 6455 on
purpose: bad handshakes and bad frames must be named, answered with the
right close code and retried; frames split anywhere, long lengths, pings
and the server's close must work as the RFC says. The server also reads
what phxd sends, unmasking it, so phxd's own framing is checked."""
import base64
import hashlib
import json
import os
import socket
import struct
import threading

from harness import Daemon, config, run, test, wait_until

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
RETRY = "reconnect_after_ms = 50\nheartbeat_interval_ms = 0"


class Peer:
    """One accepted socket: the handshake, then frames both ways."""

    def __init__(self, conn):
        self.conn = conn
        self.buf = b""
        conn.settimeout(10)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def recv_more(self):
        chunk = self.conn.recv(65536)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def request(self):
        while b"\r\n\r\n" not in self.buf:
            self.recv_more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in
                   (l.split(b":", 1) for l in lines[1:])}
        return lines[0], headers

    def accept(self, extra=b"", accept=None):
        line, headers = self.request()
        assert line.startswith(b"GET /socket/websocket?"), line
        assert headers[b"sec-websocket-version"] == b"13", headers
        key = headers[b"sec-websocket-key"]
        assert len(base64.b64decode(key)) == 16, key
        good = base64.b64encode(hashlib.sha1(key + GUID).digest())
        self.conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Accept: " +
                          (accept if accept is not None else good) + b"\r\n" + extra + b"\r\n")

    def frame(self):
        """The next frame from phxd: (fin, opcode, payload); it must be masked."""
        while len(self.buf) < 2:
            self.recv_more()
        b0, b1 = self.buf[0], self.buf[1]
        assert b1 & 0x80, "a client frame that is not masked"
        assert b0 & 0x70 == 0, "reserved bits set"
        n, off = b1 & 0x7F, 2
        if n == 126:
            while len(self.buf) < 4:
                self.recv_more()
            n, off = struct.unpack(">H", self.buf[2:4])[0], 4
        elif n == 127:
            while len(self.buf) < 10:
                self.recv_more()
            n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
        while len(self.buf) < off + 4 + n:
            self.recv_more()
        mask = (self.buf[off:off + 4] * (n // 4 + 1))[:n]
        data = (int.from_bytes(self.buf[off + 4:off + 4 + n], "big") ^
                int.from_bytes(mask, "big")).to_bytes(n, "big")
        self.buf = self.buf[off + 4 + n:]
        return bool(b0 & 0x80), b0 & 0x0F, data

    def frame_of(self, opcode):
        while True:
            fin, op, data = self.frame()
            if op == opcode:
                return data

    def join(self):
        """Reads phxd's phx_join and returns its refs."""
        msg = json.loads(self.frame_of(1))
        assert msg[3] == "phx_join", msg
        return msg

    def answer_join(self):
        """Reads phxd's phx_join and answers it ok."""
        msg = self.join()
        self.conn.sendall(frame(1, json.dumps([msg[0], msg[1], msg[2], "phx_reply",
                                               {"status": "ok", "response": {}}]).encode()))

    def close_code(self):
        data = self.frame_of(8)
        return struct.unpack(">H", data[:2])[0] if len(data) >= 2 else None


def frame(opcode, payload=b"", fin=True):
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack(">H", n)
    else:
        head += bytes([127]) + struct.pack(">Q", n)
    return head + payload


class Server:
    """Accepts sockets one after another and runs `script(peer)` on each;
    what a script raises fails the test."""

    def __init__(self, script):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/socket"
        self.script = script
        self.sockets = 0
        self.errors = []
        self.results = []
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            self.sockets += 1
            try:
                r = self.script(Peer(conn))
                if r is not None:
                    self.results.append(r)
            except (EOFError, ConnectionError, socket.timeout):
                pass
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.errors.append(repr(e))
            finally:
                conn.close()

    def check(self):
        assert not self.errors, self.errors


def refused_handshake(w, answer, error):
    """phxd names what is wrong with the answer and tries again."""
    def script(p):
        p.request()
        p.conn.sendall(answer)
        p.conn.recv(1)  # until phxd gives up on the socket

    srv = Server(script)
    d = Daemon(w, config(srv.url, "rooms:a", extra=RETRY))
    st = wait_until(lambda: (s := d.status()[0])["attempts"] >= 3 and s, what="three attempts")
    assert st["connects"] == 0 and st["last_error"] == error, st
    srv.check()
    assert d.alive()


@test
def an_answer_that_is_not_http_is_refused(w):
    refused_handshake(w, b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
                      "handshake: the server's answer is not HTTP")


@test
def a_wrong_accept_key_is_refused(w):
    refused_handshake(w, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
                      "handshake: wrong Sec-WebSocket-Accept")


@test
def a_101_that_is_not_an_upgrade_is_refused(w):
    refused_handshake(w, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
                      "handshake: the answer is not a websocket upgrade")


@test
def an_endless_answer_head_is_cut_off(w):
    def script(p):
        p.request()
        p.conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\n")
        filler = b"X-Filler: " + b"x" * 1000 + b"\r\n"
        for _ in range(200):  # 200 KiB, far past the 64 KiB phxd reads
            p.conn.sendall(filler)

    srv = Server(script)
    d = Daemon(w, config(srv.url, "rooms:a", extra=RETRY))
    st = wait_until(lambda: (s := d.status()[0])["attempts"] >= 2 and s, what="two attempts")
    assert st["last_error"] == "handshake: the server's answer is too long", st
    srv.check()


@test
def a_subprotocol_or_extension_not_offered_is_refused(w):
    for extra, error in [(b"Sec-WebSocket-Protocol: chat\r\n",
                          "handshake: the server chose a subprotocol phxd did not offer"),
                         (b"Sec-WebSocket-Extensions: permessage-deflate\r\n",
                          "handshake: the server chose an extension phxd did not offer")]:
        sub = os.path.join(w, str(len(extra)))
        os.mkdir(sub)
        srv = Server(lambda p, extra=extra: p.accept(extra) or p.conn.recv(1))
        d = Daemon(sub, config(srv.url, "rooms:a", extra=RETRY))
        st = wait_until(lambda: (s := d.status()[0])["attempts"] >= 2 and s, what="two attempts")
        assert st["connects"] == 0 and st["last_error"] == error, st
        srv.check()
        assert d.stop() == 0


BAD_FRAMES = {
    "reserved bits": b"\xc1\x00",
    "a masked frame": b"\x81\x80\x00\x00\x00\x00",
    "an unknown opcode": b"\x83\x00",
    "a continuation without a message": b"\x80\x00",
    "a fragmented ping": b"\x09\x00",
    "a long ping": b"\x89\x7e\x00\x7e" + b"p" * 126,
    "a text frame inside a fragmented one": b"\x01\x01a\x81\x01b",
    "a length not in its shortest form": b"\x81\x7e\x00\x05hello",
    "a 64-bit length with its top bit set": b"\x81\x7f\x80" + b"\x00" * 7,
    "a close frame of one byte": b"\x88\x01\x03",
    "a close code that may not be sent": b"\x88\x02\x03\xed",
}


@test
def every_bad_frame_is_closed_with_1002_and_retried(w):
    """Each bad frame, sent after a good handshake, gets a close frame with
    1002 from phxd, which then connects again."""
    cases = list(BAD_FRAMES.items())

    def script(p):
        p.accept()
        p.join()
        name, data = cases[(srv.sockets - 1) % len(cases)]
        p.conn.sendall(data)
        return name, p.close_code()

    srv = Server(script)
    d = Daemon(w, config(srv.url, "rooms:a", extra=RETRY))
    wait_until(lambda: len(srv.results) >= len(cases), timeout=20, what="every bad frame")
    srv.check()
    for name, code in srv.results[:len(cases)]:
        assert code == 1002, (name, code)
    st = d.status()[0]
    assert st["last_close_code"] == 1002 and st["last_error"] == "protocol error", st
    assert d.log().count("the server broke the websocket protocol") >= len(cases)
    assert d.alive()


@test
def frames_split_anywhere_and_long_lengths_arrive_whole(w):
    """The join reply comes one byte per segment; then messages with 7-,
    16- and 64-bit lengths, one fragmented across three frames with a ping
    between its parts (answered with the same payload), then 5,000 frames
    in one send."""
    sizes = [10, 300, 70000]
    MANY = 5000

    def script(p):
        p.accept()
        msg = p.join()
        reply = json.dumps([msg[0], msg[1], msg[2], "phx_reply",
                            {"status": "ok", "response": {}}]).encode()
        for b in frame(1, reply):
            p.conn.sendall(bytes([b]))
        p.conn.settimeout(10)
        while not subscribed.wait(0.05):
            pass
        for n in sizes:
            p.conn.sendall(frame(1, json.dumps([None, None, "rooms:a", "big",
                                                {"n": n, "x": "y" * n}]).encode()))
        whole = json.dumps([None, None, "rooms:a", "parts", {"p": "é" * 50}]).encode()
        third = len(whole) // 3
        p.conn.sendall(frame(1, whole[:third], fin=False) + frame(9, b"are you there") +
                       frame(0, whole[third:2 * third], fin=False) + frame(0, whole[2 * third:]))
        pong = p.frame_of(10)
        # many frames in one go: reads cut them at any byte, across the
        # input buffer's chunks
        p.conn.sendall(b"".join(frame(1, json.dumps([None, None, "rooms:a", "seq",
                                                     {"i": i, "pad": "z" * (i % 97)}]).encode())
                                for i in range(MANY)))
        p.conn.sendall(frame(8, struct.pack(">H", 4001) + b"bye"))
        return pong, p.close_code()

    subscribed = threading.Event()
    srv = Server(script)
    d = Daemon(w, config(srv.url, "rooms:a", extra=RETRY))
    d.wait_joined("rooms:a")
    c = d.client()
    c.ok("subscribe", topic="rooms:a")
    subscribed.set()
    for n in sizes:
        m = c.line(timeout=5)
        assert m["event"] == "big" and m["payload"]["n"] == n and len(m["payload"]["x"]) == n, n
    m = c.line(timeout=5)
    assert m["event"] == "parts" and m["payload"] == {"p": "é" * 50}, m
    for i in range(MANY):
        m = c.line(timeout=5)
        assert m["event"] == "seq" and m["payload"] == {"i": i, "pad": "z" * (i % 97)}, (i, m)
    wait_until(lambda: srv.results, what="the pong and the close")
    pong, code = srv.results[0]
    assert pong == b"are you there", pong
    assert code == 4001, code  # the close is answered with the server's code
    st = wait_until(lambda: (s := d.status()[0])["last_close_code"] == 4001 and s,
                    what="the server's close")
    assert st["last_error"] == "server closed with 4001: bye", st
    srv.check()


@test
def a_server_that_pings_and_never_reads_is_dropped_at_64_mib(w):
    """Every ping is answered, so pongs pile up for a server that does not
    read: past 64 MiB phxd drops the socket rather than grow."""
    chunk = frame(9, b"p" * 125) * 1000

    def script(p):
        p.accept()
        p.join()
        p.conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        for _ in range(700):  # 89 MiB of pings at most
            p.conn.sendall(chunk)

    srv = Server(script)
    d = Daemon(w, config(srv.url, "rooms:a", extra=RETRY))
    st = wait_until(lambda: (s := d.status()[0])["last_error"] == "send queue full" and s,
                    timeout=30, what="the socket dropped")
    assert st["last_close_code"] == 1008, st
    d.wait_log("more than 67108864 bytes queued for a server that does not read; closing")
    srv.check()


@test
def frames_queued_for_a_slow_reader_leave_whole_and_in_order(w):
    """The server reads nothing while 2,000 pushes of 8 KiB are queued (more
    than the kernel's buffers hold), then everything: each frame arrives
    whole, masked and in order, and the socket is written directly again
    after."""
    n = 2000
    queued = threading.Event()

    def script(p):
        p.accept()
        p.answer_join()
        queued.wait(20)
        seen = []
        while len(seen) < n + 1:
            m = json.loads(p.frame_of(1))
            if m[3] == "seq":
                seen.append(m[4]["i"])
                if m[4]["i"] == n:  # awaited: answer it
                    p.conn.sendall(frame(1, json.dumps([m[0], m[1], m[2], "phx_reply",
                                                        {"status": "ok", "response": {}}])
                                         .encode()))
        return seen

    srv = Server(script)
    d = Daemon(w, config(srv.url, "rooms:a", extra=RETRY))
    d.wait_joined("rooms:a")
    c = d.client()
    pad = "q" * 8192
    for i in range(n):
        c.send_raw((json.dumps({"op": "push", "topic": "rooms:a", "event": "seq",
                                "payload": {"i": i, "pad": pad}}) + "\n").encode())
    c.ok("status")  # every notification before it was handled
    queued.set()
    r = c.ok("push", topic="rooms:a", event="seq", payload={"i": n}, **{"await": True})
    assert r["status"] == "ok", r
    wait_until(lambda: srv.results, what="the server read everything")
    assert srv.results[0] == list(range(n + 1))
    assert d.status()[0]["connects"] == 1
    srv.check()


@test
def pushes_of_every_size_leave_whole_and_in_order(w):
    """Pushes of mixed sizes queued for a server that reads nothing yet
    (more than the kernel's buffers hold), then everything: tiny ones
    between others on both sides of what phxd stages for one write
    (4 KiB) and far past it (70,000 bytes). Each frame arrives whole,
    masked and in order, whichever way it was queued."""
    pads = []
    for i in range(3000):
        pads += [i % 7, 3900 + i % 400, 70000 if i % 50 == 0 else 3]
    n = len(pads)
    queued = threading.Event()

    def script(p):
        p.accept()
        p.answer_join()
        queued.wait(20)
        seen = []
        while len(seen) < n:
            m = json.loads(p.frame_of(1))
            if m[3] == "seq":
                pad = m[4]["pad"]
                seen.append((m[4]["i"], len(pad) if pad == "q" * len(pad) else -1))
        return seen

    srv = Server(script)
    d = Daemon(w, config(srv.url, "rooms:a", extra=RETRY))
    d.wait_joined("rooms:a")
    c = d.client()
    c.send_raw(b"".join((json.dumps({"op": "push", "topic": "rooms:a", "event": "seq",
                                     "payload": {"i": i, "pad": "q" * pad}}) + "\n").encode()
                        for i, pad in enumerate(pads)))
    c.ok("status")  # every push before it was handled
    queued.set()
    wait_until(lambda: srv.results, what="the server read every push")
    assert srv.results[0] == list(enumerate(pads))
    assert d.status()[0]["connects"] == 1
    srv.check()


@test
def random_bytes_after_the_handshake_never_hurt_phxd(w):
    """60 sockets, each fed 4 KiB of seeded random bytes after a good
    handshake (half of them starting with a valid frame header): phxd
    closes or drops each and connects again; it never crashes or hangs
    (the sanitizer build checks its memory)."""
    import random
    rnd = random.Random(1234)
    total = 60

    def script(p):
        p.accept()
        p.join()
        junk = bytes(rnd.getrandbits(8) for _ in range(4096))
        if srv.sockets % 2:
            junk = frame(1, junk[:200]) + junk
        p.conn.sendall(junk)
        p.conn.shutdown(socket.SHUT_WR)  # then the end of the stream
        p.conn.settimeout(2)
        try:
            while p.conn.recv(65536):
                pass
        except OSError:
            pass

    srv = Server(script)
    d = Daemon(w, config(srv.url, "rooms:a", extra=RETRY))
    wait_until(lambda: srv.sockets >= total, timeout=60, what=f"{total} sockets")
    assert d.alive() and d.client().ok("status")["connections"]
    srv.check()


run()
