// The live map: one marker per aircraft, kept current by the server's event stream.
//
// Start-up: load /snapshot (every aircraft's latest report, current as of event
// `lastId`), draw it, then open /events?lastEventId=<lastId>. The hub replays anything
// published in between, so nothing is missed and nothing arrives twice. When the
// connection drops the browser reconnects by itself and sends `Last-Event-ID`; the hub
// replays what was missed. If the hub can no longer replay (the server restarted, or the
// page was away longer than the history), it sends `stream-reset` and the page reloads
// the snapshot.
//
// Page options: `?icao24=<address>` follows one aircraft; `?tiles=<url template>` adds
// a tile layer under the aircraft (the default base map is drawn from /sea.geojson, so
// the page works without any tile server); `?record` keeps every event id received in
// `aircraftMap.ids`.
'use strict';

(function () {
  const params = new URLSearchParams(location.search);
  const FOLLOW = (params.get('icao24') || '').toLowerCase() || null;
  const TILES = params.get('tiles');
  const RECORD = params.has('record');

  /** icao24 -> { id, data, marker } */
  const aircraft = new Map();
  /** iata -> airport */
  const airports = new Map();
  let source = null;
  let lastId = null;
  let reconnects = 0;

  // What the page received, for the curious (type `aircraftMap` in the console) and for
  // the browser tests.
  const debug = (window.aircraftMap = {
    ids: [], // every event id received, in order (with ?record)
    opens: 0, // EventSource `open` events
    errors: 0, // EventSource `error` events
    events: 0, // position events received
    stale: 0, // stream events older than what the page already had (never expected)
    resets: [], // stream-reset events received: { id, reason }
    snapshots: [], // lastId of every snapshot loaded
    ready: false, // the first snapshot is drawn and the stream opened
    count: () => aircraft.size,
    markers: () => document.querySelectorAll('.leaflet-marker-icon.plane').length,
    state: () => {
      const out = {};
      for (const [key, a] of aircraft) {
        out[key] = { id: a.id, lat: a.data.lat, lon: a.data.lon, alt: a.data.alt };
      }
      return out;
    },
    // Where each marker is drawn: the transform Leaflet set on its element.
    drawn: () => {
      const out = {};
      for (const [key, a] of aircraft) out[key] = a.marker.getElement()?.style.transform ?? null;
      return out;
    },
  });

  // ---- the map ----------------------------------------------------------------------

  const map = L.map('map', { zoomSnap: 0.25, minZoom: 3, maxZoom: 11, worldCopyJump: false });
  map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
  map.fitBounds([[-10.5, 93], [23.5, 127]]);
  map.createPane('land').style.zIndex = 250;
  map.createPane('airports').style.zIndex = 450;
  const container = map.getContainer();
  map.on('zoomstart', () => container.classList.add('zooming'));
  map.on('zoomend', () => requestAnimationFrame(() => container.classList.remove('zooming')));

  if (TILES) {
    L.tileLayer(TILES, { maxZoom: 11, attribution: params.get('attribution') || '' }).addTo(map);
  } else {
    drawGraticule();
    drawLand();
    drawLabels();
  }
  drawAirports();

  function drawGraticule() {
    const style = { pane: 'land', color: '#132333', weight: 1, interactive: false };
    for (let lat = -20; lat <= 35; lat += 5) L.polyline([[lat, 80], [lat, 140]], style).addTo(map);
    for (let lon = 80; lon <= 140; lon += 5) L.polyline([[-20, lon], [35, lon]], style).addTo(map);
  }

  async function drawLand() {
    const land = await getJson('/sea.geojson');
    L.geoJSON(land, {
      pane: 'land',
      interactive: false,
      style: { color: '#35506a', weight: 1, fillColor: '#1a2837', fillOpacity: 1 },
    }).addTo(map);
    map.attributionControl.addAttribution('coastlines: tower-sse example (coarse)');
  }

  function drawLabels() {
    const label = (className, text, lat, lon) =>
      L.marker([lat, lon], {
        pane: 'land',
        interactive: false,
        keyboard: false,
        icon: L.divIcon({ className, html: `<span>${text}</span>`, iconSize: [0, 0] }),
      }).addTo(map);
    for (const [name, lat, lon] of [
      ['MYANMAR', 19.2, 95.3], ['THAILAND', 15.4, 101.0], ['LAOS', 18.9, 104.0],
      ['CAMBODIA', 12.7, 104.9], ['VIETNAM', 14.4, 107.9], ['MALAYSIA', 4.2, 102.1],
      ['INDONESIA', -2.2, 113.3], ['PHILIPPINES', 16.4, 121.1], ['CHINA', 23.6, 108.5],
      ['BORNEO', 1.0, 114.2], ['SUMATRA', -0.6, 101.8],
    ]) label('country-label', name, lat, lon);
    for (const [name, lat, lon] of [
      ['South China Sea', 13.0, 114.5], ['Andaman Sea', 10.8, 96.2],
      ['Gulf of Thailand', 9.6, 101.8], ['Java Sea', -4.9, 110.8], ['Celebes Sea', 4.0, 122.5],
      ['Indian Ocean', -7.5, 98.0], ['Philippine Sea', 16.0, 126.5],
    ]) label('sea-label', name, lat, lon);
  }

  async function drawAirports() {
    for (const airport of await getJson('/airports.json')) {
      airports.set(airport.iata, airport);
      L.marker([airport.lat, airport.lon], {
        pane: 'airports',
        keyboard: false,
        title: `${airport.iata} · ${airport.icao} · ${airport.city}`,
        icon: L.divIcon({ className: 'airport-dot', html: '<i></i>', iconSize: [11, 11] }),
      })
        .bindTooltip(airport.iata, {
          permanent: true,
          direction: 'right',
          offset: [3, 0],
          className: 'airport-label',
          pane: 'airports',
        })
        .addTo(map);
    }
  }

  // ---- aircraft ---------------------------------------------------------------------

  const PLANE_SVG =
    '<svg viewBox="-12 -12 24 24" aria-hidden="true"><path d="M0-11c1 0 1.6 1.3 1.6 3v5l8.4 5' +
    'v2.2l-8.4-2.6-.4 5.6 2.8 2v1.6L0 9.8-4 10.8V9.2l2.8-2-.4-5.6L-10 4.2V2l8.4-5v-5c0-1.7.6-3 ' +
    '1.6-3z"/></svg>';

  const ALTITUDE_COLOURS = [
    [0, [245, 158, 11]],
    [10000, [250, 204, 21]],
    [20000, [74, 222, 128]],
    [30000, [34, 211, 238]],
    [40000, [167, 139, 250]],
  ];

  function colour(alt) {
    for (let i = 1; i < ALTITUDE_COLOURS.length; i++) {
      const [top, high] = ALTITUDE_COLOURS[i];
      const [bottom, low] = ALTITUDE_COLOURS[i - 1];
      if (alt <= top || i === ALTITUDE_COLOURS.length - 1) {
        const t = Math.max(0, Math.min(1, (alt - bottom) / (top - bottom)));
        const c = low.map((l, k) => Math.round(l + (high[k] - l) * t));
        return `rgb(${c.join(',')})`;
      }
    }
    return 'white';
  }

  /** Places (or moves) the marker of one aircraft to the report `data`, event `id`. */
  function place(data, id) {
    let entry = aircraft.get(data.icao24);
    const latLng = [data.lat, data.lon];
    if (!entry) {
      const marker = L.marker(latLng, {
        icon: L.divIcon({ className: 'plane', html: PLANE_SVG, iconSize: [20, 20] }),
        keyboard: false,
        riseOnHover: true,
      });
      entry = { id, data, marker };
      marker.bindPopup(() => popupHtml(entry.data), { autoPan: false, maxWidth: 260 });
      marker.addTo(map);
      marker.getElement().dataset.icao24 = data.icao24;
      aircraft.set(data.icao24, entry);
    } else {
      entry.marker.setLatLng(latLng);
    }
    entry.id = id;
    entry.data = data;
    const element = entry.marker.getElement();
    if (element) {
      element.style.color = data.phase === 'ground' ? '#94a3b8' : colour(data.alt);
      element.classList.toggle('ground', data.phase === 'ground');
      element.firstChild.style.transform = `rotate(${data.track}deg)`;
    }
    if (entry.marker.isPopupOpen()) entry.marker.setPopupContent(popupHtml(data));
    if (FOLLOW && data.icao24 === FOLLOW) followed(data);
  }

  function remove(key) {
    const entry = aircraft.get(key);
    if (entry) {
      entry.marker.remove();
      aircraft.delete(key);
    }
  }

  function airportName(iata) {
    const airport = airports.get(iata);
    return airport ? `${iata} ${airport.city}` : iata;
  }

  function facts(data) {
    const alt = data.alt >= 18000 ? `FL${Math.round(data.alt / 100)}` : `${data.alt.toLocaleString('en')} ft`;
    const vs = data.vs > 0 ? `↑ ${data.vs} ft/min` : data.vs < 0 ? `↓ ${-data.vs} ft/min` : 'level';
    return [
      ['altitude', data.phase === 'ground' ? 'on the ground' : alt],
      ['speed', `${data.gs} kt`],
      ['track', `${Math.round(data.track)}°`],
      ['vertical', vs],
      ['phase', data.phase],
      ['position', `${data.lat.toFixed(3)}, ${data.lon.toFixed(3)}`],
    ]
      .map(([k, v]) => `<dt>${k}</dt><dd>${escapeHtml(v)}</dd>`)
      .join('');
  }

  function route(data) {
    return data.phase === 'ground' && data.from === data.to
      ? `parked at ${airportName(data.from)}`
      : `${airportName(data.from)} → ${airportName(data.to)}`;
  }

  function popupHtml(data) {
    const link = FOLLOW === data.icao24
      ? '<a href="/">show every aircraft</a>'
      : `<a href="/?icao24=${encodeURIComponent(data.icao24)}">follow this aircraft ▸</a>`;
    return `<div class="popup"><h3>${escapeHtml(data.callsign)}</h3>` +
      `<p class="route">${escapeHtml(route(data))} · <code>${escapeHtml(data.icao24)}</code></p>` +
      `<dl class="facts">${facts(data)}</dl>${link}</div>`;
  }

  // ---- following one aircraft -------------------------------------------------------

  let trail = null;
  let trailFlight = null;

  function followed(data) {
    const latLng = [data.lat, data.lon];
    if (trailFlight !== `${data.callsign} ${data.from}`) {
      trailFlight = `${data.callsign} ${data.from}`;
      trail?.remove();
      trail = L.polyline([], { color: '#38bdf8', weight: 2, opacity: 0.8, dashArray: '4 4' }).addTo(map);
      map.setView(latLng, Math.max(map.getZoom(), 6.5));
    } else {
      map.panTo(latLng, { animate: true, duration: 0.9 });
    }
    trail.addLatLng(latLng);
    document.getElementById('followed').hidden = false;
    document.getElementById('followed-callsign').textContent = `${data.callsign} · ${data.icao24}`;
    document.getElementById('followed-route').textContent = route(data);
    document.getElementById('followed-data').innerHTML = facts(data);
  }

  // ---- the event stream -------------------------------------------------------------

  function onPosition(event) {
    const id = Number(event.lastEventId);
    lastId = id;
    debug.events++;
    if (RECORD) debug.ids.push(id);
    const data = JSON.parse(event.data);
    const known = aircraft.get(data.icao24);
    if (known && id <= known.id) {
      debug.stale++;
      return;
    }
    place(data, id);
  }

  async function onReset(event) {
    const resetId = Number(event.lastEventId);
    lastId = resetId;
    debug.resets.push({ id: event.lastEventId, reason: event.data });
    const snapshot = await snapshotRetrying();
    const listed = new Set();
    for (const { id, data } of snapshot.aircraft) {
      listed.add(data.icao24);
      const known = aircraft.get(data.icao24);
      // Keep a live report received since the reset if it is newer than the snapshot's.
      if (known && known.id > resetId && known.id >= id) continue;
      place(data, id);
    }
    for (const [key, entry] of aircraft) {
      if (!listed.has(key) && entry.id <= resetId) remove(key);
    }
  }

  function connect(after) {
    const query = new URLSearchParams();
    if (FOLLOW) query.set('icao24', FOLLOW);
    if (after != null) query.set('lastEventId', String(after));
    source = new EventSource(`/events?${query}`);
    source.addEventListener('open', () => {
      debug.opens++;
      if (debug.opens > 1) reconnects++;
      setBadge('live');
    });
    source.addEventListener('error', () => {
      debug.errors++;
      if (source.readyState === EventSource.CLOSED) {
        // The server answered with something other than a stream: start again later.
        setBadge('offline');
        source.close();
        setTimeout(() => connect(lastId), 5000);
      } else {
        setBadge('reconnecting');
      }
    });
    source.addEventListener('position', onPosition);
    source.addEventListener('stream-reset', onReset);
  }

  async function snapshotRetrying() {
    const url = FOLLOW ? `/snapshot?icao24=${encodeURIComponent(FOLLOW)}` : '/snapshot';
    for (let pause = 1000; ; pause = Math.min(pause * 2, 15000)) {
      try {
        const snapshot = await getJson(url);
        debug.snapshots.push(snapshot.lastId);
        return snapshot;
      } catch (error) {
        setBadge('offline');
        console.warn(`snapshot: ${error.message}; retrying`);
        await new Promise((resolve) => setTimeout(resolve, pause));
      }
    }
  }

  async function start() {
    const snapshot = await snapshotRetrying();
    for (const { id, data } of snapshot.aircraft) place(data, id);
    lastId = snapshot.lastId;
    connect(snapshot.lastId);
    debug.ready = true;
  }

  // ---- the panel --------------------------------------------------------------------

  function setBadge(state) {
    const badge = document.getElementById('badge');
    badge.className = `badge ${state}`;
    badge.textContent = state;
  }

  const samples = [];
  setInterval(() => {
    const now = performance.now();
    samples.push([now, debug.events]);
    while (samples.length > 2 && now - samples[0][0] > 3000) samples.shift();
    const [t0, n0] = samples[0];
    const rate = now > t0 ? ((debug.events - n0) * 1000) / (now - t0) : 0;
    let airborne = 0;
    for (const entry of aircraft.values()) if (entry.data.phase !== 'ground') airborne++;
    text('count-aircraft', aircraft.size);
    text('count-airborne', airborne);
    text('count-rate', Math.round(rate));
    text('count-reconnects', reconnects);
    text('last-id', lastId ?? '–');
  }, 500);

  function text(id, value) {
    document.getElementById(id).textContent = String(value);
  }

  function escapeHtml(value) {
    return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  }

  async function getJson(url) {
    const response = await fetch(url, { cache: 'no-store' });
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }

  start();
})();
