// The fan-out stage's load generator (bench/marketdata_fanout.py): N WebSocket clients of the data stream in
// one Node.js process, driven over stdin/stdout with one JSON object per line.
//
// Why Node: a Python client (websockets + asyncio) cost more CPU per received frame than the ws server spent
// sending it (1,000 clients at 1 tick/s: server 16 % of a core, client-side p50 167 ms), so it measured itself.
// The `ws` package (npm, pinned by the stage, installed in .run/bench-node) reads a frame in a few microseconds.
//
// argv: urls key secret connections symbols-json|- handshake-timeout-s
// urls: one or more ws URLs, comma-separated; connection i goes to urls[i % n] (several ws processes).
// Opens `connections` connections (50 handshakes at a time), each authenticated (and subscribed to the trades
// of `symbols` if given), then prints {"connections", "connect_s"}. Commands, one per line:
//   {"cmd":"subscribe","clients":N,"symbols":[...]}  -> {"clients", "subscribe_s"}
//   {"cmd":"collect","clients":N,"symbols":[...],"expected":E,"max_wait":S}
//       -> {"received","p50_ms","p99_ms","p999_ms","closed","last_ns"}, then "unsubscribed" once the first N
//          unsubscribed again. Counting stops when E messages arrived, nothing arrived for 1 s, or S s passed.
// Latency = receive time - the tick's "pub_ns" (the publisher's time.time_ns(); same machine, same clock).
import readline from "node:readline";
import { createRequire } from "node:module";

const require = createRequire(process.env.BENCH_NODE_MODULES + "/");
const WebSocket = require("ws");

const [urlsArg, key, secret, connectionsArg, symbolsArg, handshakeArg] = process.argv.slice(2);
const urls = urlsArg.split(",");
const connections = Number(connectionsArg);
const connectSymbols = symbolsArg === "-" ? null : JSON.parse(symbolsArg);
const handshakeMs = Number(handshakeArg) * 1000;

const origin = performance.timeOrigin;
const nowNs = () => (origin + performance.now()) * 1e6; // wall clock, as a float of ns (sub-µs resolution)
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const state = { sinceNs: Infinity, lastNs: 0, acks: 0, want: 0, onAcked: null };
// Connections that timed out, by the step they were stuck at (0: no first message after the handshake,
// 1: no answer to "auth", 2: no subscription acknowledgement): reported with the "connections" line.
const stuck = {};
let latencies = [];
const closed = [];

function open(url) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    let step = 0;
    const timer = setTimeout(() => {
      stuck[step] = (stuck[step] || 0) + 1; closed.push(-1); ws.terminate(); resolve(null);
    }, handshakeMs);
    const fail = () => { clearTimeout(timer); if (step < 9) { step = 9; closed.push(-1); resolve(null); } };
    ws.on("error", fail);
    ws.on("close", (code) => { if (step === 9 && ws.ready) closed.push(code); else fail(); });
    ws.on("message", (raw) => {
      if (step === 9) return receive(raw);
      const reply = JSON.parse(raw);
      if (step === 0) { step = 1; ws.send(JSON.stringify({ action: "auth", key, secret })); return; }
      if (step === 1) {
        if (reply[0].msg !== "authenticated") return fail();
        if (connectSymbols) { step = 2; ws.send(JSON.stringify({ action: "subscribe", trades: connectSymbols })); return; }
      } else if (step === 2 && !reply.some((m) => m.T === "subscription")) return;
      step = 9; ws.ready = true; clearTimeout(timer); resolve(ws);
    });
  });
}

function receive(raw) {
  const now = nowNs();
  for (const msg of JSON.parse(raw)) {
    if (msg.T === "t") {
      if (msg.pub_ns >= state.sinceNs) { latencies.push(now - msg.pub_ns); state.lastNs = now; }
    } else if (msg.T === "subscription") {
      state.acks += 1;
      if (state.acks >= state.want && state.onAcked) state.onAcked();
    }
  }
}

async function subscription(clients, action, symbols) {
  const live = clients.filter((ws) => ws.readyState === WebSocket.OPEN);
  state.acks = 0; state.want = live.length;
  // Acknowledgements take about 2 s for 2,000 clients here; a client that never acks costs at most 30 s (it is
  // reported through the returned count, the harness's eq_clients check), not two minutes of the stage budget.
  const acked = new Promise((resolve) => { state.onAcked = resolve; setTimeout(resolve, 30000); });
  const msg = JSON.stringify({ action, trades: symbols });
  for (const ws of live) ws.send(msg);
  if (state.acks < state.want) await acked;
  state.onAcked = null;
  return state.acks;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const t0 = performance.now();
  const opened = [];
  let next = 0;
  async function lane() {
    while (next < connections) {
      const ws = await open(urls[next++ % urls.length]);
      if (ws) opened.push(ws);
    }
  }
  await Promise.all(Array.from({ length: Math.min(50, connections) }, lane));
  out({ connections: opened.length, connect_s: (performance.now() - t0) / 1000, stuck });
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    const cmd = JSON.parse(line);
    if (cmd.cmd === "subscribe") {
      const t = performance.now();
      closed.length = 0;
      const ok = await subscription(opened.slice(0, cmd.clients), "subscribe", cmd.symbols);
      latencies = [];
      state.sinceNs = state.lastNs = nowNs();
      out({ clients: ok, subscribe_s: (performance.now() - t) / 1000 });
    } else if (cmd.cmd === "collect") {
      const deadline = performance.now() + cmd.max_wait * 1000;
      const askedNs = nowNs();
      while (latencies.length < cmd.expected && performance.now() < deadline) {
        if (nowNs() - Math.max(state.lastNs, askedNs) > 1e9) break;
        await sleep(20);
      }
      state.sinceNs = Infinity;
      const lat = Float64Array.from(latencies).sort();
      latencies = [];
      const pct = (q) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(q * lat.length))] / 1e6 : null);
      out({ received: lat.length, p50_ms: pct(0.5), p99_ms: pct(0.99), p999_ms: pct(0.999), closed: closed.length, last_ns: state.lastNs });
      await subscription(opened.slice(0, cmd.clients), "unsubscribe", cmd.symbols);
      out("unsubscribed");
    } else {
      break;
    }
  }
  for (const ws of opened) ws.terminate();
  process.exit(0);
}

main();
