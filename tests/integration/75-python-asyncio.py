#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""phxd.aio (client-lib/python) against a live phxd and phxd-testserver:
awaitable calls, concurrency, cancellation, streams that outlive phxd."""
import asyncio
import os
import sys

from harness import Daemon, TestServer, config, run, test, wait_until

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "client-lib", "python"))  # the package phxd/
import phxd  # noqa: E402
import phxd.aio  # noqa: E402


def arun(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


@test
def awaitable_calls_and_their_errors(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:lobby"))
    d.wait_joined("rooms:lobby")

    async def main():
        async with phxd.aio.Client(d.sock) as c:
            assert c.hello["version"] == 1
            assert await c.push("rooms:lobby", "ping", {}, await_reply=True) == {"pong": "pong"}
            assert await c.push("rooms:lobby", "ping") is None
            assert await c.push("rooms:lobby", "blob", binary=b"\x00\x01",
                                await_reply=True) == b"\x00\x01"
            reply = await c.join("rooms:aio", {"k": 1})
            assert reply["joined"] == "rooms:aio", reply
            st = await c.status()
            assert {t["topic"] for t in st["connections"][0]["topics"]} >= {"rooms:aio"}
            assert await c.presence("rooms:aio") == {}
            assert await c.leave("rooms:aio") is True
            async with c.events(timeout=5) as ev:
                await c.notify("rooms:none", "x", {"n": 1})
                async for m in ev:
                    if m["type"] == "push_failed":
                        assert m["topic"] == "rooms:none" and m["code"] == "not_joined", m
                        break
            try:
                await c.push("rooms:lobby", "error_reply", await_reply=True)
                raise AssertionError("no ReplyError")
            except phxd.ReplyError as e:
                assert e.status == "error" and e.response == {"reason": "nope"}, e
            try:
                await c.push("rooms:none", "x")
                raise AssertionError("no NotJoined")
            except phxd.NotJoined:
                pass
            try:
                await c.push("rooms:lobby", "quicksand", await_reply=True, timeout_ms=200)
                raise AssertionError("no Timeout")
            except phxd.Timeout:
                pass
            try:
                await c.request("status", timeout=0)
                raise AssertionError("timeout=0 waited")
            except phxd.Timeout:
                pass
        try:
            await phxd.aio.Client.connect(os.path.join(w, "nothing.sock"))
            raise AssertionError("connected to nothing")
        except phxd.Unreachable as e:
            assert isinstance(e, phxd.Error) and isinstance(e, ConnectionError)

    arun(main())


@test
def concurrent_calls_each_get_their_own_answer(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:lobby"))
    d.wait_joined("rooms:lobby")

    async def main():
        c = await phxd.aio.connect(d.sock)
        try:
            replies = await asyncio.gather(*(c.push("rooms:lobby", "echo", {"n": n},
                                                    await_reply=True) for n in range(500)))
            assert replies == [{"n": n} for n in range(500)]
        finally:
            await c.close()

    arun(main())


@test
def a_cancelled_call_leaves_the_client_usable(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:lobby"))
    d.wait_joined("rooms:lobby")

    async def main():
        async with phxd.aio.Client(d.sock) as c:
            # never answered by the server: cancelled while it waits
            slow = asyncio.ensure_future(c.push("rooms:lobby", "quicksand", await_reply=True,
                                                timeout_ms=60000))
            await asyncio.sleep(0)
            # the request reached phxd
            while (await c.status())["ipc"]["pending"] < 1:
                await asyncio.sleep(0.01)
            slow.cancel()
            try:
                await slow
                raise AssertionError("not cancelled")
            except asyncio.CancelledError:
                pass
            assert await c.push("rooms:lobby", "ping", {}, await_reply=True) == {"pong": "pong"}
            # many calls cancelled at random points while others run
            tasks = [asyncio.ensure_future(c.push("rooms:lobby", "echo", {"n": n},
                                                  await_reply=True)) for n in range(200)]
            for t in tasks[::3]:
                t.cancel()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            for n, r in enumerate(done):
                assert isinstance(r, asyncio.CancelledError) or r == {"n": n}, (n, r)
            assert await c.push("rooms:lobby", "echo", {"last": 1}, await_reply=True) == \
                {"last": 1}

    arun(main())


@test
def streams_lose_nothing_to_cancellation_and_end_holds(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:lobby"))
    d.wait_joined("rooms:lobby")

    async def main():
        async with phxd.aio.Client(d.sock) as c:
            async with c.subscribe("rooms:held", join=True, events=["broadcast"]) as sub:
                while d.topic_states().get("rooms:held") != "joined":
                    await asyncio.sleep(0.01)
                reader = asyncio.ensure_future(sub.__anext__())
                await asyncio.sleep(0.05)
                reader.cancel()       # cancelled while waiting for a line
                try:
                    await reader
                except asyncio.CancelledError:
                    pass
                for n in range(3):
                    await c.push("rooms:held", "broadcast", {"n": n})
                got = [m["payload"] async for m in _take(sub, 3)]
                assert got == [{"n": 0}, {"n": 1}, {"n": 2}], got
                try:
                    await asyncio.wait_for(sub.__anext__(), 0.2)
                    raise AssertionError("a line from nowhere")
                except asyncio.TimeoutError:
                    pass
                await c.push("rooms:held", "broadcast", {"n": 3})
                assert (await sub.__anext__())["payload"] == {"n": 3}
            # the subscription's connection held the topic: gone with it
            while "rooms:held" in d.topic_states():
                await asyncio.sleep(0.01)
            async for ev in c.events(count=1, timeout=0.5):
                raise AssertionError(f"an event from nowhere: {ev}")

    try:
        arun(main())
        raise AssertionError("the events stream did not time out")
    except phxd.Timeout:
        pass


async def _take(sub, n):
    for _ in range(n):
        yield await sub.__anext__()


@test
def an_asyncio_subscriber_resumes_after_phxd_is_killed(w):
    ts = TestServer(w)
    conf = config(ts.url, "rooms:lobby")
    d = Daemon(w, conf)
    d.wait_joined("rooms:lobby")
    state = {"d": d}

    def subscriptions():
        c = state["d"].client()
        try:
            return c.ok("status")["ipc"]["subscriptions"]
        finally:
            c.close()

    async def main():
        got = []
        sub = await phxd.aio.Client(d.sock).subscribe("rooms:lobby", events=["broadcast"],
                                                      follow=True, timeout=20, count=2).open()

        async def consume():
            async for msg in sub:
                got.append(msg["payload"])

        task = asyncio.ensure_future(consume())
        with phxd.Client(d.sock) as c:
            c.push("rooms:lobby", "broadcast", {"n": 1})
        while not got:
            await asyncio.sleep(0.01)
        state["d"].kill()
        state["d"] = Daemon(w, conf)
        state["d"].wait_joined("rooms:lobby")
        while subscriptions() != 1:
            await asyncio.sleep(0.02)
        with phxd.Client(d.sock) as c:
            c.push("rooms:lobby", "broadcast", {"n": 2})
        await asyncio.wait_for(task, 10)
        assert got == [{"n": 1}, {"n": 2}], got
        assert sub.resumed == 1
        sub.close()

    arun(main())


@test
def calls_in_flight_fail_when_phxd_goes_away(w):
    ts = TestServer(w)
    d = Daemon(w, config(ts.url, "rooms:lobby"))
    d.wait_joined("rooms:lobby")

    async def main():
        c = await phxd.aio.connect(d.sock)
        slow = asyncio.ensure_future(c.push("rooms:lobby", "quicksand", await_reply=True,
                                            timeout_ms=60000))
        while (await c.status())["ipc"]["pending"] < 1:
            await asyncio.sleep(0.01)
        d.kill()
        try:
            await asyncio.wait_for(slow, 10)
            raise AssertionError("no error")
        except phxd.Unreachable:
            pass
        try:
            await c.status()
            raise AssertionError("a dead client answered")
        except phxd.Unreachable:
            pass
        await c.close()

    arun(main())


run()
