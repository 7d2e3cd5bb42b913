# SPDX-License-Identifier: MIT
"""phxd.aio: the asyncio client of phxd, standard library only.

    import asyncio, phxd.aio

    async def main():
        async with phxd.aio.Client() as c:
            await c.join("rooms:lobby")
            print(await c.push("rooms:lobby", "ping", {}, await_reply=True))
            async with c.subscribe("rooms:*", join=False, follow=True) as sub:
                async for msg in sub:
                    print(msg["topic"], msg["event"], msg["payload"])

    asyncio.run(main())

One Client carries any number of concurrent calls (each task waits for
its own answer); each subscription has a connection of its own, so a
slow consumer holds up nobody else and phxd's per-client limits apply to
it alone. Errors are those of phxd (phxd.Error and its subclasses).

Cancellation: cancelling a task that awaits a call stops the wait, never
the connection; the request itself may already have reached phxd (a
push may still be sent), and its late answer is dropped. Cancelling a
task reading a subscription loses no line: the next read gets it.
Use a Client from the event loop that opened it; it is not thread-safe.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from types import TracebackType
from typing import Any, AsyncIterator, Dict, Optional, Sequence, Type

from . import (_OPEN, FOLLOW_RETRY_MAX, FOLLOW_RETRY_MIN, JSON, MAX_LINE, PROTOCOL_VERSION,
               Error, Hold, Timeout, Unreachable, _encode, _fields, _hold_request, _log_lost,
               _log_resumed, _parse_line, _push_fields, _raise, _reply, _stream_line,
               _stream_opened, _stream_requests, default_socket)

__all__ = ["Client", "Subscription", "connect"]

_DEFAULT: Any = object()


class _Conn:
    """One socket connection: whole lines in and out."""

    def __init__(self, path: str, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.path = path
        self.reader = reader
        self.writer = writer
        self._drain = asyncio.Lock()

    @classmethod
    async def open(cls, path: str) -> "_Conn":
        try:
            reader, writer = await asyncio.open_unix_connection(path, limit=MAX_LINE + 1)
        except OSError as e:
            raise Unreachable(e.errno or 0,
                              f"cannot reach phxd at {path}: {e.strerror}") from None
        return cls(path, reader, writer)

    async def send(self, obj: Dict[str, Any]) -> None:
        # Written whole at once, so that a cancelled sender never leaves
        # half a line behind it.
        self.writer.write(_encode(obj).encode() + b"\n")
        try:
            async with self._drain:
                await self.writer.drain()
        except OSError as e:
            raise Unreachable(e.errno or 0, f"lost phxd at {self.path}: {e}") from None

    async def recv(self) -> Dict[str, Any]:
        try:
            line = await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            raise Unreachable(0, f"phxd at {self.path} closed the connection") from None
        except asyncio.LimitOverrunError:
            raise Error("line_too_long", "phxd sent an overlong line") from None
        except OSError as e:
            raise Unreachable(e.errno or 0, f"lost phxd at {self.path}: {e}") from None
        return _parse_line(line)

    def close(self) -> None:
        self.writer.close()


async def _wait(fut: "asyncio.Future[Any]", timeout: Optional[float], what: str) -> Any:
    if timeout is None:
        return await fut
    try:
        return await asyncio.wait_for(asyncio.shield(fut), timeout)
    except asyncio.TimeoutError:
        raise Timeout("timeout", f"no {what} from phxd within {timeout} s") from None


class Client:
    """An asyncio connection to phxd for requests: await Client.connect(),
    or async with Client(). timeout: seconds each call waits (None:
    forever; 0: only what has already arrived)."""

    def __init__(self, path: Optional[str] = None, timeout: Optional[float] = 60.0,
                 conn: Optional[str] = None) -> None:
        self.path = path or default_socket()
        self.timeout = timeout
        self.conn = conn
        self.hello: Dict[str, Any] = {}
        self._c: Optional[_Conn] = None
        self._ids = itertools.count(1)
        self._pending: Dict[int, "asyncio.Future[Dict[str, Any]]"] = {}
        self._reader: Optional["asyncio.Task[None]"] = None
        self._lost: Optional[Error] = None

    @classmethod
    async def connect(cls, path: Optional[str] = None, timeout: Optional[float] = 60.0,
                      conn: Optional[str] = None) -> "Client":
        c = cls(path, timeout, conn)
        await c.open()
        return c

    async def open(self) -> None:
        self._c = await _Conn.open(self.path)
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())
        try:
            self.hello = await self.request("hello", version=PROTOCOL_VERSION)
        except BaseException:
            await self.close()
            raise

    async def __aenter__(self) -> "Client":
        await self.open()
        return self

    async def __aexit__(self, et: Optional[Type[BaseException]], e: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        await self.close()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass
            self._reader = None
        if self._c is not None:
            self._c.close()
            self._c = None
        self._fail_all(Unreachable(0, "the client is closed"))

    def _fail_all(self, err: Error) -> None:
        self._lost = err
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(err)
        self._pending.clear()

    async def _read_loop(self) -> None:
        assert self._c is not None
        try:
            while True:
                msg = await self._c.recv()
                rid = msg.get("id")
                fut = self._pending.pop(rid, None) if isinstance(rid, int) else None
                if fut is not None and not fut.done():
                    fut.set_result(msg)
                elif rid is None and msg.get("ok") is False:
                    # An error phxd could not tie to a request (a cut-off):
                    # it ends every call in flight.
                    try:
                        _raise(msg.get("error"))
                    except Error as err:
                        self._fail_all(err)
        except Error as err:
            self._fail_all(err)

    async def request(self, op: str, timeout: Optional[float] = _DEFAULT,
                      **fields: Any) -> Dict[str, Any]:
        """Sends one request; returns its result or raises Error."""
        if self._lost is not None or self._c is None:
            raise self._lost or Unreachable(0, "the client is not connected")
        rid = next(self._ids)
        fut: "asyncio.Future[Dict[str, Any]]" = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            await self._c.send(dict(id=rid, op=op, **_fields(**fields)))
            wait = self.timeout if timeout is _DEFAULT else timeout
            msg: Dict[str, Any] = await _wait(fut, wait, "answer")
        finally:
            self._pending.pop(rid, None)
        if not msg.get("ok"):
            _raise(msg.get("error"))
        result: Dict[str, Any] = msg.get("result", {})
        return result

    def _conn(self, conn: Optional[str]) -> Optional[str]:
        return conn if conn is not None else self.conn

    async def status(self, conn: Optional[str] = None) -> Dict[str, Any]:
        return await self.request("status", conn=self._conn(conn))

    async def join(self, topic: str, payload: Optional[Dict[str, Any]] = None,
                   conn: Optional[str] = None, hold: Hold = "daemon") -> JSON:
        """As phxd.Client.join; hold="client" holds it while this client is
        connected."""
        result = await self.request("join", conn=self._conn(conn), topic=topic,
                                    payload=payload, hold=hold)
        return result.get("response")

    async def leave(self, topic: str, conn: Optional[str] = None) -> bool:
        result = await self.request("leave", conn=self._conn(conn), topic=topic)
        return bool(result.get("left"))

    async def push(self, topic: str, event: str, payload: JSON = None,
                   conn: Optional[str] = None, await_reply: bool = False,
                   timeout_ms: Optional[int] = None, binary: Optional[bytes] = None,
                   durable: bool = False) -> JSON:
        """As phxd.Client.push."""
        fields = _push_fields(topic, event, payload, binary, await_reply, self._conn(conn),
                              timeout_ms, durable)
        if durable:
            return (await self.request("push", **fields))["id"]
        wait = _DEFAULT if timeout_ms is None else timeout_ms / 1000 + 5
        result = await self.request("push", timeout=wait, **fields)
        return _reply(result) if await_reply else None

    async def notify(self, topic: str, event: str, payload: JSON = None,
                     conn: Optional[str] = None, binary: Optional[bytes] = None) -> None:
        """As phxd.Client.notify: no answer; failures on the events streams."""
        if self._lost is not None or self._c is None:
            raise self._lost or Unreachable(0, "the client is not connected")
        await self._c.send(dict(op="push", **_push_fields(topic, event, payload, binary, False,
                                                          self._conn(conn), None)))

    async def outbox(self, limit: Optional[int] = None) -> Dict[str, Any]:
        """As phxd.Client.outbox."""
        return await self.request("outbox", **_fields(limit=limit))

    async def outbox_retry(self, push_id: int) -> None:
        await self.request("outbox", action="retry", push_id=push_id)

    async def outbox_drop(self, push_id: int) -> None:
        await self.request("outbox", action="drop", push_id=push_id)

    async def presence(self, topic: str, conn: Optional[str] = None) -> Dict[str, Any]:
        result = await self.request("presence", conn=self._conn(conn), topic=topic)
        presence: Dict[str, Any] = result["presence"]
        return presence

    async def reload(self) -> Dict[str, Any]:
        return await self.request("reload")

    def subscribe(self, topic: str, events: Optional[Sequence[str]] = None,
                  conn: Optional[str] = None, count: Optional[int] = None,
                  timeout: Optional[float] = None, join: bool = False,
                  follow: bool = False) -> "Subscription":
        """Messages of topic (or a "prefix*" pattern): async with ... as sub,
        then async for msg in sub. join=True holds the topic for the
        subscription's life; follow=True survives phxd restarts."""
        fields = _fields(topic=topic, events=list(events) if events else None,
                         conn=self._conn(conn))
        return Subscription(self.path, "subscribe", fields, count, timeout,
                            hold=topic if join else None, follow=follow)

    def events(self, conn: Optional[str] = None, count: Optional[int] = None,
               timeout: Optional[float] = None, follow: bool = False) -> "Subscription":
        """Connection and channel state changes."""
        return Subscription(self.path, "events", _fields(conn=self._conn(conn)), count,
                            timeout, follow=follow)


async def connect(path: Optional[str] = None, timeout: Optional[float] = 60.0,
                  conn: Optional[str] = None) -> Client:
    return await Client.connect(path, timeout, conn)


class Subscription:
    """Stream lines on a connection of their own: async with (or await
    sub.open()), then async for. timeout: seconds to wait for each line
    (None: forever) before Timeout. follow: as phxd.Subscription."""

    def __init__(self, path: str, op: str, fields: Dict[str, Any],
                 count: Optional[int] = None, timeout: Optional[float] = None,
                 hold: Optional[str] = None, follow: bool = False) -> None:
        self.path = path
        self.op = op
        self.fields = fields
        self.count = count
        self.timeout = timeout
        self.hold = hold
        self.follow = follow
        self.seen = 0
        self.resumed = 0
        self.sub = 0
        self._c: Optional[_Conn] = None

    async def open(self) -> "Subscription":
        c = await _Conn.open(self.path)
        try:
            for req in _stream_requests(self.op, self.fields):
                await c.send(req)
            answers: Dict[int, Dict[str, Any]] = {}
            while _OPEN not in answers:
                msg = await asyncio.wait_for(c.recv(), 30)
                if isinstance(msg.get("id"), int):
                    answers[msg["id"]] = msg
            self.sub = _stream_opened(answers)
            if self.hold is not None:
                await c.send(_hold_request(self.hold, self.fields))
        except BaseException:
            c.close()
            raise
        self._c = c
        return self

    async def __aenter__(self) -> "Subscription":
        if self._c is None:
            await self.open()
        return self

    async def __aexit__(self, et: Optional[Type[BaseException]], e: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        self.close()

    def close(self) -> None:
        if self._c is not None:
            self._c.close()
            self._c = None

    def __aiter__(self) -> AsyncIterator[Dict[str, Any]]:
        return self

    async def _resume(self, why: Unreachable) -> None:
        _log_lost(why)
        self.close()
        start, delay = time.monotonic(), FOLLOW_RETRY_MIN
        while True:
            if self.timeout is not None and time.monotonic() - start >= self.timeout:
                raise Timeout("timeout", f"phxd not back within {self.timeout} s") from why
            await asyncio.sleep(delay)
            try:
                await self.open()
                break
            except Unreachable:
                delay = min(delay * 2, FOLLOW_RETRY_MAX)
        self.resumed += 1
        _log_resumed()

    async def __anext__(self) -> Dict[str, Any]:
        if self._c is None:
            await self.open()
        if self.count is not None and self.seen >= self.count:
            raise StopAsyncIteration
        while True:
            assert self._c is not None
            try:
                if self.timeout is None:
                    msg = await self._c.recv()
                else:
                    msg = await asyncio.wait_for(self._c.recv(), self.timeout)
            except asyncio.TimeoutError:
                raise Timeout("timeout", f"nothing within {self.timeout} s") from None
            except Unreachable as e:
                if not self.follow:
                    raise
                await self._resume(e)
                continue
            line = _stream_line(msg, self.sub, self.hold)
            if line is not None:
                self.seen += 1
                return line
