//! A fan-out server's command line.

use std::net::SocketAddr;

use crate::codec::Codec;
use crate::feed::Feed;

/// The server side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Stack {
    TowerSse,
    Axum,
    Warp,
    HyperFloor,
    RawFloor,
}

/// An SSE fan-out server of the benchmarks.
#[derive(clap::Parser, Clone, Debug)]
#[command(name = "fanout-server")]
pub struct Options {
    #[arg(long, value_enum, default_value = "tower-sse")]
    pub stack: Stack,
    /// Events per second on each topic; 0 publishes nothing.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Topics, published to in turn.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub topics: u64,
    /// Bytes of each padded payload.
    #[arg(long, default_value_t = 140)]
    pub size: usize,
    #[arg(long, value_enum, default_value = "padded")]
    pub feed: Feed,
    /// Publish every topic at once, `--rate` times a second, rather than spread evenly.
    #[arg(long)]
    pub burst: bool,
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// tower-sse: `SseLayer::batch_delay`, milliseconds.
    #[arg(long)]
    pub write_delay_ms: Option<u64>,
    /// tower-sse: compress with this codec alone, for clients that accept it.
    #[arg(long, value_enum)]
    pub compression: Option<Codec>,
    /// tower-sse: the hub on Redis Streams at this URL (feature `redis`).
    #[arg(long)]
    pub redis: Option<String>,
}
