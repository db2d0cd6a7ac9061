//! The aircraft example (`examples/aircraft/`) as two instances on one real Redis (a
//! `redis-server` on a free loopback port), each in its own process: this test binary
//! runs itself twice, and each child builds the app exactly as `main.rs` does, from its
//! environment (`REDIS_URL`, `SIMULATE`, `AIRCRAFT`, `ADDR`). The simulating instance
//! (`SIMULATE=1`) ticks when the test tells it to on its stdin, instead of every second,
//! and prints the id Redis acknowledged for every report it published: that is what the
//! serving instance (no `SIMULATE`) must relay.
//!
//! `a_serving_instance_relays_the_simulated_fleet`:
//! - the serving instance simulates nothing: its snapshot starts empty, and the ids of
//!   everything published form one unbroken run (no second publisher takes ids);
//! - a client of the serving instance, started as the page starts (its `/snapshot`, then
//!   `/events?lastEventId=<its lastId>`), receives every position the simulator
//!   published, in order, with the same ids and data, and nothing else in between;
//! - a page that loaded its snapshot from the simulating instance and connects its stream
//!   to the serving one with `Last-Event-ID` three rounds later receives exactly the
//!   newest report of each aircraft (the example conflates replays by aircraft, and the
//!   key travels with each event in Redis), then live ones;
//! - `/snapshot` on the serving instance equals the latest report of every aircraft, as
//!   published, and the simulating instance's own `/snapshot`.

#![cfg(feature = "redis")]

#[path = "../examples/aircraft/app.rs"]
#[allow(dead_code)]
mod app;
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Stdio};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use app::{App, Config, Simulator};
use support::redis::RedisServer;

/// Aircraft in the fleet of both instances.
const FLEET: usize = 40;
/// The hang guard of every wait; nothing here takes more than a fraction of it.
const GUARD: Duration = Duration::from_secs(30);

// ---- An instance in its own process ------------------------------------------------
//
// With `AIRCRAFT_REDIS_CHILD` set, `child_instance` is one instance of the example: it
// prints `LISTENING <addr>`, serves, and (if it simulates) reads one number of seconds
// per line of stdin, ticks by that much, and prints `PUBLISHED <id> <report>` for each
// report once Redis has stored it, then `TICKED`. It exits when its stdin closes.

#[test]
fn child_instance() {
    if std::env::var_os("AIRCRAFT_REDIS_CHILD").is_none() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = Config::from_env().unwrap();
        let hub = config.hub().unwrap();
        let app = App::new(config.settings.clone(), hub.clone());
        let listener = tokio::net::TcpListener::bind(config.addr).await.unwrap();
        println!("LISTENING {}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let service = app.service(shutdown.clone(), app::page::Page::new(None, Vec::new()));
        tokio::spawn(async move {
            app::serve(listener, service, shutdown, std::future::pending()).await;
        });

        // As `Simulator::run`: the fleet is published at once, then on every tick.
        let mut simulator = None;
        if config.simulate {
            let mut fleet = Simulator::new(&config.settings, hub);
            report(fleet.tick(0.0)).await;
            simulator = Some(fleet);
        }
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Some(line) = lines.next_line().await.unwrap() {
            let seconds: f64 = line.trim().parse().unwrap();
            let simulator = simulator.as_mut().expect("only the simulator ticks");
            report(simulator.tick(seconds)).await;
        }
    });
}

/// Prints the id Redis gave every report of a tick, in the order they were published.
async fn report(tick: Vec<app::Sent>) {
    for sent in tick {
        let id = sent.published.acknowledged().await.unwrap();
        println!("PUBLISHED {id} {}", sent.json);
    }
    println!("TICKED");
}

struct Instance {
    addr: SocketAddr,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Instance {
    /// Starts an instance on `redis_url`; `simulate` is its `SIMULATE`, if any.
    async fn spawn(redis_url: &str, simulate: Option<&str>) -> Self {
        let mut command = support::self_command("child_instance");
        command
            .env("AIRCRAFT_REDIS_CHILD", "1")
            .env("REDIS_URL", redis_url)
            .env("AIRCRAFT", FLEET.to_string())
            .env("ADDR", "127.0.0.1:0")
            .env_remove("SIMULATE")
            .env_remove("SPEED")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(simulate) = simulate {
            command.env("SIMULATE", simulate);
        }
        let mut child = command.spawn().unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, mut lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let addr = loop {
            let line = timeout(GUARD, lines.recv())
                .await
                .expect("the instance starts within the hang guard")
                .expect("the instance prints its address");
            // The harness prints `test child_instance ... ` on the same line.
            if let Some((_, addr)) = line.split_once("LISTENING ") {
                break addr.trim().parse().unwrap();
            }
        };
        Instance {
            addr,
            child,
            stdin,
            lines,
        }
    }

    /// Has the simulator tick by `seconds`; returns `(id, report)` of every report it
    /// published, in the order it published them.
    async fn tick(&mut self, seconds: f64) -> Vec<(u64, String)> {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{seconds}").unwrap();
        stdin.flush().unwrap();
        self.published().await
    }

    /// The reports of the simulator's next tick, as `(id, report)`.
    async fn published(&mut self) -> Vec<(u64, String)> {
        let mut published = Vec::new();
        loop {
            let line = timeout(GUARD, self.lines.recv())
                .await
                .expect("the tick ends within the hang guard")
                .expect("the instance is running");
            if line.ends_with("TICKED") {
                return published;
            }
            if let Some(rest) = line.strip_prefix("PUBLISHED ") {
                let (id, report) = rest.split_once(' ').unwrap();
                published.push((id.parse().unwrap(), report.to_owned()));
            }
        }
    }

    /// `GET /snapshot`.
    async fn snapshot(&self) -> Value {
        let mut client = support::h1_connect(self.addr).await;
        let response = client
            .send(
                http::Request::get("/snapshot")
                    .body(support::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(response.status(), 200);
        let body = timeout(GUARD, response.into_body().collect())
            .await
            .expect("the whole snapshot within the hang guard")
            .unwrap()
            .to_bytes();
        serde_json::from_slice(&body).unwrap()
    }

    /// `GET /snapshot` once it is current as of `id`.
    async fn snapshot_at(&self, id: u64) -> Value {
        let waited = timeout(GUARD, async {
            loop {
                let snapshot = self.snapshot().await;
                if snapshot["lastId"].as_u64().unwrap() >= id {
                    return snapshot;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let snapshot = waited.expect("the snapshot catches up within the hang guard");
        assert_eq!(
            snapshot["lastId"], id,
            "no event after the last one published"
        );
        snapshot
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET uri` on `addr` as an `EventSource`, with `Last-Event-ID` if given.
async fn connect(
    addr: SocketAddr,
    uri: &str,
    last_event_id: Option<u64>,
) -> impl Stream<Item = eventsource_stream::Event> + Unpin + use<> {
    let mut request = support::get(uri);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    let response = support::h1_connect(addr)
        .await
        .send(request.body(support::empty()).unwrap())
        .await;
    assert_eq!(response.status(), 200);
    support::events(response)
}

/// Reads one event for each of `expected`, and fails unless each is the `position`
/// event with that id and data.
async fn receive_exactly(
    stream: &mut (impl Stream<Item = eventsource_stream::Event> + Unpin),
    expected: &[(u64, String)],
    what: &str,
) {
    for (n, (id, report)) in expected.iter().enumerate() {
        let event = timeout(GUARD, stream.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: event {n} of {} never came", expected.len()))
            .expect("the stream stays open");
        assert_eq!(
            (event.event.as_str(), event.id.as_str(), event.data.as_str()),
            ("position", id.to_string().as_str(), report.as_str()),
            "{what}: event {n} of {}",
            expected.len()
        );
    }
}

/// A snapshot as `icao24 -> (id, report)`.
fn by_aircraft(snapshot: &Value) -> BTreeMap<String, (u64, Value)> {
    snapshot["aircraft"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let icao24 = entry["data"]["icao24"].as_str().unwrap().to_owned();
            (
                icao24,
                (entry["id"].as_u64().unwrap(), entry["data"].clone()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_instance_relays_the_simulated_fleet() {
    let redis = RedisServer::start();
    let serving = Instance::spawn(&redis.url(), None).await;

    // The serving instance does not simulate: nothing to show yet. A page starts as
    // app.js does: the snapshot, then the stream after the snapshot's id.
    let start = serving.snapshot().await;
    assert_eq!(start["aircraft"], Value::Array(Vec::new()), "{start}");
    let start_id = start["lastId"].as_u64().unwrap();
    let mut page = connect(
        serving.addr,
        &format!("/events?lastEventId={start_id}"),
        None,
    )
    .await;

    let mut simulating = Instance::spawn(&redis.url(), Some("1")).await;
    // It publishes the fleet as it starts, then on every tick.
    let mut published = simulating.published().await;
    for _ in 0..4 {
        published.extend(simulating.tick(30.0).await);
    }
    assert_eq!(
        published.len(),
        5 * FLEET,
        "one report per aircraft per tick"
    );
    // Only the simulator takes ids from the shared counter: one unbroken run, after the
    // serving instance's empty snapshot (from the start of the log's epoch: the first id
    // is not 1).
    assert!(published[0].0 > start_id);
    for pair in published.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1, "ids of the simulator");
    }

    // The serving instance's client gets every position, in order; and nothing else in
    // between, since the next event it gets is the first of the next tick.
    receive_exactly(&mut page, &published, "the serving instance's client").await;
    let next = simulating.tick(30.0).await;
    receive_exactly(&mut page, &next[..1], "after the last one").await;
    published.extend(next);

    // A page that loaded its snapshot from the simulating instance, and whose stream
    // lands on the serving one (a load balancer, a reconnect), resumes exactly there:
    // three rounds later, it receives the newest report of each aircraft (the third
    // round, read from the Redis streams in short), then live ones.
    let loaded = simulating.snapshot_at(published.last().unwrap().0).await;
    let loaded_id = loaded["lastId"].as_u64().unwrap();
    let mut last_round = Vec::new();
    for _ in 0..3 {
        last_round = simulating.tick(30.0).await;
        published.extend(last_round.iter().cloned());
    }
    let missed = published.iter().filter(|(id, _)| *id > loaded_id).count();
    assert_eq!(missed, 3 * FLEET);
    // Once the serving instance has read the last round from Redis (its first client
    // has it), a resume there finds it; before that, it would catch up with the round
    // before and then get the last one live.
    let newest = last_round.last().unwrap().0.to_string();
    timeout(GUARD, async {
        while let Some(event) = page.next().await {
            if event.id == newest {
                return;
            }
        }
        panic!("the serving instance's first client lost its stream");
    })
    .await
    .expect("the serving instance's first client receives the last round");
    let mut resumed = connect(serving.addr, "/events", Some(loaded_id)).await;
    receive_exactly(
        &mut resumed,
        &last_round,
        "the page resumed on the other instance: the newest report of each aircraft",
    )
    .await;
    let live = simulating.tick(30.0).await;
    receive_exactly(&mut resumed, &live[..1], "then live").await;
    published.extend(live);

    // `/snapshot` on the serving instance: every aircraft's latest report as published,
    // the same as on the simulating instance.
    let newest = published.last().unwrap().0;
    let mut latest: BTreeMap<String, (u64, Value)> = BTreeMap::new();
    for (id, report) in &published {
        let report: Value = serde_json::from_str(report).unwrap();
        let icao24 = report["icao24"].as_str().unwrap().to_owned();
        latest.insert(icao24, (*id, report));
    }
    assert_eq!(latest.len(), FLEET);
    let served = serving.snapshot_at(newest).await;
    let held = by_aircraft(&served);
    let wrong: Vec<&String> = latest
        .iter()
        .filter(|(icao24, report)| held.get(*icao24) != Some(report))
        .map(|(icao24, _)| icao24)
        .collect();
    assert!(
        wrong.is_empty() && held.len() == FLEET,
        "the serving instance's snapshot holds {} aircraft, {} not as last published: {wrong:?}",
        held.len(),
        wrong.len()
    );
    let simulated = simulating.snapshot_at(newest).await;
    assert_eq!(served, simulated, "both instances show the same snapshot");
}
