// A SharedWorker that lets every dashboard tab of this origin share one event stream:
// it holds the only SensorFeed (one /history request, one /events connection) and
// passes what it receives to every tab, so that ten tabs cost one connection. Over
// HTTP/1.1 a browser opens at most six connections to one server for all its tabs, and
// each open EventSource holds one: without this worker the seventh tab would not load.
//
// Messages to a tab: {type: 'history', history} (the whole state: when the tab joins,
// and after a reset), {type: 'reading', id, reading}, {type: 'status', status, opens},
// {type: 'tabs', count}, {type: 'error', message}. From a tab: {type: 'bye'} when it
// goes away (a worker cannot tell otherwise). The feed stops with the last tab.
'use strict';

importScripts('/feed.js');

const tabs = new Set();
let feed = null;
/** The history as last loaded, kept current with every reading since. */
let state = null;
let status = 'connecting';

function broadcast(message) {
  for (const port of tabs) port.postMessage(message);
}

function report(error) {
  broadcast({ type: 'error', message: String(error?.stack ?? error) });
}

function startFeed() {
  const started = new SensorFeed({
    history(history) {
      state = history;
      broadcast({ type: 'history', history });
    },
    reading(id, reading) {
      if (state) {
        state.lastId = id;
        const sensor = state.sensors.find((s) => s.id === reading.sensor);
        if (sensor) {
          sensor.readings.push({ id, data: reading });
          // As many as the server keeps (and a tab shows) per sensor.
          if (sensor.readings.length > state.keep) sensor.readings.shift();
        }
      }
      broadcast({ type: 'reading', id, reading });
    },
    status(next) {
      status = next;
      broadcast({ type: 'status', status, opens: started.opens });
    },
  });
  feed = started;
  started.start().catch((error) => {
    if (!started.stopped) report(error);
  });
}

function leave(port) {
  if (!tabs.delete(port)) return;
  if (tabs.size === 0 && feed) {
    feed.stop();
    feed = null;
    state = null;
    status = 'connecting';
  }
  broadcast({ type: 'tabs', count: tabs.size });
}

self.addEventListener('connect', (event) => {
  const port = event.ports[0];
  tabs.add(port);
  port.addEventListener('message', (message) => {
    if (message.data?.type === 'bye') leave(port);
  });
  // Where MessagePort has a `close` event, a tab that crashed is noticed too.
  port.addEventListener('close', () => leave(port));
  port.start();
  if (feed && state) port.postMessage({ type: 'history', history: state });
  if (feed) port.postMessage({ type: 'status', status, opens: feed.opens });
  else startFeed();
  broadcast({ type: 'tabs', count: tabs.size });
});

self.addEventListener('error', (event) => report(event.message));
self.addEventListener('unhandledrejection', (event) => report(event.reason));
