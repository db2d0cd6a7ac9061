// The sensor dashboard: a card per sensor with its latest reading and a live line chart
// of temperature and humidity, drawn on a canvas.
//
// One connection for all tabs, by default: over HTTP/1.1 a browser opens at most six
// connections to one server for all its tabs together, and each open EventSource holds
// one, so with a connection per tab the seventh tab would never load. Where the browser
// has SharedWorker, the page reads the stream through /sse-worker.js, which holds the
// only EventSource of every dashboard tab of this origin; elsewhere (or if the worker
// fails to start) each tab opens its own.
//
// Page options: `?connection=per-tab` gives this tab a connection of its own (the
// "one per tab" link at the top); `?topic=<sensor>` (repeatable) shows only those
// sensors; `?record` keeps every event id received in `sensorDashboard.ids`.
'use strict';

(function () {
  const params = new URLSearchParams(location.search);
  const PER_TAB_ASKED = params.get('connection') === 'per-tab';
  const TOPICS = params.getAll('topic');
  const RECORD = params.has('record');
  const TEMPERATURE = '#ea580c';
  const HUMIDITY = '#0284c7';

  /** sensor id -> { meta, readings, elements, drawn, dirty } */
  const charts = new Map();
  let lastId = null;
  /** From the history: when the server started (ms), ms between readings, readings per chart. */
  const timeline = { started: null, interval: 2000, keep: 150 };

  // What the page received, for the curious (`sensorDashboard` in the console) and for
  // the browser tests.
  const debug = (window.sensorDashboard = {
    mode: null, // 'shared' (one connection for all tabs) or 'per-tab'
    why: null, // why this mode: 'default', 'asked', 'no SharedWorker' or 'worker failed'
    ids: [], // every event id received, in order (with ?record)
    readings: 0, // readings received live
    histories: 0, // histories loaded (or received from the worker)
    historyIds: [], // the lastId of each
    started: null, // when the server started, ms since the Unix epoch
    status: 'connecting',
    opens: 0, // opens of the EventSource (of the worker's, when shared)
    tabs: 1, // tabs sharing the connection
    points: () => Object.fromEntries([...charts].map(([id, c]) => [id, c.readings.length])),
    drawn: () => Object.fromEntries([...charts].map(([id, c]) => [id, c.drawn])),
    latest: () => Object.fromEntries([...charts].map(([id, c]) => [id, c.readings.at(-1) ?? null])),
    // The time of each chart's oldest reading (null when it has none).
    oldest: () => Object.fromEntries([...charts].map(([id, c]) => [id, c.readings[0]?.time ?? null])),
    // The time axis of each chart: { from, to } in ms since the Unix epoch.
    axes: () => Object.fromEntries([...charts].map(([id, c]) => [id, axis(c.readings)])),
  });

  // ---- receiving --------------------------------------------------------------------

  function onHistory(history) {
    debug.histories++;
    debug.historyIds.push(history.lastId);
    lastId = history.lastId;
    timeline.started = history.started;
    timeline.interval = history.interval;
    timeline.keep = history.keep;
    debug.started = history.started;
    const grid = document.getElementById('grid');
    const wanted = new Set(history.sensors.map((s) => s.id));
    for (const [id, chart] of charts) {
      if (!wanted.has(id)) {
        chart.elements.card.remove();
        charts.delete(id);
      }
    }
    for (const sensor of history.sensors) {
      if (TOPICS.length && !TOPICS.includes(sensor.id)) continue;
      let chart = charts.get(sensor.id);
      if (!chart) {
        chart = { meta: sensor, readings: [], elements: card(sensor), drawn: 0, dirty: true };
        grid.append(chart.elements.card);
        charts.set(sensor.id, chart);
      }
      chart.readings = sensor.readings.map((r) => r.data).slice(-timeline.keep);
      chart.dirty = true;
    }
    schedule();
  }

  function onReading(id, reading) {
    lastId = id;
    debug.readings++;
    if (RECORD) debug.ids.push(id);
    const chart = charts.get(reading.sensor);
    if (!chart) return;
    chart.readings.push(reading);
    if (chart.readings.length > timeline.keep) chart.readings.shift();
    chart.dirty = true;
    schedule();
  }

  function onStatus(status, opens) {
    debug.status = status;
    debug.opens = opens;
    const badge = document.getElementById('badge');
    badge.className = `badge ${status}`;
    badge.textContent = status;
  }

  function note(text) {
    document.getElementById('mode-note').textContent = text;
  }

  function onTabs(count) {
    debug.tabs = count;
    note(count === 1 ? 'this tab alone uses it, so far' : `${count} tabs share it`);
  }

  // ---- the connection: one for all tabs, or one per tab ------------------------------

  function showMode() {
    const shared = document.getElementById('mode-shared');
    const perTab = document.getElementById('mode-per-tab');
    // The links keep the page's other options.
    const other = new URLSearchParams(location.search);
    other.delete('connection');
    shared.href = `/${String(other) ? `?${other}` : ''}`;
    other.set('connection', 'per-tab');
    perTab.href = `/?${other}`;
    for (const [link, mode] of [[shared, 'shared'], [perTab, 'per-tab']]) {
      if (debug.mode === mode) link.setAttribute('aria-current', 'true');
      else link.removeAttribute('aria-current');
    }
    const why = document.getElementById('why');
    if (debug.why === 'no SharedWorker') {
      why.classList.add('warn');
      why.insertAdjacentHTML(
        'beforeend',
        ' <b>This browser has no <code>SharedWorker</code></b>, so each tab opens its own ' +
          'connection here: keep at most six tabs of it open.',
      );
    } else if (debug.why === 'worker failed') {
      why.classList.add('warn');
      why.insertAdjacentHTML(
        'beforeend',
        ' <b>The shared worker could not start</b>, so this tab opened its own connection.',
      );
    }
  }

  function perTab(why) {
    debug.mode = 'per-tab';
    debug.why = why;
    debug.tabs = 1;
    const feed = new SensorFeed(
      {
        history: onHistory,
        reading: onReading,
        status: (status) => onStatus(status, feed.opens),
      },
      TOPICS,
    );
    feed.start();
    note(why === 'asked' ? 'this tab has its own' : 'this tab has its own (see below)');
    showMode();
  }

  function shared() {
    debug.mode = 'shared';
    debug.why = 'default';
    let worker;
    try {
      worker = new SharedWorker('/sse-worker.js', { name: 'tower-sse sensors' });
    } catch (error) {
      console.warn(`sse-worker.js: ${error.message}; this tab opens its own connection`);
      perTab('worker failed');
      return;
    }
    let failed = false;
    worker.addEventListener('error', () => {
      // The worker's script did not load or run: this tab reads the stream itself.
      if (failed || debug.histories) return;
      failed = true;
      console.warn('sse-worker.js could not start; this tab opens its own connection');
      worker.port.close();
      perTab('worker failed');
    });
    worker.port.addEventListener('message', ({ data: message }) => {
      if (failed) return;
      if (message.type === 'history') onHistory(message.history);
      else if (message.type === 'reading') onReading(message.id, message.reading);
      else if (message.type === 'status') onStatus(message.status, message.opens);
      else if (message.type === 'tabs') onTabs(message.count);
      else if (message.type === 'error') console.error(`sse-worker.js: ${message.message}`);
    });
    worker.port.start();
    // A worker cannot see a tab go; tell it.
    addEventListener('pagehide', () => worker.port.postMessage({ type: 'bye' }));
    addEventListener('pageshow', (event) => {
      if (event.persisted) location.reload();
    });
    showMode();
  }

  if (PER_TAB_ASKED) perTab('asked');
  else if (typeof SharedWorker !== 'function') perTab('no SharedWorker');
  else shared();

  // ---- drawing ----------------------------------------------------------------------

  function card(sensor) {
    const element = document.createElement('article');
    element.className = 'card';
    element.dataset.sensor = sensor.id;
    element.innerHTML = `
      <header><h2></h2><span class="place"></span></header>
      <div class="now">
        <div class="value temperature"><b>–</b><small>°C</small></div>
        <div class="value humidity"><b>–</b><small>% RH</small></div>
      </div>
      <canvas height="170" aria-label="temperature and humidity chart"></canvas>
      <footer><span class="range"></span><span class="legend"><i class="t"></i>temperature <i class="h"></i>humidity</span></footer>`;
    element.querySelector('h2').textContent = sensor.name;
    element.querySelector('.place').textContent = sensor.place;
    return {
      card: element,
      canvas: element.querySelector('canvas'),
      temperature: element.querySelector('.temperature b'),
      humidity: element.querySelector('.humidity b'),
      range: element.querySelector('.range'),
    };
  }

  let scheduled = false;
  function schedule() {
    if (scheduled) return;
    scheduled = true;
    // A timer rather than requestAnimationFrame: tabs in the background keep drawing.
    setTimeout(() => {
      scheduled = false;
      for (const chart of charts.values()) {
        if (chart.dirty) {
          chart.dirty = false;
          render(chart);
        }
      }
      document.getElementById('readings').textContent = String(debug.readings);
      document.getElementById('last-id').textContent = lastId ?? '–';
    }, 40);
  }

  addEventListener('resize', () => {
    for (const chart of charts.values()) chart.dirty = true;
    schedule();
  });

  /** A round range that holds `low..high` with some air, at least `span` wide. */
  function niceRange(low, high, span) {
    const middle = (low + high) / 2;
    const half = Math.max((high - low) * 0.6, span / 2);
    const step = half > 10 ? 5 : half > 4 ? 2 : half > 1.5 ? 1 : 0.5;
    return [Math.floor((middle - half) / step) * step, Math.ceil((middle + half) / step) * step];
  }

  /**
   * The time axis of a chart of `readings`: from the server's start, until the chart
   * holds `keep` readings (then the server has dropped older ones too), and from the
   * oldest reading after that; at least `keep` readings wide, so that a young chart
   * grows from the left.
   */
  function axis(readings) {
    const span = timeline.keep * timeline.interval;
    const full = readings.length >= timeline.keep;
    const from = full ? readings[0].time : (timeline.started ?? readings[0]?.time ?? Date.now());
    const to = Math.max(readings.at(-1)?.time ?? from, from + (full ? 1 : span));
    return { from, to, sinceStart: !full };
  }

  function render(chart) {
    const { readings, elements } = chart;
    const latest = readings.at(-1);
    if (latest) {
      elements.temperature.textContent = latest.temperature.toFixed(1);
      elements.humidity.textContent = latest.humidity.toFixed(0);
    }
    const canvas = elements.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
    if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
    const g = canvas.getContext('2d');
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    chart.drawn = 0;

    const { from: t0, to: t1, sinceStart } = axis(readings);
    const temperatures = readings.map((r) => r.temperature);
    const humidities = readings.map((r) => r.humidity);
    const [tLow, tHigh] = readings.length
      ? niceRange(Math.min(...temperatures), Math.max(...temperatures), 2)
      : [0, 1];
    const [hLow, hHigh] = readings.length
      ? niceRange(Math.min(...humidities), Math.max(...humidities), 10)
      : [0, 1];
    elements.range.textContent = readings.length
      ? `${Math.min(...temperatures).toFixed(1)}–${Math.max(...temperatures).toFixed(1)} °C · ` +
        `${Math.min(...humidities).toFixed(0)}–${Math.max(...humidities).toFixed(0)} %`
      : 'no reading yet';

    const left = 38;
    const right = width - 38;
    const top = 8;
    const bottom = height - 20;
    const x = (time) => left + ((time - t0) / (t1 - t0)) * (right - left);
    const yT = (value) => bottom - ((value - tLow) / (tHigh - tLow)) * (bottom - top);
    const yH = (value) => bottom - ((value - hLow) / (hHigh - hLow)) * (bottom - top);

    // Grid and axes.
    g.font = '10px "DejaVu Sans", system-ui, sans-serif';
    g.lineWidth = 1;
    g.textBaseline = 'middle';
    const rows = 4;
    for (let i = 0; i <= rows; i++) {
      const y = Math.round(top + ((bottom - top) * i) / rows) + 0.5;
      g.strokeStyle = i === rows ? '#cbd5e1' : '#eef2f7';
      g.beginPath();
      g.moveTo(left, y);
      g.lineTo(right, y);
      g.stroke();
      if (!readings.length) continue;
      g.fillStyle = TEMPERATURE;
      g.textAlign = 'right';
      g.fillText((tHigh - ((tHigh - tLow) * i) / rows).toFixed(1), left - 5, y);
      g.fillStyle = HUMIDITY;
      g.textAlign = 'left';
      g.fillText((hHigh - ((hHigh - hLow) * i) / rows).toFixed(0), right + 5, y);
    }
    g.fillStyle = '#64748b';
    g.textAlign = 'center';
    g.textBaseline = 'top';
    const span = t1 - t0;
    // The smallest round step that leaves room for its labels.
    const steps = [5e3, 15e3, 30e3, 60e3, 2 * 60e3, 5 * 60e3, 10 * 60e3, 30 * 60e3, 3600e3];
    const room = (step) => ((right - left) * step) / span >= (step < 60e3 ? 70 : 48);
    const tick = steps.find(room) ?? 3 * 3600e3;
    for (let time = Math.ceil(t0 / tick) * tick; time <= t1; time += tick) {
      const px = Math.round(x(time)) + 0.5;
      g.strokeStyle = '#eef2f7';
      g.beginPath();
      g.moveTo(px, top);
      g.lineTo(px, bottom);
      g.stroke();
      const clock = new Date(time);
      const label = `${String(clock.getHours()).padStart(2, '0')}:${String(clock.getMinutes()).padStart(2, '0')}`;
      g.fillText(tick < 60e3 ? `${label}:${String(clock.getSeconds()).padStart(2, '0')}` : label, px, bottom + 5);
    }

    // While the chart holds every reading since the server started, its left edge is
    // that start.
    if (sinceStart) {
      g.strokeStyle = '#94a3b8';
      g.setLineDash([3, 3]);
      g.beginPath();
      g.moveTo(left + 0.5, top);
      g.lineTo(left + 0.5, bottom);
      g.stroke();
      g.setLineDash([]);
      g.fillStyle = '#64748b';
      g.textAlign = 'left';
      g.fillText('server started', left + 5, top + 2);
    }
    if (!readings.length) {
      g.textAlign = 'center';
      g.textBaseline = 'middle';
      g.fillText('waiting for the first reading', (left + right) / 2, (top + bottom) / 2);
      return;
    }

    // Humidity: a thin line.
    g.strokeStyle = HUMIDITY;
    g.lineWidth = 1.5;
    g.lineJoin = 'round';
    g.beginPath();
    readings.forEach((r, i) => (i ? g.lineTo(x(r.time), yH(r.humidity)) : g.moveTo(x(r.time), yH(r.humidity))));
    g.stroke();

    // Temperature: a line over a soft fill.
    const path = new Path2D();
    readings.forEach((r, i) => (i ? path.lineTo(x(r.time), yT(r.temperature)) : path.moveTo(x(r.time), yT(r.temperature))));
    const fill = new Path2D(path);
    fill.lineTo(x(latest.time), bottom);
    fill.lineTo(x(readings[0].time), bottom);
    fill.closePath();
    const gradient = g.createLinearGradient(0, top, 0, bottom);
    gradient.addColorStop(0, 'rgba(234, 88, 12, 0.22)');
    gradient.addColorStop(1, 'rgba(234, 88, 12, 0)');
    g.fillStyle = gradient;
    g.fill(fill);
    g.strokeStyle = TEMPERATURE;
    g.lineWidth = 2;
    g.stroke(path);

    // The newest reading.
    g.fillStyle = TEMPERATURE;
    g.beginPath();
    g.arc(x(latest.time), yT(latest.temperature), 3.5, 0, 2 * Math.PI);
    g.fill();
    g.fillStyle = HUMIDITY;
    g.beginPath();
    g.arc(x(latest.time), yH(latest.humidity), 3, 0, 2 * Math.PI);
    g.fill();
    chart.drawn = readings.length;
  }
})();
