// Takes a screenshot of a running example for examples/screenshots/, in the same
// headless Chromium as the browser tests, offline: every request not to loopback is
// aborted, and the screenshot is refused if the page asked for any, or logged an error.
//
//   node screenshot.mjs <url> --out FILE [--wait EXPR] [--tabs N] [--width 1280 --height 800]
//
// It opens `url` in N tabs (default 1), waits until the JavaScript expression EXPR is
// truthy in the last one (default: `true`, give or take a 5-minute guard), and saves a
// PNG of that tab as FILE. The README's screenshots were taken so, against the examples
// as a user runs them (see examples/screenshots/README.md).

import path from 'node:path';

import { Harness, waitFor } from './harness.mjs';

function parseArgs(argv) {
  const options = { url: undefined, out: undefined, wait: 'true', tabs: 1, width: 1280, height: 800 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--out') options.out = argv[++i];
    else if (arg === '--wait') options.wait = argv[++i];
    else if (arg === '--tabs') options.tabs = Number(argv[++i]);
    else if (arg === '--width') options.width = Number(argv[++i]);
    else if (arg === '--height') options.height = Number(argv[++i]);
    else if (!options.url) options.url = arg;
    else throw new Error(`screenshot.mjs: unexpected argument ${arg}`);
  }
  if (!options.url || !options.out || !(options.tabs >= 1)) {
    throw new Error('usage: node screenshot.mjs <url> --out FILE [--wait EXPR] [--tabs N]');
  }
  return options;
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const out = path.resolve(options.out);
  const harness = await Harness.launch({
    artifactsDir: path.dirname(out),
    viewport: { width: options.width, height: options.height },
  });
  try {
    let page;
    for (let n = 0; n < options.tabs; n++) {
      page = await harness.newPage();
      await page.goto(options.url, { waitUntil: 'load' });
    }
    const ready = await waitFor(page, options.wait, { timeout: 300_000 });
    if (ready === undefined) throw new Error(`\`${options.wait}\` stayed false`);
    const { consoleErrors, pageErrors, blockedRequests } = harness.errors();
    if (consoleErrors.length || pageErrors.length || blockedRequests.length) {
      throw new Error(JSON.stringify({ consoleErrors, pageErrors, blockedRequests }, null, 2));
    }
    const saved = await harness.screenshot(page, path.basename(out, '.png'));
    process.stdout.write(`${saved}\n`);
  } finally {
    await harness.close();
  }
}

main().catch((error) => {
  process.stderr.write(`screenshot.mjs: ${error.stack ?? error}\n`);
  process.exit(1);
});
