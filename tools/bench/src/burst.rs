//! Burst (the `burst` binary): N ready events streamed to one loopback HTTP/1.1 client,
//! each stack served as its users serve it:
//!
//! - `tower-sse`: `SseLayer::new()` over a service answering `Sse::new(stream)` of
//!   `Event::builder().id(n).data(PAYLOAD).build()`, served by `tower_sse::serve`;
//! - `axum`: a handler returning `Sse::new(..).keep_alive(KeepAlive::default())` of
//!   `Event::default().id(n).data(PAYLOAD)`, served by `axum::serve`;
//! - `warp`: `warp::sse::reply(warp::sse::keep_alive().stream(..))`, served by
//!   `warp::serve` (warp writes `data:..\nid:..`, without the optional spaces);
//! - `ceiling`: the same bytes encoded before the clock starts, in 64 KiB chunks of a
//!   plain streaming body on hyper's HTTP/1 connection: what the connection alone costs.
//!
//! Every event is `id: <n>` and 81 bytes of JSON data (about 100 bytes a frame). The
//! server runs on tokio with 2 workers, the client (hyper's) on the calling thread; it
//! counts the frames (a blank line ends each; a frame starting with `:` is a heartbeat)
//! and every run checks that exactly N events and at least their bytes arrived.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http::{Request, Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

use crate::client::{self, Target};

/// The data of every event: 81 bytes of compact JSON.
pub const PAYLOAD: &str =
    r#"{"icao":"4b1805","lat":47.46472,"lon":8.54917,"alt":36000,"gs":452.3,"trk":271.4}"#;

/// The server side of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Stack {
    /// tower-sse's `SseLayer`, served by `tower_sse::serve`.
    TowerSse,
    /// axum's `Sse`, served by `axum::serve`.
    Axum,
    /// warp's `sse::reply`, served by `warp::serve`.
    Warp,
    /// Pre-encoded bytes in 64 KiB chunks on hyper.
    Ceiling,
}

impl Stack {
    /// Every stack, in the order they run.
    pub const ALL: [Stack; 4] = [Stack::TowerSse, Stack::Axum, Stack::Warp, Stack::Ceiling];

    /// The name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Stack::TowerSse => "tower-sse",
            Stack::Axum => "axum",
            Stack::Warp => "warp",
            Stack::Ceiling => "ceiling (pre-encoded)",
        }
    }
}

/// What one run delivered.
#[derive(Clone, Debug)]
pub struct Run {
    /// Events received.
    pub events: u64,
    /// Bytes of the event stream.
    pub bytes: u64,
    /// From connecting to the end of the body.
    pub elapsed: Duration,
}

impl Run {
    /// Events per second.
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    /// Megabytes (10^6) per second.
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// The runtime of the servers: 2 workers.
pub fn runtime() -> Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Bytes of events `1..=events` as `stack` writes them.
pub fn expected_bytes(stack: Stack, events: u64) -> u64 {
    let fixed = ("id: \ndata: \n\n".len() + PAYLOAD.len()) as u64;
    let digits: u64 = (1..=events).map(|n| n.ilog10() as u64 + 1).sum();
    let spaces = if stack == Stack::Warp { 2 * events } else { 0 };
    events * fixed + digits - spaces
}

fn id(n: u64) -> String {
    n.to_string()
}

/// Serves `events` ready events on `listener` with `stack`.
fn serve(
    rt: &Runtime,
    listener: TcpListener,
    stack: Stack,
    events: u64,
) -> tokio::task::JoinHandle<()> {
    match stack {
        Stack::TowerSse => {
            let service = tower::ServiceBuilder::new()
                .layer(tower_sse::SseLayer::new())
                .service(tower::service_fn(move |_: Request<Incoming>| {
                    let events = stream::iter(1..=events)
                        .map(|n| tower_sse::Event::builder().id(&id(n)).data(PAYLOAD).build());
                    let response = tower_sse::Sse::new(events).into_response();
                    async move { Ok::<_, Infallible>(response) }
                }));
            rt.spawn(async move { tower_sse::serve(listener, service).await })
        }
        Stack::Axum => {
            use axum::response::sse::{Event, KeepAlive, Sse};
            let handler = move || async move {
                let events = stream::iter(1..=events)
                    .map(|n| Ok::<_, Infallible>(Event::default().id(id(n)).data(PAYLOAD)));
                Sse::new(events).keep_alive(KeepAlive::default())
            };
            let router = axum::Router::new().route("/", axum::routing::get(handler));
            rt.spawn(async move {
                let _ = axum::serve(listener, router).await;
            })
        }
        Stack::Warp => {
            use warp::Filter;
            let filter = warp::get().map(move || {
                let events = stream::iter(1..=events).map(|n| {
                    Ok::<_, Infallible>(warp::sse::Event::default().id(id(n)).data(PAYLOAD))
                });
                warp::sse::reply(warp::sse::keep_alive().stream(events))
            });
            rt.spawn(warp::serve(filter).incoming(listener).run())
        }
        Stack::Ceiling => {
            let all: Vec<u8> = (1..=events)
                .flat_map(|n| format!("id: {n}\ndata: {PAYLOAD}\n\n").into_bytes())
                .collect();
            let all = Bytes::from(all);
            let service = tower::service_fn(move |_: Request<Incoming>| {
                let chunks = (0..all.len()).step_by(64 * 1024).map({
                    let all = all.clone();
                    move |at| {
                        Ok::<_, Infallible>(Frame::data(
                            all.slice(at..(at + 64 * 1024).min(all.len())),
                        ))
                    }
                });
                let response = Response::builder()
                    .header(header::CONTENT_TYPE, "text/event-stream")
                    .body(StreamBody::new(stream::iter(chunks)))
                    .expect("a valid response");
                async move { Ok::<_, Infallible>(response) }
            });
            rt.spawn(crate::server::serve_http1(listener, service))
        }
    }
}

/// Frames and heartbeats in a stream read piece by piece.
#[derive(Debug, Default)]
struct Frames {
    events: u64,
    heartbeats: u64,
    bytes: u64,
    /// The last byte read, and whether the next byte starts a frame.
    last: u8,
    at_start: bool,
}

impl Frames {
    fn feed(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        if self.bytes == 0 {
            self.at_start = true;
        }
        self.bytes += chunk.len() as u64;
        let mut starts = Vec::new();
        if self.at_start {
            starts.push(0);
        }
        if self.last == b'\n' && chunk[0] == b'\n' {
            starts.push(1);
        }
        starts.extend(memchr::memmem::find_iter(chunk, b"\n\n").map(|at| at + 2));
        self.at_start = starts.last() == Some(&chunk.len());
        for &start in starts.iter().filter(|&&s| s < chunk.len()) {
            match chunk[start] {
                b':' => self.heartbeats += 1,
                _ => self.events += 1,
            }
        }
        self.last = chunk[chunk.len() - 1];
    }
}

/// One burst of `events` events through `stack`, checked.
pub fn run(rt: &Runtime, stack: Stack, events: u64) -> Result<Run, String> {
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| e.to_string())?;
    let target = Target::parse(&format!(
        "http://{}/",
        listener.local_addr().map_err(|e| e.to_string())?
    ))?;
    let server = serve(rt, listener, stack, events);
    let started = Instant::now();
    let mut frames = Frames::default();
    let read = rt.block_on(async {
        let response = client::event_stream(&target, &client::Options::default()).await?;
        let mut body = response.body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| client::Failure::new("body", e))?;
            frames.feed(frame.data_ref().map_or(&[][..], |d| &d[..]));
        }
        Ok::<_, client::Failure>(())
    });
    let elapsed = started.elapsed();
    server.abort();
    read.map_err(|f| format!("{}: {}: {}", stack.name(), f.kind, f.detail))?;
    let least = expected_bytes(stack, events);
    if frames.events != events || frames.bytes < least {
        let (got, bytes) = (frames.events, frames.bytes);
        return Err(format!(
            "{}: {got} events in {bytes} bytes, expected {events} in {least}",
            stack.name()
        ));
    }
    Ok(Run {
        events,
        bytes: frames.bytes,
        elapsed,
    })
}

/// Every stack in `stacks`, `runs` times, interleaved, after one untimed warm-up each;
/// the run of median duration of each.
pub fn bench(stacks: &[Stack], events: u64, runs: usize) -> Result<Vec<(Stack, Run)>, String> {
    let rt = runtime();
    for &stack in stacks {
        run(&rt, stack, events.min(100_000))?;
    }
    let mut all: Vec<Vec<Run>> = vec![Vec::new(); stacks.len()];
    for _ in 0..runs.max(1) {
        for (i, &stack) in stacks.iter().enumerate() {
            all[i].push(run(&rt, stack, events)?);
        }
    }
    let median = |mut runs: Vec<Run>| {
        runs.sort_by_key(|r| r.elapsed);
        runs.swap_remove(runs.len() / 2)
    };
    Ok(stacks
        .iter()
        .copied()
        .zip(all.into_iter().map(median))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_counted_across_any_split() {
        let stream: Vec<u8> = (1..=30u64)
            .flat_map(|n| match n % 7 {
                0 => ":\n\n".to_string().into_bytes(),
                _ => format!("id: {n}\ndata: {PAYLOAD}\n\n").into_bytes(),
            })
            .collect();
        for size in [1, 2, 3, 5, 64, 4096] {
            let mut frames = Frames::default();
            stream.chunks(size).for_each(|c| frames.feed(c));
            assert_eq!(
                (frames.events, frames.heartbeats),
                (26, 4),
                "pieces of {size}"
            );
        }
        let actual: u64 = (1..=120u64)
            .map(|n| format!("id: {n}\ndata: {PAYLOAD}\n\n").len() as u64)
            .sum();
        assert_eq!(expected_bytes(Stack::Axum, 120), actual);
    }
}
