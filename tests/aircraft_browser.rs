//! The aircraft example (`examples/aircraft/`) in a real browser: Debian's Chromium,
//! driven by playwright-core through `tests/browser/driver.mjs`, against the example's
//! own app served in this process on loopback, on an in-memory hub. The test drives the
//! simulation clock (`Simulator::tick`), so it waits for what the page shows, never for
//! real seconds; and the app keeps its snapshot from the hub as events arrive, so after
//! each tick the test waits until the snapshot has taken in the hub's newest id before
//! comparing the page with it.
//!
//! The browser reaches loopback only, as a user offline would: the harness aborts every
//! other request and nothing is served in place of a CDN; a page that asked for anything
//! outside fails its test. The page is served as `main.rs` serves it, with the Leaflet
//! that `Page::locate` finds: without `LEAFLET_DIR`, Debian's `libjs-leaflet` (which
//! `tests/run.sh` installs), or, with `LEAFLET_DIR` at an empty directory, none.
//!
//! - `map_moves_live_and_resumes_after_restarts`: with Debian's Leaflet, the map draws
//!   the shipped coastlines and every aircraft of the fleet as a marker, and the markers
//!   move on screen with each tick. The HTTP server is
//!   then shut down while the simulation keeps publishing three rounds, and started
//!   again on the same socket: the page reconnects by itself, and the hub sends the
//!   newest report of each aircraft it missed (the third round: conflation); the ids it
//!   received form one unbroken sequence on either side of that (each is the previous
//!   plus one, since the page reads every topic of the hub), so there is no duplicate
//!   and nothing older than what it had, and its state equals the server's. Then the server is replaced by a new one with a new hub
//!   and a different fleet, as after a real restart: the hub cannot replay, sends
//!   `stream-reset`, and the page reloads its state (exactly the new fleet). A second tab
//!   follows one aircraft with `?icao24=`. No page logs an error, and Leaflet comes from
//!   the example's own server.
//! - `rate_and_motion_show_at_once`: the simulator runs on a real clock as `main.rs`
//!   runs it; the panel shows a right events/s within 2 s of the page's load and keeps
//!   it right, and the aircraft move in the page's model and on screen within the first
//!   seconds (times from the page's own clock); the panel says how fast the simulation
//!   runs.
//! - `simple_map_without_leaflet`: with no Leaflet to serve, the page says so in a
//!   visible note and paints the coastlines and every aircraft on its canvas (the test
//!   reads the pixels: land and sea cover the map, and every airborne aircraft's colour
//!   is where the page says it painted it); the aircraft move with each tick, the page
//!   resumes without a gap after a server restart, the panel counts the same, and a
//!   follow tab keeps its aircraft in the middle.
//! - `leaflet_is_found_where_the_docs_say`: `Page::locate` reads Leaflet from
//!   `LEAFLET_DIR` (the npm package's layout), from Debian's directory, or not at all
//!   from an empty directory; the page loads Leaflet only when there is one, and serves
//!   its files (and nothing else) under `/leaflet/`.
//! - `events_follow_one_aircraft`: over plain HTTP, `/events?icao24=` carries that
//!   aircraft's reports only, and an unknown address is a 404.
//! - `the_snapshot_survives_falling_behind`: more ticks than a subscriber's live window,
//!   published while the snapshot's task cannot run, leave its subscription behind; the
//!   hub conflates (once per aircraft) instead of cutting it off, and the snapshot ends
//!   up exactly the last tick.
//! - `a_stalled_page_shows_every_aircraft_where_it_is_now` (issue 24): the page's event
//!   stream passes nothing (Chromium's network throttling) while the fleet reports 150
//!   times; the hub finds the page behind on every aircraft and conflates; once its link
//!   is back the page gets what the buffers held, then the newest report of each
//!   aircraft, far fewer events than were published, and shows (and paints) every
//!   aircraft where its newest report puts it, nothing older after anything newer.
//! - `a_page_back_after_a_minute_away_gets_one_snapshot` (issue 24): a page whose server
//!   was gone for 60 rounds of reports reconnects and receives the newest report of each
//!   aircraft, 320 events, not the 19,200 published, and no reset.
//! - `figures_of_the_example_behind` (issue 24, point 6): with the example's settings
//!   and reports, what a page 10 s and 60 s behind receives under each policy (exact
//!   counts; the table is printed with `--nocapture`).

#[path = "../examples/aircraft/app.rs"]
#[allow(dead_code)]
mod app;
#[path = "browser/driver.rs"]
mod driver;
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use app::page::{DEBIAN_LEAFLET, Page};
use app::{App, Settings, Simulator};
use driver::Browser;

/// The example app served on a listener that outlives it, so that a "restart" keeps the
/// address: connections made while no server runs wait in the listen queue.
struct Server {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Server {
    fn start(listener: &Arc<TcpListener>, app: &App, page: &Page) -> Server {
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = CancellationToken::new();
        let service = app.service(shutdown.clone(), page.clone());
        let listener = listener.clone();
        let task = tokio::spawn(async move {
            app::serve(listener, service, shutdown, async {
                let _ = stopped.await;
            })
            .await;
        });
        Server { stop, task }
    }

    /// Shuts down gracefully: every event stream ends, every connection closes.
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the server shuts down")
            .expect("the server task");
    }
}

/// Held by each test that runs Chromium, so that they run one at a time: on two cores,
/// two browsers and their servers at once starve the page whose timing
/// `rate_and_motion_show_at_once` reads.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An aircraft as the page or the server has it.
#[derive(Debug, PartialEq, Deserialize)]
struct Seen {
    id: u64,
    lat: f64,
    lon: f64,
    alt: i64,
}

#[derive(Deserialize)]
struct Snapshot {
    #[serde(rename = "lastId")]
    last_id: u64,
    aircraft: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    id: u64,
    data: Report,
}

#[derive(Debug, Deserialize)]
struct Report {
    icao24: String,
    lat: f64,
    lon: f64,
    alt: i64,
    phase: String,
}

/// The app and its simulator on one in-memory hub, the fleet published once (as
/// `main.rs` starts them), and the snapshot caught up with it.
async fn start(settings: Settings) -> (App, Simulator) {
    let hub = settings.hub().build();
    let app = App::new(settings.clone(), hub.clone());
    let mut simulator = Simulator::new(&settings, hub);
    tick(&app, &mut simulator, 0.0).await;
    (app, simulator)
}

/// Advances the simulation by `seconds` (one report per aircraft), and waits until the
/// app's snapshot has taken in every report published. Returns the newest id.
async fn tick(app: &App, simulator: &mut Simulator, seconds: f64) -> u64 {
    let sent = simulator.tick(seconds);
    assert_eq!(sent.len(), app.icao24s().len(), "every report published");
    let newest = app.hub().last_id();
    assert_eq!(sent.last().and_then(|s| s.published.id()), Some(newest));
    let reached = tokio::time::timeout(Duration::from_secs(30), app.snapshot_reaches(newest)).await;
    assert!(
        reached.is_ok(),
        "the snapshot is at {}, the hub at {newest}",
        app.snapshot_id()
    );
    // It holds exactly what was just published: every aircraft reported in this tick.
    let snapshot: serde_json::Value = serde_json::from_str(&app.snapshot(None)).unwrap();
    assert_eq!(snapshot["lastId"], newest);
    let held: Vec<(u64, serde_json::Value)> = snapshot["aircraft"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_u64().unwrap(), e["data"].clone()))
        .collect();
    let published: Vec<(u64, serde_json::Value)> = sent
        .iter()
        .map(|s| {
            let id = s.published.id().unwrap();
            (id, serde_json::from_str(&s.json).unwrap())
        })
        .collect();
    assert!(held == published, "the snapshot is not what was published");
    newest
}

/// The server's state in the page's terms, and its newest id.
fn server_state(app: &App) -> (BTreeMap<String, Seen>, u64) {
    let snapshot: Snapshot = serde_json::from_str(&app.snapshot(None)).unwrap();
    let state = snapshot
        .aircraft
        .into_iter()
        .map(|e| {
            let seen = Seen {
                id: e.id,
                lat: e.data.lat,
                lon: e.data.lon,
                alt: e.data.alt,
            };
            (e.data.icao24, seen)
        })
        .collect();
    (state, snapshot.last_id)
}

/// The aircraft in the air now.
fn airborne(app: &App) -> Vec<String> {
    let snapshot: Snapshot = serde_json::from_str(&app.snapshot(None)).unwrap();
    snapshot
        .aircraft
        .into_iter()
        .filter(|e| e.data.phase != "ground")
        .map(|e| e.data.icao24)
        .collect()
}

/// Waits until page `page` has received event `id`.
async fn caught_up(browser: &mut Browser, page: usize, id: u64, what: &str) {
    browser
        .expect(
            page,
            &format!("window.aircraftMap && aircraftMap.ids.at(-1) === {id}"),
            what,
            "({ last: aircraftMap.ids.at(-1), received: aircraftMap.ids.length, \
              opens: aircraftMap.opens, errors: aircraftMap.errors, resets: aircraftMap.resets })",
        )
        .await;
}

/// Fails unless `ids` goes up by exactly one each time.
fn assert_unbroken(ids: &[u64], what: &str) {
    for pair in ids.windows(2) {
        assert!(
            pair[1] == pair[0] + 1,
            "{what}: id {} follows {}: {}",
            pair[1],
            pair[0],
            if pair[1] <= pair[0] {
                "a duplicate or a step back"
            } else {
                "a gap"
            }
        );
    }
}

async fn open_streams_become(app: &App, n: usize) {
    let reached = tokio::time::timeout(Duration::from_secs(30), async {
        while app.open_streams() != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "{} event streams open, expected {n}",
        app.open_streams()
    );
}

/// What a test shows of a map page that did not become what it expected (a page whose
/// script died shows what it has).
const SHOW_MAP: &str = "({ view: window.aircraftMap?.view, ready: window.aircraftMap?.ready, \
    count: window.aircraftMap?.count?.(), markers: window.aircraftMap?.markers?.(), \
    coastlines: window.aircraftMap?.coastlines?.(), \
    badge: document.getElementById('badge').textContent })";

/// The page as `main.rs` serves it without `LEAFLET_DIR` on a machine that
/// `tests/run.sh` set up: with Debian's `libjs-leaflet`.
fn page_with_debian_leaflet() -> Page {
    let page = Page::locate(None);
    assert_eq!(
        page.leaflet().map(|leaflet| leaflet.dir.as_path()),
        Some(Path::new(DEBIAN_LEAFLET)),
        "the page would be served with {}; this test needs Debian's libjs-leaflet: run \
         tests/run.sh (it runs `apt-get install libjs-leaflet`)",
        page.describe()
    );
    page
}

/// An empty directory of this test's own (for `LEAFLET_DIR`).
fn empty_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// The land polygons of the shipped `sea.geojson`: what each view must draw.
fn shipped_coastlines() -> usize {
    let geojson: serde_json::Value =
        serde_json::from_str(include_str!("../examples/aircraft/sea.geojson")).unwrap();
    let features = geojson["features"].as_array().expect("features");
    for feature in features {
        assert_eq!(
            feature["geometry"]["type"], "Polygon",
            "{}",
            feature["properties"]
        );
    }
    features.len()
}

/// Ticks `rounds` times, five simulated minutes each (which moves the slowest airborne
/// aircraft several pixels at the map's first zoom), and checks after each tick that the
/// page drew every aircraft that stayed in the air somewhere else. On the simple map
/// (`canvas`) it also reads the canvas each time (see [`painted`]). Returns how many moves
/// it saw.
async fn watch_moves(
    browser: &mut Browser,
    map: usize,
    app: &App,
    simulator: &mut Simulator,
    rounds: usize,
    canvas: bool,
) -> usize {
    let fleet_size = app.icao24s().len();
    let mut moved_total = 0;
    for _ in 0..rounds {
        let before: BTreeMap<String, Option<String>> =
            browser.eval(map, "aircraftMap.drawn()").await;
        let airborne_before = airborne(app);
        tick(app, simulator, 300.0).await;
        caught_up(browser, map, app.hub().last_id(), "the page gets the tick").await;
        let after: BTreeMap<String, Option<String>> =
            browser.eval(map, "aircraftMap.drawn()").await;
        assert_eq!(after.len(), fleet_size);
        // Those that landed during the tick may have had only a pixel or two to go.
        let airborne: Vec<String> = airborne(app)
            .into_iter()
            .filter(|key| airborne_before.contains(key))
            .collect();
        let still: Vec<&String> = airborne
            .iter()
            .filter(|key| before[*key].is_none() || before[*key] == after[*key])
            .collect();
        assert!(
            still.is_empty(),
            "{} of {} airborne aircraft did not move on screen: {still:?}",
            still.len(),
            airborne.len()
        );
        assert!(airborne.len() >= 250, "only {} airborne", airborne.len());
        if canvas {
            painted(browser, map, &airborne, true).await;
        }
        moved_total += airborne.len();
    }
    moved_total
}

/// Reads the simple map's canvas, pixel by pixel, and fails unless it shows the aircraft
/// of `airborne` where the page says it painted them: the pixel under each one's centre
/// has an altitude colour (bright, green at least 130), which nothing of the base map
/// under the aircraft has but the airport rings. An aircraft with another painted after
/// it within 12 pixels (which may cover its centre with its outline or shadow) is
/// skipped; at least half must be checked (about two thirds are, at the first zoom). With `coastlines`, the land's and
/// the sea's colours must also each cover at least a tenth of the map (as they do at
/// the first zoom, which shows the whole region).
async fn painted(browser: &mut Browser, page: usize, airborne: &[String], coastlines: bool) {
    #[derive(Debug, Deserialize)]
    struct Painted {
        land: f64,
        sea: f64,
        missing: Vec<(String, Option<String>, [u8; 3])>,
        checked: usize,
    }
    let expr = format!(
        r#"(() => {{
          const airborne = {airborne};
          const drawn = aircraftMap.drawn(); // paints a pending frame first
          const canvas = document.querySelector('#map canvas');
          const ratio = canvas.width / canvas.clientWidth;
          const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
          const rgb = (i) => [pixels[i], pixels[i + 1], pixels[i + 2]];
          let land = 0;
          let sea = 0;
          for (let i = 0; i < pixels.length; i += 4) {{
            const [r, g, b] = rgb(i);
            if (r === 0x1a && g === 0x28 && b === 0x37) land++;
            else if (r === 0x0a && g === 0x15 && b === 0x20) sea++;
          }}
          const order = aircraftMap.paintOrder();
          const rank = new Map(order.map((key, i) => [key, i]));
          const at = order.map((key) => [key, ...drawn[key].split(',').map(Number)]);
          const missing = [];
          let checked = 0;
          for (const key of airborne) {{
            if (!drawn[key]) {{
              missing.push([key, null, [0, 0, 0]]);
              continue;
            }}
            const [x, y] = drawn[key].split(',').map(Number);
            // An aircraft painted later close by may cover this one's centre.
            const later = at.slice(rank.get(key) + 1);
            if (later.some(([, ox, oy]) => Math.hypot(ox - x, oy - y) < 12)) continue;
            checked++;
            const [r, g, b] = rgb((Math.floor(y * ratio) * canvas.width + Math.floor(x * ratio)) * 4);
            if (g < 130 || r + g + b < 350) missing.push([key, drawn[key], [r, g, b]]);
          }}
          return {{ land: land / (pixels.length / 4), sea: sea / (pixels.length / 4), missing, checked }};
        }})()"#,
        airborne = serde_json::to_string(airborne).unwrap()
    );
    let seen: Painted = browser.eval(page, &expr).await;
    assert!(
        !coastlines || (seen.land >= 0.1 && seen.sea >= 0.1),
        "the canvas shows no coastlines: land {:.3}, sea {:.3} of its pixels",
        seen.land,
        seen.sea
    );
    assert!(
        seen.missing.is_empty(),
        "{} of {} airborne aircraft are not painted where the page says (key, position, \
         pixel): {:?}",
        seen.missing.len(),
        seen.checked,
        seen.missing
    );
    assert!(
        seen.checked * 2 >= airborne.len(),
        "only {} of {} airborne aircraft are clear of others: the check saw too few",
        seen.checked,
        airborne.len()
    );
}

/// Waits until the panel shows `aircraft` aircraft and `last` as the last event id.
async fn panel_shows(browser: &mut Browser, page: usize, aircraft: usize, last: u64) {
    browser
        .expect(
            page,
            &format!(
                "document.getElementById('count-aircraft').textContent === '{aircraft}' && \
                 document.getElementById('last-id').textContent === '{last}'"
            ),
            "the panel counts the aircraft and shows the last event id",
            "document.getElementById('panel').innerText",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-browser"),
    ignore = "needs Chromium and Node: cargo test --features test-browser"
)]
async fn map_moves_live_and_resumes_after_restarts() {
    let _alone = ONE_BROWSER.lock().await;
    let settings = Settings {
        retry: Duration::from_millis(300),
        ..Settings::default()
    };
    let fleet_size = settings.aircraft;
    let page = page_with_debian_leaflet();
    let (app, mut simulator) = start(settings.clone()).await;
    let listener = Arc::new(TcpListener::bind("127.0.0.1:0").await.unwrap());
    let addr = listener.local_addr().unwrap();
    let server = Server::start(&listener, &app, &page);
    let mut browser = Browser::launch(1280, 800).await;

    // 1. Leaflet's map, styled by its CSS, draws the shipped coastlines, and every
    //    aircraft of the fleet is a marker on it, in view.
    let map = browser.open(&format!("http://{addr}/?record")).await;
    let coastlines = shipped_coastlines();
    browser
        .expect(
            map,
            &format!(
                "window.aircraftMap && aircraftMap.ready && aircraftMap.view === 'leaflet' && \
                 aircraftMap.markers() === {fleet_size} && aircraftMap.coastlines() === {coastlines}"
            ),
            "Leaflet's map shows the coastlines and the whole fleet",
            SHOW_MAP,
        )
        .await;
    let (styled, in_view, note_hidden): (bool, usize, bool) = browser
        .eval(
            map,
            "[getComputedStyle(document.querySelector('.leaflet-pane')).position === 'absolute', \
              [...document.querySelectorAll('.leaflet-marker-icon.plane')].filter((marker) => { \
                const box = marker.getBoundingClientRect(); \
                return box.width >= 16 && box.height >= 16 && box.right > 0 && box.bottom > 0 && \
                  box.left < innerWidth && box.top < innerHeight; }).length, \
              document.getElementById('map-note').hidden]",
        )
        .await;
    assert!(styled, "leaflet.css is not applied");
    assert_eq!(in_view, fleet_size, "aircraft markers in view");
    assert!(note_hidden, "the simple map's note shows on Leaflet's map");
    open_streams_become(&app, 1).await;

    // 2. The markers move: after each tick, every marker of an aircraft in the air is
    //    drawn somewhere else.
    let moved_total = watch_moves(&mut browser, map, &app, &mut simulator, 3, false).await;
    let (state, _) = server_state(&app);
    let seen: BTreeMap<String, Seen> = browser.eval(map, "aircraftMap.state()").await;
    assert_eq!(seen, state, "the page shows what the server published");
    panel_shows(&mut browser, map, fleet_size, app.hub().last_id()).await;

    // 3. The HTTP server stops (the page's stream ends cleanly) while the simulation goes
    //    on, and starts again on the same socket: the page must resume where it stopped.
    let before_cut = app.hub().last_id();
    server.stop().await;
    assert_eq!(app.open_streams(), 0, "the shutdown ended the stream");
    for _ in 0..3 {
        tick(&app, &mut simulator, 60.0).await;
    }
    let missed = app.hub().last_id() - before_cut;
    let server = Server::start(&listener, &app, &page);
    caught_up(
        &mut browser,
        map,
        app.hub().last_id(),
        "the page catches up after the restart",
    )
    .await;
    let resumed = app.stream_starts().last().cloned().expect("a stream start");
    assert_eq!(
        resumed.resumed_after.as_deref(),
        Some(before_cut.to_string().as_str()),
        "the browser resumed after the last id it had: {resumed:?}"
    );
    assert_eq!(resumed.newest - before_cut, missed, "{resumed:?}");
    assert_eq!(missed, 3 * fleet_size as u64);
    for _ in 0..2 {
        tick(&app, &mut simulator, 60.0).await;
        caught_up(
            &mut browser,
            map,
            app.hub().last_id(),
            "the page is live again",
        )
        .await;
    }
    let ids: Vec<u64> = browser.eval(map, "aircraftMap.ids").await;
    let first_snapshot: u64 = browser.eval(map, "aircraftMap.snapshots[0]").await;
    assert_eq!(
        ids.first(),
        Some(&(first_snapshot + 1)),
        "the stream starts right after the snapshot"
    );
    assert_eq!(ids.last(), Some(&app.hub().last_id()));
    // Back after three rounds, it received the newest report of each aircraft (the
    // third round, in fleet order), not all three: then the live ones.
    let (before, after): (Vec<u64>, Vec<u64>) = ids.iter().partition(|id| **id <= before_cut);
    assert_unbroken(&before, "ids before the restart");
    assert_eq!(
        (after.first(), after.len()),
        (
            Some(&(before_cut + missed - fleet_size as u64 + 1)),
            3 * fleet_size
        ),
        "after the restart, the newest round, then two live ones"
    );
    assert_unbroken(&after, "ids after the restart");
    let (state, _) = server_state(&app);
    let seen: BTreeMap<String, Seen> = browser.eval(map, "aircraftMap.state()").await;
    assert_eq!(
        seen, state,
        "after the restart the page shows what the server published"
    );
    let (opens, stale, resets): (u32, u32, usize) = browser
        .eval(
            map,
            "[aircraftMap.opens, aircraftMap.stale, aircraftMap.resets.length]",
        )
        .await;
    assert_eq!(
        (opens, stale, resets),
        (2, 0, 0),
        "(opens, stale events, resets)"
    );
    let badge: String = browser
        .eval(map, "document.getElementById('badge').textContent")
        .await;
    assert_eq!(badge, "live");
    let screenshot = browser.screenshot(map, "aircraft").await;
    eprintln!(
        "aircraft: {fleet_size} markers, {moved_total} moves seen on screen, {} ids checked, \
         {fleet_size} of {missed} missed sent after the restart; screenshot {}",
        ids.len(),
        screenshot.display()
    );

    // 4. A real restart: a new app with a new hub and another fleet. The page's
    //    Last-Event-ID means nothing to the new hub, which says so with `stream-reset`;
    //    the page must drop the old fleet and show exactly the new one.
    server.stop().await;
    drop((app, simulator));
    let (app, mut simulator) = start(Settings {
        seed: 42,
        ..settings
    })
    .await;
    let server = Server::start(&listener, &app, &page);
    browser
        .expect(
            map,
            "aircraftMap.resets.length === 1 && aircraftMap.snapshots.length === 2",
            "the page reloads its state after the reset",
            "({ resets: aircraftMap.resets, snapshots: aircraftMap.snapshots, opens: aircraftMap.opens })",
        )
        .await;
    let reset_id: u64 = browser.eval(map, "Number(aircraftMap.resets[0].id)").await;
    let reason: String = browser.eval(map, "aircraftMap.resets[0].reason").await;
    assert_eq!(reason, "unknown");
    for _ in 0..2 {
        tick(&app, &mut simulator, 60.0).await;
        caught_up(
            &mut browser,
            map,
            app.hub().last_id(),
            "the page follows the new hub",
        )
        .await;
    }
    let (state, last) = server_state(&app);
    let seen: BTreeMap<String, Seen> = browser.eval(map, "aircraftMap.state()").await;
    assert_eq!(
        seen, state,
        "after the reset the page shows exactly the new fleet"
    );
    let markers: usize = browser.eval(map, "aircraftMap.markers()").await;
    assert_eq!(markers, fleet_size, "markers of the old fleet are gone");
    let ids: Vec<u64> = browser.eval(map, "aircraftMap.ids").await;
    let after_reset: Vec<u64> = ids.iter().copied().filter(|id| *id > reset_id).collect();
    assert_eq!(after_reset.first(), Some(&(reset_id + 1)));
    assert_eq!(after_reset.last(), Some(&last));
    assert_unbroken(&after_reset, "ids after the reset");

    // 5. Following one aircraft: a second tab gets that aircraft only.
    let followed = airborne(&app)[0].clone();
    let tab = browser
        .open(&format!("http://{addr}/?icao24={followed}&record"))
        .await;
    browser
        .expect(
            tab,
            "window.aircraftMap && aircraftMap.ready && aircraftMap.opens === 1",
            "the follow page connects",
            "({ count: aircraftMap.count(), opens: aircraftMap.opens })",
        )
        .await;
    for _ in 0..3 {
        tick(&app, &mut simulator, 60.0).await;
        caught_up(
            &mut browser,
            map,
            app.hub().last_id(),
            "the map page stays live",
        )
        .await;
    }
    let (state, _) = server_state(&app);
    let own_id = state[&followed].id;
    caught_up(
        &mut browser,
        tab,
        own_id,
        "the follow page gets its aircraft's reports",
    )
    .await;
    let seen: BTreeMap<String, Seen> = browser.eval(tab, "aircraftMap.state()").await;
    assert_eq!(seen.keys().collect::<Vec<_>>(), [&followed]);
    assert_eq!(seen[&followed], state[&followed]);
    let follow_ids: Vec<u64> = browser.eval(tab, "aircraftMap.ids").await;
    assert_eq!(follow_ids.len(), 3, "one report per tick: {follow_ids:?}");
    let panel: bool = browser
        .eval(tab, "!document.getElementById('followed').hidden")
        .await;
    assert!(panel, "the follow panel is shown");
    browser.screenshot(tab, "aircraft-follow").await;

    // Leaflet came from the example's server, nothing was asked of any other host, and
    // nothing went wrong in any page. Closing the tabs cancels their event streams: that
    // is the one failure expected.
    let responses = browser.responses(map).await;
    for file in ["leaflet.js", "leaflet.css"] {
        let url = format!("http://{addr}/leaflet/{file}");
        assert!(
            responses.iter().any(|r| r.url == url && r.status == 200),
            "{url} was not loaded: {responses:#?}"
        );
    }
    browser.close_page(tab).await;
    browser.close_page(map).await;
    browser.errors().await.assert_none(|failed| {
        failed.url.contains("/events?") && failed.error.as_deref() == Some("net::ERR_ABORTED")
    });
    browser.quit().await;
    server.stop().await;
}

/// As `main.rs` runs the example: the simulator on a real clock at the default `SPEED`,
/// every aircraft reporting once a second, the fleet in parts spread over the second.
/// A user who opens the map sees at once that it is live: the panel shows the rate
/// within 2 s of the page's `load` event, and the aircraft move within the first
/// seconds, in the page's model (every airborne aircraft's position) and on screen
/// (their markers). The times are the page's own clock, and each bound is the issue's
/// (2 s for the rate, "the first seconds" for the motion, held here as 4 s), with room:
/// in our runs, on two busy cores, the rate showed 0.9 to 1.4 s after `load`, the motion
/// 1.3 to 2 s after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-browser"),
    ignore = "needs Chromium and Node: cargo test --features test-browser"
)]
async fn rate_and_motion_show_at_once() {
    let _alone = ONE_BROWSER.lock().await;
    let settings = Settings::default();
    let fleet_size = settings.aircraft;
    let page = page_with_debian_leaflet();
    let hub = settings.hub().build();
    let app = App::new(settings.clone(), hub.clone());
    let simulator = Simulator::new(&settings, hub);
    let simulation = tokio::spawn(simulator.run(Duration::from_secs(1), settings.speed));
    let listener = Arc::new(TcpListener::bind("127.0.0.1:0").await.unwrap());
    let addr = listener.local_addr().unwrap();
    let server = Server::start(&listener, &app, &page);
    let mut browser = Browser::launch(1280, 800).await;

    let map = browser.open(&format!("http://{addr}/")).await;
    browser
        .expect(
            map,
            &format!(
                "window.aircraftMap && aircraftMap.ready && aircraftMap.markers() === {fleet_size}"
            ),
            "the map shows the fleet",
            SHOW_MAP,
        )
        .await;
    // Where everything is now, to compare with.
    let _: bool = browser
        .eval(
            map,
            "(window.before = { state: aircraftMap.state(), drawn: aircraftMap.drawn() }, true)",
        )
        .await;
    let loaded: f64 = browser
        .eval(
            map,
            "performance.getEntriesByType('navigation')[0].loadEventEnd",
        )
        .await;

    // The rate: shown (not '–') within 2 s of load, and right.
    #[derive(Debug, Deserialize)]
    struct Rate {
        at: f64,
        rate: f64,
    }
    browser
        .expect(
            map,
            "aircraftMap.rates.length > 0 && /^[0-9]+$/.test(document.getElementById('count-rate').textContent)",
            "the panel shows a rate",
            "({ rates: aircraftMap.rates, shown: document.getElementById('count-rate').textContent })",
        )
        .await;
    let first: Rate = browser.eval(map, "aircraftMap.rates[0]").await;
    let nominal = fleet_size as f64;
    assert!(
        first.at - loaded <= 2000.0,
        "the panel showed its first rate {:.0} ms after load: {first:?}",
        first.at - loaded
    );
    assert!(
        first.rate.is_finite() && first.rate > 0.0,
        "the first rate shown is {first:?}"
    );

    // The motion: every airborne aircraft has moved in the page's model, and most of
    // their markers on screen (the slowest climb a pixel in about a second).
    #[derive(Debug, Deserialize)]
    struct Moved {
        done: bool,
        at: f64,
        airborne: usize,
        model: usize,
        screen: usize,
    }
    let probe = r#"(() => {
        const state = aircraftMap.state();
        const drawn = aircraftMap.drawn();
        const airborne = Object.keys(before.state)
          .filter((key) => before.state[key].alt > 0 && state[key].alt > 0);
        const model = airborne.filter((key) =>
          state[key].lat !== before.state[key].lat || state[key].lon !== before.state[key].lon).length;
        const screen = airborne.filter((key) => drawn[key] !== before.drawn[key]).length;
        const done = airborne.length > 0 && model === airborne.length && screen >= 0.8 * airborne.length;
        return { done, at: performance.now(), airborne: airborne.length, model, screen };
      })()"#;
    let moved: Moved = serde_json::from_value(
        browser
            .expect(
                map,
                &format!("(moved => moved.done && moved)({probe})"),
                "the aircraft move",
                probe,
            )
            .await,
    )
    .unwrap();
    assert!(
        moved.airborne * 2 > fleet_size,
        "only {} airborne: {moved:?}",
        moved.airborne
    );
    assert!(
        moved.done && moved.at - loaded <= 4000.0,
        "the aircraft moved only {:.0} ms after load: {moved:?}",
        moved.at - loaded
    );
    let speed: String = browser
        .eval(map, "document.getElementById('speed').textContent")
        .await;
    assert_eq!(speed, "Simulated, a minute each second (60×)");

    // The rate is right: ten readings once the page has counted for 5 s. (The first,
    // over half a second, is as good as the page's and the server's timers on a busy
    // machine: 289 to 347 in our runs, lower when a starved page reads late.)
    let settled = first.at + 5000.0;
    let ten = format!("aircraftMap.rates.filter((r) => r.at > {settled}).length >= 10");
    browser
        .expect(
            map,
            &ten,
            "the panel goes on showing the rate",
            "aircraftMap.rates",
        )
        .await;
    let rates: Vec<f64> = browser
        .eval(
            map,
            &format!(
                "aircraftMap.rates.filter((r) => r.at > {settled}).slice(0, 10).map((r) => r.rate)"
            ),
        )
        .await;
    assert!(
        rates
            .iter()
            .all(|rate| (nominal * 0.9..=nominal * 1.1).contains(rate)),
        "events/s for a feed of {fleet_size} events/s: {rates:?}"
    );
    eprintln!(
        "aircraft: first rate {:.0} at {:.0} ms after load, then {rates:.0?}; {} of {} airborne \
         moved on screen {:.0} ms after load",
        first.rate,
        first.at - loaded,
        moved.screen,
        moved.airborne,
        moved.at - loaded
    );
    assert_eq!(moved.model, moved.airborne, "{moved:?}");

    browser.close_page(map).await;
    browser.errors().await.assert_none(|failed| {
        failed.url.contains("/events?") && failed.error.as_deref() == Some("net::ERR_ABORTED")
    });
    browser.quit().await;
    server.stop().await;
    simulation.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-browser"),
    ignore = "needs Chromium and Node: cargo test --features test-browser"
)]
async fn simple_map_without_leaflet() {
    let _alone = ONE_BROWSER.lock().await;
    let settings = Settings {
        retry: Duration::from_millis(300),
        ..Settings::default()
    };
    let fleet_size = settings.aircraft;
    // As `LEAFLET_DIR=<an empty directory> cargo run -p tower-sse-examples --example aircraft`.
    let no_leaflet = empty_dir("aircraft-no-leaflet");
    let page = Page::locate(Some(no_leaflet.as_os_str()));
    assert!(page.leaflet().is_none(), "{}", page.describe());
    let (app, mut simulator) = start(settings).await;
    let listener = Arc::new(TcpListener::bind("127.0.0.1:0").await.unwrap());
    let addr = listener.local_addr().unwrap();
    let server = Server::start(&listener, &app, &page);
    let mut browser = Browser::launch(1280, 800).await;

    // 1. The simple map paints the coastlines and the whole fleet, and the note saying
    //    that Leaflet was not found (and how to get it) is in view.
    let map = browser.open(&format!("http://{addr}/?record")).await;
    let coastlines = shipped_coastlines();
    browser
        .expect(
            map,
            &format!(
                "window.aircraftMap && aircraftMap.ready && aircraftMap.view === 'canvas' && \
                 aircraftMap.markers() === {fleet_size} && aircraftMap.coastlines() === {coastlines}"
            ),
            "the simple map shows the coastlines and the whole fleet",
            SHOW_MAP,
        )
        .await;
    let note: (bool, String, f64, f64) = browser
        .eval(
            map,
            "(() => { const note = document.getElementById('map-note'); \
               const box = note.getBoundingClientRect(); \
               const top = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2); \
               return [!note.hidden && note.contains(top), note.innerText, box.width, box.height]; })()",
        )
        .await;
    assert!(
        note.0 && note.2 > 100.0 && note.3 > 20.0,
        "the note is not in view: {note:?}"
    );
    for words in ["Leaflet was not found", "libjs-leaflet", "LEAFLET_DIR"] {
        assert!(note.1.contains(words), "the note says {:?}", note.1);
    }
    open_streams_become(&app, 1).await;
    painted(&mut browser, map, &airborne(&app), true).await;

    // 2. The aircraft move on the canvas with every tick, painted where the page says.
    let moved_total = watch_moves(&mut browser, map, &app, &mut simulator, 3, true).await;
    let (state, _) = server_state(&app);
    let seen: BTreeMap<String, Seen> = browser.eval(map, "aircraftMap.state()").await;
    assert_eq!(seen, state, "the page shows what the server published");
    panel_shows(&mut browser, map, fleet_size, app.hub().last_id()).await;

    // 3. The server stops and starts again: the page resumes after the last id it had,
    //    without a gap, and counts the reconnect.
    let before_cut = app.hub().last_id();
    server.stop().await;
    tick(&app, &mut simulator, 60.0).await;
    let server = Server::start(&listener, &app, &page);
    caught_up(
        &mut browser,
        map,
        app.hub().last_id(),
        "the page catches up after the restart",
    )
    .await;
    let resumed = app.stream_starts().last().cloned().expect("a stream start");
    assert_eq!(
        resumed.resumed_after.as_deref(),
        Some(before_cut.to_string().as_str()),
        "the browser resumed after the last id it had: {resumed:?}"
    );
    let ids: Vec<u64> = browser.eval(map, "aircraftMap.ids").await;
    assert_unbroken(&ids, "ids across the restart");
    painted(&mut browser, map, &airborne(&app), true).await;
    panel_shows(&mut browser, map, fleet_size, app.hub().last_id()).await;
    browser
        .expect(
            map,
            "document.getElementById('count-reconnects').textContent === '1' && \
             document.getElementById('badge').textContent === 'live'",
            "the panel counts the reconnect",
            "document.getElementById('panel').innerText",
        )
        .await;
    let screenshot = browser.screenshot(map, "aircraft-simple").await;
    eprintln!(
        "aircraft (simple map): {fleet_size} aircraft painted, {moved_total} moves seen on \
         the canvas, {} ids checked unbroken; screenshot {}",
        ids.len(),
        screenshot.display()
    );

    // 4. A tab that follows one aircraft keeps it in the middle of its map and shows its
    //    report in the panel.
    let followed = airborne(&app)[0].clone();
    let tab = browser
        .open(&format!("http://{addr}/?icao24={followed}&record"))
        .await;
    browser
        .expect(
            tab,
            "window.aircraftMap && aircraftMap.ready && aircraftMap.opens === 1 && \
             aircraftMap.view === 'canvas'",
            "the follow page connects",
            "({ view: aircraftMap.view, count: aircraftMap.count(), opens: aircraftMap.opens })",
        )
        .await;
    for _ in 0..2 {
        tick(&app, &mut simulator, 60.0).await;
    }
    let (state, _) = server_state(&app);
    caught_up(
        &mut browser,
        tab,
        state[&followed].id,
        "the follow page gets its aircraft's reports",
    )
    .await;
    let seen: BTreeMap<String, Seen> = browser.eval(tab, "aircraftMap.state()").await;
    assert_eq!(seen.keys().collect::<Vec<_>>(), [&followed]);
    assert_eq!(seen[&followed], state[&followed]);
    let (at, middle, panel): (Option<String>, [f64; 2], bool) = browser
        .eval(
            tab,
            &format!(
                "[aircraftMap.drawn()['{followed}'], \
                  [document.getElementById('map').clientWidth / 2, \
                   document.getElementById('map').clientHeight / 2], \
                  !document.getElementById('followed').hidden]"
            ),
        )
        .await;
    let at: Vec<f64> = at
        .expect("the followed aircraft is painted")
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        (at[0] - middle[0]).abs() <= 1.0 && (at[1] - middle[1]).abs() <= 1.0,
        "the followed aircraft is painted at {at:?}, not in the middle {middle:?}"
    );
    assert!(panel, "the follow panel is shown");
    painted(&mut browser, tab, std::slice::from_ref(&followed), false).await;
    browser.screenshot(tab, "aircraft-simple-follow").await;

    // Nothing but the example's own files, no Leaflet asked for, nothing went wrong.
    let responses = browser.responses(map).await;
    let leaflet: Vec<&str> = responses
        .iter()
        .map(|r| r.url.as_str())
        .filter(|url| url.contains("/leaflet/"))
        .collect();
    assert!(
        leaflet.is_empty(),
        "the page asked for Leaflet: {leaflet:?}"
    );
    browser.close_page(tab).await;
    browser.close_page(map).await;
    browser.errors().await.assert_none(|failed| {
        failed.url.contains("/events?") && failed.error.as_deref() == Some("net::ERR_ABORTED")
    });
    browser.quit().await;
    server.stop().await;
}

/// `Page::locate` and what the page serves, for each place Leaflet may come from.
#[test]
#[cfg_attr(
    not(feature = "test-browser"),
    ignore = "needs Chromium and Node: cargo test --features test-browser"
)]
fn leaflet_is_found_where_the_docs_say() {
    let npm = driver::browser_dir().join("node_modules/leaflet/dist");
    assert!(
        npm.join("leaflet.js").exists(),
        "{} is missing: run tests/run.sh (it runs `npm ci` in tests/browser)",
        npm.display()
    );
    let index = |page: &Page| {
        let (content_type, html) = page.file("/").expect("the page");
        assert_eq!(content_type, "text/html; charset=utf-8");
        String::from_utf8(html.to_vec()).unwrap()
    };

    // LEAFLET_DIR at the npm package: Leaflet is served from there, and the page loads
    // it from the example's server only.
    let page = Page::locate(Some(npm.as_os_str()));
    let leaflet = page.leaflet().expect("Leaflet in the npm package");
    assert_eq!(
        (leaflet.dir.as_path(), leaflet.found_by),
        (npm.as_path(), "LEAFLET_DIR")
    );
    assert_eq!(
        leaflet.version.as_deref(),
        Some("1.9.4"),
        "package.json pins 1.9.4"
    );
    let html = index(&page);
    assert!(html.contains(r#"<script src="/leaflet/leaflet.js""#));
    assert!(html.contains(r#"<link rel="stylesheet" href="/leaflet/leaflet.css""#));
    for tag in html
        .lines()
        .filter(|line| line.contains("<script") || line.contains("stylesheet"))
    {
        assert!(
            !tag.contains("://"),
            "the page loads something from elsewhere: {tag}"
        );
    }
    for (path, file, content_type) in [
        (
            "/leaflet/leaflet.js",
            "leaflet.js",
            "text/javascript; charset=utf-8",
        ),
        (
            "/leaflet/leaflet.css",
            "leaflet.css",
            "text/css; charset=utf-8",
        ),
        (
            "/leaflet/images/layers.png",
            "images/layers.png",
            "image/png",
        ),
    ] {
        let served = page
            .file(path)
            .unwrap_or_else(|| panic!("{path} is not served"));
        assert_eq!(served.0, content_type, "{path}");
        assert_eq!(served.1, std::fs::read(npm.join(file)).unwrap(), "{path}");
    }
    for path in [
        "/leaflet/",
        "/leaflet/leaflet.js.map",
        "/leaflet/../package.json",
        "/leaflet/images/../leaflet.js",
        "/leaflet.js",
    ] {
        assert!(page.file(path).is_none(), "{path} is served");
    }

    // Without LEAFLET_DIR: Debian's libjs-leaflet, which tests/run.sh installs.
    let page = page_with_debian_leaflet();
    assert_eq!(page.leaflet().unwrap().found_by, "Debian's libjs-leaflet");
    assert!(page.file("/leaflet/leaflet.css").is_some());
    assert!(
        page.describe().contains(DEBIAN_LEAFLET),
        "{}",
        page.describe()
    );

    // LEAFLET_DIR at a directory without Leaflet: nothing else is tried, and the page
    // loads no Leaflet (it draws its own map and says why).
    let empty = empty_dir("aircraft-leaflet-dir-empty");
    let page = Page::locate(Some(empty.as_os_str()));
    assert!(page.leaflet().is_none());
    assert!(page.file("/leaflet/leaflet.js").is_none());
    let html = index(&page);
    assert!(!html.contains("/leaflet/"), "{html}");
    assert!(html.contains(r#"<p id="map-note""#));
    assert!(
        page.describe().contains(&empty.display().to_string()),
        "{}",
        page.describe()
    );
    for file in ["/app.js", "/style.css", "/sea.geojson"] {
        assert!(page.file(file).is_some(), "{file}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_one_aircraft() {
    let (app, mut simulator) = start(Settings {
        aircraft: 40,
        ..Settings::default()
    })
    .await;
    let listener = Arc::new(TcpListener::bind("127.0.0.1:0").await.unwrap());
    let addr = listener.local_addr().unwrap();
    let server = Server::start(&listener, &app, &Page::new(None, Vec::new()));
    let followed = app.icao24s()[3].clone();

    let mut client = support::h1_connect(addr).await;
    let uri = format!("/events?icao24={followed}");
    let response = client
        .send(support::get(&uri).body(support::empty()).unwrap())
        .await;
    assert_eq!(response.status(), 200);
    let mut events = support::events(response);
    open_streams_become(&app, 1).await;
    for _ in 0..5 {
        tick(&app, &mut simulator, 30.0).await;
    }
    let mut last = 0;
    for _ in 0..5 {
        let event = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .expect("a report within the hang guard")
            .expect("the stream stays open");
        assert_eq!(event.event, "position");
        let report: Report = serde_json::from_str(&event.data).unwrap();
        assert_eq!(report.icao24, followed, "{event:?}");
        let id: u64 = event.id.parse().unwrap();
        assert!(id > last);
        last = id;
    }
    let (state, _) = server_state(&app);
    assert_eq!(
        last, state[&followed].id,
        "the newest report of that aircraft came last"
    );

    let mut client = support::h1_connect(addr).await;
    let response = client
        .send(
            support::get("/events?icao24=ffffff")
                .body(support::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), 404);
    server.stop().await;
}

/// On a single-threaded runtime the snapshot's task cannot run while the test publishes:
/// more ticks in a row than a topic's live window holds (`LIVE_WINDOW`) leave its
/// subscription behind on every aircraft, which it finds when it reads again. It is not
/// cut off: the hub conflates (`LagPolicy::Conflate`), once per aircraft's topic, and
/// hands it the newest report of each aircraft, so the snapshot reaches the hub's newest
/// id holding exactly the last tick; after the next tick it is exactly that tick.
#[tokio::test]
async fn the_snapshot_survives_falling_behind() {
    let settings = Settings {
        aircraft: 5,
        ..Settings::default()
    };
    let (app, mut simulator) = start(settings.clone()).await;
    let mut last = Vec::new();
    for _ in 0..app::LIVE_WINDOW + 10 {
        last = simulator.tick(10.0);
    }
    let newest = app.hub().last_id();
    let reached = tokio::time::timeout(Duration::from_secs(30), app.snapshot_reaches(newest)).await;
    assert!(reached.is_ok(), "the snapshot is at {}", app.snapshot_id());
    let counters: Vec<(u64, u64, u64)> = app
        .hub()
        .all_stats()
        .iter()
        .map(|s| (s.lagged, s.conflated, s.conflate_fallbacks))
        .collect();
    assert_eq!(
        counters,
        vec![(1, 1, 0); 5],
        "(lagged, conflated, fallbacks) of each aircraft's topic"
    );
    let snapshot: serde_json::Value = serde_json::from_str(&app.snapshot(None)).unwrap();
    let held: Vec<(u64, serde_json::Value)> = snapshot["aircraft"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_u64().unwrap(), e["data"].clone()))
        .collect();
    let published: Vec<(u64, serde_json::Value)> = last
        .iter()
        .map(|s| {
            (
                s.published.id().unwrap(),
                serde_json::from_str(&s.json).unwrap(),
            )
        })
        .collect();
    assert!(held == published, "the snapshot is not the last tick");
    tick(&app, &mut simulator, 60.0).await;
}

/// Advances the simulation by one round of reports, as [`tick`] does but without
/// comparing the snapshot with the round (for many rounds in a row): waits until the
/// app's snapshot has taken it in, so that the app's own subscription never falls
/// behind and every lag the hub counts is a page's. Returns `(id, aircraft)` of each
/// report, in fleet order.
async fn round(app: &App, simulator: &mut Simulator, seconds: f64) -> Vec<(u64, String)> {
    let sent = simulator.tick(seconds);
    assert_eq!(sent.len(), app.icao24s().len(), "every report published");
    let newest = app.hub().last_id();
    let reached = tokio::time::timeout(Duration::from_secs(30), app.snapshot_reaches(newest)).await;
    assert!(
        reached.is_ok(),
        "the snapshot is at {}, the hub at {newest}",
        app.snapshot_id()
    );
    sent.iter()
        .zip(app.icao24s())
        .map(|(s, icao24)| (s.published.id().expect("an id in memory"), icao24))
        .collect()
}

/// The hub's counters of every aircraft's topic, summed: `(lagged, conflated,
/// conflate_fallbacks, dropped, delivered)`, and how many topics conflated at least once.
fn lag_counters(app: &App) -> ([u64; 5], usize) {
    let mut sums = [0; 5];
    let mut conflated_topics = 0;
    for icao24 in app.icao24s() {
        let stats = app
            .hub()
            .stats(&format!("aircraft/{icao24}"))
            .expect("the aircraft's topic");
        for (sum, n) in sums.iter_mut().zip([
            stats.lagged,
            stats.conflated,
            stats.conflate_fallbacks,
            stats.dropped,
            stats.delivered,
        ]) {
            *sum += n;
        }
        conflated_topics += usize::from(stats.conflated > 0);
    }
    (sums, conflated_topics)
}

/// Fails unless each aircraft's reports came in the order they were published: ids go
/// up per aircraft (and overall), so that nothing the page drew was older than what it
/// showed before. `aircraft` maps each id published to its aircraft.
fn assert_each_aircraft_goes_forward(
    ids: &[u64],
    aircraft: &std::collections::HashMap<u64, String>,
    what: &str,
) {
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for pair in ids.windows(2) {
        assert!(
            pair[1] > pair[0],
            "{what}: id {} after {}",
            pair[1],
            pair[0]
        );
    }
    for id in ids {
        let key = aircraft
            .get(id)
            .unwrap_or_else(|| panic!("{what}: id {id} was not published"));
        if let Some(before) = last.insert(key, *id) {
            assert!(
                before < *id,
                "{what}: {key} went from id {before} back to {id}"
            );
        }
    }
}

/// Rounds of reports published while the page's stream is stalled: 150 s of the feed,
/// 48,000 events (about 11 MB).
const STALLED_ROUNDS: usize = 150;

/// The send buffer of the stalled test's sockets. Loopback lets the send buffer of a
/// connection whose reader stalled grow to `tcp_wmem`'s maximum (4 MiB by default, 50 s
/// of this feed: with it, the buffers held 20,849 events before the server found the
/// page behind); a real link's is about what it carries in a round trip. 128 KiB (the
/// kernel doubles it) keeps what the buffers hold small beside what the hub conflates.
const SEND_BUFFER: u32 = 128 << 10;

/// Issue 24: a tab whose stream stalls (its link passes nothing: Chromium's own
/// network throttling, which holds the stream's reads in the browser's network
/// service, so its socket fills and the server cannot write) while the fleet reports
/// 100 times. The server really finds the page behind: the hub's counters show every
/// aircraft's topic lagged and conflated, none fell back to a reset, and what the page
/// did not receive is exactly what the hub dropped for it. When its link comes back the
/// page receives what the buffers held (in order), then the newest report of every
/// aircraft (the last round, in id order), and is live again: no reconnect, no reset,
/// no report older than one it showed (ids go up per aircraft), far fewer events than
/// were published, and every aircraft shown, in the model and on the canvas, where its
/// newest report puts it. The simple map is used because it says where it painted
/// each aircraft in the same pixels as it projects a position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-browser"),
    ignore = "needs Chromium and Node: cargo test --features test-browser"
)]
async fn a_stalled_page_shows_every_aircraft_where_it_is_now() {
    let _alone = ONE_BROWSER.lock().await;
    let settings = Settings {
        retry: Duration::from_millis(300),
        ..Settings::default()
    };
    let fleet_size = settings.aircraft;
    let page = Page::locate(Some(empty_dir("aircraft-stalled").as_os_str()));
    let (app, mut simulator) = start(settings).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(SEND_BUFFER).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = Arc::new(socket.listen(64).unwrap());
    let addr = listener.local_addr().unwrap();
    let server = Server::start(&listener, &app, &page);
    let mut browser = Browser::launch(1280, 800).await;

    // The page's event stream passes nothing: throttled to 1 byte/s (the browser holds
    // each read of the socket until its bytes are paid for, so nothing passes). Set
    // before the page opens the stream, which is when Chromium applies it; the page's
    // other requests are not throttled.
    let map = browser.open("about:blank").await;
    browser
        .cdp(map, "Network.enable", serde_json::json!({}), None)
        .await;
    let stall = serde_json::json!({
        "offline": false,
        "matchedNetworkConditions": [{
            "urlPattern": format!("http://{addr}/events*"),
            "latency": 0,
            "downloadThroughput": 1,
            "uploadThroughput": -1,
        }],
    });
    browser
        .cdp(map, "Network.emulateNetworkConditionsByRule", stall, None)
        .await;
    let _: bool = browser
        .eval(
            map,
            &format!("(location.href = 'http://{addr}/?record', true)"),
        )
        .await;
    browser
        .expect(
            map,
            &format!(
                "window.aircraftMap && aircraftMap.ready && aircraftMap.view === 'canvas' && \
                 aircraftMap.markers() === {fleet_size}"
            ),
            "the page shows the fleet from its snapshot",
            SHOW_MAP,
        )
        .await;
    open_streams_become(&app, 1).await;
    let start = app.hub().last_id();
    let snapshot: u64 = browser.eval(map, "aircraftMap.snapshots[0]").await;
    assert_eq!(
        snapshot, start,
        "the page's snapshot is the fleet as published"
    );
    let (before, _) = lag_counters(&app);

    // The fleet reports STALLED_ROUNDS times while the page's stream passes nothing.
    let mut aircraft = std::collections::HashMap::new();
    let mut last_round = Vec::new();
    for _ in 0..STALLED_ROUNDS {
        last_round = round(&app, &mut simulator, 60.0).await;
        aircraft.extend(last_round.iter().cloned());
    }
    let newest = app.hub().last_id();
    let published = newest - start;
    assert_eq!(published, (STALLED_ROUNDS * fleet_size) as u64);
    let received: usize = browser.eval(map, "aircraftMap.ids.length").await;
    assert_eq!(received, 0, "the stalled page received events");

    // Its link comes back (any new conditions release the stream's throttle).
    let release = serde_json::json!({ "offline": false, "matchedNetworkConditions": [] });
    browser
        .cdp(map, "Network.emulateNetworkConditionsByRule", release, None)
        .await;
    caught_up(
        &mut browser,
        map,
        newest,
        "the page catches up once its link is back",
    )
    .await;

    // The server found the page behind on every aircraft and caught it up in short.
    let (after, conflated_topics) = lag_counters(&app);
    let [lagged, conflated, fallbacks, dropped, _] = std::array::from_fn(|n| after[n] - before[n]);
    let ids: Vec<u64> = browser.eval(map, "aircraftMap.ids").await;
    assert_eq!(
        (conflated_topics, before[1]),
        (fleet_size, 0),
        "topics that conflated, and catch-ups in short before the stall (lagged {lagged}, \
         conflated {conflated})"
    );
    assert_eq!((lagged, fallbacks), (conflated, 0), "every lag conflated");
    assert_eq!(
        ids.len() as u64,
        published - dropped,
        "the page received every event the hub did not drop for it"
    );
    assert_each_aircraft_goes_forward(&ids, &aircraft, "after the stall");
    // What the buffers held came first (in order, and in short for any aircraft the
    // server found the page behind on while it could still write); last, the newest
    // report of every aircraft: the last round, in id order.
    assert!(
        ids.len() >= fleet_size,
        "the page received {} events",
        ids.len()
    );
    let buffered = ids.len() - fleet_size;
    assert!(
        buffered + fleet_size * (app::LIVE_WINDOW + 1) <= published as usize,
        "the buffers held {buffered} of {published} events: publish more rounds"
    );
    let newest_of_each: Vec<u64> = last_round.iter().map(|(id, _)| *id).collect();
    if ids[buffered..] != newest_of_each[..] {
        let rounds: Vec<(u64, u64)> = ids[buffered..]
            .iter()
            .map(|id| {
                (
                    (id - start - 1) / fleet_size as u64,
                    (id - start - 1) % fleet_size as u64,
                )
            })
            .collect();
        panic!(
            "after the {buffered} events the buffers held, the page got (round, aircraft) \
             {rounds:?}, not the newest report of each aircraft (round {})",
            STALLED_ROUNDS - 1
        );
    }
    assert!(
        ids.len() * 5 <= published as usize,
        "the page received {} of {published} events",
        ids.len()
    );

    // Every aircraft is where its newest report puts it, in the model and on the map.
    let (state, _) = server_state(&app);
    let seen: BTreeMap<String, Seen> = browser.eval(map, "aircraftMap.state()").await;
    assert_eq!(
        seen, state,
        "the page shows the newest report of every aircraft"
    );
    let misplaced: Vec<(String, Option<String>, String)> = browser
        .eval(
            map,
            "(() => { const drawn = aircraftMap.drawn(); const state = aircraftMap.state(); \
               return Object.keys(state).map((key) => { \
                 const at = aircraftMap.project(state[key].lat, state[key].lon) \
                   .map((v) => v.toFixed(1)).join(','); \
                 return [key, drawn[key], at]; }) \
               .filter(([, drawn, at]) => drawn !== at); })()",
        )
        .await;
    assert!(
        misplaced.is_empty(),
        "{} aircraft not painted where their newest report is (key, painted, expected): \
         {misplaced:?}",
        misplaced.len()
    );
    let (opens, stale, resets, snapshots): (u32, u32, usize, usize) = browser
        .eval(
            map,
            "[aircraftMap.opens, aircraftMap.stale, aircraftMap.resets.length, \
              aircraftMap.snapshots.length]",
        )
        .await;
    assert_eq!(
        (opens, stale, resets, snapshots),
        (1, 0, 0, 1),
        "(opens, stale events, resets, snapshots loaded)"
    );

    // And it is live again.
    tick(&app, &mut simulator, 60.0).await;
    caught_up(
        &mut browser,
        map,
        app.hub().last_id(),
        "the page is live again",
    )
    .await;
    let (state, _) = server_state(&app);
    let seen: BTreeMap<String, Seen> = browser.eval(map, "aircraftMap.state()").await;
    assert_eq!(seen, state);
    eprintln!(
        "aircraft, stalled page: {published} events published while stalled; the page \
         received {} ({buffered} the buffers held, then the {fleet_size} newest), the hub \
         dropped {dropped} for it, {conflated} catch-ups in short",
        ids.len()
    );

    browser.close_page(map).await;
    browser.errors().await.assert_none(|failed| {
        failed.url.contains("/events?") && failed.error.as_deref() == Some("net::ERR_ABORTED")
    });
    browser.quit().await;
    server.stop().await;
}

/// Issue 24: a page away for a minute (its server gone while the fleet reports 60
/// times, 19,200 events, all still in history) comes back with its `Last-Event-ID` and
/// receives one snapshot: the newest report of each aircraft, 320 events in id order
/// (the last round), not the backlog, and no `stream-reset`; it reloads nothing, each
/// aircraft's ids only go up, it shows exactly the server's state, and it is live
/// again. The hub counts one catch-up in short per aircraft's topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-browser"),
    ignore = "needs Chromium and Node: cargo test --features test-browser"
)]
async fn a_page_back_after_a_minute_away_gets_one_snapshot() {
    let _alone = ONE_BROWSER.lock().await;
    let settings = Settings {
        retry: Duration::from_millis(300),
        ..Settings::default()
    };
    let fleet_size = settings.aircraft;
    let page = page_with_debian_leaflet();
    let (app, mut simulator) = start(settings).await;
    let listener = Arc::new(TcpListener::bind("127.0.0.1:0").await.unwrap());
    let addr = listener.local_addr().unwrap();
    let server = Server::start(&listener, &app, &page);
    let mut browser = Browser::launch(1280, 800).await;
    let map = browser.open(&format!("http://{addr}/?record")).await;
    browser
        .expect(
            map,
            &format!(
                "window.aircraftMap && aircraftMap.ready && aircraftMap.view === 'leaflet' && \
                 aircraftMap.markers() === {fleet_size}"
            ),
            "Leaflet's map shows the whole fleet",
            SHOW_MAP,
        )
        .await;
    open_streams_become(&app, 1).await;
    tick(&app, &mut simulator, 60.0).await;
    caught_up(&mut browser, map, app.hub().last_id(), "the page is live").await;

    // A minute away: the server goes while the fleet reports 60 times.
    let away = app.hub().last_id();
    let received_before: usize = browser.eval(map, "aircraftMap.ids.length").await;
    server.stop().await;
    assert_eq!(app.open_streams(), 0, "the shutdown ended the stream");
    let (before, _) = lag_counters(&app);
    let mut last_round = Vec::new();
    for _ in 0..60 {
        last_round = round(&app, &mut simulator, 60.0).await;
    }
    let newest = app.hub().last_id();
    assert_eq!(newest - away, 60 * fleet_size as u64);

    // Back: one snapshot, the newest report of each aircraft.
    let server = Server::start(&listener, &app, &page);
    caught_up(
        &mut browser,
        map,
        newest,
        "the page catches up when it is back",
    )
    .await;
    let resumed = app.stream_starts().last().cloned().expect("a stream start");
    assert_eq!(
        (resumed.resumed_after.as_deref(), resumed.newest),
        (Some(away.to_string().as_str()), newest),
        "the browser resumed after the last id it had: {resumed:?}"
    );
    let ids: Vec<u64> = browser.eval(map, "aircraftMap.ids").await;
    let newest_of_each: Vec<u64> = last_round.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids.len() - received_before,
        fleet_size,
        "events received on the reconnect, after {} published",
        newest - away
    );
    assert_eq!(
        ids[received_before..],
        newest_of_each[..],
        "after a minute away, the newest report of each aircraft, in id order, and \
         nothing else"
    );
    let (after, conflated_topics) = lag_counters(&app);
    assert_eq!(
        (after[1] - before[1], conflated_topics, after[2] - before[2]),
        (fleet_size as u64, fleet_size, 0),
        "(catch-ups in short, topics, fallbacks)"
    );
    let (state, _) = server_state(&app);
    let seen: BTreeMap<String, Seen> = browser.eval(map, "aircraftMap.state()").await;
    assert_eq!(
        seen, state,
        "the page shows the newest report of every aircraft"
    );
    let (opens, stale, resets, snapshots): (u32, u32, usize, usize) = browser
        .eval(
            map,
            "[aircraftMap.opens, aircraftMap.stale, aircraftMap.resets.length, \
              aircraftMap.snapshots.length]",
        )
        .await;
    assert_eq!(
        (opens, stale, resets, snapshots),
        (2, 0, 0, 1),
        "(opens, stale events, resets, snapshots loaded)"
    );

    // Live again.
    let live = tick(&app, &mut simulator, 60.0).await;
    caught_up(&mut browser, map, live, "the page is live again").await;
    let ids: Vec<u64> = browser.eval(map, "aircraftMap.ids").await;
    assert_eq!(ids.len(), received_before + 2 * fleet_size);
    let (state, _) = server_state(&app);
    let seen: BTreeMap<String, Seen> = browser.eval(map, "aircraftMap.state()").await;
    assert_eq!(seen, state);
    eprintln!(
        "aircraft, a minute away: {} events published, {fleet_size} received on the \
         reconnect",
        newest - away
    );

    browser.close_page(map).await;
    browser.errors().await.assert_none(|failed| {
        failed.url.contains("/events?") && failed.error.as_deref() == Some("net::ERR_ABORTED")
    });
    browser.quit().await;
    server.stop().await;
}

/// What a page received to catch up: events, and bytes of their frames.
#[derive(Debug, Default, Clone, Copy)]
struct Caught {
    events: usize,
    bytes: usize,
    /// `stream-reset` events among them.
    resets: usize,
}

/// Everything a held subscription has for now (in-process it is ready at once), polled
/// until it would wait, counted into `caught`; a lag that ends it is returned.
fn drain(
    subscription: &mut tower_sse::Subscription,
    caught: &mut Caught,
) -> Option<tower_sse::hub::SubscriptionError> {
    use futures_util::FutureExt;
    loop {
        match subscription.next().now_or_never() {
            Some(Some(Ok(event))) => {
                caught.events += 1;
                caught.bytes += event.as_bytes().len();
                caught.resets += usize::from(event.as_bytes().starts_with(b"event: stream-reset"));
            }
            Some(Some(Err(error))) => return Some(error),
            Some(None) | None => return None,
        }
    }
}

/// The example's fleet on a hub built by `hub`, read by a page on every aircraft's
/// topic that has read everything, then stops reading for `seconds` rounds of reports;
/// what it receives before it holds the newest report of every aircraft again: `(at
/// once, over the next second)`. At once is what the hub sends when it reads again
/// (and, if its stream ends for lagging, on its reconnection with its `Last-Event-ID`);
/// over the next second, what it still needs after a reset (a report of every aircraft;
/// the page would also reload `/snapshot`, which is not counted).
fn figures_behind(hub: tower_sse::hub::HubBuilder, seconds: usize) -> (Caught, Caught) {
    let settings = Settings::default();
    let hub = hub.build();
    let mut simulator = Simulator::new(&settings, hub.clone());
    let topics: Vec<String> = app::fleet::Fleet::new(settings.aircraft, settings.seed)
        .aircraft()
        .iter()
        .map(|a| format!("aircraft/{}", a.icao24()))
        .collect();
    let mut page = hub.subscribe(&topics, None);
    simulator.tick(0.0);
    let mut first = Caught::default();
    assert_eq!(drain(&mut page, &mut first).map(|e| e.to_string()), None);
    assert_eq!(first.events, settings.aircraft);
    let read = hub.last_id();
    for _ in 0..seconds {
        simulator.tick(60.0);
    }
    let mut now = Caught::default();
    if drain(&mut page, &mut now).is_some() {
        page = hub.subscribe(
            &topics,
            Some(&tower_sse::LastEventId::new(read.to_string())),
        );
        assert!(drain(&mut page, &mut now).is_none());
    }
    let mut later = Caught::default();
    if now.resets > 0 {
        // Reset (on every aircraft's topic): the page waits for every aircraft to
        // report again.
        simulator.tick(60.0);
        assert!(drain(&mut page, &mut later).is_none());
    }
    (now, later)
}

/// Issue 24, point 6, with the example's own settings: 320 aircraft on a topic each,
/// one report per aircraft per second, and a page 10 s and 60 s behind, under each
/// policy. Counts are exact (held subscriptions, the simulator's own reports); the
/// table goes to stderr (`--nocapture`).
#[test]
fn figures_of_the_example_behind() {
    let settings = Settings::default();
    use tower_sse::hub::LagPolicy;
    // The example's hub before issue 24.
    fn before(settings: &Settings) -> tower_sse::hub::HubBuilder {
        tower_sse::Hub::builder()
            .history_events(settings.history)
            .max_topics(settings.aircraft)
    }
    type Build = fn(&Settings) -> tower_sse::hub::HubBuilder;
    let cases: [(&str, Build); 5] = [
        (
            "Disconnect, default window (1024 per topic): the example before",
            before,
        ),
        ("Disconnect, window 5", |s| {
            before(s).queue_events(app::LIVE_WINDOW)
        }),
        ("Disconnect + conflate_replay, window 5", |s| {
            before(s)
                .queue_events(app::LIVE_WINDOW)
                .conflate_replay(true)
        }),
        ("SkipAhead, window 5", |s| {
            before(s)
                .queue_events(app::LIVE_WINDOW)
                .lag_policy(LagPolicy::SkipAhead)
        }),
        (
            "Conflate + conflate_replay, window 5: the example",
            Settings::hub,
        ),
    ];
    eprintln!("| policy | 10 s behind: events (bytes) | 60 s behind: events (bytes) |");
    eprintln!("|---|---|---|");
    let mut rows = Vec::new();
    for (name, hub) in &cases {
        let cell = |(now, later): (Caught, Caught)| match (now.resets, later.events) {
            (0, 0) => format!("{} ({} B)", now.events, now.bytes),
            (resets, _) => format!(
                "{resets} resets ({} B) + {} over the next second ({} B)",
                now.bytes, later.events, later.bytes
            ),
        };
        let ten = figures_behind(hub(&settings), 10);
        let sixty = figures_behind(hub(&settings), 60);
        eprintln!("| {name} | {} | {} |", cell(ten), cell(sixty));
        rows.push([ten, sixty].map(|(now, later)| (now.events, now.resets, later.events)));
    }
    assert_eq!(
        rows[0],
        [(3200, 0, 0), (19_200, 0, 0)],
        "no lag within 1024"
    );
    assert_eq!(
        rows[1],
        [(3200, 0, 0), (19_200, 0, 0)],
        "cut off, then history"
    );
    assert_eq!(rows[2], [(320, 0, 0), (320, 0, 0)]);
    assert_eq!(
        rows[3],
        [(320, 320, 320), (320, 320, 320)],
        "a reset per topic"
    );
    assert_eq!(rows[4], [(320, 0, 0), (320, 0, 0)]);
}
