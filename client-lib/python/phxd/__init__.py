# SPDX-License-Identifier: MIT
"""phxd: the Python client of phxd, standard library only.

    import phxd

    with phxd.Client() as c:                    # $PHXD_SOCKET or /run/phxd/phxd.sock
        c.join("rooms:lobby", {"user_id": 1})
        print(c.push("rooms:lobby", "ping", {}, await_reply=True))
        for msg in c.subscribe("rooms:*", count=10):
            print(msg["topic"], msg["event"], msg["payload"])

Every call raises phxd.Error (with .code, the daemon's error code) when
phxd answers with an error; phxd.Unreachable (a phxd.Error, and a
ConnectionError) when there is no daemon or it went away.
The protocol is docs/ipc.md.
"""

import base64
import itertools
import json
import os
import socket
import time

__all__ = ["Client", "Subscription", "Error", "Unreachable", "PROTOCOL_VERSION",
           "default_socket", "ReplyError", "Timeout", "BadJson", "BadRequest", "UnknownOp",
           "UnknownConnection", "VersionMismatch", "LineTooLong", "NotJoined", "BufferFull",
           "Disconnected", "ChannelError", "ChannelClosed", "Left", "ShuttingDown", "TooLarge",
           "ConfigError", "NoSuchSubscription", "LimitReached", "TooManyTopics", "Busy",
           "Forbidden", "Internal"]

PROTOCOL_VERSION = 1
DEFAULT_SOCKET = "/run/phxd/phxd.sock"
MAX_LINE = 64 << 20


def default_socket():
    return os.environ.get("PHXD_SOCKET") or DEFAULT_SOCKET


class Error(Exception):
    """phxd answered with an error; .code is one of the codes of docs/ipc.md."""

    def __init__(self, code, message, **extra):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.extra = extra
        self.status = extra.get("status")
        self.response = extra.get("response")


class ReplyError(Error):
    """The Phoenix server replied with a status other than "ok" (reply_error):
    .status and .response are the server's."""


class Timeout(Error):
    """Not joined or not answered in time (timeout)."""


# One class per error code of docs/ipc.md (ipc/phxd-ipc.h).
class BadJson(Error): """The request line was not JSON (bad_json)."""
class BadRequest(Error): """A field is missing or of the wrong type (bad_request)."""
class UnknownOp(Error): """phxd does not know the op (unknown_op)."""
class UnknownConnection(Error): """No such [connection] (unknown_connection)."""
class VersionMismatch(Error): """The protocol versions differ (version_mismatch)."""
class LineTooLong(Error): """A request longer than max_line_bytes (line_too_long)."""
class NotJoined(Error): """The topic is not joined (not_joined)."""
class BufferFull(Error): """The push buffer is full (buffer_full)."""
class Disconnected(Error): """The connection was lost before the reply (disconnected)."""
class ChannelError(Error): """The channel crashed on the server (channel_error)."""
class ChannelClosed(Error): """The server closed the channel (channel_closed)."""
class Left(Error): """The topic was left while the push waited (left)."""
class ShuttingDown(Error): """phxd is stopping (shutting_down)."""
class TooLarge(Error): """A field too long for a Phoenix frame (too_large)."""
class ConfigError(Error): """The configuration was refused (config_error)."""
class NoSuchSubscription(Error): """No such subscription (no_such_subscription)."""
class LimitReached(Error): """A per-client limit (limit_reached)."""
class TooManyTopics(Error): """The connection holds max_topics (too_many_topics)."""
class Busy(Error): """Too many clients (busy)."""
class Forbidden(Error): """This user may not use the socket (forbidden)."""
class Internal(Error): """phxd failed in a way it did not expect (internal)."""


class Unreachable(Error, ConnectionError):
    """No phxd at the socket, or it went away (code "unreachable"; .errno
    is the system's error number, 0 when phxd closed the connection)."""

    def __init__(self, errno, message):
        super().__init__("unreachable", message)
        self.errno = errno


_ERRORS = {
    "bad_json": BadJson, "bad_request": BadRequest, "unknown_op": UnknownOp,
    "unknown_connection": UnknownConnection, "version_mismatch": VersionMismatch,
    "line_too_long": LineTooLong, "not_joined": NotJoined, "reply_error": ReplyError,
    "timeout": Timeout, "buffer_full": BufferFull, "disconnected": Disconnected,
    "channel_error": ChannelError, "channel_closed": ChannelClosed, "left": Left,
    "shutting_down": ShuttingDown, "too_large": TooLarge, "config_error": ConfigError,
    "no_such_subscription": NoSuchSubscription, "limit_reached": LimitReached,
    "too_many_topics": TooManyTopics, "busy": Busy, "forbidden": Forbidden,
    "internal": Internal,
}


def _raise(err):
    err = dict(err or {})
    code = err.pop("code", "internal")
    message = err.pop("message", "")
    raise _ERRORS.get(code, Error)(code, message, **err)


class _Conn:
    """One socket connection: bounded line reads, JSON in and out."""

    def __init__(self, path, timeout):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            raise Unreachable(e.errno, f"cannot reach phxd at {path}: {e.strerror}") from None
        self.buf = b""

    def send(self, obj):
        try:
            self.sock.sendall(json.dumps(obj, separators=(",", ":")).encode() + b"\n")
        except OSError as e:
            raise Unreachable(e.errno, f"lost phxd at {self.path}: {e.strerror}") from None

    def recv(self, deadline=None):
        while b"\n" not in self.buf:
            if len(self.buf) > MAX_LINE:
                raise Error("line_too_long", "phxd sent an overlong line")
            if deadline is not None:
                # 0 left still reads what is already there (a poll)
                self.sock.settimeout(max(0.0, deadline - time.monotonic()))
            else:
                self.sock.settimeout(None)
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, BlockingIOError):
                raise socket.timeout("timed out") from None
            except OSError as e:
                raise Unreachable(e.errno, f"lost phxd at {self.path}: {e.strerror}") from None
            if not chunk:
                raise Unreachable(0, f"phxd at {self.path} closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self):
        self.sock.close()


class _Closing:
    """with-statement support for objects holding a _Conn in self._c."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._c.close()


_DEFAULT = object()


class Client(_Closing):
    """A connection to phxd for requests. Not thread-safe; use one per thread.
    timeout: seconds each call waits for its answer (None: forever; 0: only
    what has already arrived), unless the call says otherwise."""

    def __init__(self, path=None, timeout=60.0, conn=None):
        self.path = path or default_socket()
        self.timeout = timeout
        self.conn = conn            # default connection name for every call
        self._c = _Conn(self.path, timeout)
        self._ids = itertools.count(1)
        self.hello = self.request("hello", version=PROTOCOL_VERSION)


    def request(self, op, timeout=_DEFAULT, **fields):
        """Sends one request; returns its result or raises Error."""
        rid = next(self._ids)
        fields = {k: v for k, v in fields.items() if v is not None}
        self._c.send(dict(id=rid, op=op, **fields))
        wait = self.timeout if timeout is _DEFAULT else timeout
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            try:
                msg = self._c.recv(deadline)
            except socket.timeout:
                raise Timeout("timeout", f"no answer from phxd within {wait} s") from None
            if msg.get("id") == rid:
                if msg.get("ok"):
                    return msg.get("result", {})
                _raise(msg.get("error"))
            if msg.get("id") is None and msg.get("ok") is False:
                _raise(msg.get("error"))

    def _conn(self, conn):
        return conn if conn is not None else self.conn

    def status(self, conn=None):
        return self.request("status", conn=self._conn(conn))

    def join(self, topic, payload=None, conn=None):
        """Keeps topic joined until leave(); returns the server's join reply."""
        return self.request("join", conn=self._conn(conn), topic=topic,
                            payload=payload).get("response")

    def leave(self, topic, conn=None):
        self.request("leave", conn=self._conn(conn), topic=topic)

    def push(self, topic, event, payload=None, conn=None, await_reply=False, timeout_ms=None,
             binary=None):
        """Pushes event. With await_reply, returns the server's reply
        response (raises ReplyError for an error reply); else None once sent.
        binary (bytes) sends a Phoenix binary frame instead of JSON."""
        fields = dict(conn=self._conn(conn), topic=topic, event=event, timeout_ms=timeout_ms)
        if binary is not None:
            fields["payload_b64"] = base64.b64encode(binary).decode()
        else:
            fields["payload"] = {} if payload is None else payload
        if await_reply:
            fields["await"] = True
        wait = _DEFAULT
        if timeout_ms is not None:  # phxd answers at timeout_ms: a little longer
            wait = timeout_ms / 1000 + 5
        result = self.request("push", timeout=wait, **fields)
        if not await_reply:
            return None
        resp = result.get("response")
        if isinstance(resp, dict) and set(resp) == {"binary"}:
            return base64.b64decode(resp["binary"])
        return resp

    def presence(self, topic, conn=None):
        return self.request("presence", conn=self._conn(conn), topic=topic)["presence"]

    def reload(self):
        return self.request("reload")

    def subscribe(self, topic, events=None, conn=None, count=None, timeout=None):
        """Messages of topic (or of a "prefix*" pattern), as dicts, on a
        connection of their own."""
        return Subscription(self.path, "subscribe", dict(topic=topic, events=events,
                                                         conn=self._conn(conn)), count, timeout)

    def events(self, conn=None, count=None, timeout=None):
        """Connection and channel state changes, as dicts."""
        return Subscription(self.path, "events", dict(conn=self._conn(conn)), count, timeout)


class Subscription(_Closing):
    """An iterator over stream lines; close() (or leaving a with block) ends it.
    timeout: seconds to wait for each line (None: forever) before Timeout."""

    def __init__(self, path, op, fields, count=None, timeout=None):
        self._c = _Conn(path, None)
        self.count = count
        self.timeout = timeout
        self.seen = 0
        fields = {k: v for k, v in fields.items() if v is not None}
        self._c.send(dict(id=1, op=op, **fields))
        while True:
            msg = self._c.recv(time.monotonic() + 30)
            if msg.get("id") == 1:
                break
        if not msg.get("ok"):
            self._c.close()
            _raise(msg.get("error"))
        self.sub = msg["result"]["sub"]

    def __iter__(self):
        return self

    def __next__(self):
        if self.count is not None and self.seen >= self.count:
            raise StopIteration
        while True:
            deadline = None if self.timeout is None else time.monotonic() + self.timeout
            try:
                msg = self._c.recv(deadline)
            except socket.timeout:
                raise Timeout("timeout", f"nothing within {self.timeout} s") from None
            if msg.get("sub") == self.sub:
                msg.pop("sub")
                if msg.get("binary"):
                    msg["payload"] = base64.b64decode(msg["payload"])
                self.seen += 1
                return msg
            if msg.get("ok") is False:
                _raise(msg.get("error"))

