//! The fan-out servers: events published at a fixed rate on one topic or many, every
//! subscriber reading all of them, served by one of five stacks. The `fanout-server`
//! binary is this on the command line; the suite runs it as child processes.
//!
//! - `tower-sse`: a `Hub` (default settings) and `SseLayer::new()`
//!   ([`crate::tower_sse_stack`]); the event is encoded once and shared.
//! - `axum`: the usual idiom, a tokio `broadcast::channel::<String>(1024)` per topic;
//!   the handler answers `Sse::new(stream.map(|p| Ok(Event::default().data(p))))
//!   .keep_alive(KeepAlive::default())` (several topics: `select_all` of their
//!   streams), so each subscriber builds its own `Event`.
//! - `warp`: the same idiom on warp 0.4, `warp::sse::reply(warp::sse::keep_alive()
//!   .stream(..))`.
//! - `hyper-floor`: hyper with a body yielding pre-encoded frames (`data: <payload>\n\n`,
//!   encoded once, shared `Bytes`) from one broadcast: nothing but hyper.
//! - `raw-floor`: no HTTP library: read the request head, write a fixed response head,
//!   then each pre-encoded chunk (chunks already waiting go out in the same write).
//!
//! All but `raw-floor` are served by the same accept loop (hyper's HTTP/1 connection,
//! default settings, `TCP_NODELAY`, a task per connection; `--conn auto`: hyper-util's
//! `auto::Builder`, as `axum::serve` does) on tokio with `--workers` workers.
//!
//! Every payload is JSON carrying `{"t":<unix microseconds at publish>,"k":<topic>,
//! "seq":<n on that topic>,..}`: by default padded to exactly `--size` bytes; `--feed
//! aircraft` or `sensors`: the examples' position reports and readings, with their event
//! types ([`crate::feed`]). Topics are published to in turn, spread evenly over each
//! second; `--burst`: all at once, `--rate` times a second (the aircraft example's tick).
//! `--compression <codec>` (tower-sse): `SseLayer::compression` with that codec alone,
//! `--compression-level` and `--compression-window` its settings. A second listener serves
//! `GET /stats`: `{"cpu_ns","rss_kib","syscw","published","subscribers"}` of this
//! process ([`crate::sys`]; `syscw` counts every `write` and `writev` call: socket
//! writes, and the runtime's wake-ups of sleeping workers (an `eventfd` write); not
//! `send`, so every stack here writes to its sockets with `writev`). The server prints `LISTENING <sse address> <stats address>`.

use std::convert::Infallible;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::Either;
use futures_util::stream::{Stream, StreamExt, select_all};
use http::{Request, Response, header};
use http_body_util::{Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::BroadcastStream;

use crate::codec::{Codec, Setting};
use crate::feed::{Feed, Generator};
use crate::tower_sse_stack::{self as tower_sse, Hub};

/// The server side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Stack {
    /// tower-sse's `Hub` and `SseLayer`.
    TowerSse,
    /// axum's `Sse` over tokio broadcasts, each subscriber encoding its own events.
    Axum,
    /// warp's `sse::reply` over tokio broadcasts.
    Warp,
    /// hyper with pre-encoded frames, no SSE code: the floor of any stack on hyper.
    HyperFloor,
    /// Pre-encoded chunks written to raw sockets: the floor of any stack.
    RawFloor,
}

impl Stack {
    /// The SSE stacks, in the order they run.
    pub const ALL: [Stack; 3] = [Stack::TowerSse, Stack::Axum, Stack::Warp];
    /// The reference floors.
    pub const FLOORS: [Stack; 2] = [Stack::HyperFloor, Stack::RawFloor];

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

/// How connections are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Http {
    /// hyper's HTTP/1 connection.
    Http1,
    /// hyper-util's `auto::Builder` (HTTP/1.1 and HTTP/2, with upgrades).
    Auto,
}

/// Settings of a server.
#[derive(clap::Parser, Clone, Debug)]
#[command(
    name = "fanout-server",
    about = "An SSE fan-out server for the benchmarks"
)]
pub struct Options {
    /// The stack.
    #[arg(long, value_enum, default_value = "tower-sse")]
    pub stack: Stack,
    /// Events per second on each topic; 0 publishes nothing.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Topics, published to in turn; every subscriber reads them all.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub topics: u64,
    /// Bytes of each payload.
    #[arg(long, default_value_t = 140)]
    pub size: usize,
    /// Stop after this many events.
    #[arg(long)]
    pub events: Option<u64>,
    /// Wait for this many subscriptions before publishing.
    #[arg(long, default_value_t = 0)]
    pub start_after: usize,
    /// Where to listen for event streams.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Redis URL for the hub's storage (tower-sse, feature `redis`).
    #[arg(long)]
    pub redis: Option<String>,
    /// How connections are served.
    #[arg(long, value_enum, default_value = "http1")]
    pub conn: Http,
    /// tower-sse: how long to wait to batch writes, milliseconds. Refused until the
    /// crate has that setting (`tower_sse_stack::WRITE_DELAY_SUPPORTED`).
    #[arg(long)]
    pub write_delay_ms: Option<u64>,
    /// What the events carry.
    #[arg(long, value_enum, default_value = "padded")]
    pub feed: Feed,
    /// Publish every topic at once, `--rate` times a second, rather than spread evenly.
    #[arg(long)]
    pub burst: bool,
    /// tower-sse: compress streams with this codec (alone), for clients that accept it.
    #[arg(long, value_enum)]
    pub compression: Option<Codec>,
    /// tower-sse: the compression level, 1 to 9 (default: the crate's, 3).
    #[arg(long, requires = "compression")]
    pub compression_level: Option<u8>,
    /// tower-sse: the compression window, bytes (default: the crate's, 8 KiB).
    #[arg(long, requires = "compression", value_parser = crate::number::<usize>)]
    pub compression_window: Option<usize>,
}

impl Options {
    /// The compression setting asked for, the crate's defaults filling the gaps.
    pub fn compression_setting(&self) -> Option<(Codec, Setting)> {
        let codec = self.compression?;
        let setting = Setting {
            level: self.compression_level.unwrap_or(Setting::DEFAULT.level),
            window: self.compression_window.unwrap_or(Setting::DEFAULT.window),
        };
        Some((codec, setting))
    }
}

/// Accepts connections on `listener` forever, serving each with `service`.
pub async fn accept_loop<S, B>(listener: TcpListener, http: Http, service: S)
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
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
        let (io, service) = (
            TokioIo::new(socket),
            TowerToHyperService::new(service.clone()),
        );
        tokio::spawn(async move {
            match http {
                Http::Http1 => {
                    let http1 = hyper::server::conn::http1::Builder::new();
                    let _ = http1.serve_connection(io, service).await;
                }
                Http::Auto => {
                    let auto = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = auto.serve_connection_with_upgrades(io, service).await;
                }
            }
        });
    }
}

/// The `raw-floor` server: per connection, read the request head, write a fixed
/// response head, then every pre-encoded chunk, until the client goes.
async fn raw_accept_loop(
    listener: TcpListener,
    tx: broadcast::Sender<Bytes>,
    subscribed: impl Fn() + Send + 'static,
) {
    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
        cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = socket.set_nodelay(true);
        let mut rx = tx.subscribe();
        subscribed();
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(512);
            let mut buf = [0u8; 512];
            while memchr::memmem::find(&head, b"\r\n\r\n").is_none() && head.len() < 16 * 1024 {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            if write_all(&mut socket, HEAD).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    message = rx.recv() => match message {
                        Ok(chunk) => {
                            // Chunks already waiting go out in the same write, as hyper
                            // does with the frames a body has ready.
                            let mut more = Vec::new();
                            while let Ok(next) = rx.try_recv() {
                                if more.is_empty() {
                                    more.extend_from_slice(&chunk);
                                }
                                more.extend_from_slice(&next);
                            }
                            let bytes = if more.is_empty() { &chunk[..] } else { &more[..] };
                            if write_all(&mut socket, bytes).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    read = socket.read(&mut buf) => if !matches!(read, Ok(n) if n > 0) {
                        return;
                    },
                }
            }
        });
    }
}

/// Writes all of `bytes` with `writev`, as hyper does: `syscw` in `/proc/PID/io` counts
/// `write` and `writev` calls but not `send` (what a plain `write` on a tokio or std
/// `TcpStream` is on Linux), so the floor's writes are counted like every stack's.
async fn write_all(socket: &mut TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match socket.write_vectored(&[IoSlice::new(bytes)]).await? {
            0 => return Err(std::io::ErrorKind::WriteZero.into()),
            n => bytes = &bytes[n..],
        }
    }
    Ok(())
}

/// Every topic's broadcast merged into one stream: the usual idiom.
fn merged(senders: &[broadcast::Sender<String>]) -> impl Stream<Item = String> + use<> {
    let ok = |message: Result<String, _>| std::future::ready(message.ok());
    match senders {
        [one] => Either::Left(BroadcastStream::new(one.subscribe()).filter_map(ok)),
        many => Either::Right(
            select_all(many.iter().map(|tx| BroadcastStream::new(tx.subscribe()))).filter_map(ok),
        ),
    }
}

/// How the publisher hands an event to the stack.
#[derive(Clone)]
enum Publisher {
    Hub(Hub, Arc<[String]>),
    Broadcast(Arc<[broadcast::Sender<String>]>),
    /// Pre-encoded frames; `true`: with the chunk framing around each.
    Frames(broadcast::Sender<Bytes>, bool),
}

impl Publisher {
    fn publish(&self, topic: usize, event_type: Option<&str>, payload: String) {
        match self {
            Publisher::Hub(hub, topics) => {
                tower_sse::publish(hub, &topics[topic], event_type, &payload)
            }
            Publisher::Broadcast(senders) => {
                // No subscriber is not an error here.
                let _ = senders[topic].send(payload);
            }
            Publisher::Frames(tx, chunked) => {
                let event = event_type.map_or(String::new(), |t| format!("event: {t}\n"));
                let frame = if *chunked {
                    let len = event.len() + payload.len() + "data: \n\n".len();
                    format!("{len:x}\r\n{event}data: {payload}\n\n\r\n")
                } else {
                    format!("{event}data: {payload}\n\n")
                };
                let _ = tx.send(Bytes::from(frame));
            }
        }
    }

    /// Subscribers of the first topic, as the stack counts them.
    fn subscribers(&self) -> usize {
        match self {
            Publisher::Hub(hub, topics) => tower_sse::subscribers(hub, &topics[0]),
            Publisher::Broadcast(senders) => senders[0].receiver_count(),
            Publisher::Frames(tx, _) => tx.receiver_count(),
        }
    }
}

/// Starts serving on the current runtime: binds both listeners, spawns the accept
/// loops and the publisher, and returns the SSE and stats addresses.
pub async fn start(options: &Options) -> Result<(SocketAddr, SocketAddr), String> {
    if options.redis.is_some() && options.stack != Stack::TowerSse {
        return Err("--redis is for --stack tower-sse".into());
    }
    let write_delay = Duration::from_millis(options.write_delay_ms.unwrap_or(0));
    if options.write_delay_ms.is_some() && !tower_sse::WRITE_DELAY_SUPPORTED {
        return Err("--write-delay-ms: tower-sse has no write batching setting yet".into());
    }
    if options.compression.is_some() && options.stack != Stack::TowerSse {
        return Err("--compression is for --stack tower-sse".into());
    }
    let event_type = options.feed.event_type();
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("bind {}: {e}", options.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (count, mut counted) = watch::channel(0usize);
    let count = Arc::new(count);
    let subscribed = move || count.send_modify(|n| *n += 1);
    let topics: Arc<[String]> = (0..options.topics).map(|k| format!("topic-{k}")).collect();
    let channels = || -> Arc<[_]> { topics.iter().map(|_| broadcast::channel(1024).0).collect() };
    let http = options.conn;

    let publisher = match options.stack {
        Stack::TowerSse => {
            let hub = tower_sse::hub(options.redis.as_deref())?;
            let settings = tower_sse::Settings {
                write_delay,
                compression: options.compression_setting(),
            };
            tower_sse::serve(
                listener,
                http,
                hub.clone(),
                topics.clone(),
                settings,
                subscribed,
            );
            Publisher::Hub(hub, topics.clone())
        }
        Stack::Axum => {
            use axum::extract::State;
            use axum::response::sse::{Event, KeepAlive, Sse};
            type Senders = Arc<[broadcast::Sender<String>]>;
            type Subscribed = Arc<dyn Fn() + Send + Sync>;
            async fn events(
                State((senders, subscribed, event_type)): State<(
                    Senders,
                    Subscribed,
                    Option<&'static str>,
                )>,
            ) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
                let stream = merged(&senders).map(move |payload| {
                    let event = Event::default();
                    let event = match event_type {
                        Some(t) => event.event(t),
                        None => event,
                    };
                    Ok(event.data(payload))
                });
                subscribed();
                Sse::new(stream).keep_alive(KeepAlive::default())
            }
            let senders: Senders = channels();
            let router = axum::Router::new()
                .route("/{*path}", axum::routing::get(events))
                .route("/", axum::routing::get(events))
                .with_state((
                    senders.clone(),
                    Arc::new(subscribed) as Subscribed,
                    event_type,
                ));
            tokio::spawn(accept_loop(listener, http, router));
            Publisher::Broadcast(senders)
        }
        Stack::Warp => {
            use warp::Filter;
            let senders: Arc<[broadcast::Sender<String>]> = channels();
            let filter = warp::get().map({
                let senders = senders.clone();
                move || {
                    let stream = merged(&senders).map(move |payload| {
                        let event = warp::sse::Event::default();
                        let event = match event_type {
                            Some(t) => event.event(t),
                            None => event,
                        };
                        Ok::<_, Infallible>(event.data(payload))
                    });
                    subscribed();
                    warp::sse::reply(warp::sse::keep_alive().stream(stream))
                }
            });
            tokio::spawn(accept_loop(listener, http, warp::service(filter)));
            Publisher::Broadcast(senders)
        }
        Stack::HyperFloor => {
            let (tx, _) = broadcast::channel::<Bytes>(1024);
            let service = tower::service_fn({
                let tx = tx.clone();
                move |_request: Request<Incoming>| {
                    let frames = BroadcastStream::new(tx.subscribe())
                        .filter_map(|message| std::future::ready(message.ok()))
                        .map(|frame| Ok::<_, Infallible>(Frame::data(frame)));
                    subscribed();
                    let response = Response::builder()
                        .header(header::CONTENT_TYPE, "text/event-stream")
                        .header(header::CACHE_CONTROL, "no-cache")
                        .body(StreamBody::new(frames));
                    async move { Ok::<_, Infallible>(response.expect("response")) }
                }
            });
            tokio::spawn(accept_loop(listener, http, service));
            Publisher::Frames(tx, false)
        }
        Stack::RawFloor => {
            let (tx, _) = broadcast::channel::<Bytes>(1024);
            tokio::spawn(raw_accept_loop(listener, tx.clone(), subscribed));
            Publisher::Frames(tx, true)
        }
    };

    let stats_listener = TcpListener::bind((options.listen.ip(), 0))
        .await
        .map_err(|e| format!("bind stats: {e}"))?;
    let stats_addr = stats_listener.local_addr().map_err(|e| e.to_string())?;
    let published = Arc::new(AtomicU64::new(0));
    let stats = tower::service_fn({
        let (publisher, published) = (publisher.clone(), published.clone());
        move |_request: Request<Incoming>| {
            let usage = crate::sys::usage();
            let body = serde_json::json!({
                "cpu_ns": usage.cpu_ns,
                "rss_kib": usage.rss_kib,
                "syscw": usage.syscw,
                "published": published.load(Ordering::Relaxed),
                "subscribers": publisher.subscribers(),
            });
            let response = Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body.to_string())));
            async move { Ok::<_, Infallible>(response.expect("response")) }
        }
    });
    tokio::spawn(accept_loop(stats_listener, Http::Http1, stats));

    if options.rate > 0.0 {
        let (topics, events, start_after) = (options.topics, options.events, options.start_after);
        let mut generator = Generator::new(options.feed, topics, options.size, 1.0 / options.rate);
        // Spread: one topic per tick; burst: every topic at each tick.
        let (period, per_tick) = if options.burst {
            (Duration::from_secs_f64(1.0 / options.rate), topics)
        } else {
            let period = Duration::from_secs_f64(1.0 / (options.rate * topics as f64));
            (period, 1)
        };
        tokio::spawn(async move {
            let _ = counted.wait_for(|n| *n >= start_after).await;
            // Missed ticks are caught up: the rate holds on average.
            let mut ticks = tokio::time::interval(period);
            let mut n = 0;
            loop {
                ticks.tick().await;
                for _ in 0..per_tick {
                    let (topic, seq) = (n % topics, n / topics + 1);
                    let payload = generator.next(crate::now_micros(), topic, seq);
                    publisher.publish(topic as usize, event_type, payload);
                    n += 1;
                    published.store(n, Ordering::Relaxed);
                    if events.is_some_and(|k| n >= k) {
                        return;
                    }
                }
            }
        });
    }
    Ok((addr, stats_addr))
}

/// Parses the addresses out of the `LISTENING <sse> <stats>` line a server prints.
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
        println!("LISTENING {sse} {stats}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::future::pending::<()>().await;
        Ok(())
    })
}
