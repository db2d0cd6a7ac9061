//! A live dashboard of simulated temperature and humidity sensors, streamed with
//! tower-sse.
//!
//! ```text
//! cargo run --release -p tower-sse-examples --example sensors
//! # then open http://127.0.0.1:3000/ (in as many tabs as you like)
//! curl -N http://127.0.0.1:3000/events                    # every sensor
//! curl -N 'http://127.0.0.1:3000/events?topic=greenhouse'  # one sensor
//! ```
//!
//! Six sensors drift realistically (a daily cycle, slow random drift, noise; humidity
//! falls as the air warms). Each publishes a `sensor-update` event carrying JSON every
//! `INTERVAL_MS` through a [`tower_sse::Hub`], on a topic of its own, and one connection
//! carries them all (or, with `?topic=`, the sensors named).
//!
//! - `GET /`: the dashboard, a live line chart per sensor (drawn on a canvas, no chart
//!   library), from the moment the server started. Every tab of the dashboard shares
//!   one event stream through a SharedWorker, `/sse-worker.js`: ten tabs cost one
//!   connection. Over HTTP/1.1 a browser opens at most six connections to one server for
//!   all its tabs, and each open `EventSource` holds one, so with a stream per tab the
//!   seventh tab would never load. A browser without SharedWorker, or a tab opened with
//!   `?connection=per-tab` (the "one per tab" link at the top), has its own.
//! - `GET /events`: the event stream; `?topic=<sensor>` (repeatable) narrows it.
//! - `GET /history`: the recent readings and the event id they are current as of; a page
//!   loads it, then opens `/events?lastEventId=<that id>` and misses nothing.
//!
//! Environment (a value that cannot be used ends the example with one line saying why,
//! and status 2):
//!
//! - `ADDR`: where to listen, `host:port` (default `127.0.0.1:3000`; `localhost:3000`
//!   works, port 0 picks a free port).
//! - `INTERVAL_MS`: milliseconds between two readings of one sensor, from 10 to
//!   3,600,000 (default 2000).
//! - `RUST_LOG`: what to log on stderr (default `info`).

mod app;
#[path = "../common/mod.rs"]
mod common;

use std::time::Duration;

use app::{App, Settings};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    common::init_tracing();
    let addr = common::or_exit(common::addr());
    let interval_ms = common::or_exit(common::number("INTERVAL_MS", 2000u64, 10, 3_600_000));
    let interval = Duration::from_millis(interval_ms);
    let app = App::new(Settings {
        interval,
        ..Settings::default()
    });
    tokio::spawn(app.clone().simulate());

    let listener = common::bind(&addr).await;
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    tracing::info!("listening on http://{addr}/");
    tracing::info!(
        "{} sensors, a reading each every {interval:?}",
        app::sensor::SENSORS.len()
    );
    tracing::info!("dashboard: http://{addr}/  (its tabs share one connection)");
    tracing::info!("events:    http://{addr}/events  (one sensor: /events?topic=greenhouse)");
    tracing::info!("Ctrl-C to stop");

    let shutdown = CancellationToken::new();
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    };
    app::serve(listener, app.service(shutdown.clone()), shutdown, ctrl_c).await;
    tracing::info!(
        "stopped after serving {} event streams",
        app.opened_streams()
    );
}
