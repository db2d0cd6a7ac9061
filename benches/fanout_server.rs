//! The fan-out servers of the benchmark suite: one topic, events published at a fixed
//! rate, served by one of three stacks.
//!
//! ```text
//! cargo bench --bench fanout_server -- --stack tower-sse|axum|warp [--rate 10] [--listen ADDR]
//! ```
//!
//! - `tower-sse`: a [`tower_sse::Hub`] (default settings) and `SseLayer::new()` (heartbeat
//!   every 15 idle seconds) over a `service_fn` that subscribes each request to the topic
//!   and answers `Sse::new(subscription).into_response()`.
//!   The publisher calls `hub.publish(topic, Event::data(payload))`: encoded once, the
//!   hub adds the id, every subscriber writes the same `Bytes`. With `--redis URL`
//!   (feature `redis`), the hub stores events in Redis Streams (`RedisStorage`).
//! - `axum`: the usual idiom: a tokio `broadcast::channel::<String>(1024)` of the
//!   payload in the router's state; the handler answers
//!   `Sse::new(BroadcastStream::new(rx).filter_map(ok).map(|p| Ok(Event::default().data(p))))
//!   .keep_alive(KeepAlive::default())`, so each subscriber builds its own `Event`.
//! - `warp`: the same idiom on warp 0.4: `warp::sse::reply(warp::sse::keep_alive()
//!   .stream(...))` with `warp::sse::Event::default().data(p)`.
//!
//! Two floors, for reference (what any SSE stack on them costs at least):
//! - `hyper-floor`: hyper's HTTP/1 connection with a body that yields pre-encoded frames
//!   (`data: <payload>\n\n`, encoded once per publish, shared `Bytes`) from a tokio
//!   broadcast: no per-subscriber encoding, no heartbeat, nothing but hyper.
//! - `raw-floor`: no HTTP library: each connection task reads the request head, writes a
//!   fixed response head, then writes each pre-encoded chunk (chunk size, frame, CRLF,
//!   encoded once per publish) with one `write_all` (chunks that are already waiting
//!   go out in the same write): the socket writes alone.
//!
//! All of them but `raw-floor` are served by the same accept loop (hyper's HTTP/1 connection, default
//! settings, `TCP_NODELAY`, one task per connection) on a tokio multi-thread runtime
//! with 2 workers, so only the SSE stack differs. `--conn auto` serves with
//! hyper-util's `auto::Builder` instead (HTTP/1.1 and HTTP/2 on one port, with
//! upgrades), as `axum::serve` and `warp::serve` do.
//!
//! The payload is JSON of exactly `--size` bytes (default 140):
//! `{"t":<unix microseconds at publish>,"seq":<n>,"pad":"xxx..."}`, so a client measures
//! publish-to-receive latency and notices lost events.
//!
//! A second listener serves `GET /stats`: `{"cpu_ns":..,"rss_kib":..,"published":..,
//! "subscribers":..}` with the process's CPU time (sum of its threads' `schedstat`) and
//! `VmRSS`. The server prints `LISTENING <sse address> <stats address>` once both listen.
//!
//! `--events K` stops publishing after K events; `--start-after N` waits for N
//! subscribers before the first publish (the smoke test uses both).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

/// The topic every subscriber reads.
pub const TOPIC: &str = "fanout";

/// The server side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    /// tower-sse's `Hub` and `SseLayer`.
    TowerSse,
    /// axum's `Sse` over a tokio broadcast, each subscriber encoding its own events.
    Axum,
    /// warp's `sse::reply` over a tokio broadcast.
    Warp,
    /// hyper with pre-encoded frames, no SSE stack: the floor of any stack on hyper.
    HyperFloor,
    /// Pre-encoded chunks written to raw sockets: the floor of any stack.
    RawFloor,
}

impl Stack {
    /// Every stack, in the order they run.
    pub const ALL: [Stack; 3] = [Stack::TowerSse, Stack::Axum, Stack::Warp];

    /// The reference floors.
    pub const FLOORS: [Stack; 2] = [Stack::HyperFloor, Stack::RawFloor];

    /// `tower-sse`, `axum`, `warp`, `hyper-floor` or `raw-floor`.
    pub fn from_name(name: &str) -> Option<Stack> {
        Stack::ALL
            .into_iter()
            .chain(Stack::FLOORS)
            .find(|s| s.name() == name)
    }

    /// The name on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Stack::TowerSse => "tower-sse",
            Stack::Axum => "axum",
            Stack::Warp => "warp",
            Stack::HyperFloor => "hyper-floor",
            Stack::RawFloor => "raw-floor",
        }
    }
}

/// Settings of a server.
#[derive(Clone, Debug)]
pub struct Options {
    /// The stack.
    pub stack: Stack,
    /// Events per second; 0 publishes nothing.
    pub rate: f64,
    /// Bytes of each payload.
    pub size: usize,
    /// Stop after this many events.
    pub events: Option<u64>,
    /// Wait for this many subscribers before publishing.
    pub start_after: usize,
    /// Where to listen for event streams.
    pub listen: SocketAddr,
    /// Tokio worker threads.
    pub workers: usize,
    /// Redis URL for the hub's storage (tower-sse, feature `redis`).
    pub redis: Option<String>,
    /// Serve with hyper-util's `auto::Builder` rather than hyper's HTTP/1 connection.
    pub auto: bool,
}

/// Set from `Options::auto` when a server starts.
static AUTO: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Options {
    /// Reads `--stack`, `--rate`, `--size`, `--events`, `--start-after`, `--listen`,
    /// `--workers`, `--redis`; unknown arguments are ignored.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            stack: Stack::TowerSse,
            rate: 10.0,
            size: 140,
            events: None,
            start_after: 0,
            listen: "127.0.0.1:0".parse().expect("address"),
            workers: 2,
            redis: None,
            auto: false,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            if !matches!(
                name.as_str(),
                "--stack"
                    | "--rate"
                    | "--size"
                    | "--events"
                    | "--start-after"
                    | "--listen"
                    | "--workers"
                    | "--redis"
                    | "--conn"
            ) {
                continue;
            }
            let value = inline
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))?;
            let bad = || format!("{name}: bad value {value:?}");
            match name.as_str() {
                "--stack" => options.stack = Stack::from_name(&value).ok_or_else(bad)?,
                "--rate" => options.rate = value.parse().map_err(|_| bad())?,
                "--size" => options.size = value.parse().map_err(|_| bad())?,
                "--events" => options.events = Some(value.parse().map_err(|_| bad())?),
                "--start-after" => options.start_after = value.parse().map_err(|_| bad())?,
                "--listen" => options.listen = value.parse().map_err(|_| bad())?,
                "--workers" => options.workers = value.parse().map_err(|_| bad())?,
                "--conn" => {
                    options.auto = match value.as_str() {
                        "http1" => false,
                        "auto" => true,
                        _ => return Err(bad()),
                    }
                }
                _ => options.redis = Some(value),
            }
        }
        if options.redis.is_some() && options.stack != Stack::TowerSse {
            return Err("--redis is for --stack tower-sse".to_string());
        }
        Ok(options)
    }
}

/// The payload of event `seq`, published at `t` (unix microseconds): `size` bytes of
/// JSON when `size` leaves room for the padding.
pub fn payload(t: u64, seq: u64, size: usize) -> String {
    let head = format!("{{\"t\":{t},\"seq\":{seq},\"pad\":\"");
    let pad = size.saturating_sub(head.len() + 2);
    let mut s = String::with_capacity(head.len() + pad + 2);
    s.push_str(&head);
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str("\"}");
    s
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// CPU time of this process: the sum of its threads' run time (`schedstat`, ns), else
/// utime + stime from `/proc/self/stat`.
pub fn cpu_ns() -> u64 {
    let mut total = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
                total += text
                    .split_whitespace()
                    .next()
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    if total > 0 {
        return total;
    }
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    let Some(close) = stat.rfind(')') else {
        return 0;
    };
    let fields: Vec<u64> = stat[close + 2..]
        .split_ascii_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    fields.iter().sum::<u64>() * 10_000_000
}

/// `VmRSS` of this process, KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Accepts connections on `listener` forever, serving each with `service` over hyper's
/// HTTP/1 connection.
async fn accept_loop<S, B>(listener: TcpListener, service: S)
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let socket = match listener.accept().await {
            Ok((socket, _)) => socket,
            Err(err) => {
                // Out of files, say: wait a little rather than spin.
                eprintln!("accept: {err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            if AUTO.load(Ordering::Relaxed) {
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection_with_upgrades(TokioIo::new(socket), service)
                .await;
            } else {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            }
        });
    }
}

/// The `raw-floor` server: per connection, read the request head, write a fixed
/// response head, then every pre-encoded chunk, until the client goes.
async fn raw_accept_loop(listener: TcpListener, tx: broadcast::Sender<Bytes>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
        cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";
    loop {
        let mut socket = match listener.accept().await {
            Ok((socket, _)) => socket,
            Err(err) => {
                eprintln!("accept: {err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let mut rx = tx.subscribe();
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(512);
            let mut buf = [0u8; 512];
            while memchr::memmem::find(&head, b"\r\n\r\n").is_none() {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
                if head.len() > 16 * 1024 {
                    return;
                }
            }
            drop(head);
            if socket.write_all(HEAD).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    message = rx.recv() => match message {
                        Ok(chunk) => {
                            // Chunks already waiting go out in the same write, as
                            // hyper does with the frames a body has ready.
                            let mut more = Vec::new();
                            while let Ok(next) = rx.try_recv() {
                                if more.is_empty() {
                                    more.extend_from_slice(&chunk);
                                }
                                more.extend_from_slice(&next);
                            }
                            let bytes = if more.is_empty() { &chunk[..] } else { &more[..] };
                            if socket.write_all(bytes).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    read = socket.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    },
                }
            }
        });
    }
}

/// How the publisher hands an event to the stack, and how many subscribers there are.
#[derive(Clone)]
enum Publisher {
    Hub(tower_sse::Hub),
    Broadcast(broadcast::Sender<String>),
    /// Pre-encoded frames; `true`: with the chunk framing around each.
    Frames(broadcast::Sender<Bytes>, bool),
}

impl Publisher {
    fn publish(&self, payload: String) {
        match self {
            Publisher::Hub(hub) => {
                // With Redis the event is stored asynchronously; its acknowledgement
                // is not awaited (publishing does not wait on the store).
                if let Err(err) = hub.publish(TOPIC, tower_sse::Event::data(&payload)) {
                    eprintln!("publish: {err}");
                }
            }
            Publisher::Broadcast(tx) => {
                // No subscriber is not an error here.
                let _ = tx.send(payload);
            }
            Publisher::Frames(tx, chunked) => {
                let frame = if *chunked {
                    let len = payload.len() + "data: \n\n".len();
                    format!("{len:x}\r\ndata: {payload}\n\n\r\n")
                } else {
                    format!("data: {payload}\n\n")
                };
                let _ = tx.send(Bytes::from(frame));
            }
        }
    }

    fn subscribers(&self) -> usize {
        match self {
            Publisher::Hub(hub) => hub.stats(TOPIC).map_or(0, |s| s.subscribers),
            Publisher::Broadcast(tx) => tx.receiver_count(),
            Publisher::Frames(tx, _) => tx.receiver_count(),
        }
    }
}

fn build_hub(redis: Option<&str>) -> Result<tower_sse::Hub, String> {
    match redis {
        None => Ok(tower_sse::Hub::new()),
        #[cfg(feature = "redis")]
        Some(url) => {
            let storage = tower_sse::hub::RedisStorage::new(url)
                .map_err(|e| format!("redis: {e}"))?
                .prefix("bench");
            Ok(tower_sse::Hub::builder().redis(storage).build())
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => Err("--redis needs the `redis` feature".to_string()),
    }
}

/// Starts serving: binds both listeners, spawns the accept loops and the publisher on
/// the current runtime, and returns the SSE and stats addresses.
pub async fn start(options: &Options) -> Result<(SocketAddr, SocketAddr), String> {
    AUTO.store(options.auto, Ordering::Relaxed);
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("bind {}: {e}", options.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;

    let publisher = match options.stack {
        Stack::TowerSse => {
            let hub = build_hub(options.redis.as_deref())?;
            let service = tower::ServiceBuilder::new()
                .layer(tower_sse::SseLayer::new())
                .service(tower::service_fn({
                    let hub = hub.clone();
                    move |request: Request<Incoming>| {
                        let subscription = hub.subscribe(
                            [TOPIC],
                            request.extensions().get::<tower_sse::LastEventId>(),
                        );
                        let response = tower_sse::Sse::new(subscription).into_response();
                        async move { Ok::<_, Infallible>(response) }
                    }
                }));
            tokio::spawn(accept_loop(listener, service));
            Publisher::Hub(hub)
        }
        Stack::Axum => {
            use axum::extract::State;
            use axum::response::sse::{Event, KeepAlive, Sse};
            use tokio_stream::wrappers::BroadcastStream;
            let (tx, _) = broadcast::channel::<String>(1024);
            async fn events(
                State(tx): State<broadcast::Sender<String>>,
            ) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
                let stream = BroadcastStream::new(tx.subscribe())
                    .filter_map(|message| std::future::ready(message.ok()))
                    .map(|payload| Ok(Event::default().data(payload)));
                Sse::new(stream).keep_alive(KeepAlive::default())
            }
            let router = axum::Router::new()
                .route("/{*path}", axum::routing::get(events))
                .route("/", axum::routing::get(events))
                .with_state(tx.clone());
            tokio::spawn(accept_loop(listener, router));
            Publisher::Broadcast(tx)
        }
        Stack::Warp => {
            use tokio_stream::wrappers::BroadcastStream;
            use warp::Filter;
            let (tx, _) = broadcast::channel::<String>(1024);
            let filter = warp::get().map({
                let tx = tx.clone();
                move || {
                    let stream = BroadcastStream::new(tx.subscribe())
                        .filter_map(|message| std::future::ready(message.ok()))
                        .map(|payload| {
                            Ok::<_, Infallible>(warp::sse::Event::default().data(payload))
                        });
                    warp::sse::reply(warp::sse::keep_alive().stream(stream))
                }
            });
            tokio::spawn(accept_loop(listener, warp::service(filter)));
            Publisher::Broadcast(tx)
        }
        Stack::HyperFloor => {
            use hyper::body::Frame;
            use tokio_stream::wrappers::BroadcastStream;
            let (tx, _) = broadcast::channel::<Bytes>(1024);
            let service = tower::service_fn({
                let tx = tx.clone();
                move |_request: Request<Incoming>| {
                    let frames = BroadcastStream::new(tx.subscribe())
                        .filter_map(|message| std::future::ready(message.ok()))
                        .map(|frame| Ok::<_, Infallible>(Frame::data(frame)));
                    let response = Response::builder()
                        .header(http::header::CONTENT_TYPE, "text/event-stream")
                        .header(http::header::CACHE_CONTROL, "no-cache")
                        .body(http_body_util::StreamBody::new(frames))
                        .expect("response");
                    async move { Ok::<_, Infallible>(response) }
                }
            });
            tokio::spawn(accept_loop(listener, service));
            Publisher::Frames(tx, false)
        }
        Stack::RawFloor => {
            let (tx, _) = broadcast::channel::<Bytes>(1024);
            tokio::spawn(raw_accept_loop(listener, tx.clone()));
            Publisher::Frames(tx, true)
        }
    };

    let stats_listener = TcpListener::bind((options.listen.ip(), 0))
        .await
        .map_err(|e| format!("bind stats: {e}"))?;
    let stats_addr = stats_listener.local_addr().map_err(|e| e.to_string())?;
    let published = Arc::new(AtomicU64::new(0));
    let stats = tower::service_fn({
        let publisher = publisher.clone();
        let published = published.clone();
        move |_request: Request<Incoming>| {
            let body = format!(
                "{{\"cpu_ns\":{},\"rss_kib\":{},\"published\":{},\"subscribers\":{}}}",
                cpu_ns(),
                rss_kib(),
                published.load(Ordering::Relaxed),
                publisher.subscribers()
            );
            let response = Response::builder()
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))
                .expect("response");
            async move { Ok::<_, Infallible>(response) }
        }
    });
    tokio::spawn(accept_loop(stats_listener, stats));

    if options.rate > 0.0 {
        let (rate, size, events, start_after) = (
            options.rate,
            options.size,
            options.events,
            options.start_after,
        );
        tokio::spawn(async move {
            while publisher.subscribers() < start_after {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seq = 0u64;
            loop {
                ticks.tick().await;
                seq += 1;
                publisher.publish(payload(now_micros(), seq, size));
                published.store(seq, Ordering::Relaxed);
                if events.is_some_and(|k| seq >= k) {
                    break;
                }
            }
        });
    }
    Ok((addr, stats_addr))
}

/// The line a server prints once it listens.
pub fn listening_line(sse: SocketAddr, stats: SocketAddr) -> String {
    format!("LISTENING {sse} {stats}")
}

/// Parses the addresses out of a line holding [`listening_line`].
pub fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let (_, rest) = line.split_once("LISTENING ")?;
    let mut parts = rest.split_whitespace();
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Runs a server until the process is killed.
pub fn serve_forever(options: &Options) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.workers)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let (sse, stats) = start(options).await?;
        println!("{}", listening_line(sse, stats));
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::future::pending::<()>().await;
        Ok(())
    })
}

#[allow(dead_code)]
fn main() {
    let result = Options::from_args(std::env::args().skip(1)).and_then(|o| serve_forever(&o));
    if let Err(err) = result {
        eprintln!("fanout_server: {err}");
        std::process::exit(1);
    }
}
