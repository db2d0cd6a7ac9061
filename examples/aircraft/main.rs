//! A live map of simulated air traffic over Southeast Asia, streamed with tower-sse.
//!
//! ```text
//! cargo run --release -p tower-sse-examples --example aircraft
//! # then open http://127.0.0.1:3000/
//! curl -N http://127.0.0.1:3000/events                 # every aircraft
//! curl -N 'http://127.0.0.1:3000/events?icao24=880101' # one aircraft
//! ```
//!
//! A fleet of 320 aircraft flies great circles between 36 airports of the region (climb,
//! cruise, descent, a turnaround on the ground, then the next flight), a simulated minute
//! each real second by default (`SPEED`), so that the aircraft visibly move. Once a
//! second each aircraft's position is published through a [`tower_sse::Hub`] as a
//! `position` event carrying JSON, on a topic of its own, the fleet in 20 parts spread
//! over the second (320 events a second, arriving steadily); the map reads them all on
//! one connection. A report is keyed by its aircraft, and the hub conflates: a browser
//! that reconnects sends its `Last-Event-ID` and receives the newest report of each
//! aircraft it missed (320 events after a minute away, not 19,200), and a browser too
//! slow for the feed (a stalled tab, a poor link) receives the same once it is more than
//! five seconds behind, so the map shows every aircraft where it is now and never
//! jumps back. A browser that comes back to a restarted server (or, on Redis, after more
//! than the two minutes of history each topic keeps there) receives `stream-reset`
//! instead and reloads the snapshot.
//!
//! - `GET /`: the map. The coastlines come with the example, so no tile server is
//!   needed (`/?tiles=<url template>` adds a tile layer), and the page loads nothing from
//!   the internet: Leaflet is served under `/leaflet/` from a local copy (see below).
//! - `GET /events`: the event stream; `?icao24=<address>` follows one aircraft.
//! - `GET /snapshot`: every aircraft's latest report and the id it is current as of.
//! - `GET /metrics`: the server's metrics in Prometheus text (`metrics-exporter-prometheus`
//!   installed as the recorder); the library's own (open streams, events and bytes
//!   written, ends, refusals, the hub's numbers) when built with the `metrics` feature
//!   (`cargo run --release -p tower-sse-examples --features metrics --example aircraft`).
//!   The map shows three of them in a small box in its upper right corner.
//!
//! Environment (a value that cannot be used ends the example with one line saying why,
//! and status 2):
//!
//! - `ADDR`: where to listen, `host:port` (default `127.0.0.1:3000`; `localhost:3000`
//!   works, port 0 picks a free port).
//! - `AIRCRAFT`: the fleet's size, from 1 to 100,000 (default 320).
//! - `SPEED`: simulated seconds per real second, from 0 to 10,000 (default 60: a minute
//!   each second; 1 is real time, where an airliner takes about ten seconds to cross a
//!   pixel of the whole map). The page says it.
//! - `LEAFLET_DIR`: where Leaflet is (see below).
//! - `REDIS_URL`, `SIMULATE`: several instances on one feed (see below).
//! - `RUST_LOG`: what to log on stderr (default `info`): the start-up (the address, where
//!   the feed comes from, which Redis), and the hub's warnings, such as a Redis it cannot
//!   reach.
//!
//! # Leaflet, offline
//!
//! The map uses [Leaflet](https://leafletjs.com) from a local copy, found at start-up
//! (the log says which one):
//!
//! 1. `LEAFLET_DIR`, when set: a directory with `leaflet.js`, `leaflet.css` and
//!    `images/`. Nothing else is tried then; a directory without Leaflet gives the
//!    simple map below.
//! 2. `/usr/share/javascript/leaflet`: Debian's and Ubuntu's `libjs-leaflet`
//!    (`apt install libjs-leaflet`).
//! 3. The npm package (`npm install leaflet`): `node_modules/leaflet/dist` in the
//!    current directory or in the crate's, or `tests/browser/node_modules/leaflet/dist`
//!    (which `tests/run.sh` installs).
//!
//! Without any, the page says so on the map and draws a simple map of its own on a
//! canvas: the same coastlines, airports and aircraft, the same counters, following
//! (`?icao24=`) and resuming; drag to pan, the wheel zooms, a click on an aircraft shows
//! its report.
//!
//! # Several instances on one feed
//!
//! Built with the `redis` feature and given `REDIS_URL`, the hub keeps its events in
//! Redis Streams, and every instance on that Redis serves the same feed: one instance
//! simulates the fleet (`SIMULATE=1`), the others only serve it. Put them behind a load
//! balancer; a browser that reconnects to another instance resumes from its
//! `Last-Event-ID` there. Give every instance the same `AIRCRAFT` (and `SPEED`, which
//! the page of each instance states).
//!
//! ```text
//! redis-server --port 6379 --appendonly yes &
//! export REDIS_URL=redis://127.0.0.1:6379/
//! SIMULATE=1 ADDR=127.0.0.1:3000 cargo run --release -p tower-sse-examples --features redis --example aircraft &
//! ADDR=127.0.0.1:3001 cargo run --release -p tower-sse-examples --features redis --example aircraft
//! # http://127.0.0.1:3000/ and http://127.0.0.1:3001/ show the same aircraft
//! ```
//!
//! `SIMULATE` defaults to 1 without `REDIS_URL` and to 0 with it. The log names the
//! Redis an instance uses (without its password); an instance that serves the feed and
//! has received no report 10 seconds after its start says so once, and again when the
//! first report arrives.

mod app;

use std::time::Duration;

use app::common;
use app::page::Page;
use app::{App, Config, Simulator};
use tokio_util::sync::CancellationToken;

/// How long a serving instance waits for the feed's first report before it warns.
const FEED_PATIENCE: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() {
    common::init_tracing();
    app::prometheus::install();
    let config = common::or_exit(Config::from_env());
    let hub = common::or_exit(config.hub());

    let page = Page::locate(std::env::var_os("LEAFLET_DIR").as_deref());

    // The app first, so that its snapshot sees the fleet's first reports.
    let app = App::new(config.settings.clone(), hub.clone());
    if config.simulate {
        let simulator = Simulator::new(&config.settings, hub);
        tokio::spawn(simulator.run(Duration::from_secs(1), config.settings.speed));
    }

    let listener = common::bind(&config.listen).await;
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let aircraft = app.icao24s().len();
    let redis = config.redis_url.as_deref().map(without_password);
    tracing::info!("listening on http://{addr}/");
    match (&redis, config.simulate) {
        (None, _) => tracing::info!(
            "{aircraft} aircraft over Southeast Asia, simulated here, on a hub in memory"
        ),
        (Some(url), true) => tracing::info!(
            "{aircraft} aircraft over Southeast Asia, simulated here (SIMULATE=1) and \
             published to the feed on Redis at {url} (REDIS_URL)"
        ),
        (Some(url), false) => tracing::info!(
            "{aircraft} aircraft over Southeast Asia, served from the feed on Redis at {url} \
             (REDIS_URL), which an instance with SIMULATE=1 publishes"
        ),
    }
    tracing::info!("map:    http://{addr}/ with {}", page.describe());
    tracing::info!(
        "events: http://{addr}/events  (one aircraft: /events?icao24={})",
        app.icao24s().into_iter().next().unwrap_or_default()
    );
    tracing::info!("Ctrl-C to stop");
    if let (Some(url), false) = (redis, config.simulate) {
        tokio::spawn(watch_the_feed(app.clone(), url));
    }

    let shutdown = CancellationToken::new();
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    };
    app::serve(
        listener,
        app.service(shutdown.clone(), page),
        shutdown,
        ctrl_c,
    )
    .await;
    tracing::info!(
        "stopped after serving {} event streams",
        app.opened_streams()
    );
}

/// On an instance that only serves: says so when no report has arrived from the feed
/// `FEED_PATIENCE` after the start (Redis unreachable, or no instance simulating), and
/// again once one does. An empty map is then explained in the log.
async fn watch_the_feed(app: App, redis: String) {
    let first = app.snapshot_id() + 1;
    if tokio::time::timeout(FEED_PATIENCE, app.snapshot_reaches(first))
        .await
        .is_ok()
    {
        return;
    }
    tracing::warn!(
        "no aircraft report from the feed on Redis at {redis} in {} s: the map stays empty \
         until Redis is reachable (the hub's warnings say if it is not) and an instance \
         with SIMULATE=1 publishes",
        FEED_PATIENCE.as_secs()
    );
    app.snapshot_reaches(first).await;
    tracing::info!("the first aircraft reports arrived from Redis at {redis}");
}

/// `url` with the password of its user part, if any, replaced by `***`, for the log.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((user, host)) => {
            let user = match user.split_once(':') {
                Some((name, _password)) => format!("{name}:***"),
                None => user.to_owned(),
            };
            format!("{scheme}://{user}@{host}{}", &rest[authority_end..])
        }
        None => url.to_owned(),
    }
}
