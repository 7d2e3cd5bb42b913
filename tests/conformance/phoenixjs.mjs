// SPDX-License-Identifier: MIT
// The official Phoenix JS client (npm "phoenix", ws as its transport) against
// phxd-testserver: what a browser app would do must work unchanged.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { Socket } from "phoenix";
import { startServer, control, sleep } from "./lib.mjs";

let server;
const sockets = [];

before(async () => {
  server = await startServer();
});
after(async () => {
  sockets.forEach((s) => s.disconnect());
  await sleep(50);
  assert.equal(await server.stop(), 0);
});

function connect(opts = {}) {
  const socket = new Socket(`ws://127.0.0.1:${server.port}/socket`, {
    transport: WebSocket,
    reconnectAfterMs: () => 50,
    rejoinAfterMs: () => 50,
    timeout: 2000,
    ...opts,
  });
  sockets.push(socket);
  socket.connect();
  return socket;
}

// Resolves with [status, response] of a join or push.
function outcome(push) {
  return new Promise((resolve) => {
    push.receive("ok", (r) => resolve(["ok", r]))
      .receive("error", (r) => resolve(["error", r]))
      .receive("timeout", () => resolve(["timeout", null]));
  });
}

function nextEvent(channel, event, ms = 3000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    const ref = channel.on(event, (payload) => {
      clearTimeout(timer);
      channel.off(event, ref);
      resolve(payload);
    });
  });
}

async function waitFor(pred, ms = 3000, what = "condition") {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

test("join ok carries the server's response", async () => {
  const socket = connect();
  const ch = socket.channel("rooms:join", { token: "abc", n: 1 });
  const [status, resp] = await outcome(ch.join());
  assert.equal(status, "ok");
  assert.deepEqual(resp, { joined: "rooms:join", params: { n: 1, token: "abc" } });
  assert.equal(ch.state, "joined");
  socket.disconnect();
});

test("join error is reported with the reason", async () => {
  const socket = connect();
  const ch = socket.channel("rejected:secret", {});
  const [status, resp] = await outcome(ch.join());
  assert.equal(status, "error");
  assert.deepEqual(resp, { reason: "unauthorized" });
  ch.leave();
  socket.disconnect();
});

test("push with reply, error reply and push to me", async () => {
  const socket = connect();
  const ch = socket.channel("rooms:ping", {});
  await outcome(ch.join());
  assert.deepEqual(await outcome(ch.push("ping", {})), ["ok", { pong: "pong" }]);
  assert.deepEqual(await outcome(ch.push("error_reply", {})), ["error", { reason: "nope" }]);
  assert.deepEqual(await outcome(ch.push("echo", { b: [1, 2.5], a: "é" })),
    ["ok", { a: "é", b: [1, 2.5] }]);
  const foo = nextEvent(ch, "foo");
  ch.push("push to me", {});
  assert.deepEqual(await foo, { bar: "baz" });
  socket.disconnect();
});

test("a broadcast reaches two clients, the sender included", async () => {
  const a = connect(), b = connect();
  const ca = a.channel("rooms:bcast", {}), cb = b.channel("rooms:bcast", {});
  await outcome(ca.join());
  await outcome(cb.join());
  const gotA = nextEvent(ca, "broadcast"), gotB = nextEvent(cb, "broadcast");
  assert.deepEqual(await outcome(ca.push("broadcast", { msg: "hi all" })), ["ok", {}]);
  assert.deepEqual(await gotA, { msg: "hi all" });
  assert.deepEqual(await gotB, { msg: "hi all" });
  a.disconnect();
  b.disconnect();
});

test("binary push, binary server push and binary reply", async () => {
  const socket = connect();
  const ch = socket.channel("rooms:bin", {});
  await outcome(ch.join());
  const bytes = new Uint8Array([0, 1, 2, 127, 128, 254, 255]);
  const pushed = nextEvent(ch, "bin_push");
  const [status, resp] = await outcome(ch.push("bin", bytes.buffer));
  assert.equal(status, "ok");
  assert.ok(resp instanceof ArrayBuffer, "binary reply arrives as an ArrayBuffer");
  assert.deepEqual(new Uint8Array(resp), bytes);
  assert.deepEqual(new Uint8Array(await pushed), bytes);
  socket.disconnect();
});

test("a crashed channel errors and is rejoined automatically", async () => {
  const socket = connect();
  const ch = socket.channel("rooms:crash", {});
  let joins = 0, errors = 0;
  ch.join().receive("ok", () => joins++);
  ch.onError(() => errors++);
  await waitFor(() => joins === 1, 3000, "first join");
  ch.push("crash", {});
  await waitFor(() => errors === 1 && joins === 2, 3000, "error then rejoin");
  assert.equal(ch.state, "joined");
  assert.deepEqual(await outcome(ch.push("ping", {})), ["ok", { pong: "pong" }]);
  socket.disconnect();
});

test("leave is acknowledged and closes the channel", async () => {
  const socket = connect();
  const ch = socket.channel("rooms:leave", {});
  await outcome(ch.join());
  let closed = false;
  ch.onClose(() => (closed = true));
  assert.equal((await outcome(ch.leave()))[0], "ok");
  await waitFor(() => closed, 2000, "onClose");
  assert.equal(ch.state, "closed");
  socket.disconnect();
});

test("heartbeats are answered", async () => {
  const socket = connect({ heartbeatIntervalMs: 100 });
  const replies = [];
  socket.onMessage((msg) => {
    if (msg.topic === "phoenix" && msg.event === "phx_reply") replies.push(msg);
  });
  await waitFor(() => replies.length >= 3, 3000, "three heartbeat replies");
  assert.ok(replies.every((r) => r.payload.status === "ok"));
  socket.disconnect();
});

test("connect params and the 1.8 auth token reach the channel", async () => {
  const socket = connect({ params: { user: "alice" }, authToken: "s3cr3t+/token" });
  const ch = socket.channel("rooms:who", {});
  await outcome(ch.join());
  const [status, who] = await outcome(ch.push("whoami", {}));
  assert.equal(status, "ok");
  assert.equal(who.auth_token, "s3cr3t+/token");
  assert.equal(who.params.user, "alice");
  assert.equal(who.socket_id, "user_socket:alice");
  socket.disconnect();
});

test("after the server drops every connection the client reconnects and rejoins", async () => {
  const socket = connect();
  let opens = 0, joins = 0;
  socket.onOpen(() => opens++);
  const ch = socket.channel("rooms:drop", {});
  ch.join().receive("ok", () => joins++);
  await waitFor(() => joins === 1, 3000, "join");
  const r = await control(server, "drop");
  assert.equal(r.status, 200);
  await waitFor(() => opens >= 2 && joins >= 2, 5000, "reconnect and rejoin");
  assert.deepEqual(await outcome(ch.push("ping", {})), ["ok", { pong: "pong" }]);
  socket.disconnect();
});

test("the client reconnects after unanswered heartbeats", async () => {
  const socket = connect({ heartbeatIntervalMs: 100 });
  let opens = 0;
  socket.onOpen(() => opens++);
  await waitFor(() => opens === 1, 3000, "open");
  await control(server, "heartbeats", { answer: "0" });
  try {
    await waitFor(() => opens >= 2, 3000, "reconnect after heartbeat timeout");
  } finally {
    await control(server, "heartbeats", { answer: "1" });
  }
  socket.disconnect();
});

test("a delayed reply makes the push time out", async () => {
  const socket = connect();
  const ch = socket.channel("rooms:slow", {});
  await outcome(ch.join());
  await control(server, "delay", { ms: "400" });
  try {
    assert.equal((await outcome(ch.push("ping", {}, 100)))[0], "timeout");
  } finally {
    await control(server, "delay", { ms: "0" });
  }
  assert.deepEqual(await outcome(ch.push("ping", {})), ["ok", { pong: "pong" }]);
  socket.disconnect();
});
