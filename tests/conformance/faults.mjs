// SPDX-License-Identifier: MIT
// phxd-testserver's fault controls and version quirks, observed with a raw
// websocket client so every frame and close code is visible.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { startServer, control, httpGet, RawClient, sleep } from "./lib.mjs";

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  assert.equal(await server.stop(), 0);
});

const JOIN = (topic, jr = "1") => ({ type: "text", data: `["${jr}","${jr}","${topic}","phx_join",{}]` });
const PING = (topic, ref, jr = "1") => ({ type: "text", data: `[${jr === null ? "null" : `"${jr}"`},"${ref}","${topic}","ping",{}]` });

async function joined(srv, topic = "rooms:lobby", query = "?vsn=2.0.0", protocols) {
  const c = new RawClient(srv.url + query, protocols);
  await c.opened();
  c.send(JOIN(topic));
  await c.until((f) => f.length >= 1);
  assert.match(c.frames[0].data, /"status":"ok"/);
  return c;
}

test("drop: connections end without a close frame", async () => {
  const a = await joined(server), b = await joined(server);
  const r = await control(server, "drop");
  assert.equal(r.status, 200);
  assert.equal(r.body.dropped, 2);
  await a.until((_f, closed) => closed !== null);
  await b.until((_f, closed) => closed !== null);
  assert.equal(a.closed.code, 1006); // abnormal: no close frame was received
  assert.equal(b.closed.code, 1006);
});

for (const code of [1000, 1001, 1011, 1012]) {
  test(`close with code ${code}`, async () => {
    const c = await joined(server);
    const r = await control(server, "close", { code: String(code) });
    assert.equal(r.status, 200);
    await c.until((_f, closed) => closed !== null);
    assert.equal(c.closed.code, code);
  });
}

test("heartbeats can be left unanswered, then answered again", async () => {
  const c = await joined(server);
  await control(server, "heartbeats", { answer: "0" });
  c.send({ type: "text", data: '[null,"5","phoenix","heartbeat",{}]' });
  // a reply to a later message shows the heartbeat was read and not answered
  c.send(PING("rooms:lobby", "p"));
  await c.until((f) => f.some((x) => x.data.includes('"p","rooms:lobby"')));
  assert.ok(!c.frames.some((x) => x.data.includes('"5","phoenix"')), "no heartbeat reply while muted");
  await control(server, "heartbeats", { answer: "1" });
  c.send({ type: "text", data: '[null,"6","phoenix","heartbeat",{}]' });
  await c.until((f) => f.length === 3);
  assert.equal(c.frames[2].data, '[null,"6","phoenix","phx_reply",{"response":{},"status":"ok"}]');
  // channel traffic is not affected by the heartbeat fault
  c.close();
});

test("delay holds replies but not pushes", async () => {
  const c = await joined(server);
  await control(server, "delay", { ms: "300" });
  try {
    const t0 = Date.now();
    c.send(PING("rooms:lobby", "2"));
    c.send({ type: "text", data: '["1","3","rooms:lobby","push to me",{}]' });
    await c.until((f) => f.length === 2);
    assert.match(c.frames[1].data, /"foo"/, "the push is not delayed");
    await c.until((f) => f.length === 3, 2000);
    assert.ok(Date.now() - t0 >= 280, `reply came after ${Date.now() - t0} ms`);
    assert.match(c.frames[2].data, /"pong"/);
  } finally {
    await control(server, "delay", { ms: "0" });
  }
  c.close();
});

test("refuse: new connections are hung up for a while", async () => {
  const r = await control(server, "refuse", { ms: "400" });
  assert.equal(r.status, 200);
  const c = new RawClient(server.url + "?vsn=2.0.0");
  await assert.rejects(c.opened());
  // accepted again once the 400 ms are over: retried until it opens
  const end = Date.now() + 3000;
  for (;;) {
    const d = new RawClient(server.url + "?vsn=2.0.0");
    try {
      await d.opened();
      d.close();
      break;
    } catch (e) {
      if (Date.now() > end) throw e;
      await sleep(50);
    }
  }
});

test("refuse with an HTTP status answers the handshake with it", async () => {
  await control(server, "refuse", { status: "403" });
  try {
    const c = new RawClient(server.url + "?vsn=2.0.0");
    await c.until((_f, closed) => closed !== null);
    assert.equal(c.unexpected, 403);
    const stats = await control(server, "stats");
    assert.equal(stats.body.refusing, true);
    assert.ok(stats.body.refused_total >= 1);
  } finally {
    await control(server, "accept");
  }
  const d = new RawClient(server.url + "?vsn=2.0.0");
  await d.opened();
  d.close();
});

test("server broadcast reaches every member of a topic", async () => {
  const a = await joined(server, "rooms:news"), b = await joined(server, "rooms:news");
  const other = await joined(server, "rooms:other");
  const r = await control(server, "broadcast", { topic: "rooms:news", event: "headline", payload: '{"b":2,"a":1}' });
  assert.equal(r.status, 200);
  assert.equal(r.body.delivered, 2);
  const want = '[null,null,"rooms:news","headline",{"a":1,"b":2}]';
  await a.until((f) => f.length === 2);
  await b.until((f) => f.length === 2);
  assert.equal(a.frames[1].data, want);
  assert.equal(b.frames[1].data, want);
  // other's next frame is the answer to a ping sent after the broadcast
  other.send(PING("rooms:other", "o"));
  await other.until((f) => f.length >= 2);
  assert.match(other.frames[1].data, /"o","rooms:other","phx_reply"/);
  [a, b, other].forEach((c) => c.close());
});

test("stats count connections, channels and heartbeats", async () => {
  const c = await joined(server, "rooms:stats");
  const r = await control(server, "stats");
  assert.equal(r.status, 200);
  assert.ok(r.body.connections >= 1);
  assert.ok(r.body.channels >= 1);
  assert.ok(r.body.connects_total >= r.body.connections);
  c.close();
});

test("control requests with bad arguments get a 400 and an error", async () => {
  const bad = [
    ["close", { code: "999" }], ["close", { code: "abc" }], ["close", { code: "1006" }],
    ["heartbeats", {}], ["heartbeats", { answer: "2" }], ["delay", { ms: "-1" }],
    ["delay", {}], ["refuse", { status: "200" }], ["refuse", { ms: "1e3" }],
    ["broadcast", { topic: "rooms:x" }], ["broadcast", { topic: "rooms:x", event: "e", payload: "[1]" }],
    ["broadcast", { topic: "rooms:x", event: "e", payload: "{bad" }],
  ];
  for (const [cmd, args] of bad) {
    const r = await control(server, cmd, args);
    assert.equal(r.status, 400, `${cmd} ${JSON.stringify(args)}`);
    assert.equal(r.body.ok, false);
    assert.ok(r.body.error.length > 0);
  }
  assert.equal((await control(server, "nonsense")).status, 404);
  assert.equal((await httpGet(server.port, "/")).status, 404);
  // and the server still serves websockets
  const c = await joined(server);
  c.close();
});

test("upgrade on another path is refused with 404", async () => {
  const c = new RawClient(`ws://127.0.0.1:${server.port}/other/websocket?vsn=2.0.0`);
  await c.until((_f, closed) => closed !== null);
  assert.equal(c.unexpected, 404);
});

test("a raw auth token subprotocol is decoded for the channel", async () => {
  const token = Buffer.from("tok-\u00e9").toString("base64").replace(/=/g, "");
  const c = await joined(server, "rooms:who", "?vsn=2.0.0&user=bob",
    ["phoenix", `base64url.bearer.phx.${token}`]);
  assert.equal(c.ws.protocol, "phoenix");
  c.send({ type: "text", data: '["1","2","rooms:who","whoami",{}]' });
  await c.until((f) => f.length === 2);
  const who = JSON.parse(c.frames[1].data)[4].response;
  assert.equal(who.auth_token, "tok-\u00e9");
  assert.equal(who.socket_id, "user_socket:bob");
  c.close();
});

test("garbage on the TCP port does not hurt the server", async () => {
  const s = net.connect(server.port, "127.0.0.1");
  s.on("error", () => {});
  await new Promise((resolve) => s.on("connect", resolve));
  s.write("\x00\xff\x16\x03 this is not http\r\n\r\n");
  s.end();
  await sleep(100);
  s.destroy();
  const c = await joined(server);
  c.close();
});

test("oversize frames close the socket with 1009", async () => {
  const c = await joined(server);
  c.send({ type: "text", data: `["1","2","rooms:lobby","echo","${"x".repeat(9 * 1024 * 1024)}"]` });
  await c.until((_f, closed) => closed !== null, 5000);
  assert.equal(c.closed.code, 1009);
});

test("a large flood is streamed in order and ends with its reply", async () => {
  const c = await joined(server, "load:big");
  c.send({ type: "text", data: '["1","2","load:big","flood",{"n":20000,"size":10}]' });
  await c.until((f) => f.length === 20002, 10000);
  for (let i = 0; i < 20000; i++) {
    assert.equal(c.frames[1 + i].data, `["1",null,"load:big","flood_msg",{"i":${i},"payload":"xxxxxxxxxx"}]`);
  }
  assert.equal(c.frames[20001].data, '["1","2","load:big","phx_reply",{"response":{"sent":20000},"status":"ok"}]');
  c.send({ type: "text", data: '["1","3","load:big","flood",{"n":-1,"size":1}]' });
  await c.until((f) => f.length === 20003);
  assert.match(c.frames[20002].data, /"status":"error"/);
  c.close();
});

// --- version quirks -----------------------------------------------------------

async function quirkServer(args) {
  return startServer(args);
}

async function staleAndNull(srv) {
  const c = await joined(srv);
  c.send(PING("rooms:lobby", "2", "99"));
  c.send(PING("rooms:lobby", "3", null));
  c.send(PING("rooms:lobby", "4", "1"));
  await c.until((f) => f.some((x) => x.data.includes('"4","rooms:lobby"')));
  await sleep(50);
  const refs = c.frames.slice(1).map((f) => JSON.parse(f.data)[1]);
  c.close();
  return refs;
}

test("default (1.7.24): stale and null join_refs are still delivered", async () => {
  assert.deepEqual(await staleAndNull(server), ["2", "3", "4"]);
});

test("--emulate 1.8.3 drops stale and null join_refs", async () => {
  const srv = await quirkServer(["--emulate", "1.8.3"]);
  try {
    assert.deepEqual(await staleAndNull(srv), ["4"]);
  } finally {
    await srv.stop();
  }
});

test("--emulate 1.8.12 drops only stale join_refs", async () => {
  const srv = await quirkServer(["--emulate", "1.8.12"]);
  try {
    assert.deepEqual(await staleAndNull(srv), ["3", "4"]);
  } finally {
    await srv.stop();
  }
});

async function disconnectCode(srv) {
  const c = await joined(srv);
  c.send({ type: "text", data: '["1","2","rooms:lobby","disconnect_socket",{}]' });
  await c.until((_f, closed) => closed !== null);
  return c.closed.code;
}

test("forced disconnect close codes follow the emulated version", async () => {
  assert.equal(await disconnectCode(server), 1000);
  for (const [args, code] of [[["--emulate", "1.7.14"], 1011], [["--emulate", "1.8.8"], 1001],
                              [["--disconnect-code", "4001"], 4001]]) {
    const srv = await quirkServer(args);
    try {
      assert.equal(await disconnectCode(srv), code, args.join(" "));
    } finally {
      await srv.stop();
    }
  }
});

test("channel cap: --max-channels, and none before 1.7.24", async () => {
  for (const [args, refused] of [[["--max-channels", "2"], true], [["--emulate", "1.7.14", "--max-channels", "0"], false]]) {
    const srv = await quirkServer(args);
    try {
      const c = new RawClient(srv.url + "?vsn=2.0.0");
      await c.opened();
      for (let i = 0; i < 3; i++) c.send(JOIN(`rooms:${i}`, String(i + 1)));
      await c.until((f) => f.length === 3);
      const last = JSON.parse(c.frames[2].data)[4];
      if (refused) assert.deepEqual(last, { response: { reason: "too many channels joined" }, status: "error" });
      else assert.equal(last.status, "ok");
      c.close();
    } finally {
      await srv.stop();
    }
  }
});

test("disconnect only closes sockets of the same identity", async () => {
  const alice = await joined(server, "rooms:lobby", "?vsn=2.0.0&user=alice");
  const bob = await joined(server, "rooms:lobby", "?vsn=2.0.0&user=bob");
  alice.send({ type: "text", data: '["1","2","rooms:lobby","disconnect_socket",{}]' });
  await alice.until((_f, closed) => closed !== null);
  bob.send(PING("rooms:lobby", "2"));
  await bob.until((f) => f.length === 2);
  assert.equal(bob.closed, null);
  bob.close();
});
