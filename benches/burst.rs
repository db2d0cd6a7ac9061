//! Burst: `BURST_EVENTS` (default 1,000,000) ready events streamed to one loopback
//! HTTP/1.1 client, each stack served as its users serve it:
//!
//! - `tower-sse`: `SseLayer::new()` over a service answering `Sse::new(stream)` of
//!   `Event::builder().id(n).data(PAYLOAD).build()`, served by `tower_sse::serve`;
//! - `axum`: a handler returning `Sse::new(..).keep_alive(KeepAlive::default())` of
//!   `Event::default().id(n).data(PAYLOAD)`, served by `axum::serve`;
//! - `warp`: `warp::sse::reply(warp::sse::keep_alive().stream(..))`, served by
//!   `warp::serve` (it writes `data:` and `id:` without the optional space);
//! - `ceiling`: the same bytes, encoded before the clock starts, in 64 KiB chunks of a
//!   plain body on hyper's HTTP/1 connection: what the connection alone costs.
//!
//! Group `burst`: the sockets as each server leaves them by default (none of the three
//! sets `TCP_NODELAY`). Group `burst-nodelay`: the same with `TCP_NODELAY` on the
//! listener, which the sockets it accepts inherit (Linux), as a server that sets it runs.
//!
//! Every event is `id: <n>` and 81 bytes of JSON (about 100 bytes a frame). The servers
//! run on tokio with 2 workers. The client is hyper's HTTP/1 client connection, polled
//! by the task that reads the body, on the bench's thread: axum and warp send each event
//! as its own HTTP/1.1 chunk, and a connection spawned as a task of its own hands every
//! chunk to the reader across threads (a wake-up each, 3 to 5 µs of CPU an event here,
//! which made axum look 4 to 8 times slower than it is). The client counts frames (each
//! ends at a blank line; one that starts with `:` is a heartbeat), and every iteration
//! checks that exactly N events and at least their bytes arrived. An iteration is one
//! burst (criterion's flat sampling, 10 samples): criterion's time per iteration is the
//! time of N events.
//!
//! Run with `cargo bench --bench burst`; the suite (`benches/run.sh`) reads criterion's
//! `--output-format bencher` lines.

use std::convert::Infallible;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput};
use futures_util::{StreamExt, stream};
use http::{Request, Response, header};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use memchr::memmem;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// The data of every event: 81 bytes of compact JSON.
const PAYLOAD: &str =
    r#"{"icao":"4b1805","lat":47.46472,"lon":8.54917,"alt":36000,"gs":452.3,"trk":271.4}"#;

const STACKS: [&str; 4] = ["tower-sse", "axum", "warp", "ceiling"];

/// Bytes of events `1..=events` as `stack` writes them (warp: 2 spaces fewer each).
fn expected_bytes(stack: &str, events: u64) -> u64 {
    let fixed = ("id: \ndata: \n\n".len() + PAYLOAD.len()) as u64;
    let digits: u64 = (1..=events).map(|n| u64::from(n.ilog10()) + 1).sum();
    events * fixed + digits - if stack == "warp" { 2 * events } else { 0 }
}

/// The ceiling's bytes: the frames of events `1..=events`, encoded before the clock starts.
fn encoded(events: u64) -> Bytes {
    Bytes::from(
        (1..=events)
            .map(|n| format!("id: {n}\ndata: {PAYLOAD}\n\n"))
            .collect::<String>(),
    )
}

/// Serves `events` ready events on `listener` with `stack` (`all`: the ceiling's bytes).
async fn serve(listener: TcpListener, stack: &'static str, events: u64, all: Bytes) {
    let ids = move || stream::iter(1..=events).map(|n| n.to_string());
    match stack {
        "tower-sse" => {
            let service = tower::service_fn(move |_: Request<Incoming>| {
                let events =
                    ids().map(|n| tower_sse::Event::builder().id(&n).data(PAYLOAD).build());
                let response = tower_sse::Sse::new(events).into_response();
                std::future::ready(Ok::<_, Infallible>(response))
            });
            let layer = tower_sse::SseLayer::new();
            let service = tower::ServiceBuilder::new().layer(layer).service(service);
            tower_sse::serve(listener, service).await
        }
        "axum" => {
            use axum::response::sse::{Event, KeepAlive, Sse};
            let handler = move || async move {
                let events =
                    ids().map(|n| Ok::<_, Infallible>(Event::default().id(n).data(PAYLOAD)));
                Sse::new(events).keep_alive(KeepAlive::default())
            };
            let router = axum::Router::new().route("/", axum::routing::get(handler));
            axum::serve(listener, router).await.expect("axum::serve");
        }
        "warp" => {
            use warp::Filter;
            let filter = warp::get().map(move || {
                let event = |n| warp::sse::Event::default().id(n).data(PAYLOAD);
                let events = ids().map(move |n| Ok::<_, Infallible>(event(n)));
                warp::sse::reply(warp::sse::keep_alive().stream(events))
            });
            warp::serve(filter).incoming(listener).run().await
        }
        _ => {
            let (socket, _) = listener.accept().await.expect("a connection");
            let service = tower::service_fn(move |_: Request<Incoming>| {
                let all = all.clone();
                let chunks = (0..all.len()).step_by(1 << 16).map(move |at| {
                    Ok::<_, Infallible>(Frame::data(all.slice(at..all.len().min(at + (1 << 16)))))
                });
                let response = Response::builder()
                    .header(header::CONTENT_TYPE, "text/event-stream")
                    .body(StreamBody::new(stream::iter(chunks)));
                std::future::ready(Ok::<_, Infallible>(response.expect("a response")))
            });
            let http1 = hyper::server::conn::http1::Builder::new();
            let service = TowerToHyperService::new(service);
            let _ = http1.serve_connection(TokioIo::new(socket), service).await;
        }
    }
}

/// Events, heartbeats and bytes of a stream read piece by piece; whether the next byte
/// starts a frame, and the last byte read.
#[derive(Debug, Default)]
struct Frames {
    events: u64,
    heartbeats: u64,
    bytes: u64,
    at_start: bool,
    last: u8,
}

/// A blank line, the end of a frame.
static BLANK_LINE: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new("\n\n"));

impl Frames {
    /// Counts the frames that start in `chunk` (at the stream's start, or after a blank
    /// line, which may span two chunks), without allocating: axum and warp send a chunk
    /// per event, and the client's cost must not grow with them.
    fn feed(&mut self, chunk: &[u8]) {
        let Some(&last) = chunk.last() else { return };
        let first = (self.at_start || self.bytes == 0).then_some(0);
        let spanning = (self.last == b'\n' && chunk[0] == b'\n').then_some(1);
        let ends = BLANK_LINE.find_iter(chunk).map(|at| at + 2);
        let mut next = None;
        for start in first.into_iter().chain(spanning).chain(ends) {
            match chunk.get(start) {
                Some(b':') => self.heartbeats += 1,
                Some(_) => self.events += 1,
                None => {}
            }
            next = Some(start);
        }
        self.at_start = next == Some(chunk.len());
        (self.bytes, self.last) = (self.bytes + chunk.len() as u64, last);
    }
}

/// One burst of `events` events through `stack`, checked: how long it took.
fn burst(rt: &Runtime, stack: &'static str, nodelay: bool, events: u64) -> Duration {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_nodelay(nodelay).expect("TCP_NODELAY");
    socket
        .bind(([127, 0, 0, 1], 0).into())
        .expect("a bound socket");
    let listener = {
        let _runtime = rt.enter();
        socket.listen(1024).expect("a listener")
    };
    let addr = listener.local_addr().expect("an address");
    let all = if stack == "ceiling" {
        encoded(events)
    } else {
        Bytes::new()
    };
    let server = rt.spawn(serve(listener, stack, events, all));
    let (started, mut frames) = (Instant::now(), Frames::default());
    rt.block_on(async {
        let socket = TcpStream::connect(addr).await.expect("a connection");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(socket))
            .await
            .expect("a handshake");
        let mut connection = std::pin::pin!(connection);
        let request = Request::get("/")
            .header(header::HOST, addr.to_string())
            .header(header::ACCEPT, "text/event-stream")
            .body(Empty::<Bytes>::new())
            .expect("a request");
        let response = tokio::select! {
            response = sender.send_request(request) => response.expect("a response"),
            closed = &mut connection => panic!("{stack}: the connection closed: {closed:?}"),
        };
        // Without its sender, the connection ends with the body; until then this task
        // polls both, so that no chunk crosses a thread.
        drop(sender);
        let mut body = response.into_body();
        let read = async {
            while let Some(frame) = body.frame().await {
                frames.feed(
                    frame
                        .expect("a frame")
                        .data_ref()
                        .map_or(&[][..], |d| &d[..]),
                );
            }
        };
        let ((), closed) = tokio::join!(read, connection);
        closed.expect("the connection");
    });
    let elapsed = started.elapsed();
    server.abort();
    let least = expected_bytes(stack, events);
    assert_eq!(frames.events, events, "{stack}: events");
    assert!(
        frames.bytes >= least,
        "{stack}: {} bytes, at least {least}",
        frames.bytes
    );
    elapsed
}

fn main() {
    check_the_counter();
    let events = std::env::var("BURST_EVENTS").map_or(1_000_000, |n| n.parse().expect("a number"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .sample_size(10)
        .configure_from_args();
    for (name, nodelay) in [("burst", false), ("burst-nodelay", true)] {
        let mut group = criterion.benchmark_group(name);
        group
            .throughput(Throughput::Elements(events))
            .sampling_mode(SamplingMode::Flat);
        for stack in STACKS {
            group.bench_function(stack, |b| {
                b.iter_custom(|n| (0..n).map(|_| burst(&rt, stack, nodelay, events)).sum())
            });
        }
        group.finish();
    }
    criterion.final_summary();
}

/// The frame counter counts across any split, and the expected bytes are the frames'
/// (run before every bench: with `harness = false`, a `#[test]` here would never run).
fn check_the_counter() {
    let frame = |n: u64| match n % 7 {
        0 => ":\n\n".to_string(),
        _ => format!("id: {n}\ndata: {PAYLOAD}\n\n"),
    };
    let stream: Vec<u8> = (1..=30).flat_map(|n| frame(n).into_bytes()).collect();
    for size in [1, 2, 3, 5, 64, 4096] {
        let mut frames = Frames::default();
        stream.chunks(size).for_each(|c| frames.feed(c));
        assert_eq!(
            (frames.events, frames.heartbeats),
            (26, 4),
            "pieces of {size}"
        );
    }
    let bytes: u64 = (1..=120)
        .map(|n| format!("id: {n}\ndata: {PAYLOAD}\n\n").len() as u64)
        .sum();
    assert_eq!(expected_bytes("axum", 120), bytes);
}
