//! The fan-out servers (the `fanout-server` binary): events published at a fixed rate on
//! one topic or many, every subscriber of `/events` reading all of them, and an idle
//! topic nobody publishes on, served by one of five stacks on tokio with `--workers`
//! workers:
//!
//! - `tower-sse`: the `Hub` as the service under `SseLayer::new()` (default heartbeat,
//!   optional `batch_delay` and `compression`), served by `tower_sse::serve`, as the
//!   crate's README runs it; subscribers ask for `/events?topic=..` ([`events_path`]).
//! - `axum`: the usual idiom, a tokio `broadcast` per topic, each subscriber building its
//!   own `Event` (`Sse::new(..).keep_alive(KeepAlive::default())`), served by
//!   `axum::serve`.
//! - `warp`: the same idiom with `warp::sse::reply(warp::sse::keep_alive()..)`, served by
//!   `warp::serve`.
//! - `hyper-floor`: hyper's HTTP/1 connection alone, a body of pre-encoded frames from
//!   one broadcast: no SSE code.
//! - `raw-floor`: no HTTP library: read the request head, write a fixed response head,
//!   then each pre-encoded chunk.
//!
//! Every listener has `TCP_NODELAY` set, which the sockets it accepts inherit on Linux,
//! so every stack writes each event at once. A second listener ([`control`]) answers
//! `/stats` (subscribers, published), `/start` (the publisher waits for it with
//! `--paused`) and `/publish-idle` (one event on the idle topic). The server prints
//! `LISTENING <address> <control address>`.

mod axum;
mod broadcasts;
mod control;
mod floors;
pub use floors::serve_http1;
mod publisher;
mod tower_sse;
mod warp;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::codec::Codec;
use crate::feed::Feed;
pub use publisher::Sink;

/// The server side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Stack {
    /// tower-sse's `Hub` and `SseLayer`, served by `tower_sse::serve`.
    TowerSse,
    /// axum's `Sse` over tokio broadcasts, served by `axum::serve`.
    Axum,
    /// warp's `sse::reply` over tokio broadcasts, served by `warp::serve`.
    Warp,
    /// hyper with pre-encoded frames: the floor of any stack on hyper.
    HyperFloor,
    /// Pre-encoded chunks written to raw sockets: the floor of any stack.
    RawFloor,
}

impl Stack {
    /// Every stack, floors last.
    pub const ALL: [Stack; 5] = [
        Stack::TowerSse,
        Stack::Axum,
        Stack::Warp,
        Stack::HyperFloor,
        Stack::RawFloor,
    ];

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

/// The topic nobody publishes on (but `/publish-idle`).
pub const IDLE_TOPIC: &str = "idle";

/// The path of a stream of every one of `topics` topics on `stack`.
pub fn events_path(stack: Stack, topics: u64) -> String {
    match stack {
        Stack::TowerSse => {
            let query: Vec<String> = (0..topics).map(|k| format!("topic=topic-{k}")).collect();
            format!("/events?{}", query.join("&"))
        }
        _ => "/events".into(),
    }
}

/// The path of a stream of the idle topic on `stack`.
pub fn idle_path(stack: Stack) -> String {
    match stack {
        Stack::TowerSse => format!("/events?topic={IDLE_TOPIC}"),
        _ => "/idle".into(),
    }
}

/// Settings of a server.
#[derive(clap::Parser, Clone, Debug)]
#[command(
    name = "fanout-server",
    about = "An SSE fan-out server of the benchmarks"
)]
pub struct Options {
    /// The stack.
    #[arg(long, value_enum, default_value = "tower-sse")]
    pub stack: Stack,
    /// Events per second on each topic; 0 publishes nothing.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Topics, published to in turn; `/events` reads them all.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub topics: u64,
    /// Bytes of each padded payload.
    #[arg(long, default_value_t = 140)]
    pub size: usize,
    /// What the events carry.
    #[arg(long, value_enum, default_value = "padded")]
    pub feed: Feed,
    /// Publish every topic at once, `--rate` times a second, rather than spread evenly.
    #[arg(long)]
    pub burst: bool,
    /// Stop after this many events.
    #[arg(long)]
    pub events: Option<u64>,
    /// Publish only once `/start` is asked for.
    #[arg(long)]
    pub paused: bool,
    /// Where to listen for event streams.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// tower-sse: `Serve::max_connections` (default: the open-file limit less 100; the
    /// crate's own default, 7/8 of it, would hold 17,500 of 20,000).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// tower-sse: `SseLayer::batch_delay`, milliseconds.
    #[arg(long)]
    pub write_delay_ms: Option<u64>,
    /// tower-sse: compress streams with this codec alone, for clients that accept it.
    #[arg(long, value_enum)]
    pub compression: Option<Codec>,
    /// tower-sse: the compression level (default: the crate's).
    #[arg(long, requires = "compression")]
    pub compression_level: Option<u8>,
    /// tower-sse: the compression window, bytes (default: the crate's).
    #[arg(long, requires = "compression")]
    pub compression_window: Option<usize>,
    /// tower-sse: the hub on Redis Streams at this URL (feature `redis`).
    #[arg(long)]
    pub redis: Option<String>,
}

/// A listener whose accepted sockets have `TCP_NODELAY`.
async fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Runs a server until the process is killed.
pub fn run(options: &Options) -> Result<(), String> {
    let tower_sse_only = options.write_delay_ms.is_some()
        || options.compression.is_some()
        || options.redis.is_some()
        || options.max_connections.is_some();
    if tower_sse_only && options.stack != Stack::TowerSse {
        return Err(
            "--write-delay-ms, --compression, --redis, --max-connections: tower-sse only".into(),
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.workers)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let listener = listen(options.listen).await.map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let sink: Arc<dyn Sink> = match options.stack {
            Stack::TowerSse => tower_sse::start(listener, options)?,
            Stack::Axum => axum::start(listener, options),
            Stack::Warp => warp::start(listener, options),
            Stack::HyperFloor => floors::start_hyper(listener),
            Stack::RawFloor => floors::start_raw(listener),
        };
        let control = listen(SocketAddr::new(addr.ip(), 0)).await;
        let control = control.map_err(|e| e.to_string())?;
        let control_addr = control.local_addr().map_err(|e| e.to_string())?;
        let publisher = publisher::Publisher::new(options, sink);
        control::start(control, publisher.clone());
        tokio::spawn(publisher.run());
        println!("LISTENING {addr} {control_addr}");
        std::future::pending::<Result<(), String>>().await
    })
}
