// The live map: one marker per aircraft, kept current by the server's event stream.
//
// Start-up: load /snapshot (every aircraft's latest report, current as of event
// `lastId`), draw it, then open /events?lastEventId=<lastId>. The hub sends the newest
// report of each aircraft published in between, so nothing current is missed and
// nothing arrives twice. When the connection drops the browser reconnects by itself and
// sends `Last-Event-ID`; the hub sends the newest report of each aircraft it missed (one
// event per aircraft), and the same when the page falls behind the feed (a stalled tab,
// a slow link). Ids only go up, per aircraft too; a report older than the one shown
// would not be drawn (`stale` counts them). If the hub can no longer catch the page up
// (the server restarted), it sends `stream-reset` and the page reloads the snapshot.
//
// Two views draw the same thing: Leaflet's map when the server found a copy of Leaflet
// to serve (it loads before this script), or else a simple map of our own on a canvas,
// with a note saying how to get Leaflet. The stream, the counters and following one
// aircraft are the same in both.
//
// Page options: `?icao24=<address>` follows one aircraft; `?tiles=<url template>` adds
// a tile layer under the aircraft (Leaflet only; the default base map is drawn from
// /sea.geojson, so the page works without any tile server); `?record` keeps every event
// id received in `aircraftMap.ids`.
'use strict';

(function () {
  const params = new URLSearchParams(location.search);
  const FOLLOW = (params.get('icao24') || '').toLowerCase() || null;
  const TILES = params.get('tiles');
  const RECORD = params.has('record');

  /** icao24 -> { id, data } (and what the view keeps for it, e.g. `marker`) */
  const aircraft = new Map();
  /** iata -> airport */
  const airports = new Map();
  let source = null;
  let lastId = null;
  let reconnects = 0;
  let view = null;

  // What the page received, for the curious (type `aircraftMap` in the console) and for
  // the browser tests.
  const debug = (window.aircraftMap = {
    ids: [], // every event id received, in order (with ?record)
    opens: 0, // EventSource `open` events
    errors: 0, // EventSource `error` events
    events: 0, // position events received
    rates: [], // the events/s the panel showed: { at: performance.now(), rate } (last 1,000)
    speed: null, // simulated seconds per real second, from the snapshot
    stale: 0, // stream events older than what the page already had (never expected)
    resets: [], // stream-reset events received: { id, reason }
    snapshots: [], // lastId of every snapshot loaded
    ready: false, // the first snapshot is drawn and the stream opened
    view: null, // which map draws: 'leaflet' or 'canvas'
    count: () => aircraft.size,
    // Aircraft drawn: Leaflet's markers, or those the canvas painted in view.
    markers: () => view.markers(),
    // Land polygons drawn.
    coastlines: () => view.coastlines(),
    state: () => {
      const out = {};
      for (const [key, a] of aircraft) {
        out[key] = { id: a.id, lat: a.data.lat, lon: a.data.lon, alt: a.data.alt };
      }
      return out;
    },
    // Where each aircraft is drawn: the transform Leaflet set on its marker, or the
    // canvas pixel it was painted at (null when out of view).
    drawn: () => view.drawn(),
    // The simple map's aircraft, in the order it painted them (later ones on top).
    paintOrder: () => view.paintOrder?.() ?? [],
    // [x, y] in CSS pixels of #map where the view draws a position.
    project: (lat, lon) => view.project(lat, lon),
  });

  // ---- what both views draw ---------------------------------------------------------

  const BOUNDS = [[-10.5, 93], [23.5, 127]];
  const COUNTRIES = [
    ['MYANMAR', 19.2, 95.3], ['THAILAND', 15.4, 101.0], ['LAOS', 18.9, 104.0],
    ['CAMBODIA', 12.7, 104.9], ['VIETNAM', 14.4, 107.9], ['MALAYSIA', 4.2, 102.1],
    ['INDONESIA', -2.2, 113.3], ['PHILIPPINES', 16.4, 121.1], ['CHINA', 23.6, 108.5],
    ['BORNEO', 1.0, 114.2], ['SUMATRA', -0.6, 101.8],
  ];
  const SEAS = [
    ['South China Sea', 13.0, 114.5], ['Andaman Sea', 10.8, 96.2],
    ['Gulf of Thailand', 9.6, 101.8], ['Java Sea', -4.9, 110.8], ['Celebes Sea', 4.0, 122.5],
    ['Indian Ocean', -7.5, 98.0], ['Philippine Sea', 16.0, 126.5],
  ];
  const PLANE_PATH =
    'M0-11c1 0 1.6 1.3 1.6 3v5l8.4 5v2.2l-8.4-2.6-.4 5.6 2.8 2v1.6L0 9.8-4 10.8V9.2l2.8-2-.4-5.6' +
    'L-10 4.2V2l8.4-5v-5c0-1.7.6-3 1.6-3z';
  const PLANE_SVG = `<svg viewBox="-12 -12 24 24" aria-hidden="true"><path d="${PLANE_PATH}"/></svg>`;
  const GROUND = '#94a3b8';

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

  function planeColour(data) {
    return data.phase === 'ground' ? GROUND : colour(data.alt);
  }

  // ---- the Leaflet map --------------------------------------------------------------

  function leafletView() {
    const map = L.map('map', { zoomSnap: 0.25, minZoom: 3, maxZoom: 11, worldCopyJump: false });
    map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
    map.fitBounds(BOUNDS);
    map.createPane('land').style.zIndex = 250;
    map.createPane('airports').style.zIndex = 450;
    const container = map.getContainer();
    map.on('zoomstart', () => container.classList.add('zooming'));
    map.on('zoomend', () => requestAnimationFrame(() => container.classList.remove('zooming')));

    if (TILES) {
      L.tileLayer(TILES, { maxZoom: 11, attribution: params.get('attribution') || '' }).addTo(map);
    } else {
      const style = { pane: 'land', color: '#132333', weight: 1, interactive: false };
      for (let lat = -20; lat <= 35; lat += 5) L.polyline([[lat, 80], [lat, 140]], style).addTo(map);
      for (let lon = 80; lon <= 140; lon += 5) L.polyline([[-20, lon], [35, lon]], style).addTo(map);
      const label = (className, text, lat, lon) =>
        L.marker([lat, lon], {
          pane: 'land',
          interactive: false,
          keyboard: false,
          icon: L.divIcon({ className, html: `<span>${text}</span>`, iconSize: [0, 0] }),
        }).addTo(map);
      for (const [name, lat, lon] of COUNTRIES) label('country-label', name, lat, lon);
      for (const [name, lat, lon] of SEAS) label('sea-label', name, lat, lon);
    }

    let trail = null;

    return {
      kind: 'leaflet',
      wantsLand: !TILES,

      land(geojson) {
        L.geoJSON(geojson, {
          pane: 'land',
          interactive: false,
          style: {
            className: 'land',
            color: '#35506a',
            weight: 1,
            fillColor: '#1a2837',
            fillOpacity: 1,
          },
        }).addTo(map);
        map.attributionControl.addAttribution('coastlines: tower-sse example (coarse)');
      },

      airports(list) {
        for (const airport of list) {
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
      },

      place(entry, isNew) {
        const { data } = entry;
        const latLng = [data.lat, data.lon];
        if (isNew) {
          entry.marker = L.marker(latLng, {
            icon: L.divIcon({ className: 'plane', html: PLANE_SVG, iconSize: [20, 20] }),
            keyboard: false,
            riseOnHover: true,
          });
          entry.marker.bindPopup(() => popupHtml(entry.data), { autoPan: false, maxWidth: 260 });
          entry.marker.addTo(map);
          entry.marker.getElement().dataset.icao24 = data.icao24;
        } else {
          entry.marker.setLatLng(latLng);
        }
        const element = entry.marker.getElement();
        if (element) {
          element.style.color = planeColour(data);
          element.classList.toggle('ground', data.phase === 'ground');
          element.firstChild.style.transform = `rotate(${data.track}deg)`;
        }
        if (entry.marker.isPopupOpen()) entry.marker.setPopupContent(popupHtml(data));
      },

      remove(entry) {
        entry.marker.remove();
      },

      follow(data, newFlight) {
        const latLng = [data.lat, data.lon];
        if (newFlight) {
          trail?.remove();
          trail = L.polyline([], { color: '#38bdf8', weight: 2, opacity: 0.8, dashArray: '4 4' }).addTo(map);
          map.setView(latLng, Math.max(map.getZoom(), 6.5));
        } else {
          map.panTo(latLng, { animate: true, duration: 0.9 });
        }
        trail.addLatLng(latLng);
      },

      markers: () => document.querySelectorAll('.leaflet-marker-icon.plane').length,

      coastlines: () =>
        [...document.querySelectorAll('.leaflet-land-pane path.land')].filter(
          (path) => (path.getAttribute('d') || '').length > 10,
        ).length,

      drawn: () => {
        const out = {};
        for (const [key, a] of aircraft) out[key] = a.marker.getElement()?.style.transform ?? null;
        return out;
      },

      project: (lat, lon) => {
        const point = map.latLngToContainerPoint([lat, lon]);
        return [point.x, point.y];
      },
    };
  }

  // ---- the simple map, without Leaflet ----------------------------------------------
  //
  // A Web Mercator view like Leaflet's, painted on a canvas: graticule, coastlines,
  // labels, airports, the followed aircraft's trail and every aircraft. Drag to pan, the
  // wheel zooms, a click on an aircraft shows its report.

  function canvasView() {
    const SEA = '#0a1520';
    const LAND = '#1a2837';
    const COAST = '#35506a';
    const GRID = '#132333';
    const MIN_ZOOM = 3;
    const MAX_ZOOM = 11;
    const plane = new Path2D(PLANE_PATH);

    const container = document.getElementById('map');
    container.classList.add('simple-map');
    const canvas = document.createElement('canvas');
    const popup = document.createElement('div');
    popup.className = 'simple-popup';
    popup.hidden = true;
    const attribution = document.createElement('div');
    attribution.className = 'simple-attribution';
    attribution.textContent = 'simple map · coastlines: tower-sse example (coarse)';
    container.append(canvas, popup, attribution);
    document.getElementById('map-note').hidden = false;
    const ctx = canvas.getContext('2d');

    /** A position in Web Mercator pixels at zoom 0 (a 256-pixel world). */
    function world(lat, lon) {
      const sin = Math.sin((Math.max(-85, Math.min(85, lat)) * Math.PI) / 180);
      return [(256 * (lon + 180)) / 360, 256 * (0.5 - Math.log((1 + sin) / (1 - sin)) / (4 * Math.PI))];
    }

    let width = 0;
    let height = 0;
    let ratio = 1;
    let zoom = 5;
    let centre = world(6.5, 110);
    let moved = false; // panned or zoomed by hand, or following: do not refit on resize
    let rings = []; // land, as [[lat, lon], ...] rings
    let polygons = 0; // land polygons, of which `rings` are the outlines and holes
    let trail = [];
    let selected = null; // the entry whose popup is open
    let shown = null; // the id of the report the popup shows
    let pending = false;
    /** icao24 -> [x, y] where the last frame painted it (aircraft in view only) */
    let painted = new Map();
    let landPainted = 0;

    function screen(lat, lon) {
      const [x, y] = world(lat, lon);
      const k = 2 ** zoom;
      return [(x - centre[0]) * k + width / 2, (y - centre[1]) * k + height / 2];
    }

    function fit() {
      const [[south, west], [north, east]] = BOUNDS;
      const [x0, y0] = world(north, west);
      const [x1, y1] = world(south, east);
      const fitted = Math.log2(Math.min(width / (x1 - x0), height / (y1 - y0)));
      zoom = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, Math.floor(fitted * 4) / 4));
      centre = [(x0 + x1) / 2, (y0 + y1) / 2];
    }

    function resize() {
      ratio = window.devicePixelRatio || 1;
      width = container.clientWidth;
      height = container.clientHeight;
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
      if (!moved) fit();
      render();
    }

    function schedule() {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => {
        if (pending) render();
      });
    }

    /** Paints now what a pending frame would have. */
    function flush() {
      if (pending) render();
    }

    function line(points) {
      ctx.beginPath();
      points.forEach(([lat, lon], i) => {
        const [x, y] = screen(lat, lon);
        if (i === 0) ctx.moveTo(x, y);
        else ctx.lineTo(x, y);
      });
    }

    function text(value, x, y, font, fill, spacing, align = 'center') {
      ctx.font = font;
      ctx.letterSpacing = spacing;
      ctx.textAlign = align;
      ctx.textBaseline = 'middle';
      ctx.fillStyle = fill;
      ctx.fillText(value, x, y);
    }

    function render() {
      pending = false;
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.fillStyle = SEA;
      ctx.fillRect(0, 0, width, height);

      ctx.lineWidth = 1;
      ctx.strokeStyle = GRID;
      for (let lat = -20; lat <= 35; lat += 5) {
        line([[lat, 80], [lat, 140]]);
        ctx.stroke();
      }
      for (let lon = 80; lon <= 140; lon += 5) {
        line([[-20, lon], [35, lon]]);
        ctx.stroke();
      }

      ctx.beginPath();
      for (const ring of rings) {
        ring.forEach(([lat, lon], i) => {
          const [x, y] = screen(lat, lon);
          if (i === 0) ctx.moveTo(x, y);
          else ctx.lineTo(x, y);
        });
        ctx.closePath();
      }
      ctx.fillStyle = LAND;
      ctx.fill();
      ctx.strokeStyle = COAST;
      ctx.lineJoin = 'round';
      ctx.stroke();
      landPainted = polygons;

      for (const [name, lat, lon] of COUNTRIES) {
        const [x, y] = screen(lat, lon);
        text(name, x, y, 'bold 11px "DejaVu Sans", sans-serif', '#4d6780', '0.35em');
      }
      for (const [name, lat, lon] of SEAS) {
        const [x, y] = screen(lat, lon);
        text(name, x, y, 'italic 11px "DejaVu Sans", sans-serif', '#2c4a66', '0.18em');
      }

      for (const airport of airports.values()) {
        const [x, y] = screen(airport.lat, airport.lon);
        ctx.beginPath();
        ctx.arc(x, y, 4, 0, 2 * Math.PI);
        ctx.fillStyle = SEA;
        ctx.fill();
        ctx.lineWidth = 1.5;
        ctx.strokeStyle = '#9fb3c8';
        ctx.stroke();
        ctx.shadowColor = SEA;
        ctx.shadowBlur = 3;
        text(airport.iata, x + 9, y, 'bold 10px "DejaVu Sans", sans-serif', '#9fb3c8', '0.04em', 'left');
        ctx.shadowBlur = 0;
      }

      if (trail.length > 1) {
        line(trail);
        ctx.setLineDash([4, 4]);
        ctx.lineWidth = 2;
        ctx.strokeStyle = 'rgba(56, 189, 248, 0.8)';
        ctx.stroke();
        ctx.setLineDash([]);
      }

      painted = new Map();
      ctx.lineWidth = 0.8;
      ctx.strokeStyle = 'rgba(5, 12, 20, 0.85)';
      ctx.shadowColor = 'rgba(0, 0, 0, 0.9)';
      for (const [key, { data }] of aircraft) {
        const [x, y] = screen(data.lat, data.lon);
        if (x < -12 || y < -12 || x > width + 12 || y > height + 12) continue;
        painted.set(key, [x, y]);
        ctx.save();
        ctx.translate(x, y);
        ctx.rotate((data.track * Math.PI) / 180);
        ctx.scale(20 / 24, 20 / 24);
        ctx.globalAlpha = data.phase === 'ground' ? 0.55 : 1;
        ctx.shadowBlur = selected?.data.icao24 === key ? 6 : 2;
        if (selected?.data.icao24 === key) ctx.shadowColor = '#fff';
        ctx.fillStyle = planeColour(data);
        ctx.fill(plane);
        ctx.shadowBlur = 0;
        ctx.stroke(plane);
        ctx.restore();
      }

      if (selected && aircraft.get(selected.data.icao24) !== selected) selected = null;
      popup.hidden = !selected;
      if (selected) {
        if (shown !== selected.id) {
          shown = selected.id;
          popup.innerHTML = popupHtml(selected.data);
        }
        // Above the aircraft, or below it when there is no room above; inside the map.
        const [x, y] = screen(selected.data.lat, selected.data.lon);
        const half = popup.offsetWidth / 2;
        const below = y - 14 - popup.offsetHeight < 0;
        popup.classList.toggle('below', below);
        popup.style.left = `${Math.max(half, Math.min(width - half, x))}px`;
        popup.style.top = `${below ? y + 14 : y - 14}px`;
      }
    }

    // Drag to pan; a click (no drag) on an aircraft opens its popup, elsewhere closes it.
    let drag = null;
    canvas.addEventListener('pointerdown', (event) => {
      drag = { x: event.clientX, y: event.clientY, centre, far: false };
      canvas.setPointerCapture(event.pointerId);
    });
    canvas.addEventListener('pointermove', (event) => {
      if (!drag) return;
      const dx = event.clientX - drag.x;
      const dy = event.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.far = true;
      if (!drag.far) return;
      const k = 2 ** zoom;
      centre = [drag.centre[0] - dx / k, drag.centre[1] - dy / k];
      moved = true;
      canvas.classList.add('dragging');
      schedule();
    });
    canvas.addEventListener('pointerup', (event) => {
      const click = drag && !drag.far;
      drag = null;
      canvas.classList.remove('dragging');
      if (!click) return;
      flush();
      const rect = canvas.getBoundingClientRect();
      const px = event.clientX - rect.left;
      const py = event.clientY - rect.top;
      let best = null;
      let bestDistance = 12;
      for (const [key, [x, y]] of painted) {
        const distance = Math.hypot(x - px, y - py);
        if (distance < bestDistance) {
          best = key;
          bestDistance = distance;
        }
      }
      selected = best ? aircraft.get(best) : null;
      shown = null;
      schedule();
    });
    canvas.addEventListener('pointercancel', () => {
      drag = null;
    });
    canvas.addEventListener(
      'wheel',
      (event) => {
        event.preventDefault();
        const rect = canvas.getBoundingClientRect();
        const px = event.clientX - rect.left - width / 2;
        const py = event.clientY - rect.top - height / 2;
        const before = 2 ** zoom;
        zoom = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, zoom - Math.sign(event.deltaY) * 0.5));
        const after = 2 ** zoom;
        // Keep the point under the pointer where it is.
        centre = [centre[0] + px / before - px / after, centre[1] + py / before - py / after];
        moved = true;
        schedule();
      },
      { passive: false },
    );

    new ResizeObserver(resize).observe(container);
    resize();

    return {
      kind: 'canvas',
      wantsLand: true,

      land(geojson) {
        rings = [];
        polygons = 0;
        for (const feature of geojson.features) {
          const { type, coordinates } = feature.geometry;
          const parts = type === 'Polygon' ? [coordinates] : type === 'MultiPolygon' ? coordinates : [];
          for (const polygon of parts) {
            polygons++;
            for (const ring of polygon) rings.push(ring.map(([lon, lat]) => [lat, lon]));
          }
        }
        schedule();
      },

      airports() {
        schedule();
      },

      place(entry) {
        if (entry === selected) shown = null;
        schedule();
      },

      remove() {
        schedule();
      },

      follow(data, newFlight) {
        if (newFlight) {
          trail = [];
          zoom = Math.max(zoom, 6.5);
        }
        trail.push([data.lat, data.lon]);
        centre = world(data.lat, data.lon);
        moved = true;
        schedule();
      },

      markers: () => {
        flush();
        return painted.size;
      },

      coastlines: () => {
        flush();
        return landPainted;
      },

      drawn: () => {
        flush();
        const out = {};
        for (const key of aircraft.keys()) {
          const at = painted.get(key);
          out[key] = at ? `${at[0].toFixed(1)},${at[1].toFixed(1)}` : null;
        }
        return out;
      },

      paintOrder: () => {
        flush();
        return [...painted.keys()];
      },

      project: (lat, lon) => screen(lat, lon),
    };
  }

  // ---- aircraft ---------------------------------------------------------------------

  /** Places (or moves) one aircraft to the report `data`, event `id`. */
  function place(data, id) {
    let entry = aircraft.get(data.icao24);
    const isNew = !entry;
    if (isNew) {
      entry = { id, data };
      aircraft.set(data.icao24, entry);
    }
    entry.id = id;
    entry.data = data;
    view.place(entry, isNew);
    if (FOLLOW && data.icao24 === FOLLOW) followed(data);
  }

  function remove(key) {
    const entry = aircraft.get(key);
    if (entry) {
      aircraft.delete(key);
      view.remove(entry);
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

  let flight = null;

  function followed(data) {
    const newFlight = flight !== `${data.callsign} ${data.from}`;
    flight = `${data.callsign} ${data.from}`;
    view.follow(data, newFlight);
    document.getElementById('followed').hidden = false;
    document.getElementById('followed-callsign').textContent = `${data.callsign} · ${data.icao24}`;
    document.getElementById('followed-route').textContent = route(data);
    document.getElementById('followed-data').innerHTML = facts(data);
  }

  // ---- the base map -----------------------------------------------------------------

  /** Leaflet's map if Leaflet loaded, else the simple one: never no map at all. */
  function chooseView() {
    if (typeof window.L === 'object' && typeof window.L.map === 'function') {
      try {
        return leafletView();
      } catch (error) {
        console.error(`Leaflet failed (${error.message}); drawing the simple map`);
        const container = document.getElementById('map');
        const fresh = container.cloneNode(false);
        fresh.className = '';
        container.replaceWith(fresh);
      }
    }
    return canvasView();
  }

  function drawBase() {
    if (view.wantsLand) {
      getJson('/sea.geojson')
        .then((land) => view.land(land))
        .catch((error) => console.warn(`coastlines: ${error.message}`));
    }
    getJson('/airports.json')
      .then((list) => {
        for (const airport of list) airports.set(airport.iata, airport);
        view.airports(list);
      })
      .catch((error) => console.warn(`airports: ${error.message}`));
  }

  // ---- the event stream -------------------------------------------------------------

  function onPosition(event) {
    const id = Number(event.lastEventId);
    lastId = id;
    debug.events++;
    countArrival();
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
      countingSince ??= performance.now();
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
    showSpeed(snapshot.speed);
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

  // events/s: the position events received per second of the page's own clock, over
  // the last 10 s. Events that arrive less than 25 ms apart are one burst: the server
  // publishes the fleet in 20 parts a second, and each part arrives at once. The rate is
  // the events after the window's first burst over the time from that burst to the
  // last, so it counts whole gaps between bursts and is right as soon as a few are in
  // (a window of fixed length holds a burst more or less than it lasts gaps). The first
  // burst after the stream opens may be the replay of what was published while the page
  // loaded, all at once, which is why the first burst only starts the window. When
  // nothing comes for more than a second (or three usual gaps), the time since counts
  // too, so the rate falls, to 0 once nothing came for 10 s. A feed too dense to show gaps
  // is one long burst: then the rate is its events over its length. The panel shows '–'
  // until half a second of the stream is measured (ten gaps of the fleet's parts).
  const RATE_WINDOW_MS = 10000;
  const RATE_FIRST_MS = 500;
  const BURST_GAP_MS = 25;
  /** [first arrival, last arrival, events]: the position events received, by burst */
  const arrivals = [];
  /** when the stream first opened */
  let countingSince = null;

  function countArrival() {
    const now = performance.now();
    const last = arrivals.at(-1);
    if (last && now - last[1] < BURST_GAP_MS) {
      last[1] = now;
      last[2]++;
    } else {
      arrivals.push([now, now, 1]);
    }
  }

  /** events per second over the window that ends `now`, or null before it can tell */
  function eventRate(now) {
    while (arrivals.length && arrivals[0][1] <= now - RATE_WINDOW_MS) arrivals.shift();
    if (countingSince === null) return null;
    if (!arrivals.length) return now - countingSince >= RATE_WINDOW_MS ? 0 : null;
    const first = arrivals[0][0];
    if (now - first < RATE_FIRST_MS) return null;
    if (arrivals.length === 1) {
      const [start, end, events] = arrivals[0];
      if (end - start >= RATE_FIRST_MS) return (events * 1000) / (now - start);
      return now - start >= 2000 ? 0 : null;
    }
    const last = arrivals.at(-1)[0];
    // A pause of up to a second (or three usual gaps) is a hiccup, not a slower feed.
    const pause = Math.max(1000, (3 * (last - first)) / (arrivals.length - 1));
    const span = Math.max(last - first, now - last > pause ? now - first - pause : 0);
    let events = 0;
    for (let i = 1; i < arrivals.length; i++) events += arrivals[i][2];
    return (events * 1000) / span;
  }

  function panel() {
    const now = performance.now();
    const rate = eventRate(now);
    if (rate !== null) {
      debug.rates.push({ at: now, rate });
      if (debug.rates.length > 1000) debug.rates.shift();
    }
    let airborne = 0;
    for (const entry of aircraft.values()) if (entry.data.phase !== 'ground') airborne++;
    text('count-aircraft', aircraft.size);
    text('count-airborne', airborne);
    text('count-rate', rate === null ? '–' : Math.round(rate));
    text('count-reconnects', reconnects);
    text('last-id', lastId ?? '–');
  }
  setInterval(panel, 250);

  /** What SPEED (simulated seconds per real second) means, in words. */
  function showSpeed(speed) {
    if (typeof speed !== 'number') return;
    debug.speed = speed;
    const words =
      speed === 0 ? 'paused' :
      speed === 1 ? 'in real time' :
      speed === 60 ? 'a minute each second (60×)' :
      `${speed}× real time`;
    text('speed', `Simulated, ${words}`);
  }

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

  view = chooseView();
  debug.view = view.kind;
  drawBase();
  start();
})();
