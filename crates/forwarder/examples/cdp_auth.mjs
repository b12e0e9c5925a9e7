// The two ways to give Chromium proxy credentials, side by side (docs/proxies.md),
// and the baseline without credentials:
//   direct    — --proxy-server=<an open proxy> (no credentials needed at all);
//   forwarder — --proxy-server=<our forwarder>, which adds Proxy-Authorization;
//   cdp       — --proxy-server=<the proxy itself>, and a DevTools client answering
//               Fetch.authRequired with the credentials (Fetch.enable with
//               handleAuthRequests pauses every request until we continue it).
// One headless Chromium per way per round, N navigations each, interleaved.
//
//   cargo build --release -p forwarder --features testing --example upstreams
//   node --experimental-websocket crates/forwarder/examples/cdp_auth.mjs [rounds]
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const N = 60;
const rounds = Number(process.argv[2] ?? 3);
const up = spawn("target/release/examples/upstreams", [], { stdio: ["pipe", "pipe", "inherit"] });
const ports = JSON.parse(await new Promise((r) => createInterface({ input: up.stdout }).once("line", r)));

function cpuOf(pid) {
  // utime + stime of the whole process tree, in clock ticks.
  let total = 0;
  const kids = (p) => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      total += Number(f[11]) + Number(f[12]);
    } catch { return; }
    for (const t of readFileSync(`/proc/${p}/task/${p}/children`, "utf8").trim().split(" ").filter(Boolean)) kids(t);
  };
  kids(pid);
  return total;
}

async function run(way) {
  const dir = mkdtempSync(join(tmpdir(), "cdp-auth-"));
  const proxy = { cdp: ports.guarded, forwarder: ports.forwarder, direct: ports.open }[way];
  const chrome = spawn("/usr/lib/chromium/chromium", [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-port=0", `--user-data-dir=${dir}`,
    `--proxy-server=http://127.0.0.1:${proxy}`, "--proxy-bypass-list=<-loopback>", "about:blank",
  ], { stdio: "ignore", detached: true });
  const portFile = join(dir, "DevToolsActivePort");
  while (!existsSync(portFile) || !readFileSync(portFile, "utf8").includes("\n")) await new Promise((r) => setTimeout(r, 20));
  const port = readFileSync(portFile, "utf8").split("\n")[0];
  const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
  const ws = new WebSocket(targets.find((t) => t.type === "page").webSocketDebuggerUrl);
  await new Promise((r) => ws.addEventListener("open", r));
  let id = 0;
  const pending = new Map();
  const waiters = [];
  let paused = 0, challenges = 0;
  const send = (method, params = {}) => new Promise((res) => {
    pending.set(++id, res);
    ws.send(JSON.stringify({ id, method, params }));
  });
  ws.addEventListener("message", (m) => {
    const msg = JSON.parse(m.data);
    if (msg.id) return pending.get(msg.id)?.(msg);
    if (msg.method === "Fetch.requestPaused") {
      paused++;
      send("Fetch.continueRequest", { requestId: msg.params.requestId });
    } else if (msg.method === "Fetch.authRequired") {
      challenges++;
      send("Fetch.continueWithAuth", {
        requestId: msg.params.requestId,
        authChallengeResponse: { response: "ProvideCredentials", username: "user", password: "cdp-pw" },
      });
    } else if (msg.method === "Page.loadEventFired") {
      waiters.shift()?.();
    }
  });
  await send("Page.enable");
  if (way === "cdp") await send("Fetch.enable", { handleAuthRequests: true });
  const cpu0 = cpuOf(chrome.pid);
  const t0 = performance.now();
  let ok = 0;
  for (let i = 0; i < N; i++) {
    const loaded = new Promise((r) => waiters.push(r));
    await send("Page.navigate", { url: `http://127.0.0.1:${ports.origin}/p${i}` });
    await loaded;
    const r = await send("Runtime.evaluate", { expression: "document.getElementById('ok')?.textContent" });
    if (r.result?.result?.value === "ok") ok++;
  }
  const ms = (performance.now() - t0) / N;
  const cpu = (cpuOf(chrome.pid) - cpu0) / N;
  ws.close();
  // Its own process group: the zygote and helpers go with it.
  process.kill(-chrome.pid, "SIGKILL");
  await new Promise((r) => chrome.once("exit", r));
  rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  return { ms, cpu, ok, paused, challenges };
}

const results = { direct: [], forwarder: [], cdp: [] };
for (let r = 0; r < rounds; r++) {
  for (const way of ["direct", "forwarder", "cdp"]) {
    const x = await run(way);
    console.error(`round ${r + 1} ${way}: ${x.ms.toFixed(1)} ms/navigation, chrome CPU ${x.cpu.toFixed(2)} ticks/navigation, ${x.ok}/${N} pages ok, ${x.paused} paused, ${x.challenges} auth challenges`);
    results[way].push(x);
  }
}
const med = (a) => a.slice().sort((x, y) => x - y)[Math.floor(a.length / 2)];
const m = (way) => ({ ms: med(results[way].map((x) => x.ms)), cpu: med(results[way].map((x) => x.cpu)) });
const [d, f, c] = [m("direct"), m("forwarder"), m("cdp")];
console.log(`median per navigation: direct ${d.ms.toFixed(1)} ms, forwarder ${f.ms.toFixed(1)} ms, cdp ${c.ms.toFixed(1)} ms`);
console.log(`forwarder / direct: latency ×${(f.ms / d.ms).toFixed(2)}, Chromium CPU ×${(f.cpu / d.cpu).toFixed(2)}`);
console.log(`cdp / forwarder: latency ×${(c.ms / f.ms).toFixed(2)}, Chromium CPU ×${(c.cpu / f.cpu).toFixed(2)}`);
up.stdin.end();
