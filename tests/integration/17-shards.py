#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Sharding past the server's channel cap: one [connection] opens as many
websockets as its topics need (max_channels each), moves a topic the
server refuses with "too many channels joined", and closes a websocket
left empty. Clients see one connection."""
import json

from harness import Daemon, TestServer, config, run, test, wait_until


def conn(d):
    return d.status()[0]


def all_joined(d, n):
    c = conn(d)
    return len(c["topics"]) == n and all(t["state"] == "joined" for t in c["topics"])


def server_sockets(ts):
    return sorted(ts.control("stats")["channels_per_socket"])


@test
def a_thousand_topics_with_a_cap_of_100_take_ten_websockets(w):
    ts = TestServer(w, "--max-channels", "100")
    topics = [f"rooms:{i}" for i in range(1000)]
    d = Daemon(w, config(ts.url, *topics), log_level="info")
    wait_until(lambda: all_joined(d, 1000), 20, "1000 topics joined")
    c = conn(d)
    assert c["state"] == "open" and c["max_channels"] == 100, c["state"]
    assert [(s["shard"], s["topics"], s["joined"], s["state"]) for s in c["shards"]] == \
        [(i, 100, 100, "open") for i in range(10)], c["shards"]
    # config order: the first hundred on the first websocket, and so on
    shard_of = {t["topic"]: t["shard"] for t in c["topics"]}
    assert all(shard_of[f"rooms:{i}"] == i // 100 for i in range(1000))
    assert server_sockets(ts) == [100] * 10
    # placement needs no refusal: one join each, none refused
    assert all(t["joins"] == 1 and t["last_error"] is None for t in c["topics"])
    # every topic is usable as before, whichever websocket holds it
    cl = d.client()
    sub = cl.ok("subscribe", conn="demo", topic="rooms:999")["sub"]
    r = cl.ok("push", conn="demo", topic="rooms:999", event="echo", payload={"n": 999},
              **{"await": True})
    assert r["status"] == "ok" and r["response"] == {"n": 999}, r
    assert ts.control("broadcast", topic="rooms:999", event="news", payload='{"x":1}')["delivered"] == 1
    line = cl.line(timeout=5)
    assert line["sub"] == sub and line["topic"] == "rooms:999" and line["payload"] == {"x": 1}, line
    cl.close()
    human = d.ctl("status").stdout
    assert "Websockets: 10 (10 open), at most 100 topics each" in human, human[:800]
    # metrics count the websockets
    text = d.ctl("metrics").stdout
    assert 'phxd_connection_websockets{connection="demo"} 10' in text, text[:2000]
    assert 'phxd_connection_websockets_open{connection="demo"} 10' in text


@test
def after_a_server_restart_every_topic_is_joined_again(w):
    ts = TestServer(w, "--max-channels", "100")
    topics = [f"rooms:{i}" for i in range(1000)]
    d = Daemon(w, config(ts.url, *topics, extra="reconnect_after_ms = 50"), log_level="info")
    wait_until(lambda: all_joined(d, 1000), 20, "1000 topics joined")
    ts.restart()
    wait_until(lambda: server_sockets(ts) == [100] * 10, 20, "all re-joined on the server")
    wait_until(lambda: all_joined(d, 1000), 10, "all re-joined")
    assert len(conn(d)["shards"]) == 10


@test
def leaving_half_the_topics_closes_the_websockets_they_emptied(w):
    ts = TestServer(w, "--max-channels", "100")
    topics = [f"rooms:{i}" for i in range(1000)]
    d = Daemon(w, config(ts.url, *topics), log_level="info")
    wait_until(lambda: all_joined(d, 1000), 20, "1000 topics joined")
    d.write_config(config(ts.url, *topics[:500]))
    assert d.ctl("reload").returncode == 0
    wait_until(lambda: len(conn(d)["shards"]) == 5, 10, "five websockets left")
    wait_until(lambda: server_sockets(ts) == [100] * 5, 10, "five sockets on the server")
    assert all_joined(d, 500)
    wait_until(lambda: d.log().count("holds no topic any more; closing it") == 5,
               what="five closes logged")
    # runtime leaves empty a websocket too; the first one stays, even empty
    cl = d.client()
    for i in range(400, 500):
        cl.ok("leave", conn="demo", topic=f"rooms:{i}")
    cl.close()
    d.write_config(config(ts.url, *topics[:400]))
    assert d.ctl("reload").returncode == 0
    wait_until(lambda: len(conn(d)["shards"]) == 4, 10, "four websockets left")
    d.write_config(config(ts.url))
    assert d.ctl("reload").returncode == 0
    wait_until(lambda: len(conn(d)["shards"]) == 1, 10, "only the first websocket left")
    wait_until(lambda: server_sockets(ts) == [0], 10, "one empty socket on the server")
    assert conn(d)["state"] == "open"
    # topics a reload adds open websockets again, in config order
    d.write_config(config(ts.url, *topics[:250]))
    assert d.ctl("reload").returncode == 0
    wait_until(lambda: all_joined(d, 250), 10, "250 joined after the reload")
    assert sorted(s["topics"] for s in conn(d)["shards"]) == [50, 100, 100]
    assert server_sockets(ts) == [50, 100, 100]


@test
def a_server_with_a_lower_cap_than_configured_ends_with_every_topic_joined(w):
    ts = TestServer(w, "--max-channels", "30")
    topics = [f"rooms:{i}" for i in range(200)]
    d = Daemon(w, config(ts.url, *topics), log_level="info")
    wait_until(lambda: all_joined(d, 200), 20, "200 topics joined")
    c = conn(d)
    assert c["max_channels"] == 30, c["max_channels"]
    assert all(s["topics"] <= 30 for s in c["shards"]), c["shards"]
    sockets = server_sockets(ts)
    assert sum(sockets) == 200 and max(sockets) == 30 and len(sockets) == 7, sockets
    d.wait_log("the server holds 30 channels per websocket")
    # no join failed in between: each refused topic moved at once
    assert all(t["joins"] == 1 for t in c["topics"]), [t for t in c["topics"] if t["joins"] != 1]


@test
def runtime_joins_go_where_there_is_room_and_are_answered_once_joined(w):
    ts = TestServer(w, "--max-channels", "5")
    # no cap configured: phxd learns the server's from its refusals
    d = Daemon(w, config(ts.url, extra="max_channels = 0"), log_level="info")
    cl = d.client()
    for i in range(12):
        cl.send_raw(json.dumps({"id": i, "op": "join", "conn": "demo", "topic": f"rooms:{i}",
                                "hold": "client"}).encode() + b"\n")
    answers = {}
    while len(answers) < 12:
        line = cl.line(timeout=10)
        answers[line["id"]] = line
    assert all(a["ok"] and a["result"]["status"] == "ok" for a in answers.values()), answers
    c = conn(d)
    assert c["max_channels"] == 5
    assert sorted(s["topics"] for s in c["shards"]) == [2, 5, 5], c["shards"]
    assert server_sockets(ts) == [2, 5, 5]
    # the holds come along: the client's departure leaves every topic,
    # and the websockets it emptied close
    cl.close()
    wait_until(lambda: conn(d)["topics"] == [], 10, "every hold released")
    wait_until(lambda: len(conn(d)["shards"]) == 1, 10, "one websocket left")


@test
def events_name_the_websocket(w):
    ts = TestServer(w, "--max-channels", "2")
    d = Daemon(w, config(ts.url, "rooms:a", "rooms:b", "rooms:c"), log_level="info")
    wait_until(lambda: all_joined(d, 3), 10, "joined")
    cl = d.client()
    cl.ok("events", conn="demo")
    ts.control("drop")
    seen = set()
    while seen != {0, 1}:
        line = cl.line(timeout=10)
        if line.get("type") == "connection" and line.get("state") == "connected":
            seen.add(line["shard"])
    cl.close()


if __name__ == "__main__":
    run()
