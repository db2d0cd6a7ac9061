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
//!
//! # Several instances on one feed
//!
//! Built with the `redis` feature and given `REDIS_URL`, the hub keeps its events in
//! Redis Streams, and every instance on that Redis serves the same feed: one instance
//! simulates the fleet (`SIMULATE=1`), the others only serve it. Put them behind a load
//! balancer; a browser that reconnects to another instance resumes from its
//! `Last-Event-ID` there. Give every instance the same `AIRCRAFT`.
//!
//! ```text
//! redis-server --port 6379 --appendonly yes &
//! export REDIS_URL=redis://127.0.0.1:6379/
//! SIMULATE=1 ADDR=127.0.0.1:3000 cargo run --release --features redis --example aircraft &
//! ADDR=127.0.0.1:3001 cargo run --release --features redis --example aircraft
//! # http://127.0.0.1:3000/ and http://127.0.0.1:3001/ show the same aircraft
//! ```
//!
//! `SIMULATE` defaults to 1 without `REDIS_URL` and to 0 with it.

mod app;

use std::time::Duration;

use app::{App, Config, Simulator};
use tower_sse::Shutdown;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let config = Config::from_env().unwrap_or_else(|error| {
        eprintln!("aircraft: {error}");
        std::process::exit(2);
    });
    let hub = config.hub().unwrap_or_else(|error| {
        eprintln!("aircraft: {error}");
        std::process::exit(2);
    });

    // The app first, so that its snapshot sees the fleet's first reports.
    let app = App::new(config.settings.clone(), hub.clone());
    if config.simulate {
        let simulator = Simulator::new(&config.settings, hub);
        tokio::spawn(simulator.run(Duration::from_secs(1), config.speed));
    }

    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    let addr = listener.local_addr()?;
    let example = app.icao24s().into_iter().next().unwrap_or_default();
    println!(
        "aircraft: {} aircraft over Southeast Asia, {} {}",
        app.icao24s().len(),
        if config.simulate {
            "simulated here"
        } else {
            "served from the feed"
        },
        if config.redis_url.is_some() {
            "on Redis (REDIS_URL)"
        } else {
            "in memory"
        }
    );
    println!("  map:    http://{addr}/");
    println!("  events: http://{addr}/events  (one aircraft: /events?icao24={example})");
    println!("  Ctrl-C to stop");

    let shutdown = Shutdown::new();
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        println!("aircraft: shutting down");
    };
    app::serve(listener, app.service(shutdown.clone()), shutdown, ctrl_c).await;
    println!(
        "aircraft: stopped after serving {} event streams",
        app.opened_streams()
    );
    Ok(())
}
