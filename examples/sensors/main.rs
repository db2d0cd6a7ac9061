//! A live dashboard of simulated temperature and humidity sensors, streamed with
//! tower-sse.
//!
//! ```text
//! cargo run --release --example sensors
//! # then open http://127.0.0.1:3000/ (and http://127.0.0.1:3000/?shared=1 in a few tabs)
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
//!   library). With `?shared=1` (the switch at the top of the page) every tab of the
//!   dashboard shares one event stream through a SharedWorker, `/sse-worker.js`: ten
//!   tabs cost one connection.
//! - `GET /events`: the event stream; `?topic=<sensor>` (repeatable) narrows it.
//! - `GET /history`: the recent readings and the event id they are current as of; a page
//!   loads it, then opens `/events?lastEventId=<that id>` and misses nothing.
//!
//! Environment: `ADDR` (default `127.0.0.1:3000`), `INTERVAL_MS` (time between two
//! readings of one sensor, default 2000).

mod app;

use std::net::SocketAddr;
use std::time::Duration;

use app::{App, Settings};
use tokio_util::sync::CancellationToken;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not valid")),
        Err(_) => default,
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = env_or("ADDR", "127.0.0.1:3000".parse().unwrap());
    let interval = Duration::from_millis(env_or("INTERVAL_MS", 2000u64).max(10));
    let app = App::new(Settings {
        interval,
        ..Settings::default()
    });
    tokio::spawn(app.clone().simulate());

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    println!(
        "sensors: {} sensors, a reading each every {interval:?}",
        app::sensor::SENSORS.len()
    );
    println!("  dashboard: http://{addr}/  (one connection for all tabs: http://{addr}/?shared=1)");
    println!("  events:    http://{addr}/events  (one sensor: /events?topic=greenhouse)");
    println!("  Ctrl-C to stop");

    let shutdown = CancellationToken::new();
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        println!("sensors: shutting down");
    };
    app::serve(listener, app.service(shutdown.clone()), shutdown, ctrl_c).await;
    println!(
        "sensors: stopped after serving {} event streams",
        app.opened_streams()
    );
    Ok(())
}
