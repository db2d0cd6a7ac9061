// Browser harness for tower-sse's end-to-end tests.
//
// Launches Debian's Chromium (/usr/bin/chromium, installed by tests/run.sh) through
// playwright-core, never a browser that Playwright downloads itself. Each harness has a
// fresh temporary profile, records console errors and uncaught page errors of every page
// it opens, and saves screenshots into a directory its caller names. Pages see only
// loopback, as a user offline would: Chromium sends anything else to a proxy that is not
// there, and the harness also aborts such requests itself (`context.route`) unless told
// not to; either way they are recorded, and nothing is ever served in their place.
//
//   import { Harness } from './harness.mjs';
//   const harness = await Harness.launch({ artifactsDir: 'target/browser-artifacts' });
//   try {
//     const page = await harness.newPage();
//     await page.goto(url);
//     await harness.screenshot(page, 'map');
//     harness.assertNoErrors();
//   } finally {
//     await harness.close();
//   }

import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** Debian's Chromium, from the `chromium` package. */
export const CHROMIUM = process.env.TOWER_SSE_CHROMIUM || '/usr/bin/chromium';

/**
 * The flags Chromium runs with: headless, as root without a sandbox, and without any
 * connection of its own to the outside (this machine has no network but loopback and
 * the package registries, and Chromium's background requests would only fail). Every
 * request not to loopback goes to a proxy on 127.0.0.1:1, where nothing listens, and
 * fails: Chromium never lets loopback go through a proxy, so the tests' servers are
 * reached directly. This holds for every request, workers' included, without Playwright
 * intercepting any.
 */
export const CHROMIUM_ARGS = Object.freeze([
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
  '--proxy-server=http://127.0.0.1:1',
]);

/** Whether `url` (a URL) is on this machine: 127.0.0.0/8, ::1 or localhost. */
export function isLoopback(url) {
  const host = url.hostname.toLowerCase();
  return (
    /^127\.\d+\.\d+\.\d+$/.test(host) ||
    host === '[::1]' ||
    host === 'localhost' ||
    host.endsWith('.localhost')
  );
}

async function loadPlaywright() {
  try {
    return await import('playwright-core');
  } catch (error) {
    throw new Error(
      `playwright-core is not installed in ${HERE}/node_modules: run tests/run.sh ` +
        `(or \`npm ci\` in tests/browser) first. (${error.message})`,
    );
  }
}

export class Harness {
  /**
   * Starts Chromium with a fresh, empty profile.
   *
   * @param {object} [options]
   * @param {string} [options.artifactsDir] where `screenshot` saves files (created if missing)
   * @param {number} [options.timeout] default timeout of page actions, in ms
   * @param {object} [options.viewport] e.g. `{ width: 1024, height: 768 }`
   * @param {boolean} [options.route] also abort requests not to loopback with
   *   `context.route` (default). Routing makes Playwright intercept every request, and
   *   it then answers CORS preflights itself: tests of preflights pass `false` (the
   *   proxy flag still keeps their pages off the internet).
   */
  static async launch({ artifactsDir, timeout = 30_000, viewport, route = true } = {}) {
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `Chromium is not installed at ${CHROMIUM}: run tests/run.sh ` +
          '(it runs `apt-get install chromium`) first.',
      );
    }
    const { chromium } = await loadPlaywright();
    const userDataDir = await mkdtemp(path.join(tmpdir(), 'tower-sse-chromium-'));
    let context;
    try {
      context = await chromium.launchPersistentContext(userDataDir, {
        executablePath: CHROMIUM,
        headless: true,
        args: [...CHROMIUM_ARGS],
        viewport: viewport ?? { width: 1024, height: 768 },
        timeout: 60_000,
      });
    } catch (error) {
      await rm(userDataDir, { recursive: true, force: true });
      throw error;
    }
    context.setDefaultTimeout(timeout);
    const harness = new Harness(context, userDataDir, artifactsDir);
    // The internet is out of reach: anything but loopback is aborted, never served from
    // elsewhere in its place (`#watch` records it).
    if (route) {
      try {
        await context.route(
          (url) => !isLoopback(url),
          (request) => request.abort('blockedbyclient'),
        );
      } catch (error) {
        await harness.close();
        throw error;
      }
    }
    // A persistent context opens with one blank page: use it as the first page.
    for (const page of context.pages()) harness.#watch(page);
    context.on('page', (page) => harness.#watch(page));
    return harness;
  }

  /** @private use `Harness.launch` */
  constructor(context, userDataDir, artifactsDir) {
    this.context = context;
    this.userDataDir = userDataDir;
    this.artifactsDir = artifactsDir ? path.resolve(artifactsDir) : undefined;
    /** `console.error` (and other error-level console messages) of every page. */
    this.consoleErrors = [];
    /** Uncaught exceptions and unhandled rejections of every page. */
    this.pageErrors = [];
    /** Requests that failed at the network level (refused, aborted, blocked). */
    this.failedRequests = [];
    /** URLs of the requests that failed because they were not to loopback. */
    this.blockedRequests = [];
    /** Paths of the screenshots saved so far. */
    this.screenshots = [];
    this.#watched = new WeakSet();
  }

  #watched;
  #initialTaken = false;

  #watch(page) {
    if (this.#watched.has(page)) return;
    this.#watched.add(page);
    page.on('console', (message) => {
      if (message.type() === 'error') {
        const { url, lineNumber } = message.location();
        this.consoleErrors.push({
          page: page.url(),
          text: message.text(),
          location: url ? `${url}:${lineNumber}` : undefined,
        });
      }
    });
    page.on('pageerror', (error) => {
      this.pageErrors.push({ page: page.url(), message: error.message, stack: error.stack });
    });
    page.on('requestfailed', (request) => {
      const url = new URL(request.url());
      if (/^(https?|wss?):$/.test(url.protocol) && !isLoopback(url)) {
        this.blockedRequests.push(request.url());
      }
      this.failedRequests.push({
        url: request.url(),
        resourceType: request.resourceType(),
        error: request.failure()?.errorText,
      });
    });
  }

  /**
   * A page to drive: the blank page Chromium opened with, the first time, then new ones.
   * Console and page errors of every page are recorded.
   */
  async newPage() {
    let page;
    if (!this.#initialTaken) {
      this.#initialTaken = true;
      page = this.context.pages().find((p) => p.url() === 'about:blank');
    }
    page ??= await this.context.newPage();
    this.#watch(page);
    return page;
  }

  /**
   * Saves a full-page PNG of `page` as `<artifactsDir>/<name>.png` and returns its path.
   */
  async screenshot(page, name) {
    if (!this.artifactsDir) throw new Error('Harness.launch was given no artifactsDir');
    await mkdir(this.artifactsDir, { recursive: true });
    const file = path.join(this.artifactsDir, `${name.replace(/[^\w.-]+/g, '_')}.png`);
    await page.screenshot({ path: file, fullPage: true });
    this.screenshots.push(file);
    return file;
  }

  /** Everything that went wrong in the pages, as one plain object (for JSON reports). */
  errors() {
    return {
      consoleErrors: [...this.consoleErrors],
      pageErrors: [...this.pageErrors],
      failedRequests: [...this.failedRequests],
      blockedRequests: [...this.blockedRequests],
    };
  }

  /** Throws if any page logged a console error, threw, or asked for anything outside loopback. */
  assertNoErrors() {
    const { consoleErrors, pageErrors, blockedRequests } = this;
    if (consoleErrors.length || pageErrors.length || blockedRequests.length) {
      throw new Error(
        `the browser reported errors:\n${JSON.stringify({ consoleErrors, pageErrors, blockedRequests }, null, 2)}`,
      );
    }
  }

  /** Closes Chromium and deletes its temporary profile. */
  async close() {
    try {
      await this.context.close();
    } finally {
      await rm(this.userDataDir, { recursive: true, force: true });
    }
  }
}

/**
 * Waits until `predicate` (a function evaluated in the page) returns a truthy value, and
 * returns it; on timeout returns `undefined` instead of throwing, so the caller can still
 * report what the page had.
 */
export async function waitFor(page, predicate, { timeout = 30_000, arg } = {}) {
  try {
    const handle = await page.waitForFunction(predicate, arg, { timeout, polling: 50 });
    return await handle.jsonValue();
  } catch (error) {
    if (error?.name === 'TimeoutError') return undefined;
    throw error;
  }
}

/**
 * The command line of the page scripts:
 * `node <script> <url> [--artifacts DIR] [--name SCREENSHOT] [--timeout MS]`.
 */
export function parseArgs(argv, script, defaultName) {
  const options = { artifacts: undefined, name: defaultName, timeout: 30_000 };
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--artifacts') options.artifacts = argv[++i];
    else if (arg === '--name') options.name = argv[++i];
    else if (arg === '--timeout') options.timeout = Number(argv[++i]);
    else positional.push(arg);
  }
  if (positional.length !== 1 || !Number.isFinite(options.timeout)) {
    throw new Error(`usage: node ${script} <url> [--artifacts DIR] [--name NAME] [--timeout MS]`);
  }
  return { url: positional[0], ...options };
}
