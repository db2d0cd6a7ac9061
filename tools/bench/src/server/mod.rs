//! The fan-out servers (the `fanout-server` binary): events published at a fixed rate on
//! one topic or many ([`publisher`]), and an idle topic nobody publishes on, served on
//! tokio with `--workers` workers by:
//!
//! - `tower-sse`: the `Hub` as the service under `SseLayer::new()`, served by
//!   `tower_sse::serve` ([`tower_sse`](self::tower_sse));
//! - `axum` and `warp`: the usual idiom, a tokio `broadcast` per topic and each
//!   subscriber building its own events, served by `axum::serve` and `warp::serve`
//!   ([`broadcasts`]);
//! - `hyper-floor` and `raw-floor`: pre-encoded frames through hyper alone, or written to
//!   raw sockets by a plain accept loop ([`floors`]).
//!
//! Every listener has `TCP_NODELAY`, which the sockets it accepts inherit on Linux. A
//! second listener ([`control`](fn@control)) answers `GET /stats` (`{"published","subscribers"}`) and
//! `/publish-idle` (the same, after one event on the idle topic). The server prints
//! `LISTENING <URL of every topic> <URL of the idle topic> <control address>`.

mod broadcasts;
mod floors;
mod options;
mod publisher;
mod tower_sse;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
pub use options::{Options, Stack};
use publisher::Publisher;
use serde_json::json;
use tokio::net::TcpListener;

/// A listener whose accepted sockets have `TCP_NODELAY`.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = crate::client::socket(addr)?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Runs a server until the process is killed.
pub fn run(options: &Options) -> Result<(), String> {
    let ours = options.write_delay_ms.is_some() || options.compression.is_some();
    if (ours || options.redis.is_some()) && options.stack != Stack::TowerSse {
        return Err("--write-delay-ms, --compression and --redis are tower-sse's".into());
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    let runtime = runtime.worker_threads(options.workers).enable_all().build();
    runtime.map_err(|e| e.to_string())?.block_on(async {
        let text = |e: std::io::Error| e.to_string();
        let listener = listen(options.listen).map_err(text)?;
        let addr = listener.local_addr().map_err(text)?;
        let topics: Vec<String> = (0..options.topics)
            .map(|k| format!("topic=topic-{k}"))
            .collect();
        let every = format!("/events?{}", topics.join("&"));
        let (events, idle) = match options.stack {
            Stack::TowerSse => (every, "/events?topic=idle"),
            _ => ("/events".into(), "/idle"),
        };
        let sink = match options.stack {
            Stack::TowerSse => tower_sse::start(listener, options)?,
            Stack::Axum => broadcasts::start_axum(listener, options),
            Stack::Warp => broadcasts::start_warp(listener, options),
            Stack::HyperFloor => floors::start_hyper(listener),
            Stack::RawFloor => floors::start_raw(listener),
        };
        let control = listen(SocketAddr::new(addr.ip(), 0)).map_err(text)?;
        let control_addr = control.local_addr().map_err(text)?;
        println!("LISTENING http://{addr}{events} http://{addr}{idle} {control_addr}");
        let publisher = publisher::Publisher {
            sink,
            options: options.clone(),
            published: Default::default(),
        };
        self::control(control, publisher.clone());
        publisher.run().await;
        std::future::pending().await
    })
}

/// Serves the control listener.
fn control(listener: TcpListener, publisher: Publisher) {
    let service = tower::service_fn(move |request: Request<Incoming>| {
        if request.uri().path() == "/publish-idle" {
            publisher.publish_idle();
        }
        let (published, subscribers) = (&publisher.published, publisher.sink.subscribers());
        let body = json!({ "published": published.load(Relaxed), "subscribers": subscribers });
        let body = Full::<bytes::Bytes>::from(body.to_string());
        std::future::ready(Ok::<_, Infallible>(Response::new(body)))
    });
    tokio::spawn(floors::serve_http1(listener, service));
}
