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
//! - `GET /`: the map. The coastlines come with the example, so no tile server is
//!   needed (`/?tiles=<url template>` adds a tile layer), and the page loads nothing from
//!   the internet: Leaflet is served under `/leaflet/` from a local copy (see below).
//! - `GET /events`: the event stream; `?icao24=<address>` follows one aircraft.
//! - `GET /snapshot`: every aircraft's latest report and the id it is current as of.
//!
//! Environment: `ADDR` (default `127.0.0.1:3000`), `AIRCRAFT` (fleet size, default 320),
//! `SPEED` (simulated seconds per real second, default 1), `LEAFLET_DIR` (see below).
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

use app::page::Page;
use app::{App, Config, Simulator};
use tokio_util::sync::CancellationToken;

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

    let page = Page::locate(std::env::var_os("LEAFLET_DIR").as_deref());

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
    println!("          with {}", page.describe());
    println!("  events: http://{addr}/events  (one aircraft: /events?icao24={example})");
    println!("  Ctrl-C to stop");

    let shutdown = CancellationToken::new();
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        println!("aircraft: shutting down");
    };
    app::serve(
        listener,
        app.service(shutdown.clone(), page),
        shutdown,
        ctrl_c,
    )
    .await;
    println!(
        "aircraft: stopped after serving {} event streams",
        app.opened_streams()
    );
    Ok(())
}
