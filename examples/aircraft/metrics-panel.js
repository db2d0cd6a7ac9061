// The server's own numbers, from its `/metrics` (Prometheus text; the library records
// them with the `metrics` feature): event streams open, events and bytes per second
// handed to connections (the bytes on the wire, after compression). A small box of its
// own in the upper right corner; it reads `/metrics` every two seconds.
//
// For the curious and the tests: `window.serverMetrics`.
(function () {
  'use strict';

  const EVERY_MS = 2000;
  const state = (window.serverMetrics = {
    scrapes: 0, // answers of /metrics read
    available: null, // whether the server records the library's metrics
    open: null, // event streams open
    eventsPerSecond: null,
    bytesPerSecond: null,
  });

  const box = document.createElement('aside');
  box.id = 'server-metrics';
  box.setAttribute('aria-label', "The server's own numbers");
  box.style.cssText = [
    'position:fixed',
    'right:10px',
    'top:10px',
    'z-index:1000',
    'padding:6px 10px',
    'border-radius:6px',
    'background:rgba(12,22,33,0.88)',
    'color:#dbe7f3',
    'font:12px/1.45 "DejaVu Sans",system-ui,sans-serif',
    'box-shadow:0 1px 4px rgba(0,0,0,0.5)',
  ].join(';');
  box.innerHTML =
    '<div style="color:#8aa0b6;font-size:10px;letter-spacing:.06em;text-transform:uppercase">server</div>' +
    '<div><b id="sm-open">–</b> streams · <b id="sm-events">–</b> events/s · <b id="sm-bytes">–</b>/s</div>';
  document.body.append(box);

  /** The sum of every series of `name` in Prometheus text, or null if there is none. */
  function total(text, name) {
    let sum = null;
    for (const line of text.split('\n')) {
      if (!line.startsWith(name) || line.startsWith('#')) continue;
      const rest = line.slice(name.length);
      if (rest[0] !== ' ' && rest[0] !== '{') continue;
      const value = Number(line.slice(line.lastIndexOf(' ') + 1));
      if (Number.isFinite(value)) sum = (sum ?? 0) + value;
    }
    return sum;
  }

  function bytes(perSecond) {
    if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(1)} MB`;
    if (perSecond >= 1e3) return `${(perSecond / 1e3).toFixed(1)} kB`;
    return `${Math.round(perSecond)} B`;
  }

  function show(id, value) {
    document.getElementById(id).textContent = value;
  }

  let last = null;
  async function scrape() {
    let text;
    try {
      const response = await fetch('/metrics', { cache: 'no-store' });
      if (!response.ok) return;
      text = await response.text();
    } catch (error) {
      return; // the server is away: the map says so; try again at the next tick
    }
    state.scrapes++;
    const now = performance.now();
    const open = total(text, 'tower_sse_streams_open');
    const events = total(text, 'tower_sse_stream_events_total');
    const written = total(text, 'tower_sse_stream_written_bytes_total');
    state.available = open !== null;
    if (!state.available) {
      box.title = 'The server was built without the metrics feature';
      show('sm-open', 'n/a');
      return;
    }
    state.open = open;
    show('sm-open', String(open));
    if (last) {
      const seconds = (now - last.at) / 1000;
      state.eventsPerSecond = Math.max(0, ((events ?? 0) - last.events) / seconds);
      state.bytesPerSecond = Math.max(0, ((written ?? 0) - last.written) / seconds);
      show('sm-events', String(Math.round(state.eventsPerSecond)));
      show('sm-bytes', bytes(state.bytesPerSecond));
    }
    last = { at: now, events: events ?? 0, written: written ?? 0 };
  }

  scrape();
  setInterval(scrape, EVERY_MS);
})();
