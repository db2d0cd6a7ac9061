//! The sensors example (`examples/sensors/`) in a real browser: Debian's Chromium,
//! driven by playwright-core through `tests/browser/driver.mjs`, against the example's
//! own app served in this process on loopback. The test publishes each reading itself
//! (`App::step`), so it waits for what the pages show, never for real seconds.
//!
//! - `charts_gain_points_and_tabs_share_one_connection`: a dashboard tab gets every
//!   reading (its event ids follow the history's, each the previous plus one) and every
//!   chart draws the new points. Three tabs in shared mode (`?shared=1`) then make
//!   exactly one event stream to the server, counted server-side, while each of them
//!   gets every reading; when a tab leaves the others see it, and when the last leaves
//!   the stream closes. Two tabs without the option make two streams, so the count
//!   does tell them apart. No page logs an error.
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

const SHOW: &str = "({ status: sensorDashboard.status, histories: sensorDashboard.histories, \
    readings: sensorDashboard.readings, last: sensorDashboard.ids.at(-1), \
    tabs: sensorDashboard.tabs, points: sensorDashboard.points() })";

/// Waits until `page` is connected and has drawn its history.
async fn connected(browser: &mut Browser, page: usize, what: &str) {
    browser
        .expect(
            page,
            "window.sensorDashboard && sensorDashboard.histories >= 1 && \
             sensorDashboard.status === 'live'",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charts_gain_points_and_tabs_share_one_connection() {
    let app = App::new(settings());
    let server = Server::start(&app, false).await;
    let url = format!("http://{}/", server.addr);
    let mut browser = Browser::launch(1280, 800).await;

    // One tab, its own connection: every chart gains a point per reading.
    let tab = browser.open(&format!("{url}?record")).await;
    connected(&mut browser, tab, "the dashboard connects").await;
    open_streams_become(&app, 1).await;
    let before: Points = browser.eval(tab, "sensorDashboard.points()").await;
    assert_eq!(
        before.len(),
        SENSORS.len(),
        "a chart per sensor: {before:?}"
    );
    for _ in 0..5 {
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
    for (sensor, n) in &before {
        assert_eq!(after[sensor], n + 5, "{sensor}: {before:?} -> {after:?}");
    }
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
    let direct_ids = assert_every_event(&mut browser, tab, app.hub().last_id()).await;
    browser.close_page(tab).await;
    open_streams_become(&app, 0).await;

    // Three tabs sharing one connection through the SharedWorker.
    let opened_before = app.opened_streams();
    let mut shared = Vec::new();
    for _ in 0..3 {
        let tab = browser.open(&format!("{url}?shared=1&record")).await;
        connected(&mut browser, tab, "a shared tab connects").await;
        shared.push(tab);
    }
    open_streams_become(&app, 1).await;
    assert_eq!(
        app.opened_streams() - opened_before,
        1,
        "three shared tabs must make exactly one event stream"
    );
    for &tab in &shared {
        browser
            .expect(
                tab,
                "sensorDashboard.tabs === 3",
                "each tab knows three share",
                SHOW,
            )
            .await;
    }
    for _ in 0..5 {
        app.round();
    }
    let last = app.hub().last_id();
    let mut shared_ids = 0;
    for &tab in &shared {
        caught_up(
            &mut browser,
            tab,
            last,
            "every shared tab gets every reading",
        )
        .await;
        shared_ids += assert_every_event(&mut browser, tab, last).await;
    }
    assert_eq!(
        (app.opened_streams() - opened_before, app.open_streams()),
        (1, 1),
        "three shared tabs must make exactly one event stream (opened, open)"
    );
    let latest: Vec<serde_json::Value> = {
        let mut all = Vec::new();
        for &tab in &shared {
            all.push(browser.eval(tab, "sensorDashboard.latest()").await);
        }
        all
    };
    assert!(
        latest.windows(2).all(|w| w[0] == w[1]),
        "the tabs show the same readings: {latest:#?}"
    );
    let screenshot = browser.screenshot(shared[2], "sensors").await;

    // A tab that leaves says so; with the last one, the connection closes.
    browser.close_page(shared[0]).await;
    browser
        .expect(
            shared[1],
            "sensorDashboard.tabs === 2",
            "the others see the tab leave",
            SHOW,
        )
        .await;
    app.round();
    caught_up(&mut browser, shared[1], app.hub().last_id(), "still live").await;
    browser.close_page(shared[1]).await;
    browser.close_page(shared[2]).await;
    open_streams_become(&app, 0).await;
    assert_eq!(app.opened_streams() - opened_before, 1);

    // Without the option, each tab has its own stream: the count tells them apart.
    let opened_before = app.opened_streams();
    let one = browser.open(&url).await;
    let two = browser.open(&url).await;
    connected(&mut browser, one, "a direct tab connects").await;
    connected(&mut browser, two, "a direct tab connects").await;
    open_streams_become(&app, 2).await;
    assert_eq!(app.opened_streams() - opened_before, 2);
    browser.close_page(one).await;
    browser.close_page(two).await;

    browser.errors().await.assert_none(|failed| {
        failed.url.contains("/events?") && failed.error.as_deref() == Some("net::ERR_ABORTED")
    });
    browser.quit().await;
    server.stop().await;
    eprintln!(
        "sensors: direct tab {direct_ids} ids, 3 shared tabs {shared_ids} ids on 1 stream; \
         screenshot {}",
        screenshot.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_is_live_behind_compression() {
    let app = App::new(settings());
    let server = Server::start(&app, true).await;
    let mut browser = Browser::launch(1280, 800).await;
    let tab = browser
        .open(&format!("http://{}/?record", server.addr))
        .await;
    connected(
        &mut browser,
        tab,
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
    browser.errors().await.assert_none(|failed| {
        failed.url.contains("/events?") && failed.error.as_deref() == Some("net::ERR_ABORTED")
    });
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
