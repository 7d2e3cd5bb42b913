// SPDX-License-Identifier: MIT
// bench/phoenixjs: the official Phoenix JS client (npm "phoenix", "ws" as
// its transport), doing the work of the other peers of bench/run; prints
// one JSON line.
//   node phoenixjs.mjs NODE_MODULES PORT fire N | await N | receive N |
//        fanout K RATE M | join T | rejoin T
import { createRequire } from "node:module";
import path from "node:path";

const [modules, portArg, mode, ...rest] = process.argv.slice(2);
const require = createRequire(path.join(modules, "bench.js"));
const { Socket } = require("phoenix");
const WebSocket = require("ws");
const port = Number(portArg);
// PHXD_BENCH_TLS: wss, to bench/run's own certificate (made for the run)
const tls = process.env.PHXD_BENCH_TLS !== undefined;
const url = `${tls ? "wss" : "ws"}://127.0.0.1:${port}/socket`;
class AnyCertWebSocket extends WebSocket {
  constructor(address, protocols) {
    super(address, protocols, { rejectUnauthorized: false });
  }
}
const Transport = tls ? AnyCertWebSocket : WebSocket;
const N = Number(rest[0]);

const now = () => process.hrtime.bigint();
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
};

function socket(opts = {}) {
  const s = new Socket(url, { transport: Transport, heartbeatIntervalMs: 30000, ...opts });
  s.connect();
  return s;
}

function join(channel) {
  return new Promise((resolve, reject) => {
    channel.join().receive("ok", resolve).receive("error", reject).receive("timeout", reject);
  });
}

function reply(push) {
  return new Promise((resolve, reject) => {
    push.receive("ok", resolve).receive("error", reject).receive("timeout", reject);
  });
}

function result(n, t0, c0, lat, extra = {}) {
  const out = {
    n,
    wall_ns: Number(now() - t0),
    cpu_ns: cpu() - c0,
    rss_kib: Math.round(process.memoryUsage().rss / 1024),
    dropped: 0,
    ...extra,
  };
  if (lat && lat.length) {
    lat.sort((a, b) => a - b);
    out.p50_ns = lat[Math.floor(lat.length / 2)];
    out.p99_ns = lat[Math.floor(lat.length * 99 / 100)];
    out.max_ns = lat[lat.length - 1];
  }
  console.log(JSON.stringify(out));
}

async function fire() {
  const s = socket();
  const ch = s.channel(`load:js-${process.pid}`, {});
  await join(ch);
  const before = (await reply(ch.push("count", {}))).received;
  const t0 = now(), c0 = cpu();
  for (let i = 0; i < N; i++) ch.push("sink", { n: 1 });
  // the server's count: every push arrived
  for (;;) {
    const got = (await reply(ch.push("count", {}))).received - before;
    if (got >= N) break;
  }
  result(N, t0, c0);
  s.disconnect();
}

async function awaitTrips() {
  const s = socket();
  const ch = s.channel(`rooms:js-${process.pid}`, {});
  await join(ch);
  const lat = [];
  const t0 = now(), c0 = cpu();
  for (let i = 0; i < N; i++) {
    const t = now();
    await reply(ch.push("ping", {}));
    lat.push(Number(now() - t));
  }
  result(N, t0, c0, lat);
  s.disconnect();
}

async function receive() {
  const s = socket();
  const ch = s.channel(`load:js-${process.pid}`, {});
  await join(ch);
  let got = 0, t0, c0;
  const done = new Promise((resolve) => {
    ch.on("flood_msg", () => {
      if (++got === N) resolve();
    });
  });
  t0 = now();
  c0 = cpu();
  ch.push("flood", { n: N, size: 64 }, 120000);
  await done;
  result(N, t0, c0);
  s.disconnect();
}

// Per message, as bench/stats.h takes a fan-out apart: its first copy's
// latency, and how long its last copy came after the first.
function fanMessages(m) {
  const first = new Array(m), firstAt = new Array(m), lastAt = new Array(m);
  const p99 = (v) => v.sort((a, b) => a - b)[Math.floor(v.length * 99 / 100)];
  return {
    copy(seq, at, due) {
      if (!(seq >= 0 && seq < m)) return;
      if (firstAt[seq] === undefined) {
        firstAt[seq] = at;
        first[seq] = Number(at - due);
      }
      lastAt[seq] = at;
    },
    p99s() {
      const seen = [...firstAt.keys()].filter((i) => firstAt[i] !== undefined);
      if (!seen.length) return {};
      return {
        first_p99_ns: p99(seen.map((i) => first[i])),
        spread_p99_ns: p99(seen.map((i) => Number(lastAt[i] - firstAt[i]))),
      };
    },
  };
}

async function fanout() {
  const [K, rate, M] = rest.map(Number);
  const topic = `rooms:fan-js-${process.pid}`;
  const lat = [];
  const msgs = fanMessages(M);
  let got = 0, resolveDone;
  const done = new Promise((r) => (resolveDone = r));
  const sockets = [];
  for (let i = 0; i < K; i++) {
    const s = socket();
    sockets.push(s);
    const ch = s.channel(topic, {});
    ch.on("broadcast", (p) => {
      const at = now();
      lat.push(Number(at - BigInt(p.t)));
      msgs.copy(p.seq, at, BigInt(p.t));
      if (++got === K * M) resolveDone();
    });
    await join(ch);
  }
  const sender = socket();
  sockets.push(sender);
  const out = sender.channel(topic, {});
  await join(out);
  const t0 = now(), c0 = cpu();
  // Every broadcast due, stamped with when it was due (bench/stats.h):
  // a timer fires at most once a millisecond, so at 2,000/s each tick
  // sends two.
  const gap = BigInt(Math.round(1e9 / rate));
  let seq = 0;
  const timer = setInterval(() => {
    for (const t = now(); seq < M && t0 + BigInt(seq) * gap <= t; seq++)
      out.push("broadcast", { t: (t0 + BigInt(seq) * gap).toString(), seq });
    if (seq === M) clearInterval(timer);
  }, 1000 / rate);
  const limit = setTimeout(() => resolveDone(), 60000);
  await done;
  clearTimeout(limit);
  result(K * M, t0, c0, lat, { dropped: K * M - got, ...msgs.p99s() });
  sockets.forEach((s) => s.disconnect());
}

async function joinMany() {
  const s = socket();
  const t0 = now(), c0 = cpu();
  const channels = [];
  for (let i = 0; i < N; i++) channels.push(s.channel(`load:js${i}`, {}));
  await Promise.all(channels.map(join));
  const joinedNs = Number(now() - t0);
  if (mode !== "rejoin") {
    result(N, t0, c0);
    s.disconnect();
    return;
  }
  // rejoin: bench/run restarts the server; every channel's join answered
  // after the socket closed counts, whenever bench/run learns the server is
  // back. The moment the last one came is on the monotonic clock bench/run
  // reads too: it counts from the server's start.
  process.stdout.write(JSON.stringify({ joined_ns: joinedNs }) + "\n");
  let down = false;
  s.onClose(() => {
    down = true;
  });
  await new Promise((resolve) => {
    const seen = new Set();
    for (const ch of channels) {
      ch.joinPush.receive("ok", () => {
        if (!down || seen.has(ch.topic)) return;
        seen.add(ch.topic);
        if (seen.size === N) resolve();
      });
    }
  });
  result(N, t0, c0, null, { rejoined_at_ns: now().toString() });
  s.disconnect();
}

const modes = { fire, await: awaitTrips, receive, fanout, join: joinMany, rejoin: joinMany };
modes[mode]().then(() => process.exit(0), (e) => {
  console.error("phoenixjs:", e);
  process.exit(1);
});
