//! A live map of simulated air traffic over Southeast Asia, streamed with tower-sse.
//!
//! ```text
//! cargo run --release --example aircraft
//! # then open http://127.0.0.1:3000/
//! curl -N http://127.0.0.1:3000/events                 # every aircraft
//! curl -N 'http://127.0.0.1:3000/events?icao24=880101' # one aircraft
//! ```
//!
//! A fleet of 320 aircraft flies great circles between 36 airports of the region (climb,
//! cruise, descent, a turnaround on the ground, then the next flight). Once a second each
//! aircraft's position is published through a [`tower_sse::Hub`] as a `position` event
//! carrying JSON, on a topic of its own; the map reads them all on one connection. A
//! browser that reconnects sends its `Last-Event-ID` and the hub replays what it missed,
//! so the map neither jumps back nor loses an update. Each topic keeps two minutes of
//! history; a browser away for longer (or one that comes back to a restarted server)
//! receives `stream-reset` instead and reloads the snapshot.
//!
//! - `GET /`: the map (Leaflet, loaded from unpkg; the coastlines come with the example,
//!   so no tile server is needed; `/?tiles=<url template>` adds a tile layer).
//! - `GET /events`: the event stream; `?icao24=<address>` follows one aircraft.
//! - `GET /snapshot`: every aircraft's latest report and the id it is current as of.
//!
//! Environment: `ADDR` (default `127.0.0.1:3000`), `AIRCRAFT` (fleet size, default 320),
//! `SPEED` (simulated seconds per real second, default 1).

mod app;

use std::net::SocketAddr;
use std::time::Duration;

use app::{App, Settings};
use tower_sse::Shutdown;

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
    let settings = Settings {
        aircraft: env_or("AIRCRAFT", 320),
        ..Settings::default()
    };
    let speed: f64 = env_or("SPEED", 1.0);

    let app = App::new(settings);
    tokio::spawn(app.clone().simulate(Duration::from_secs(1), speed));

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let example = app.icao24s().into_iter().next().unwrap_or_default();
    println!(
        "aircraft: {} aircraft over Southeast Asia",
        app.icao24s().len()
    );
    println!("  map:    http://{addr}/");
    println!("  events: http://{addr}/events  (one aircraft: /events?icao24={example})");
    println!("  Ctrl-C to stop");

    let shutdown = Shutdown::new();
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        println!("aircraft: shutting down");
    };
    app::serve(&listener, app.service(shutdown.clone()), shutdown, ctrl_c).await;
    println!(
        "aircraft: stopped after serving {} event streams",
        app.opened_streams()
    );
    Ok(())
}
