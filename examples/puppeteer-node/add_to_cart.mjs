// Add item $BATCH_ITERATION to the cart, in the account's own browser.
//
// batch-cli started this browser and logged it in; this script only connects to it
// over the DevTools protocol ($BATCH_CDP_URL, a ws:// URL) and disconnects at the
// end, leaving the browser to batch-cli. No new browser is started.
//
// Usage (from a workflow): { exec = ["node", "add_to_cart.mjs", "{base_url}"] }
// A non-zero exit fails the iteration.

import puppeteer from "puppeteer-core";

const baseUrl = process.argv[2].replace(/\/$/, "");
const item = process.env.BATCH_ITERATION;
const browser = await puppeteer.connect({
  browserWSEndpoint: process.env.BATCH_CDP_URL,
  defaultViewport: null,
});
try {
  // The tab batch-cli drives: it holds the account's session.
  const [page] = await browser.pages();
  await page.goto(`${baseUrl}/item/${item}`);
  await page.click("#add");
  await page.waitForFunction(
    (n) => document.querySelector("#done")?.textContent.includes(`added ${n}`),
    { timeout: 20_000 },
    item,
  );
  console.log(`account ${process.env.BATCH_ACCOUNT_ID}: puppeteer added item ${item}`);
} finally {
  // Disconnect, not close: the browser is batch-cli's.
  await browser.disconnect();
}
