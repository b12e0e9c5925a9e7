// `cargo xtask bench`'s `puppeteer-cluster` row: the demo workflow's step 1 with
// puppeteer-cluster, one browser per worker (Cluster.CONCURRENCY_BROWSER) and as many
// workers as accounts, as in the old measurement of this peer.
//
// Usage: node puppeteer_cluster.mjs BASE_URL N Q PROFILES CHROMIUM
// Accounts user-1/pass-1 … user-N/pass-N (the bench's scratch project). Per account:
// log in, then Q × (goto /item/{i}, click #add, wait until #done contains "added {i}").
//
// Prints one `peer-summary {json}` line at the end (iterations done and failed, when
// the last browser became ready, this process's peak RSS) and exits 1 when anything
// failed, with each error on stderr. The browsers are Debian's Chromium (never a
// downloaded one), each with its own profile under PROFILES, all closed (and so reaped
// by this process) before it exits.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Cluster } from "puppeteer-cluster";
import puppeteer from "puppeteer-core";

const [baseUrlArg, nArg, qArg, profiles, executablePath] = process.argv.slice(2);
if (!executablePath) {
  console.error("usage: node puppeteer_cluster.mjs BASE_URL N Q PROFILES CHROMIUM");
  process.exit(2);
}
const baseUrl = baseUrlArg.replace(/\/$/, "");
const n = Number(nArg);
const q = Number(qArg);

const args = [
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];
if (process.getuid?.() === 0) args.push("--no-sandbox");
const browserOptions = (i) => ({
  executablePath,
  headless: true,
  args,
  userDataDir: join(profiles, `browser-${i}`),
});

let lastReady = 0;
let ok = 0;
const failures = [];

async function account({ page, data: i }) {
  // The worker's browser is up and this job's page is open.
  lastReady = Math.max(lastReady, Date.now());
  let done = 0;
  try {
    await page.goto(`${baseUrl}/login`);
    await page.type("#username", `user-${i}`);
    await page.type("#password", `pass-${i}`);
    await page.click("#submit");
    await page.waitForSelector("#welcome");
    for (let it = 1; it <= q; it++) {
      await page.goto(`${baseUrl}/item/${it}`);
      await page.click("#add");
      await page.waitForFunction(
        (k) => document.querySelector("#done")?.textContent.includes(`added ${k}`),
        {},
        it,
      );
      done += 1;
      ok += 1;
    }
  } catch (e) {
    failures.push({ account: i, failed: q - done, error: String(e?.stack ?? e) });
    throw e;
  }
}

const cluster = await Cluster.launch({
  puppeteer,
  concurrency: Cluster.CONCURRENCY_BROWSER,
  maxConcurrency: n,
  // One job is a whole account; the bench has its own deadline.
  timeout: 600_000,
  retryLimit: 0,
  puppeteerOptions: { executablePath, headless: true, args },
  perBrowserOptions: Array.from({ length: n }, (_, k) => browserOptions(k + 1)),
});
const jobs = await Promise.allSettled(
  Array.from({ length: n }, (_, k) => cluster.execute(k + 1, account)),
);
await cluster.idle();
await cluster.close();

for (const [k, r] of jobs.entries()) {
  if (r.status === "rejected" && !failures.some((f) => f.account === k + 1)) {
    // Failed before the task ran (launching the browser or opening its page).
    failures.push({ account: k + 1, failed: q, error: String(r.reason?.stack ?? r.reason) });
  }
}
for (const f of failures) console.error(`account ${f.account}: ${f.error}`);
const status = readFileSync("/proc/self/status", "utf8");
const hwm = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN);
const failed = failures.reduce((s, f) => s + f.failed, 0);
console.log(
  "peer-summary " +
    JSON.stringify({
      peer: "puppeteer-cluster",
      accounts: n,
      iterations_ok: ok,
      iterations_failed: failed,
      last_ready_ms: lastReady || null,
      vmhwm_kib: hwm,
    }),
);
if (failed > 0 || ok !== n * q) process.exit(1);
