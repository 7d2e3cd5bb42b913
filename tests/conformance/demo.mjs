// SPDX-License-Identifier: MIT
// The demo of ./dev demo: the official phoenix.js client against
// phxd-testserver, printing what happens.
import WebSocket from "ws";
import { Socket } from "phoenix";

const url = process.argv[2] || "ws://127.0.0.1:4000/socket";
const say = (...a) => console.log("  ", ...a);
const socket = new Socket(url, { transport: WebSocket, params: { user: "demo" } });
socket.onOpen(() => say("connected to", socket.endPointURL()));
socket.connect();

const lobby = socket.channel("rooms:lobby", { hello: "world" });
lobby.on("broadcast", (p) => say("broadcast received:", JSON.stringify(p)));
lobby.on("foo", (p) => say("server push 'foo':", JSON.stringify(p)));

const reply = (push) => new Promise((resolve) =>
  push.receive("ok", (r) => resolve(["ok", r])).receive("error", (r) => resolve(["error", r]))
      .receive("timeout", () => resolve(["timeout"])));

const [st, joined] = await reply(lobby.join());
say("join rooms:lobby ->", st, JSON.stringify(joined));
say("push ping ->", ...(await reply(lobby.push("ping", {}))).map((x) => JSON.stringify(x)));
say("push broadcast ->", ...(await reply(lobby.push("broadcast", { msg: "hi all" }))).map((x) => JSON.stringify(x)));
lobby.push("push to me", {});
say("push error_reply ->", ...(await reply(lobby.push("error_reply", {}))).map((x) => JSON.stringify(x)));
const denied = socket.channel("rejected:vault", {});
say("join rejected:vault ->", ...(await reply(denied.join())).map((x) => JSON.stringify(x)));
denied.leave();
await new Promise((r) => setTimeout(r, 200));
socket.disconnect(() => process.exit(0));
