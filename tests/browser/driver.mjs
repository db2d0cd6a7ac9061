// Drives Debian's Chromium for a Rust test, one command at a time, over stdin/stdout.
//
// The Rust test (tests/browser/driver.rs) keeps the server in its own process and
// decides what happens when: it opens pages, waits for what a page shows, changes the
// server (ticks a simulation, cuts connections, restarts it), and checks again. Every
// request is one JSON line on stdin; every answer one JSON line on stdout:
//
//   {"id":1,"op":"open","url":"http://127.0.0.1:4000/"} -> {"id":1,"ok":true,"value":0}
//       (with "init":"<script>", the script runs in the page before any of its own, e.g.
//       to take away an API the page would use)
//   {"id":2,"op":"wait","page":0,"expr":"aircraftMap.count() >= 300","timeout":20000}
//                                    -> {"id":2,"ok":true,"value":true} (or "timedOut":true)
//   {"id":3,"op":"eval","page":0,"expr":"aircraftMap.ids"}  -> {"id":3,"ok":true,"value":[...]}
//   {"id":4,"op":"screenshot","page":0,"name":"aircraft"}   -> {"id":4,"ok":true,"value":"<path>"}
//   {"id":5,"op":"responses","page":0}   -> what the browser saw for each response
//   {"id":6,"op":"close","page":0}
//   {"id":7,"op":"errors"}  -> console errors, page errors, failed requests of every page,
//                              and the requests blocked for not going to loopback
//   {"id":8,"op":"cdp","page":0,"method":"Debugger.pause","event":"Debugger.paused"}
//       -> {"id":8,"ok":true,"value":<the method's result>}: a Chrome DevTools Protocol
//       command on the page's own session (one per page, kept, so that what it sets
//       stays set); with "event", answers once that event has fired, with its params
//       (to pause the page's scripts and know they are paused, say)
//   {"id":9,"op":"quit"}
//
// Pages reach loopback only: the harness aborts every other request (see harness.mjs).
// `expr` is a JavaScript expression evaluated in the page. A failed command answers
// {"ok":false,"error":"..."}; the driver itself exits non-zero only when it cannot run.
//
//   node driver.mjs --artifacts DIR [--width 1280 --height 800]

import { createInterface } from 'node:readline';

import { Harness, waitFor } from './harness.mjs';

function parseArgs(argv) {
  const options = { artifacts: undefined, width: 1280, height: 800 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--artifacts') options.artifacts = argv[++i];
    else if (arg === '--width') options.width = Number(argv[++i]);
    else if (arg === '--height') options.height = Number(argv[++i]);
    else throw new Error(`driver.mjs: unknown argument ${arg}`);
  }
  return options;
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const harness = await Harness.launch({
    artifactsDir: options.artifacts,
    viewport: { width: options.width, height: options.height },
  });
  const pages = [];
  const responses = [];
  /** page number -> its CDP session */
  const sessions = [];

  const page = (n) => {
    const found = pages[n];
    if (!found) throw new Error(`no open page ${n}`);
    return found;
  };

  const commands = {
    async open({ url, init }) {
      const opened = await harness.newPage();
      if (init) await opened.addInitScript(init);
      const n = pages.length;
      pages.push(opened);
      responses[n] = [];
      opened.on('response', (response) => {
        responses[n].push({
          url: response.url(),
          status: response.status(),
          headers: response.headers(),
        });
      });
      await opened.goto(url, { waitUntil: 'load' });
      return n;
    },
    async wait({ page: n, expr, timeout = 30_000 }) {
      const value = await waitFor(page(n), expr, { timeout });
      return value === undefined ? { timedOut: true } : { value };
    },
    async eval({ page: n, expr }) {
      return page(n).evaluate(expr);
    },
    async screenshot({ page: n, name }) {
      return harness.screenshot(page(n), name);
    },
    async responses({ page: n }) {
      return responses[n] ?? [];
    },
    async close({ page: n }) {
      await page(n).close();
      return true;
    },
    async errors() {
      return harness.errors();
    },
    async cdp({ page: n, method, params, event }) {
      sessions[n] ??= await harness.context.newCDPSession(page(n));
      const session = sessions[n];
      const fired = event ? new Promise((resolve) => session.once(event, resolve)) : null;
      const result = await session.send(method, params ?? {});
      return fired ? await fired : result;
    },
  };

  const send = (message) => process.stdout.write(`${JSON.stringify(message)}\n`);
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  try {
    for await (const line of lines) {
      if (!line.trim()) continue;
      let request;
      try {
        request = JSON.parse(line);
      } catch (error) {
        send({ id: null, ok: false, error: `not JSON: ${error.message}` });
        continue;
      }
      if (request.op === 'quit') {
        send({ id: request.id, ok: true, value: true });
        break;
      }
      const command = commands[request.op];
      if (!command) {
        send({ id: request.id, ok: false, error: `unknown op ${request.op}` });
        continue;
      }
      try {
        const result = await command(request);
        if (request.op === 'wait') send({ id: request.id, ok: true, ...result });
        else send({ id: request.id, ok: true, value: result ?? null });
      } catch (error) {
        send({ id: request.id, ok: false, error: String(error?.stack ?? error) });
      }
    }
  } finally {
    await harness.close();
  }
}

main().catch((error) => {
  process.stderr.write(`driver.mjs: ${error.stack ?? error}\n`);
  process.exit(1);
});
