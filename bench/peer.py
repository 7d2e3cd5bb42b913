#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/peer.py: phxd through the Python client (client-lib/python), doing
the work of the other peers of bench/run; its own CPU (bench/run adds
phxd's). One JSON line.

    peer.py SOCKET fire N | notify N | await N | receive N
"""
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "client-lib",
                                "python"))
import phxd  # noqa: E402


def cpu_ns():
    return time.process_time_ns()


def result(n, t0, c0, lat=None, dropped=0):
    out = {"n": n, "wall_ns": time.monotonic_ns() - t0, "cpu_ns": cpu_ns() - c0,
           "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "dropped": dropped}
    if lat:
        lat.sort()
        out.update(p50_ns=lat[len(lat) // 2], p99_ns=lat[len(lat) * 99 // 100], max_ns=lat[-1])
    print(json.dumps(out), flush=True)


def count(c):
    return c.push("load:bench", "count", {}, await_reply=True)["received"]


def main():
    sock, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with phxd.Client(sock) as c:
        if mode in ("fire", "notify"):
            send = c.push if mode == "fire" else c.notify
            before = count(c)
            t0, c0 = time.monotonic_ns(), cpu_ns()
            for _ in range(n):
                send("load:bench", "sink", {"n": 1})
            while count(c) - before < n:
                pass
            result(n, t0, c0)
        elif mode == "await":
            lat = []
            t0, c0 = time.monotonic_ns(), cpu_ns()
            for _ in range(n):
                t = time.monotonic_ns()
                c.push("rooms:bench", "ping", {}, await_reply=True)
                lat.append(time.monotonic_ns() - t)
            result(n, t0, c0, lat)
        elif mode == "receive":
            with c.subscribe("load:bench", timeout=30) as sub:
                t0, c0 = time.monotonic_ns(), cpu_ns()
                c.push("load:bench", "flood", {"n": n, "size": 64})
                got = dropped = 0
                for msg in sub:
                    if msg.get("type") == "dropped":
                        dropped += msg["count"]
                    else:
                        got += 1
                    if got + dropped >= n:
                        break
                result(n, t0, c0, dropped=dropped)
        else:
            sys.exit(2)


main()
