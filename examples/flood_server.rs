//! The server that `tests/reliability_stalled.rs` runs in its own process and fills
//! with clients that stop reading: an axum `Router` under an `SseLayer` with a
//! `StreamLimit`, whose `/events` sends 16 KiB events as fast as the client takes them
//! (a client that stops reading stalls its stream at once), and whose `/open` answers
//! how many streams hold a place under the limit. Served by `axum::serve`, which has no
//! write timeout, or by `tower_sse::serve`.
//!
//! ```text
//! cargo run -p tower-sse-examples --example flood_server --features axum
//! curl -s http://127.0.0.1:<port>/open
//! ```
//!
//! Settings from the environment (unset means the default):
//! `SERVER` (`axum`, the default, or `tower-sse`), `STREAM_LIMIT` (50), and
//! `HEARTBEAT_MS`, `STALL_TIMEOUT_MS`, `WRITE_TIMEOUT_MS` (the last for `tower-sse`;
//! unset, the crate's defaults). It prints `LISTENING <address>` on stdout, and one
//! `stream ended: <reason>` line per stream on stderr.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use futures_util::stream;
use tower_sse::{Event, Sse, SseLayer, StreamLimit};

fn setting(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value}: not a number")),
    )
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let limit = StreamLimit::new(setting("STREAM_LIMIT").unwrap_or(50) as usize);
    let mut layer = SseLayer::new()
        .limit(limit.clone())
        .on_end(|end| eprintln!("stream ended: {}", end.reason));
    if let Some(ms) = setting("HEARTBEAT_MS") {
        layer = layer.heartbeat(Duration::from_millis(ms));
    }
    if let Some(ms) = setting("STALL_TIMEOUT_MS") {
        layer = layer.stall_timeout(Duration::from_millis(ms));
    }

    // One event, encoded once; every stream sends it again and again.
    let event = Event::data(&"x".repeat(16 * 1024));
    let app = Router::new()
        .route(
            "/events",
            get(move || {
                let event = event.clone();
                async move { Sse::new(stream::repeat(event)) }
            }),
        )
        .route(
            "/open",
            get(move || async move { limit.open_streams().to_string() }),
        )
        .layer(layer);

    // A listen backlog above the tests' burst of connections.
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(([127, 0, 0, 1], 0).into())?;
    let listener = socket.listen(4096)?;
    println!("LISTENING {}", listener.local_addr()?);
    match std::env::var("SERVER").as_deref() {
        Ok("tower-sse") => {
            let mut server = tower_sse::serve(listener, app);
            if let Some(ms) = setting("WRITE_TIMEOUT_MS") {
                server = server.write_timeout(Duration::from_millis(ms));
            }
            server.await;
            Ok(())
        }
        Ok("axum") | Err(_) => axum::serve(listener, app).await,
        Ok(other) => panic!("SERVER={other}: axum or tower-sse"),
    }
}
