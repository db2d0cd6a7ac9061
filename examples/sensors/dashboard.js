// The sensor dashboard: a card per sensor with its latest reading and a live line chart
// of temperature and humidity, drawn on a canvas.
//
// Page options: `?shared=1` reads the stream through the SharedWorker /sse-worker.js, one
// connection for every tab of the dashboard (the switch at the top sets it);
// `?topic=<sensor>` (repeatable) shows only those sensors; `?record` keeps every event id
// received in `sensorDashboard.ids`.
'use strict';

(function () {
  const params = new URLSearchParams(location.search);
  const SHARED = params.get('shared') === '1' && typeof SharedWorker === 'function';
  const TOPICS = params.getAll('topic');
  const RECORD = params.has('record');
  /** Readings kept per chart. */
  const KEEP = 300;
  const TEMPERATURE = '#ea580c';
  const HUMIDITY = '#0284c7';

  /** sensor id -> { meta, readings, elements, drawn, dirty } */
  const charts = new Map();
  let lastId = null;

  // What the page received, for the curious (`sensorDashboard` in the console) and for
  // the browser tests.
  const debug = (window.sensorDashboard = {
    mode: SHARED ? 'shared' : 'direct',
    ids: [], // every event id received, in order (with ?record)
    readings: 0, // readings received live
    histories: 0, // histories loaded (or received from the worker)
    historyIds: [], // the lastId of each
    status: 'connecting',
    opens: 0, // opens of the EventSource (of the worker's, when shared)
    tabs: 1, // tabs sharing the connection
    points: () => Object.fromEntries([...charts].map(([id, c]) => [id, c.readings.length])),
    drawn: () => Object.fromEntries([...charts].map(([id, c]) => [id, c.drawn])),
    latest: () => Object.fromEntries([...charts].map(([id, c]) => [id, c.readings.at(-1) ?? null])),
  });

  // ---- receiving --------------------------------------------------------------------

  function onHistory(history) {
    debug.histories++;
    debug.historyIds.push(history.lastId);
    lastId = history.lastId;
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
      chart.readings = sensor.readings.map((r) => r.data).slice(-KEEP);
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
    if (chart.readings.length > KEEP) chart.readings.shift();
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

  function onTabs(count) {
    debug.tabs = count;
    document.getElementById('mode-note').textContent =
      count === 1 ? 'this tab alone uses the connection' : `${count} tabs share one connection`;
  }

  if (SHARED) {
    const worker = new SharedWorker('/sse-worker.js', { name: 'tower-sse sensors' });
    worker.addEventListener('error', () => console.error('sse-worker.js could not start'));
    worker.port.addEventListener('message', ({ data: message }) => {
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
  } else {
    const feed = new SensorFeed(
      {
        history: onHistory,
        reading: onReading,
        status: (status) => onStatus(status, feed.opens),
      },
      TOPICS,
    );
    feed.start();
    document.getElementById('mode-note').textContent = 'one connection per tab';
  }

  const toggle = document.getElementById('shared');
  toggle.checked = SHARED;
  toggle.addEventListener('change', () => {
    const next = new URLSearchParams(location.search);
    if (toggle.checked) next.set('shared', '1');
    else next.delete('shared');
    location.search = next.toString();
  });

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
    if (readings.length < 2) return;

    const temperatures = readings.map((r) => r.temperature);
    const humidities = readings.map((r) => r.humidity);
    const [tLow, tHigh] = niceRange(Math.min(...temperatures), Math.max(...temperatures), 2);
    const [hLow, hHigh] = niceRange(Math.min(...humidities), Math.max(...humidities), 10);
    elements.range.textContent =
      `${Math.min(...temperatures).toFixed(1)}–${Math.max(...temperatures).toFixed(1)} °C · ` +
      `${Math.min(...humidities).toFixed(0)}–${Math.max(...humidities).toFixed(0)} %`;

    const left = 38;
    const right = width - 38;
    const top = 8;
    const bottom = height - 20;
    const t0 = readings[0].time;
    const t1 = Math.max(readings.at(-1).time, t0 + 1);
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
    fill.lineTo(x(t1), bottom);
    fill.lineTo(x(t0), bottom);
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
