# SPDX-License-Identifier: MIT
"""phxd: the Python client of phxd, standard library only.

    import phxd

    with phxd.Client() as c:                    # $PHXD_SOCKET or /run/phxd/phxd.sock
        c.join("rooms:lobby", {"user_id": 1})
        print(c.push("rooms:lobby", "ping", {}, await_reply=True))
        for msg in c.subscribe("rooms:*", count=10):
            print(msg["topic"], msg["event"], msg["payload"])

phxd.aio has the same for asyncio. Every call raises phxd.Error (with .code, the daemon's error code) when
phxd answers with an error; phxd.Unreachable (a phxd.Error, and a
ConnectionError) when there is no daemon or it went away.
The protocol is docs/ipc.md.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import socket
import time
from typing import Any, Dict, Iterator, Literal, NoReturn, Optional, Sequence, TypeVar

__all__ = ["Client", "Subscription", "Hold", "Error", "Unreachable", "PROTOCOL_VERSION",
           "default_socket", "ReplyError", "Timeout", "BadJson", "BadRequest", "UnknownOp",
           "UnknownConnection", "VersionMismatch", "LineTooLong", "NotJoined", "BufferFull",
           "Disconnected", "ChannelError", "ChannelClosed", "Left", "ShuttingDown", "TooLarge",
           "ConfigError", "NoSuchSubscription", "LimitReached", "TooManyTopics", "Busy",
           "Forbidden", "OutboxUnavailable", "OutboxFull", "NotFound", "Internal"]

PROTOCOL_VERSION = 1
DEFAULT_SOCKET = "/run/phxd/phxd.sock"
MAX_LINE = 64 << 20
# follow=True: between attempts to reach phxd again
FOLLOW_RETRY_MIN = 0.1
FOLLOW_RETRY_MAX = 2.0

JSON = Any
"""What json.loads returns: a dict, list, str, int, float, bool or None."""
Hold = Literal["daemon", "client"]
"""Who holds a join: phxd until a leave ("daemon"), or this client's
connection, for as long as it lives ("client")."""

log = logging.getLogger("phxd")


def default_socket() -> str:
    return os.environ.get("PHXD_SOCKET") or DEFAULT_SOCKET


class Error(Exception):
    """phxd answered with an error; .code is one of the codes of docs/ipc.md."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.extra: Dict[str, Any] = extra
        self.status: Optional[str] = extra.get("status")
        self.response: JSON = extra.get("response")


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
class OutboxUnavailable(Error): """No outbox, or its database fails (outbox_unavailable)."""
class OutboxFull(Error): """outbox_max_messages or _bytes reached (outbox_full)."""
class NotFound(Error): """No stored push has that id (not_found)."""
class Internal(Error): """phxd failed in a way it did not expect (internal)."""


class Unreachable(Error, ConnectionError):
    """No phxd at the socket, or it went away (code "unreachable"; .errno
    is the system's error number, 0 when phxd closed the connection)."""

    def __init__(self, errno: int, message: str) -> None:
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
    "outbox_unavailable": OutboxUnavailable, "outbox_full": OutboxFull, "not_found": NotFound,
    "internal": Internal,
}


def _raise(err: Optional[Dict[str, Any]]) -> NoReturn:
    err = dict(err or {})
    code = err.pop("code", "internal")
    message = err.pop("message", "")
    raise _ERRORS.get(code, Error)(code, message, **err)


class _Conn:
    """One socket connection: bounded line reads, JSON in and out."""

    def __init__(self, path: str, timeout: Optional[float]) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            raise Unreachable(e.errno, f"cannot reach phxd at {path}: {e.strerror}") from None
        self.buf = b""
        self.pos = 0                # where the next line starts in buf
        self.scanned = 0            # buf holds no newline before this

    def send(self, obj: Dict[str, Any]) -> None:
        try:
            self.sock.sendall(_encode(obj).encode() + b"\n")
        except OSError as e:
            raise Unreachable(e.errno, f"lost phxd at {self.path}: {e.strerror}") from None

    def recv(self, deadline: Optional[float] = None) -> Dict[str, Any]:
        # Lines are taken from buf where they lie, and what is left is kept
        # only when more must be read: a read of many lines is not copied
        # again for each of them.
        while True:
            end = self.buf.find(b"\n", max(self.pos, self.scanned))
            if end >= 0:
                break
            self.scanned = len(self.buf)
            if self.scanned - self.pos > MAX_LINE:
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
            self.buf = self.buf[self.pos:] + chunk
            self.scanned -= self.pos
            self.pos = 0
        line = self.buf[self.pos:end]
        self.pos = end + 1
        return _parse_line(line)

    def close(self) -> None:
        self.sock.close()


class _Closing:
    """with-statement support for objects holding a _Conn in self._c."""

    _c: _Conn

    def __enter__(self: "_T") -> "_T":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._c.close()


_T = TypeVar("_T", bound=_Closing)
_DEFAULT: Any = object()


def _fields(**fields: Any) -> Dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _push_fields(topic: str, event: str, payload: JSON, binary: Optional[bytes],
                 await_reply: bool, conn: Optional[str],
                 timeout_ms: Optional[int], durable: bool = False) -> Dict[str, Any]:
    fields = _fields(conn=conn, topic=topic, event=event, timeout_ms=timeout_ms)
    if durable:
        fields["durable"] = True
    if binary is not None:
        fields["payload_b64"] = base64.b64encode(binary).decode()
    else:
        fields["payload"] = {} if payload is None else payload
    if await_reply:
        fields["await"] = True
    return fields


def _reply(result: Dict[str, Any]) -> JSON:
    resp = result.get("response")
    if isinstance(resp, dict) and set(resp) == {"binary"}:
        return base64.b64decode(resp["binary"])
    return resp


_decode = json.JSONDecoder().decode
# json.dumps builds an encoder for each call that names separators
_encode = json.JSONEncoder(separators=(",", ":")).encode


def _parse_line(line: bytes) -> Dict[str, Any]:
    try:
        # what json.loads does, less finding out the bytes' encoding: phxd
        # writes UTF-8 (a bad byte is a UnicodeDecodeError, a ValueError)
        msg = _decode(line.decode())
    except ValueError:
        msg = None
    if not isinstance(msg, dict):
        raise Error("protocol", "phxd sent a line that is not an object")
    return msg


# A stream's connection: hello (id 1), the subscribe or events (id 2), then
# with a hold the join (id 3), answered while lines already flow.
_HELLO, _OPEN, _HOLD = 1, 2, 3


def _stream_requests(op: str, fields: Dict[str, Any]) -> Sequence[Dict[str, Any]]:
    return (dict(id=_HELLO, op="hello", version=PROTOCOL_VERSION), dict(id=_OPEN, op=op, **fields))


def _hold_request(topic: str, fields: Dict[str, Any]) -> Dict[str, Any]:
    # Sent after the subscribe: nothing that follows the join is missed.
    return dict(id=_HOLD, op="join", topic=topic, hold="client", **_fields(conn=fields.get("conn")))


def _stream_opened(answers: Dict[int, Dict[str, Any]]) -> int:
    """The subscription id, once hello and the subscribe were answered."""
    for rid in (_HELLO, _OPEN):
        if not answers.get(rid, {}).get("ok"):
            _raise(answers.get(rid, {}).get("error"))
    sub: int = answers[_OPEN]["result"]["sub"]
    return sub


def _stream_line(msg: Dict[str, Any], sub: int, hold: Optional[str]) -> Optional[Dict[str, Any]]:
    """A line of the stream's connection: the message it carries, or None."""
    if msg.get("sub") == sub and "id" not in msg:
        msg.pop("sub")
        if msg.get("binary"):
            msg["payload"] = base64.b64decode(msg["payload"])
        return msg
    if msg.get("id") == _HOLD and not msg.get("ok"):
        log.warning("%s is not joined: %s", hold, msg.get("error"))
    elif msg.get("id") is None and msg.get("ok") is False:
        _raise(msg.get("error"))
    return None


def _log_lost(why: Error) -> None:
    log.warning("lost phxd (%s); reconnecting", why.message)


def _log_resumed() -> None:
    log.warning("reconnected to phxd; subscribed again (what came meanwhile is not replayed)")


class Client(_Closing):
    """A connection to phxd for requests. Not thread-safe: use one per
    thread (or guard it with a lock). timeout: seconds each call waits for
    its answer (None: forever; 0: only what has already arrived), unless
    the call says otherwise. Topics joined with hold="client" are held for
    as long as this client stays connected."""

    def __init__(self, path: Optional[str] = None, timeout: Optional[float] = 60.0,
                 conn: Optional[str] = None) -> None:
        self.path = path or default_socket()
        self.timeout = timeout
        self.conn = conn            # default connection name for every call
        self._c = _Conn(self.path, timeout)
        self._ids = itertools.count(1)
        self.hello: Dict[str, Any] = self.request("hello", version=PROTOCOL_VERSION)

    def request(self, op: str, timeout: Optional[float] = _DEFAULT,
                **fields: Any) -> Dict[str, Any]:
        """Sends one request; returns its result or raises Error."""
        rid = next(self._ids)
        self._c.send(dict(id=rid, op=op, **_fields(**fields)))
        wait = self.timeout if timeout is _DEFAULT else timeout
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            try:
                msg = self._c.recv(deadline)
            except socket.timeout:
                raise Timeout("timeout", f"no answer from phxd within {wait} s") from None
            if msg.get("id") == rid:
                if msg.get("ok"):
                    result: Dict[str, Any] = msg.get("result", {})
                    return result
                _raise(msg.get("error"))
            if msg.get("id") is None and msg.get("ok") is False:
                _raise(msg.get("error"))

    def _conn(self, conn: Optional[str]) -> Optional[str]:
        return conn if conn is not None else self.conn

    def status(self, conn: Optional[str] = None) -> Dict[str, Any]:
        return self.request("status", conn=self._conn(conn))

    def join(self, topic: str, payload: Optional[Dict[str, Any]] = None,
             conn: Optional[str] = None, hold: Hold = "daemon") -> JSON:
        """Keeps topic joined until leave() (hold="daemon"), or while this
        client is connected (hold="client"); returns the server's join reply."""
        return self.request("join", conn=self._conn(conn), topic=topic, payload=payload,
                            hold=hold).get("response")

    def leave(self, topic: str, conn: Optional[str] = None) -> bool:
        """Drops what this client wanted of topic. True when phxd left it;
        False when somebody else (the config, another client) still wants it."""
        return bool(self.request("leave", conn=self._conn(conn), topic=topic).get("left"))

    def push(self, topic: str, event: str, payload: JSON = None, conn: Optional[str] = None,
             await_reply: bool = False, timeout_ms: Optional[int] = None,
             binary: Optional[bytes] = None, durable: bool = False) -> JSON:
        """Pushes event. With await_reply, returns the server's reply
        response (raises ReplyError for an error reply); else None once sent.
        binary (bytes) sends a Phoenix binary frame instead of JSON.
        durable: phxd stores it first (returns the stored push's id) and
        delivers it until the server replies, across outages and restarts;
        deliveries are "outbox" lines on events() streams."""
        fields = _push_fields(topic, event, payload, binary, await_reply, self._conn(conn),
                              timeout_ms, durable)
        if durable:
            return self.request("push", **fields)["id"]
        wait = _DEFAULT
        if timeout_ms is not None:  # phxd answers at timeout_ms: a little longer
            wait = timeout_ms / 1000 + 5
        result = self.request("push", timeout=wait, **fields)
        return _reply(result) if await_reply else None

    def notify(self, topic: str, event: str, payload: JSON = None, conn: Optional[str] = None,
               binary: Optional[bytes] = None) -> None:
        """Pushes event without an answer (a notification): returns once
        written. A failure, whatever it is, reaches events() streams as a
        "push_failed" line. The cheapest way to fire many pushes."""
        self._c.send(dict(op="push", **_push_fields(topic, event, payload, binary, False,
                                                     self._conn(conn), None)))

    def outbox(self, limit: Optional[int] = None) -> Dict[str, Any]:
        """The durable pushes phxd holds: counts, and "messages" oldest first."""
        return self.request("outbox", **_fields(limit=limit))

    def outbox_retry(self, push_id: int) -> None:
        """Sends a failed stored push again (NotFound for an unknown id)."""
        self.request("outbox", action="retry", push_id=push_id)

    def outbox_drop(self, push_id: int) -> None:
        """Forgets a stored push, pending or failed."""
        self.request("outbox", action="drop", push_id=push_id)

    def presence(self, topic: str, conn: Optional[str] = None) -> Dict[str, Any]:
        presence: Dict[str, Any] = self.request("presence", conn=self._conn(conn),
                                                topic=topic)["presence"]
        return presence

    def reload(self) -> Dict[str, Any]:
        return self.request("reload")

    def subscribe(self, topic: str, events: Optional[Sequence[str]] = None,
                  conn: Optional[str] = None, count: Optional[int] = None,
                  timeout: Optional[float] = None, join: bool = False,
                  follow: bool = False) -> "Subscription":
        """Messages of topic (or of a "prefix*" pattern), as dicts, on a
        connection of their own. join=True holds the topic joined for the
        subscription's life; follow=True survives phxd restarts."""
        fields = _fields(topic=topic, events=list(events) if events else None,
                         conn=self._conn(conn))
        return Subscription(self.path, "subscribe", fields, count, timeout,
                            hold=topic if join else None, follow=follow)

    def events(self, conn: Optional[str] = None, count: Optional[int] = None,
               timeout: Optional[float] = None, follow: bool = False) -> "Subscription":
        """Connection and channel state changes, as dicts."""
        return Subscription(self.path, "events", _fields(conn=self._conn(conn)), count, timeout,
                            follow=follow)


class Subscription(_Closing):
    """An iterator over stream lines; close() (or leaving a with block) ends it.
    timeout: seconds to wait for each line (None: forever) before Timeout.
    follow: when phxd goes away, connect again (retrying until timeout, if
    any) and subscribe again; lines sent meanwhile are not replayed, and a
    warning goes to the "phxd" logger."""

    def __init__(self, path: str, op: str, fields: Dict[str, Any], count: Optional[int] = None,
                 timeout: Optional[float] = None, hold: Optional[str] = None,
                 follow: bool = False) -> None:
        self.path = path
        self.op = op
        self.fields = fields
        self.count = count
        self.timeout = timeout
        self.hold = hold
        self.follow = follow
        self.seen = 0
        self.resumed = 0            # times it came back after phxd went away
        self.sub = 0
        self._open()

    def _open(self) -> None:
        c = _Conn(self.path, None)
        try:
            for req in _stream_requests(self.op, self.fields):
                c.send(req)
            answers: Dict[int, Dict[str, Any]] = {}
            while _OPEN not in answers:
                msg = c.recv(time.monotonic() + 30)
                if isinstance(msg.get("id"), int):
                    answers[msg["id"]] = msg
            self.sub = _stream_opened(answers)
            if self.hold is not None:
                c.send(_hold_request(self.hold, self.fields))
        except BaseException:
            c.close()
            raise
        self._c = c

    def _resume(self, why: Unreachable) -> None:
        _log_lost(why)
        self._c.close()
        start, delay = time.monotonic(), FOLLOW_RETRY_MIN
        while True:
            if self.timeout is not None and time.monotonic() - start >= self.timeout:
                raise Timeout("timeout", f"phxd not back within {self.timeout} s") from why
            time.sleep(delay)
            try:
                self._open()
                break
            except Unreachable:
                delay = min(delay * 2, FOLLOW_RETRY_MAX)
        self.resumed += 1
        _log_resumed()

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return self

    def __next__(self) -> Dict[str, Any]:
        if self.count is not None and self.seen >= self.count:
            raise StopIteration
        while True:
            deadline = None if self.timeout is None else time.monotonic() + self.timeout
            try:
                msg = self._c.recv(deadline)
            except socket.timeout:
                raise Timeout("timeout", f"nothing within {self.timeout} s") from None
            except Unreachable as e:
                if not self.follow:
                    raise
                self._resume(e)
                continue
            line = _stream_line(msg, self.sub, self.hold)
            if line is not None:
                self.seen += 1
                return line
