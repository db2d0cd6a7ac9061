// Opens a page (tests/browser/cors.html, served by the Rust test) in Debian's Chromium,
// waits until the page sets `window.done`, and prints on stdout, as one JSON object,
// what the page recorded (`window.report`) and what the browser saw:
//
//   { report: { src, opens, events, errors, finished }, done, requests, responses,
//     consoleErrors, pageErrors, failedRequests, screenshot }
//
// `requests` lists every request the page made (method, url, headers), preflights
// included when Chromium reports them to the page's network events.
//
// It exits 0 whenever it could report, even when the page timed out: the Rust test
// judges the report. It exits 1 only when the browser itself could not be driven.
//
//   node cors.mjs <url> [--artifacts DIR] [--name SCREENSHOT] [--timeout MS]

import { Harness, parseArgs, waitFor } from './harness.mjs';

async function main() {
  const { url, artifacts, name, timeout } = parseArgs(process.argv.slice(2), 'cors.mjs', 'cors');
  // No `context.route`: Playwright would answer the preflights this test is about.
  const harness = await Harness.launch({ artifactsDir: artifacts, timeout, route: false });
  try {
    const page = await harness.newPage();
    const requests = [];
    const responses = [];
    page.on('request', (request) => {
      requests.push({ method: request.method(), url: request.url(), headers: request.headers() });
    });
    page.on('response', (response) => {
      responses.push({ url: response.url(), status: response.status(), headers: response.headers() });
    });

    await page.goto(url, { waitUntil: 'load' });
    const done = await waitFor(page, () => window.done === true, { timeout });
    const report = await page.evaluate(() => window.report);
    let screenshot = null;
    if (artifacts) screenshot = await harness.screenshot(page, name);
    process.stdout.write(
      `${JSON.stringify({ report, done: done === true, requests, responses, ...harness.errors(), screenshot })}\n`,
    );
  } finally {
    await harness.close();
  }
}

main().catch((error) => {
  process.stderr.write(`cors.mjs: ${error.stack ?? error}\n`);
  process.exit(1);
});
