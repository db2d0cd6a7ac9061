//! Burst: N ready events streamed to one loopback HTTP/1.1 client, through
//!
//! - `tower-sse`: `SseLayer::new()` over a service answering with a stream of
//!   `Event::builder().id(n).data(PAYLOAD).build()` ([`crate::tower_sse_stack`]);
//! - `axum`: a `Router` handler returning `Sse::new(stream::iter(1..=N).map(|n|
//!   Ok(Event::default().id(n).data(PAYLOAD)))).keep_alive(KeepAlive::default())`;
//! - `warp`: `warp::sse::reply(warp::sse::keep_alive().stream(..))` of
//!   `warp::sse::Event::default().id(n).data(PAYLOAD)`, through `warp::service` (warp
//!   writes `data:PAYLOAD\nid:n\n\n`, without the optional spaces: 2 bytes less an event);
//! - `ceiling`: the same bytes, encoded before the clock starts, served in 64 KiB chunks
//!   as a plain streaming body: what the connection alone costs.
//!
//! Every event is `id: <n>\ndata: <81 bytes of JSON>\n\n` (about 100 bytes), built inside
//! the stream as the body is polled. Each is served by hyper's HTTP/1 connection
//! (default settings, `TCP_NODELAY`) on tokio with 2 workers. The client (the tools'
//! HTTP client and SSE parser, counting only) runs on the caller's thread; every run
//! checks that exactly N events and exactly the expected bytes arrived.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http::{Request, Response, header};
use http_body_util::StreamBody;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

use crate::client::{self, Target};
use crate::{sse, tower_sse_stack};

/// The data of every event: 81 bytes of compact JSON.
pub const PAYLOAD: &str =
    r#"{"icao":"4b1805","lat":47.46472,"lon":8.54917,"alt":36000,"gs":452.3,"trk":271.4}"#;

/// Events per run when `--events` is not given.
pub const DEFAULT_EVENTS: u64 = 1_000_000;

/// The server side of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Stack {
    /// tower-sse's `SseLayer` over a tower service.
    TowerSse,
    /// axum's `Sse` from a `Router` handler.
    Axum,
    /// warp's `sse::reply` through `warp::service`.
    Warp,
    /// Pre-encoded bytes in 64 KiB chunks, as a plain streaming body.
    Ceiling,
}

impl Stack {
    /// Every stack, in the order they run and print.
    pub const ALL: [Stack; 4] = [Stack::TowerSse, Stack::Axum, Stack::Warp, Stack::Ceiling];

    /// The name printed in tables.
    pub fn name(self) -> &'static str {
        match self {
            Stack::TowerSse => "tower-sse",
            Stack::Axum => "axum",
            Stack::Warp => "warp",
            Stack::Ceiling => "ceiling (pre-encoded)",
        }
    }
}

/// What one run delivered, as the client counted it.
#[derive(Clone, Debug)]
pub struct Run {
    /// The server side.
    pub stack: Stack,
    /// Events received.
    pub events: u64,
    /// Comment lines received (heartbeats).
    pub heartbeats: u64,
    /// Bytes of the event stream (the decoded body).
    pub body_bytes: u64,
    /// From connecting to the end of the body.
    pub elapsed: Duration,
}

impl Run {
    /// Events per second.
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    /// Megabytes (10^6) of event stream per second.
    pub fn mb_per_sec(&self) -> f64 {
        self.body_bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// The runtime the servers run on: multi-thread, 2 workers.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The frame of event `n`.
pub fn frame(n: u64) -> String {
    format!("id: {n}\ndata: {PAYLOAD}\n\n")
}

/// Bytes of the event stream of events `1..=events` as `stack` writes them: warp
/// leaves out the optional space after `id:` and `data:`.
pub fn expected_bytes(stack: Stack, events: u64) -> u64 {
    let fixed = ("id: \ndata: \n\n".len() + PAYLOAD.len()) as u64;
    let (mut digits, mut low, mut width) = (0, 1, 1);
    while low <= events {
        digits += ((low * 10 - 1).min(events) - low + 1) * width;
        low *= 10;
        width += 1;
    }
    let spaces = if stack == Stack::Warp { 2 * events } else { 0 };
    events * fixed + digits - spaces
}

/// Runs one burst of `events` events through `stack` and checks that the client
/// received exactly them (plus any heartbeat comments, `:\n\n` each).
pub fn run_burst(rt: &Runtime, stack: Stack, events: u64) -> Result<Run, String> {
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| e.to_string())?;
    let target = Target::parse(&format!("http://{}/", listener.local_addr().unwrap()))?;
    // The ceiling's bytes are encoded before the clock starts.
    let chunks = (stack == Stack::Ceiling).then(|| pre_encode(events));
    let server = rt.spawn(serve_one(listener, stack, events, chunks));
    let start = Instant::now();
    let mut parser = sse::Parser::new(false);
    let read = rt.block_on(async {
        let mut response = client::event_stream(&target).await?;
        while let Some(chunk) = response.chunk().await {
            parser.feed(&chunk?, &mut |_| {});
        }
        Ok::<_, client::Failure>(())
    });
    let elapsed = start.elapsed();
    read.map_err(|f| format!("{}: client: {}: {}", stack.name(), f.kind, f.detail))?;
    match rt.block_on(server) {
        Ok(Ok(())) => {}
        Ok(Err(err)) => return Err(format!("{}: server: {err}", stack.name())),
        Err(err) => return Err(format!("{}: server task: {err}", stack.name())),
    }
    let run = Run {
        stack,
        events: parser.events,
        heartbeats: parser.comments,
        body_bytes: parser.bytes,
        elapsed,
    };
    let expected = expected_bytes(stack, events) + 3 * run.heartbeats;
    if (run.events, run.body_bytes) != (events, expected) {
        return Err(format!(
            "{}: received {} events in {} bytes, expected {events} in {expected}",
            stack.name(),
            run.events,
            run.body_bytes
        ));
    }
    Ok(run)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Accepts one connection and serves it with `stack` until the client closes it.
async fn serve_one(
    listener: TcpListener,
    stack: Stack,
    events: u64,
    chunks: Option<Vec<Bytes>>,
) -> Result<(), BoxError> {
    let (socket, _) = listener.accept().await?;
    socket.set_nodelay(true)?;
    if stack == Stack::TowerSse {
        return Ok(tower_sse_stack::serve_burst(socket, events, PAYLOAD).await?);
    }
    match stack {
        Stack::Axum => {
            use axum::response::sse::{Event, KeepAlive, Sse};
            let handler = move || async move {
                let events = stream::iter(1..=events).map(move |n| {
                    let mut id = itoa::Buffer::new();
                    Ok::<_, Infallible>(Event::default().id(id.format(n)).data(PAYLOAD))
                });
                Sse::new(events).keep_alive(KeepAlive::default())
            };
            let router = axum::Router::new().route("/", axum::routing::get(handler));
            serve(socket, router).await
        }
        Stack::Warp => {
            use warp::Filter;
            let filter = warp::get().map(move || {
                let events = stream::iter(1..=events).map(move |n| {
                    let mut id = itoa::Buffer::new();
                    Ok::<_, Infallible>(warp::sse::Event::default().id(id.format(n)).data(PAYLOAD))
                });
                warp::sse::reply(warp::sse::keep_alive().stream(events))
            });
            serve(socket, warp::service(filter)).await
        }
        _ => {
            let chunks = chunks.expect("the ceiling's chunks");
            let service = tower::service_fn(move |_request: Request<Incoming>| {
                let frames =
                    stream::iter(chunks.clone()).map(|c| Ok::<_, Infallible>(Frame::data(c)));
                let response = Response::builder()
                    .header(header::CONTENT_TYPE, "text/event-stream")
                    .header(header::CACHE_CONTROL, "no-cache")
                    .body(StreamBody::new(frames));
                async move { Ok::<_, Infallible>(response.expect("response")) }
            });
            serve(socket, service).await
        }
    }
}

async fn serve<S, B>(socket: TcpStream, service: S) -> Result<(), BoxError>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(socket), TowerToHyperService::new(service))
        .await?;
    Ok(())
}

/// The event stream of events `1..=events`, in 64 KiB slices of one buffer.
fn pre_encode(events: u64) -> Vec<Bytes> {
    let all: Vec<u8> = (1..=events).flat_map(|n| frame(n).into_bytes()).collect();
    let all = Bytes::from(all);
    (0..all.len())
        .step_by(64 * 1024)
        .map(|at| all.slice(at..(at + 64 * 1024).min(all.len())))
        .collect()
}

/// Command-line options of the `burst` binary.
#[derive(clap::Parser, Debug)]
#[command(
    name = "burst",
    about = "Ready events streamed to one client, per stack"
)]
pub struct Options {
    /// Events per run.
    #[arg(long, value_parser = crate::number::<u64>, default_value_t = DEFAULT_EVENTS)]
    pub events: u64,
    /// Timed runs per stack.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// The stacks to run, in order (default: all).
    #[arg(long = "stack", value_enum, value_delimiter = ',')]
    pub stacks: Vec<Stack>,
}

/// Runs every chosen stack `runs` times, interleaved, after one untimed warm-up each.
/// Returns the runs of each stack, in the order of `options.stacks`.
pub fn bench(
    rt: &Runtime,
    options: &Options,
    mut report: impl FnMut(&Run),
) -> Result<Vec<(Stack, Vec<Run>)>, String> {
    let stacks = if options.stacks.is_empty() {
        &Stack::ALL[..]
    } else {
        &options.stacks
    };
    for &stack in stacks {
        run_burst(rt, stack, options.events.min(100_000))?;
    }
    let mut runs: Vec<(Stack, Vec<Run>)> = stacks.iter().map(|&s| (s, Vec::new())).collect();
    for _ in 0..options.runs {
        for (stack, stack_runs) in &mut runs {
            let run = run_burst(rt, *stack, options.events)?;
            report(&run);
            stack_runs.push(run);
        }
    }
    Ok(runs)
}

/// The run of median duration.
pub fn median(runs: &[Run]) -> &Run {
    let mut sorted: Vec<&Run> = runs.iter().collect();
    sorted.sort_by_key(|run| run.elapsed);
    sorted[sorted.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_bytes_matches_the_frames() {
        for events in [1, 9, 10, 99, 100, 12_345] {
            let actual: u64 = (1..=events).map(|n| frame(n).len() as u64).sum();
            assert_eq!(expected_bytes(Stack::Axum, events), actual, "{events}");
            assert_eq!(expected_bytes(Stack::Warp, events), actual - 2 * events);
        }
    }
}
