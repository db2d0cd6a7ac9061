//! The aircraft example (`examples/aircraft/`) in a real browser: Debian's Chromium,
//! driven by playwright-core through `tests/browser/driver.mjs`, against the example's
//! own app served in this process on loopback, on an in-memory hub. The test drives the
//! simulation clock (`Simulator::tick`), so it waits for what the page shows, never for
//! real seconds; and the app keeps its snapshot from the hub as events arrive, so after
//! each tick the test waits until the snapshot has taken in the hub's newest id before
//! comparing the page with it.
//!
//! - `map_moves_live_and_resumes_after_restarts`: the map shows every aircraft of the
//!   fleet as a marker, and the markers move on screen with each tick. The HTTP server is
//!   then shut down while the simulation keeps publishing, and started again on the same
//!   socket: the page reconnects by itself, the hub replays what it missed, and the ids
//!   it received form one unbroken sequence (each is the previous plus one, since the
//!   page reads every topic of the hub), so there is no gap and no duplicate, and its
//!   state equals the server's. Then the server is replaced by a new one with a new hub
//!   and a different fleet, as after a real restart: the hub cannot replay, sends
//!   `stream-reset`, and the page reloads its state (exactly the new fleet). A second tab
//!   follows one aircraft with `?icao24=`. No page logs an error, and Leaflet comes from
//!   the npm package, never from the CDN.
//! - `events_follow_one_aircraft`: over plain HTTP, `/events?icao24=` carries that
//!   aircraft's reports only, and an unknown address is a 404.
//! - `the_snapshot_survives_falling_behind`: a tick bigger than a subscriber's queue,
//!   published while the snapshot's task cannot run, cuts its subscription off; it
//!   subscribes again from where it was and the snapshot still ends up exactly what was
//!   published.

#[path = "../examples/aircraft/app.rs"]
#[allow(dead_code)]
mod app;
#[path = "browser/driver.rs"]
mod driver;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_sse::Shutdown;

use app::{App, Settings, Simulator};
use driver::Browser;

/// The example app served on a listener that outlives it, so that a "restart" keeps the
/// address: connections made while no server runs wait in the listen queue.
struct Server {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Server {
    fn start(listener: &Arc<TcpListener>, app: &App) -> Server {
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = Shutdown::new();
        let service = app.service(shutdown.clone());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_moves_live_and_resumes_after_restarts() {
    let settings = Settings {
        retry: Duration::from_millis(300),
        ..Settings::default()
    };
    let fleet_size = settings.aircraft;
    let (app, mut simulator) = start(settings.clone()).await;
    let listener = Arc::new(TcpListener::bind("127.0.0.1:0").await.unwrap());
    let addr = listener.local_addr().unwrap();
    let server = Server::start(&listener, &app);
    let mut browser = Browser::launch(1280, 800).await;

    // 1. Every aircraft of the fleet is a marker on the map.
    let map = browser.open(&format!("http://{addr}/?record"), true).await;
    browser
        .expect(
            map,
            &format!(
                "window.aircraftMap && aircraftMap.ready && aircraftMap.markers() === {fleet_size}"
            ),
            "the map shows the whole fleet",
            "({ count: aircraftMap.count(), markers: aircraftMap.markers() })",
        )
        .await;
    open_streams_become(&app, 1).await;

    // 2. The markers move: after each tick, every marker of an aircraft in the air is
    //    drawn somewhere else. (Five simulated minutes move the slowest airborne aircraft
    //    several pixels at this zoom.)
    let mut moved_total = 0;
    for _ in 0..3 {
        let before: BTreeMap<String, Option<String>> =
            browser.eval(map, "aircraftMap.drawn()").await;
        let airborne_before = airborne(&app);
        tick(&app, &mut simulator, 300.0).await;
        caught_up(
            &mut browser,
            map,
            app.hub().last_id(),
            "the page gets the tick",
        )
        .await;
        let after: BTreeMap<String, Option<String>> =
            browser.eval(map, "aircraftMap.drawn()").await;
        assert_eq!(after.len(), fleet_size);
        // Those that landed during the tick may have had only a pixel or two to go.
        let airborne: Vec<String> = airborne(&app)
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
        moved_total += airborne.len();
    }
    let (state, _) = server_state(&app);
    let page: BTreeMap<String, Seen> = browser.eval(map, "aircraftMap.state()").await;
    assert_eq!(page, state, "the page shows what the server published");

    // 3. The HTTP server stops (the page's stream ends cleanly) while the simulation goes
    //    on, and starts again on the same socket: the page must resume where it stopped.
    let before_cut = app.hub().last_id();
    server.stop().await;
    assert_eq!(app.open_streams(), 0, "the shutdown ended the stream");
    for _ in 0..3 {
        tick(&app, &mut simulator, 60.0).await;
    }
    let missed = app.hub().last_id() - before_cut;
    let server = Server::start(&listener, &app);
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
    assert_unbroken(&ids, "ids across the restart");
    let (state, _) = server_state(&app);
    let page: BTreeMap<String, Seen> = browser.eval(map, "aircraftMap.state()").await;
    assert_eq!(
        page, state,
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
        "aircraft: {fleet_size} markers, {moved_total} moves seen on screen, {} ids checked \
         unbroken, {missed} replayed after the restart; screenshot {}",
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
    let server = Server::start(&listener, &app);
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
    let page: BTreeMap<String, Seen> = browser.eval(map, "aircraftMap.state()").await;
    assert_eq!(
        page, state,
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
        .open(&format!("http://{addr}/?icao24={followed}&record"), true)
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
    let page: BTreeMap<String, Seen> = browser.eval(tab, "aircraftMap.state()").await;
    assert_eq!(page.keys().collect::<Vec<_>>(), [&followed]);
    assert_eq!(page[&followed], state[&followed]);
    let follow_ids: Vec<u64> = browser.eval(tab, "aircraftMap.ids").await;
    assert_eq!(follow_ids.len(), 3, "one report per tick: {follow_ids:?}");
    let panel: bool = browser
        .eval(tab, "!document.getElementById('followed').hidden")
        .await;
    assert!(panel, "the follow panel is shown");
    browser.screenshot(tab, "aircraft-follow").await;

    // Leaflet came from the npm package, and nothing went wrong in any page. Closing the
    // tabs cancels their event streams: that is the one failure expected.
    let responses = browser.responses(map).await;
    assert!(
        responses
            .iter()
            .any(|r| r.url.ends_with("/leaflet.js") && r.status == 200),
        "Leaflet was not loaded: {responses:#?}"
    );
    browser.close_page(tab).await;
    browser.close_page(map).await;
    browser.errors().await.assert_none(|failed| {
        failed.url.contains("/events?") && failed.error.as_deref() == Some("net::ERR_ABORTED")
    });
    browser.quit().await;
    server.stop().await;
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
    let server = Server::start(&listener, &app);
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
/// more ticks in a row than a topic's history holds (120) leave its subscription behind
/// what the hub can replay, and the hub cuts it off. The task subscribes again after the
/// last id it took in, receives `stream-reset` (what it missed is gone), and goes on: the
/// snapshot reaches the hub's newest id, and after the next tick it is exactly that tick.
#[tokio::test]
async fn the_snapshot_survives_falling_behind() {
    let settings = Settings {
        aircraft: 5,
        ..Settings::default()
    };
    let (app, mut simulator) = start(settings.clone()).await;
    for _ in 0..settings.history + 10 {
        simulator.tick(10.0);
    }
    let lagged: u64 = app.hub().all_stats().iter().map(|s| s.lagged).sum();
    assert_eq!(
        lagged, 5,
        "the snapshot's subscription was cut off on every topic"
    );
    let newest = app.hub().last_id();
    let reached = tokio::time::timeout(Duration::from_secs(30), app.snapshot_reaches(newest)).await;
    assert!(reached.is_ok(), "the snapshot is at {}", app.snapshot_id());
    tick(&app, &mut simulator, 60.0).await;
}
