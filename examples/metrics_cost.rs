//! What the `metrics` feature costs, measured side by side: the same program built
//! without the feature and with it (recording into `metrics-exporter-prometheus`, as
//! an application installs it), run in alternation on the same machine.
//!
//! ```text
//! cargo build --release -p tower-sse-examples --example metrics_cost
//! cp target/release/examples/metrics_cost /tmp/metrics-off
//! cargo build --release -p tower-sse-examples --example metrics_cost --features metrics
//! cp target/release/examples/metrics_cost /tmp/metrics-on
//! /tmp/metrics-on compare /tmp/metrics-off /tmp/metrics-on --rounds 7
//! ```
//!
//! `benches/metrics-cost.sh` does these steps and writes the result to
//! `benches/results/metrics-cost.md`.
//!
//! - `burst`: one client reads 20,000,000 ready events from one stream (the layer
//!   coalesces them into 64 KiB writes), in this process; the rate in events per
//!   second (wall clock), and the process's CPU time per event.
//! - `fanout`: 5,000 subscribers of one hub topic, over HTTP/1.1 from a separate
//!   process (this program as `clients`); 300 events published at 20 per second; the
//!   server's CPU time (every thread of its process, from `/proc/self/task/*/schedstat`)
//!   per event delivered to one subscriber, from the first publish until the clients
//!   have every event.
//! - `writes`: the layer's path for one write alone, in this process without a
//!   connection: a stream of 2,000,000 ready events written one per frame
//!   (`max_frame_size(1)`, the most writes per event there can be), polled in a loop;
//!   CPU time per write. And `publish`: 2,000,000 publishes to a hub topic nobody
//!   reads; CPU time per publish. The two paths a per-event metric would weigh on most.
//! - `compare OFF ON`: runs `burst`, `fanout` and `writes` of both binaries in alternation (which
//!   goes first alternates too) for `--rounds` rounds, and prints each round, the
//!   medians, their ratio, and the load average before and after.
//!
//! Options: `--burst-events N`, `--events N` (fan-out), `--subscribers N`, `--rate N`,
//! `--writes N`, `--rounds N`
//! (given to `compare`, every one but `--rounds` goes to each run).

use std::convert::Infallible;
use std::future::IntoFuture;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tower::{Layer, service_fn};
use tower_sse::{Event, Hub, Sse, SseLayer};

/// A report like the aircraft example's: about 150 bytes.
const DATA: &str = r#"{"icao24":"880101","callsign":"THA661","lat":13.6811,"lon":100.7472,"alt":35000,"track":271.4,"speed":472,"vrate":0,"from":"BKK","to":"HKG"}"#;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let option = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().expect("a number"))
    };
    match args.get(1).map(String::as_str) {
        Some("burst") => {
            let (rate, cpu) = runtime().block_on(burst(option("--burst-events", 20_000_000)));
            println!("RESULT burst {rate:.0}");
            println!("RESULT burst-cpu {cpu:.1}");
        }
        Some("fanout") => {
            let subscribers = option("--subscribers", 5_000);
            let events = option("--events", 300);
            let rate = option("--rate", 20);
            let ns = runtime().block_on(fanout(subscribers, events, rate));
            println!("RESULT fanout {ns:.0}");
        }
        Some("writes") => {
            let (write, publish) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(writes(option("--writes", 2_000_000)));
            println!("RESULT writes {write:.1}");
            println!("RESULT publish {publish:.1}");
        }
        Some("clients") => {
            let addr: SocketAddr = args[2].parse().expect("an address");
            let n: u64 = args[3].parse().expect("a number of clients");
            let expected: u64 = args[4].parse().expect("a number of events");
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(clients(addr, n, expected));
        }
        Some("compare") => compare(&args[2], &args[3], option("--rounds", 5), &args[4..]),
        _ => {
            eprintln!(
                "usage: metrics_cost burst|fanout|compare OFF ON [--rounds N] [--burst-events N] [--events N] [--subscribers N] [--rate N]"
            );
            std::process::exit(2);
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Installs `metrics-exporter-prometheus` when the library records (feature `metrics`).
fn recorder() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    if !cfg!(feature = "metrics") {
        return None;
    }
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder");
    #[cfg(feature = "metrics")]
    tower_sse::metrics::describe();
    Some(handle)
}

/// Says on stderr what the recorder holds, to show that it recorded.
fn show(handle: Option<metrics_exporter_prometheus::PrometheusHandle>) {
    if let Some(handle) = handle {
        let text = handle.render();
        for line in text.lines().filter(|l| {
            l.starts_with("tower_sse_stream_events_total")
                || l.starts_with("tower_sse_hub_published_total")
        }) {
            eprintln!("recorded: {line}");
        }
    }
}

async fn listen<S, B>(service: S) -> SocketAddr
where
    S: tower::Service<Request<Incoming>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tower_sse::serve(listener, service)
            .max_connections(50_000)
            .into_future(),
    );
    addr
}

/// Events per second one client reads from a stream of `events` ready events, and the
/// CPU time (server and client, one process) per event in nanoseconds.
async fn burst(events: u64) -> (f64, f64) {
    let handle = recorder();
    let event = Event::builder()
        .event("position")
        .data(DATA)
        .build()
        .unwrap();
    let service = SseLayer::new().no_heartbeat().layer(service_fn(move |_| {
        let events = stream::iter(std::iter::repeat_n(event.clone(), events as usize));
        async move { Ok::<_, Infallible>(Sse::new(events).into_response()) }
    }));
    let addr = listen(service).await;
    let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(socket))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::get("/")
        .header("accept", "text/event-stream")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let started = Instant::now();
    let cpu = cpu_ns();
    let mut body = sender.send_request(request).await.unwrap().into_body();
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            bytes += data.len() as u64;
        }
    }
    let elapsed = started.elapsed();
    let cpu = cpu_ns() - cpu;
    let expected = events
        * (Event::builder()
            .event("position")
            .data(DATA)
            .build()
            .unwrap()
            .as_bytes()
            .len() as u64);
    assert_eq!(bytes, expected, "the client read every event");
    show(handle);
    (
        events as f64 / elapsed.as_secs_f64(),
        cpu as f64 / events as f64,
    )
}

/// CPU nanoseconds per write of the layer (one event per frame, no connection), and
/// per publish to a topic nobody reads.
async fn writes(n: u64) -> (f64, f64) {
    let handle = recorder();
    let event = Event::builder()
        .event("position")
        .data(DATA)
        .build()
        .unwrap();
    let mut service = SseLayer::new()
        .no_heartbeat()
        .max_frame_size(1)
        .layer(service_fn(move |_: Request<()>| {
            let events = stream::iter(std::iter::repeat_n(event.clone(), n as usize));
            async move { Ok::<_, Infallible>(Sse::new(events).into_response()) }
        }));
    let request = Request::get("/")
        .header("accept", "text/event-stream")
        .body(())
        .unwrap();
    let response = tower::Service::call(&mut service, request).await.unwrap();
    let mut body = response.into_body();
    let cpu = cpu_ns();
    let mut frames = 0u64;
    while let Some(frame) = body.frame().await {
        if frame.unwrap().is_data() {
            frames += 1;
        }
    }
    let write = (cpu_ns() - cpu) as f64 / frames as f64;
    assert_eq!(frames, n, "one frame per event");
    drop(body);

    let hub = Hub::new();
    let event = Event::builder()
        .event("position")
        .data(DATA)
        .build()
        .unwrap();
    let cpu = cpu_ns();
    for _ in 0..n {
        hub.publish("t", event.clone()).unwrap();
    }
    let publish = (cpu_ns() - cpu) as f64 / n as f64;
    show(handle);
    (write, publish)
}

/// The CPU time of every thread of this process so far, in nanoseconds.
fn cpu_ns() -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) {
            total += stat
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

/// Server CPU nanoseconds per event delivered to one subscriber.
async fn fanout(subscribers: u64, events: u64, rate: u64) -> f64 {
    let handle = recorder();
    let hub = Hub::new();
    let service = SseLayer::new().no_heartbeat().layer(hub.clone());
    let addr = listen(service).await;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "clients",
            &addr.to_string(),
            &subscribers.to_string(),
            &events.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Every subscriber is in before the first event.
    while hub.stats("t").map_or(0, |s| s.subscribers) < subscribers as usize {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let event = Event::builder()
        .event("position")
        .data(DATA)
        .build()
        .unwrap();
    let done = tokio::task::spawn_blocking(move || {
        lines.find(|line| line.as_ref().is_ok_and(|l| l == "DONE"))
    });
    let before = cpu_ns();
    let mut every = tokio::time::interval(Duration::from_secs(1) / rate as u32);
    for _ in 0..events {
        every.tick().await;
        hub.publish("t", event.clone()).unwrap();
    }
    done.await
        .unwrap()
        .expect("the clients read every event")
        .unwrap();
    let cpu = cpu_ns() - before;
    let _ = child.kill();
    let _ = child.wait();
    show(handle);
    cpu as f64 / (events * subscribers) as f64
}

/// `n` subscribers of topic `t` on `addr`; prints `DONE` once each has `expected`
/// events.
async fn clients(addr: SocketAddr, n: u64, expected: u64) {
    let received = Arc::new(AtomicU64::new(0));
    let all = Arc::new(tokio::sync::Notify::new());
    for _ in 0..n {
        let received = received.clone();
        let all = all.clone();
        tokio::spawn(async move {
            let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(socket))
                .await
                .unwrap();
            tokio::spawn(conn);
            let request = Request::get("/?topic=t")
                .header("accept", "text/event-stream")
                .body(Empty::<Bytes>::new())
                .unwrap();
            let mut body = sender.send_request(request).await.unwrap().into_body();
            let mut newline = false;
            let mut mine = 0;
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame.unwrap().into_data() else {
                    continue;
                };
                // Events end with a blank line, which may straddle two frames.
                let mut count = memchr::memmem::find_iter(&data, b"\n\n").count() as u64;
                if newline && data.first() == Some(&b'\n') {
                    count += 1;
                }
                newline = data.last() == Some(&b'\n');
                mine += count;
                if received.fetch_add(count, Ordering::Relaxed) + count == n * expected {
                    all.notify_one();
                }
                if mine >= expected {
                    break;
                }
            }
            // Held open until the process ends.
            std::future::pending::<()>().await;
        });
    }
    all.notified().await;
    println!("DONE");
    std::io::stdout().flush().unwrap();
    std::future::pending::<()>().await;
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `binary what`, and gives its results: `RESULT <measure> <value>` lines.
fn run(binary: &str, what: &str, extra: &[String]) -> Vec<(String, f64)> {
    let output = Command::new(binary)
        .arg(what)
        .args(extra)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let results: Vec<(String, f64)> = stdout
        .lines()
        .filter_map(|line| {
            let (measure, value) = line.strip_prefix("RESULT ")?.split_once(' ')?;
            Some((measure.to_owned(), value.parse().ok()?))
        })
        .collect();
    assert!(
        !results.is_empty(),
        "{binary} {what} printed no result: {stdout}"
    );
    results
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn compare(off: &str, on: &str, rounds: u64, options: &[String]) {
    // Every option but `--rounds N` goes to the runs.
    let mut extra = Vec::new();
    let mut options = options.iter();
    while let Some(option) = options.next() {
        if option == "--rounds" {
            options.next();
        } else {
            extra.push(option.clone());
        }
    }
    println!("load average before: {}", load());
    const MEASURES: [(&str, &str); 5] = [
        ("burst", "burst: events/s"),
        ("burst-cpu", "burst: CPU ns per event"),
        ("fanout", "fan-out: server CPU ns per delivered event"),
        ("writes", "one write of the layer: CPU ns"),
        ("publish", "one publish: CPU ns"),
    ];
    let mut results: [[Vec<f64>; 2]; 5] = Default::default();
    for round in 0..rounds {
        let order: [(usize, &str); 2] = if round % 2 == 0 {
            [(0, off), (1, on)]
        } else {
            [(1, on), (0, off)]
        };
        for what in ["burst", "fanout", "writes"] {
            for (variant, binary) in order {
                for (measure, value) in run(binary, what, &extra) {
                    let kind = MEASURES.iter().position(|(m, _)| *m == measure).unwrap();
                    results[kind][variant].push(value);
                }
            }
        }
        let last = |kind: usize, variant: usize| *results[kind][variant].last().unwrap();
        println!(
            "round {}: burst off {:.0} on {:.0} events/s, off {:.1} on {:.1} ns CPU/event; fanout off {:.0} on {:.0} ns CPU/delivery; write off {:.1} on {:.1} ns; publish off {:.1} on {:.1} ns; load {}",
            round + 1,
            last(0, 0),
            last(0, 1),
            last(1, 0),
            last(1, 1),
            last(2, 0),
            last(2, 1),
            last(3, 0),
            last(3, 1),
            last(4, 0),
            last(4, 1),
            load()
        );
    }
    // Each round's pair ran back to back: the median of the rounds' ratios is the
    // least disturbed by the load changing over the run.
    println!("medians of {rounds} rounds (off, on, on/off; median of each round's on/off):");
    for (kind, (_, label)) in MEASURES.iter().enumerate() {
        let mut ratios: Vec<f64> = results[kind][0]
            .iter()
            .zip(&results[kind][1])
            .map(|(off, on)| on / off)
            .collect();
        let ratio = median(&mut ratios);
        let off = median(&mut results[kind][0]);
        let on = median(&mut results[kind][1]);
        println!("  {label}: {off:.1}, {on:.1}, {:.3}; {ratio:.3}", on / off);
    }
    println!("load average after: {}", load());
}
