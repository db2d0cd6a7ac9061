//! The sensors example (`examples/sensors/`) in a real browser: Debian's Chromium,
//! driven by playwright-core through `tests/browser/driver.mjs`, against the example's
//! own app served in this process on loopback. The test publishes each reading itself
//! (`App::step`), so it waits for what the pages show, never for real seconds.
//!
//! - `ten_tabs_share_one_connection_by_default`: ten dashboard tabs, opened as a user
//!   opens them (no option), make exactly one event stream to the server, counted
//!   server-side: over HTTP/1.1 Chromium allows six connections to one origin, so with a
//!   stream per tab the seventh tab would never load. Every tab knows that ten share it,
//!   and every one of them gets every new reading (its event ids follow its history's,
//!   each the previous plus one) and shows the same latest readings. When a tab leaves
//!   the others see it and stay live; when the last leaves the stream closes. No page
//!   logs an error.
//! - `charts_start_when_the_server_did`: a tab with a connection of its own
//!   (`?connection=per-tab`) opened before the first reading shows a chart per sensor,
//!   empty, whose time axis starts at the server's start; each chart then gains a point
//!   per reading, drawn, and still starts there. A second such tab makes a second
//!   stream, so the count above does tell the modes apart.
//! - `without_shared_worker_each_tab_reads_the_stream_itself`: in a browser without
//!   `SharedWorker` (taken away before the page's scripts run), the default page falls
//!   back to a stream of its own, says why, and is live.
//! - `dashboard_is_live_behind_compression`: behind tower-http's `CompressionLayer` set
//!   to compress everything, each reading is published only once the page has received
//!   the previous one, so a stream that the layer buffered would stall the test; the
//!   page itself arrives compressed, the stream as `identity`.
//! - `events_narrow_to_topics`: over plain HTTP, `?topic=` narrows `/events` to the
//!   sensors named, and an unknown sensor is a 404.

#[path = "../examples/sensors/app.rs"]
#[allow(dead_code)]
mod app;
#[path = "browser/driver.rs"]
mod driver;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::SizeAbove;

use app::sensor::SENSORS;
use app::{App, Settings};
use driver::Browser;

struct Server {
    addr: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves `app`, behind a compress-everything `CompressionLayer` when `compress`.
    async fn start(app: &App, compress: bool) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = CancellationToken::new();
        let service = app.service(shutdown.clone());
        let stopped = async {
            let _ = stopped.await;
        };
        let task = if compress {
            let service = ServiceBuilder::new()
                .layer(CompressionLayer::new().compress_when(SizeAbove::new(0)))
                .service(service);
            tokio::spawn(async move { app::serve(listener, service, shutdown, stopped).await })
        } else {
            tokio::spawn(async move { app::serve(listener, service, shutdown, stopped).await })
        };
        Server { addr, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the server shuts down")
            .expect("the server task");
    }
}

fn settings() -> Settings {
    Settings {
        retry: Duration::from_millis(300),
        ..Settings::default()
    }
}

const SHOW: &str = "({ mode: sensorDashboard.mode, why: sensorDashboard.why, \
    status: sensorDashboard.status, histories: sensorDashboard.histories, \
    readings: sensorDashboard.readings, last: sensorDashboard.ids.at(-1), \
    tabs: sensorDashboard.tabs, points: sensorDashboard.points() })";

/// Waits until `page` is connected, in `mode`, and has drawn its history.
async fn connected(browser: &mut Browser, page: usize, mode: &str, what: &str) {
    browser
        .expect(
            page,
            &format!(
                "window.sensorDashboard && sensorDashboard.histories >= 1 && \
                 sensorDashboard.status === 'live' && sensorDashboard.mode === '{mode}'"
            ),
            what,
            SHOW,
        )
        .await;
}

/// Waits until `page` has received event `id`.
async fn caught_up(browser: &mut Browser, page: usize, id: u64, what: &str) {
    browser
        .expect(
            page,
            &format!("sensorDashboard.ids.at(-1) === {id}"),
            what,
            SHOW,
        )
        .await;
}

/// Waits (with a hang guard) until `n` event streams are open on the server.
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

/// Checks that `page` received every event since its history, once each, in order.
async fn assert_every_event(browser: &mut Browser, page: usize, last: u64) -> usize {
    let ids: Vec<u64> = browser.eval(page, "sensorDashboard.ids").await;
    let history: u64 = browser.eval(page, "sensorDashboard.historyIds[0]").await;
    let expected: Vec<u64> = (history + 1..=last).collect();
    assert_eq!(
        ids, expected,
        "page {page}: the ids received are not exactly those published after its history"
    );
    ids.len()
}

type Points = BTreeMap<String, usize>;

/// A chart's time axis, ms since the Unix epoch.
#[derive(Debug, Deserialize)]
struct Axis {
    from: u64,
    to: u64,
}

/// The page's failed requests that are expected: the event streams its tabs cancel when
/// they close.
fn cancelled_stream(failed: &driver::FailedRequest) -> bool {
    failed.url.contains("/events?") && failed.error.as_deref() == Some("net::ERR_ABORTED")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-browser"),
    ignore = "needs Chromium and Node: cargo test --features test-browser"
)]
async fn ten_tabs_share_one_connection_by_default() {
    const TABS: usize = 10;
    let app = App::new(settings());
    app.round();
    let server = Server::start(&app, false).await;
    let url = format!("http://{}/?record", server.addr);
    let mut browser = Browser::launch(1280, 800).await;

    // Ten tabs, as a user opens them: each loads (over HTTP/1.1, the seventh could not
    // if six streams held the browser's six connections) and goes live.
    let mut tabs = Vec::new();
    for n in 1..=TABS {
        let tab = browser.open(&url).await;
        connected(&mut browser, tab, "shared", &format!("tab {n} connects")).await;
        tabs.push(tab);
    }
    open_streams_become(&app, 1).await;
    assert_eq!(
        app.opened_streams(),
        1,
        "{TABS} tabs in the default mode must make exactly one event stream"
    );
    for &tab in &tabs {
        browser
            .expect(
                tab,
                &format!("sensorDashboard.tabs === {TABS}"),
                "each tab knows how many share the connection",
                SHOW,
            )
            .await;
        let why: String = browser
            .eval(tab, "document.getElementById('why').innerText")
            .await;
        assert!(
            why.contains("six connections") && why.contains("seventh tab"),
            "the page says why it shares one connection: {why:?}"
        );
    }

    // Every tab is live: each gets every new reading.
    for _ in 0..3 {
        app.round();
    }
    let last = app.hub().last_id();
    let mut ids = 0;
    for &tab in &tabs {
        caught_up(&mut browser, tab, last, "every tab gets every new reading").await;
        ids += assert_every_event(&mut browser, tab, last).await;
    }
    assert_eq!(
        (app.opened_streams(), app.open_streams()),
        (1, 1),
        "{TABS} tabs make one event stream (opened, open)"
    );
    let mut latest: Vec<serde_json::Value> = Vec::new();
    for &tab in &tabs {
        latest.push(browser.eval(tab, "sensorDashboard.latest()").await);
    }
    assert!(
        latest.windows(2).all(|w| w[0] == w[1]),
        "the tabs show the same readings: {latest:#?}"
    );

    // A tab that leaves says so, and the others stay live; with the last one, the
    // connection closes.
    browser.close_page(tabs[0]).await;
    browser
        .expect(
            tabs[1],
            &format!("sensorDashboard.tabs === {}", TABS - 1),
            "the others see the tab leave",
            SHOW,
        )
        .await;
    app.round();
    for &tab in &tabs[1..] {
        caught_up(&mut browser, tab, app.hub().last_id(), "still live").await;
    }
    for &tab in &tabs[1..] {
        browser.close_page(tab).await;
    }
    open_streams_become(&app, 0).await;
    assert_eq!(app.opened_streams(), 1);

    browser.errors().await.assert_none(cancelled_stream);
    browser.quit().await;
    server.stop().await;
    eprintln!("sensors: {TABS} tabs on 1 stream, {ids} ids checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-browser"),
    ignore = "needs Chromium and Node: cargo test --features test-browser"
)]
async fn charts_start_when_the_server_did() {
    let app = App::new(settings());
    let started = app.started_ms();
    let server = Server::start(&app, false).await;
    let url = format!("http://{}/?connection=per-tab&record", server.addr);
    let mut browser = Browser::launch(1280, 800).await;

    // Before the first reading: a chart per sensor, empty, from the server's start.
    let tab = browser.open(&url).await;
    connected(&mut browser, tab, "per-tab", "the dashboard connects").await;
    open_streams_become(&app, 1).await;
    let before: Points = browser.eval(tab, "sensorDashboard.points()").await;
    assert_eq!(
        before.len(),
        SENSORS.len(),
        "a chart per sensor: {before:?}"
    );
    assert!(
        before.values().all(|&n| n == 0),
        "no reading yet: {before:?}"
    );
    let starts = |axes: &BTreeMap<String, Axis>| {
        axes.iter()
            .filter(|(_, axis)| axis.from != started || axis.to <= axis.from)
            .map(|(sensor, axis)| format!("{sensor}: {axis:?}"))
            .collect::<Vec<_>>()
    };
    let axes: BTreeMap<String, Axis> = browser.eval(tab, "sensorDashboard.axes()").await;
    assert!(
        starts(&axes).is_empty(),
        "the charts must start when the server did ({started}): {:?}",
        starts(&axes)
    );

    // Each reading is a point, drawn; the charts still start at the server's start.
    let rounds = 5;
    for _ in 0..rounds {
        app.round();
    }
    caught_up(
        &mut browser,
        tab,
        app.hub().last_id(),
        "the dashboard gets the readings",
    )
    .await;
    let after: Points = browser.eval(tab, "sensorDashboard.points()").await;
    assert!(
        after.values().all(|&n| n == rounds),
        "a point per reading: {after:?}"
    );
    let want = serde_json::to_string(&after).unwrap();
    let every_point = format!(
        "(want => Object.entries(sensorDashboard.drawn()).every(([s, n]) => n === want[s]))({want})"
    );
    browser
        .expect(
            tab,
            &every_point,
            "every chart draws every point",
            "sensorDashboard.drawn()",
        )
        .await;
    let axes: BTreeMap<String, Axis> = browser.eval(tab, "sensorDashboard.axes()").await;
    assert!(starts(&axes).is_empty(), "{:?}", starts(&axes));
    let first_times: BTreeMap<String, u64> = browser.eval(tab, "sensorDashboard.oldest()").await;
    assert!(
        first_times.values().all(|&time| time >= started),
        "a reading before the server started ({started}): {first_times:?}"
    );
    let (histories, last_id): (u32, String) = browser
        .eval(
            tab,
            "[sensorDashboard.histories, document.getElementById('last-id').textContent]",
        )
        .await;
    assert_eq!(histories, 1, "no reset: the history was loaded once");
    assert_eq!(last_id, app.hub().last_id().to_string());
    assert_every_event(&mut browser, tab, app.hub().last_id()).await;

    // A second tab with a stream of its own: two streams.
    let other = browser.open(&url).await;
    connected(&mut browser, other, "per-tab", "a second tab connects").await;
    open_streams_become(&app, 2).await;
    assert_eq!(app.opened_streams(), 2);
    browser.close_page(other).await;
    browser.close_page(tab).await;
    open_streams_become(&app, 0).await;

    browser.errors().await.assert_none(cancelled_stream);
    browser.quit().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-browser"),
    ignore = "needs Chromium and Node: cargo test --features test-browser"
)]
async fn without_shared_worker_each_tab_reads_the_stream_itself() {
    let app = App::new(settings());
    app.round();
    let server = Server::start(&app, false).await;
    let url = format!("http://{}/?record", server.addr);
    let mut browser = Browser::launch(1280, 800).await;

    // As in a browser that has no SharedWorker.
    let no_worker = "delete window.SharedWorker;";
    let mut tabs = Vec::new();
    for _ in 0..2 {
        let tab = browser.open_with(&url, no_worker).await;
        connected(
            &mut browser,
            tab,
            "per-tab",
            "a tab without SharedWorker connects",
        )
        .await;
        tabs.push(tab);
    }
    open_streams_become(&app, 2).await;
    app.round();
    for &tab in &tabs {
        caught_up(
            &mut browser,
            tab,
            app.hub().last_id(),
            "a tab without SharedWorker gets the readings",
        )
        .await;
        assert_every_event(&mut browser, tab, app.hub().last_id()).await;
        let (why, note, current): (String, String, String) = browser
            .eval(
                tab,
                "[sensorDashboard.why, document.getElementById('why').innerText, \
                  document.querySelector('.connection a[aria-current]').textContent]",
            )
            .await;
        assert_eq!(why, "no SharedWorker");
        assert!(
            note.contains("no SharedWorker"),
            "the page says why this tab has its own connection: {note:?}"
        );
        assert_eq!(current, "one per tab");
    }
    for tab in tabs {
        browser.close_page(tab).await;
    }
    open_streams_become(&app, 0).await;
    browser.errors().await.assert_none(cancelled_stream);
    browser.quit().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-browser"),
    ignore = "needs Chromium and Node: cargo test --features test-browser"
)]
async fn dashboard_is_live_behind_compression() {
    let app = App::new(settings());
    let server = Server::start(&app, true).await;
    let mut browser = Browser::launch(1280, 800).await;
    // A tab with its own stream, so that the page sees the stream's response.
    let tab = browser
        .open(&format!(
            "http://{}/?connection=per-tab&record",
            server.addr
        ))
        .await;
    connected(
        &mut browser,
        tab,
        "per-tab",
        "the dashboard connects through compression",
    )
    .await;
    let before: Points = browser.eval(tab, "sensorDashboard.points()").await;

    // One reading at a time: the next only once the page has this one.
    let readings = 2 * SENSORS.len();
    for _ in 0..readings {
        app.step();
        caught_up(
            &mut browser,
            tab,
            app.hub().last_id(),
            "a reading reaches the page while the stream is open (not buffered)",
        )
        .await;
    }
    let after: Points = browser.eval(tab, "sensorDashboard.points()").await;
    for (sensor, n) in &before {
        assert_eq!(after[sensor], n + 2, "{sensor}");
    }
    assert_every_event(&mut browser, tab, app.hub().last_id()).await;

    let responses = browser.responses(tab).await;
    let encoding = |suffix: &str| {
        let response = responses
            .iter()
            .find(|r| r.url.split('?').next().unwrap().ends_with(suffix))
            .unwrap_or_else(|| panic!("no response for {suffix}: {responses:#?}"));
        response.headers.get("content-encoding").cloned()
    };
    let page = encoding("/");
    assert!(
        matches!(page.as_deref(), Some("gzip" | "br" | "zstd" | "deflate")),
        "the compression layer did not compress the page: {page:?}"
    );
    assert_eq!(encoding("/events").as_deref(), Some("identity"));
    browser.screenshot(tab, "sensors-compressed").await;
    browser.close_page(tab).await;
    browser.errors().await.assert_none(cancelled_stream);
    browser.quit().await;
    server.stop().await;
}

#[derive(Deserialize)]
struct Reading {
    sensor: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_narrow_to_topics() {
    let app = App::new(settings());
    let server = Server::start(&app, false).await;
    let mut client = support::h1_connect(server.addr).await;
    let response = client
        .send(
            support::get("/events?topic=office&topic=rooftop")
                .body(support::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), 200);
    let mut events = support::events(response);
    open_streams_become(&app, 1).await;
    for _ in 0..3 {
        app.round();
    }
    let mut seen = Vec::new();
    for _ in 0..6 {
        let event = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .expect("a reading within the hang guard")
            .expect("the stream stays open");
        assert_eq!(event.event, "sensor-update");
        let reading: Reading = serde_json::from_str(&event.data).unwrap();
        seen.push(reading.sensor);
    }
    assert_eq!(
        seen,
        [
            "office", "rooftop", "office", "rooftop", "office", "rooftop"
        ]
    );

    let mut client = support::h1_connect(server.addr).await;
    let response = client
        .send(
            support::get("/events?topic=attic")
                .body(support::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), 404);
    server.stop().await;
}
