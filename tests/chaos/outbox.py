#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The durable outbox under chaos: N durable pushes while the server is
restarted and phxd is killed with SIGKILL at random moments (and started
again on the same outbox). The server writes each delivered push to a
tally file; at the end every one of the N must be there. Duplicates (a
push delivered, or stored, twice: the at-least-once window) are counted
and reported, not failed; a missing one fails.

A producer resends what phxd did not answer "stored" (the answer was
lost with phxd): that is the client's side of the contract, and the only
other source of duplicates. Prints one row:

  pushes  server-restarts  phxd-kills  delivered  duplicates  missing  resent-by-client  drain

Short form (the test suite): 2,000 pushes, 2 + 2 faults. Long form:
  PHXD_CHAOS=long python3 tests/chaos/outbox.py      (or make chaos)
"""
import json
import os
import random
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import Daemon, TestServer, config, run, test, wait_until  # noqa: E402

LONG = os.environ.get("PHXD_CHAOS") == "long"
PUSHES = 10000 if LONG else 2000
FAULTS = 5 if LONG else 2      # of each kind
RATE = 500                     # pushes a second: the faults land among them
WINDOW = 100                   # requests in flight
TOPICS = [f"load:o{i}" for i in range(4)]
FAST = "\n".join(["heartbeat_interval_ms = 300", "reconnect_after_ms = 20 50 100 200",
                  "rejoin_after_ms = 100 200 400", "push_timeout_ms = 2000"])


class Producer:
    """Pushes n = 0..PUSHES-1 durably until each is answered "stored",
    reconnecting to whichever phxd is up."""

    def __init__(self, sock):
        self.sock = sock
        self.stored = set()
        self.resent = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _connect(self):
        deadline = time.monotonic() + 20
        while True:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.sock)
                s.settimeout(5)
                return s
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _run(self):
        rid = 0
        todo = list(range(PUSHES))
        start = time.monotonic()
        while todo:
            s = self._connect()
            inflight = {}
            buf = b""
            try:
                while todo or inflight:
                    while todo and len(inflight) < WINDOW:
                        # paced: n goes no sooner than n / RATE s after the start
                        n = todo[0]
                        wait = start + n / RATE - time.monotonic()
                        if wait > 0 and inflight:
                            break
                        if wait > 0:
                            time.sleep(wait)
                        todo.pop(0)
                        rid += 1
                        inflight[rid] = n
                        line = {"id": rid, "op": "push", "topic": TOPICS[n % len(TOPICS)],
                                "event": "tally", "payload": {"n": n}, "durable": True}
                        s.sendall((json.dumps(line) + "\n").encode())
                    if not inflight:
                        continue
                    while b"\n" not in buf:
                        chunk = s.recv(65536)
                        if not chunk:
                            raise ConnectionError("phxd went away")
                        buf += chunk
                    line, buf = buf.split(b"\n", 1)
                    m = json.loads(line)
                    n = inflight.pop(m.get("id"), None)
                    if n is None:
                        continue
                    if m["ok"] and m["result"]["status"] == "stored":
                        self.stored.add(n)
                    else:
                        todo.insert(0, n)
                        self.resent += 1
            except (OSError, ConnectionError, ValueError):
                # unanswered: maybe stored, maybe not; again (a possible duplicate)
                self.resent += len(inflight)
                todo = sorted(set(todo) | set(inflight.values()))
            finally:
                s.close()
        self.done.set()


@test
def durable_pushes_survive_server_restarts_and_kill_9(w):
    tally = os.path.join(w, "tally.log")
    ts = TestServer(w, "--tally", tally, "--max-channels", "0")
    head = f"[phxd]\noutbox = {os.path.join(w, 'outbox.db')}\n"
    conf = config(ts.url, *TOPICS, extra=FAST, head=head)
    d = Daemon(w, conf, log_level="info")
    wait_until(lambda: all(d.topic_states().get(t) == "joined" for t in TOPICS), 10,
               what="joined")
    rng = random.Random(int(os.environ.get("PHXD_CHAOS_SEED", "11")))
    span = PUSHES / RATE
    faults = sorted([(rng.uniform(0.1, span * 1.2), "server") for _ in range(FAULTS)] +
                    [(rng.uniform(0.1, span * 1.2), "phxd") for _ in range(FAULTS)])
    producer = Producer(d.sock)
    start = time.monotonic()
    port = ts.port
    for at, kind in faults:
        time.sleep(max(0.0, start + at - time.monotonic()))
        if kind == "server":
            ts.stop()
            time.sleep(rng.uniform(0.05, 0.4))
            ts.port = port
            ts.restart()
        else:
            d.kill()
            d = Daemon(w, conf, log_level="info")
    assert producer.done.wait(120), "the producer did not finish"
    assert producer.stored == set(range(PUSHES))
    drain_start = time.monotonic()

    def delivered():
        with open(tally) as f:
            return [json.loads(line)["n"] for line in f if line.strip()]
    wait_until(lambda: set(delivered()) >= set(range(PUSHES)), 60,
               what="every stored push delivered")
    drain = time.monotonic() - drain_start
    got = delivered()
    missing = set(range(PUSHES)) - set(got)
    dups = len(got) - len(set(got))
    wait_until(lambda: d.client().ok("outbox")["pending"] == 0, 20, what="the outbox empty")
    print(f"{'pushes':>8} {'server-restarts':>15} {'phxd-kills':>10} {'delivered':>9} "
          f"{'duplicates':>10} {'missing':>7} {'resent-by-client':>16} {'drain':>7}")
    print(f"{PUSHES:>8} {FAULTS:>15} {FAULTS:>10} {len(set(got)):>9} {dups:>10} "
          f"{len(missing):>7} {producer.resent:>16} {drain:>6.2f}s", flush=True)
    assert not missing, sorted(missing)[:20]
    assert not set(got) - set(range(PUSHES)), "the server got pushes nobody sent"


if __name__ == "__main__":
    run()
