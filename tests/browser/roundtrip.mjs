// Opens an EventSource page (tests/browser/eventsource.html, served by tests/browser.rs),
// waits until the page has received the closing `done` event, and prints on stdout, as
// one JSON object, what the browser saw:
//
//   { received: [{ type, data, lastEventId }...], done, timedOut, sourceErrors, opens,
//     ackFailures, consoleErrors, pageErrors, failedRequests, responses, screenshot }
//
// It exits 0 whenever it could report, even when the page timed out: the Rust test
// judges the report. It exits 1 only when the browser itself could not be driven.
//
//   node roundtrip.mjs <url> [--artifacts DIR] [--name SCREENSHOT] [--timeout MS]

import { Harness, parseArgs, waitFor } from './harness.mjs';

async function main() {
  const { url, artifacts, name, timeout } = parseArgs(process.argv.slice(2), 'roundtrip.mjs', 'eventsource');
  const harness = await Harness.launch({ artifactsDir: artifacts, timeout });
  try {
    const page = await harness.newPage();
    // The response headers as the browser saw them, for the page and the event stream.
    const responses = [];
    page.on('response', (response) => {
      responses.push({
        url: response.url(),
        status: response.status(),
        resourceType: response.request().resourceType(),
        headers: response.headers(),
      });
    });

    await page.goto(url, { waitUntil: 'load' });
    const done = await waitFor(page, () => window.done === true, { timeout });
    const state = await page.evaluate(() => ({
      received: window.received,
      sourceErrors: window.sourceErrors,
      opens: window.opens,
      ackFailures: window.ackFailures,
    }));
    let screenshot = null;
    if (artifacts) screenshot = await harness.screenshot(page, name);

    const report = {
      ...state,
      done: done === true,
      timedOut: done !== true,
      ...harness.errors(),
      responses,
      screenshot,
    };
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } finally {
    await harness.close();
  }
}

main().catch((error) => {
  process.stderr.write(`roundtrip.mjs: ${error.stack ?? error}\n`);
  process.exit(1);
});
