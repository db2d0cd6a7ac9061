// The sensors' feed as a browser reads it: the recent readings from /history, then
// every new reading from /events, opened with `lastEventId` set to the id the history is
// current as of, so that the hub replays anything published in between: no reading is
// missed and none arrives twice. On a dropped connection the browser reconnects and
// sends `Last-Event-ID` by itself; when the hub can no longer replay (`stream-reset`),
// the feed reloads the history.
//
// sse-worker.js uses one for every tab at once (one connection in all, the default);
// the dashboard uses one itself when a tab has a connection of its own (`?connection=
// per-tab`, or a browser without SharedWorker). Loaded as a classic script in both.
'use strict';

// Used by dashboard.js and sse-worker.js, which load this file first.
class SensorFeed {
  /**
   * @param {object} on
   * @param {(history: object) => void} on.history the whole state: first, and after a reset
   * @param {(id: number, reading: object) => void} on.reading one new reading
   * @param {(status: string) => void} on.status connecting, live, reconnecting or offline
   * @param {string[]} [topics] the sensors to read (every sensor when empty)
   */
  constructor(on, topics = []) {
    this.on = on;
    this.topics = topics;
    this.lastId = null;
    /** `open` events of the EventSource: 1, plus one per reconnection. */
    this.opens = 0;
    this.source = null;
    this.stopped = false;
    /** Readings that arrive while the history is reloaded after a reset. */
    this.held = null;
  }

  async start() {
    const history = await this.loadHistory();
    if (this.stopped) return;
    this.lastId = history.lastId;
    this.on.history(history);
    this.connect();
  }

  stop() {
    this.stopped = true;
    this.source?.close();
    this.source = null;
  }

  params() {
    return new URLSearchParams(this.topics.map((topic) => ['topic', topic]));
  }

  async loadHistory() {
    for (let pause = 1000; ; pause = Math.min(2 * pause, 15000)) {
      try {
        const response = await fetch(`/history?${this.params()}`, { cache: 'no-store' });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        return await response.json();
      } catch (error) {
        if (this.stopped) throw error;
        this.on.status('offline');
        console.warn(`/history: ${error.message}; retrying`);
        await new Promise((resolve) => setTimeout(resolve, pause));
      }
    }
  }

  connect() {
    const params = this.params();
    if (this.lastId != null) params.set('lastEventId', String(this.lastId));
    const source = new EventSource(`/events?${params}`);
    this.source = source;
    source.addEventListener('open', () => {
      this.opens++;
      this.on.status('live');
    });
    source.addEventListener('error', () => {
      if (this.stopped) return;
      if (source.readyState === EventSource.CLOSED) {
        // The server answered with something other than a stream: try again later.
        this.on.status('offline');
        setTimeout(() => {
          if (!this.stopped && this.source === source) this.connect();
        }, 5000);
      } else {
        this.on.status('reconnecting');
      }
    });
    source.addEventListener('sensor-update', (event) => {
      const id = Number(event.lastEventId);
      this.lastId = id;
      const reading = JSON.parse(event.data);
      if (this.held) this.held.push([id, reading]);
      else this.on.reading(id, reading);
    });
    source.addEventListener('stream-reset', async (event) => {
      this.lastId = Number(event.lastEventId);
      this.held = [];
      const history = await this.loadHistory();
      if (this.stopped) return;
      const held = this.held;
      this.held = null;
      this.on.history(history);
      for (const [id, reading] of held) if (id > history.lastId) this.on.reading(id, reading);
    });
  }
}
