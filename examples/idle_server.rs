//! The server that `tests/idle_memory.rs` measures in its own process: open event streams
//! on a topic nobody publishes on, held by one of three stacks, with the heap of the
//! process counted by size so that what each stream holds can be told apart.
//!
//! - `STACK=tower-sse` (the default): `tower_sse::serve`, `SseLayer::new()` (heartbeat
//!   every 15 idle seconds) over a `Hub`; `GET /events?topic=idle`.
//! - `STACK=axum`: `axum::serve`, axum's own `Sse` over a tokio `broadcast` receiver,
//!   keep-alive every 15 s: the usual axum idiom.
//! - `STACK=raw`: the floor: a plain accept loop that reads the request head into a
//!   buffer on the stack and writes pre-encoded bytes (the response head, the heartbeat
//!   every 15 s, each published event) to the socket.
//!
//! Every stack also answers `GET /publish` (one event, `data: published`, to every
//! stream) and `GET /heap` (the heap: live bytes and allocations by size class); the
//! tower-sse stack also `GET /burst?n=<events>`: that many ready events of 140 bytes of
//! data, as fast as the client reads them.
//!
//! ```text
//! cargo run --release -p tower-sse-examples --example idle_server --features axum
//! curl -N 'http://127.0.0.1:<port>/events?topic=idle'
//! curl 'http://127.0.0.1:<port>/heap'
//! ```
//!
//! `ADDR` (default `127.0.0.1:0`), `HEARTBEAT_SECS` (default 15) and `MAX_CONNECTIONS` (`tower_sse::serve`'s cap,
//! default 19,990 here, above the 7/8 of a 20,000 open-file limit it would take). It
//! prints `LISTENING <address>` on stdout.
//!
//! The heap is counted by a global allocator that wraps the system's: a few atomic
//! additions per allocation, so the figures are the heap as the program uses it (what
//! `malloc` adds on top, and what the kernel holds, shows only in the RSS).

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_sse::{Event, Hub, SseLayer};

/// Size classes: up to 16 bytes, 17-32, ..., the last one everything above 64 KiB.
const CLASSES: usize = 14;

/// Live allocations and bytes per size class.
struct Counting {
    count: [AtomicI64; CLASSES],
    bytes: [AtomicI64; CLASSES],
}

fn class(size: usize) -> usize {
    let bits = usize::BITS - size.max(1).saturating_sub(1).leading_zeros();
    (bits.saturating_sub(4) as usize).min(CLASSES - 1)
}

impl Counting {
    fn add(&self, size: usize, sign: i64) {
        let class = class(size);
        self.count[class].fetch_add(sign, Ordering::Relaxed);
        self.bytes[class].fetch_add(sign * size as i64, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed on to the system allocator unchanged; the wrapper only
// counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.add(layout.size(), 1);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.add(layout.size(), -1);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.add(layout.size(), 1);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.add(layout.size(), -1);
        self.add(new_size, 1);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static HEAP: Counting = Counting {
    count: [const { AtomicI64::new(0) }; CLASSES],
    bytes: [const { AtomicI64::new(0) }; CLASSES],
};

/// The heap as text: one `HEAP <class> <allocations> <bytes>` line per size class in
/// use, then `HEAP total <allocations> <bytes>`.
fn heap_report() -> String {
    let mut report = String::new();
    let (mut count, mut bytes) = (0, 0);
    for class in 0..CLASSES {
        let n = HEAP.count[class].load(Ordering::Relaxed);
        let b = HEAP.bytes[class].load(Ordering::Relaxed);
        count += n;
        bytes += b;
        if n != 0 {
            let upto = 16usize << class;
            let name = if class == CLASSES - 1 {
                format!(">{}", upto / 2)
            } else {
                format!("<={upto}")
            };
            let _ = writeln!(report, "HEAP {name} {n} {b}");
        }
    }
    let _ = writeln!(report, "HEAP total {count} {bytes}");
    report
}

const IDLE_TOPIC: &str = "idle";

/// The heartbeat interval: `HEARTBEAT_SECS`, 15 by default (the crate's and axum's).
fn heartbeat() -> Duration {
    static HEARTBEAT: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *HEARTBEAT.get_or_init(|| {
        Duration::from_secs(
            std::env::var("HEARTBEAT_SECS")
                .ok()
                .map_or(15, |v| v.parse().expect("HEARTBEAT_SECS: a number")),
        )
    })
}
const PUBLISHED: &str = "published";

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr.parse().expect("ADDR: host:port"))?;
    // A backlog for a burst of connections (the kernel caps it at somaxconn).
    let listener = socket.listen(8192)?;
    println!("LISTENING {}", listener.local_addr()?);
    let stack = std::env::var("STACK").unwrap_or_else(|_| "tower-sse".into());
    match stack.as_str() {
        "tower-sse" => tower_sse_stack(listener).await,
        "axum" => axum_stack(listener).await,
        "raw" => raw_stack(listener).await,
        other => panic!("STACK={other}: tower-sse, axum or raw"),
    }
    Ok(())
}

fn text(body: String) -> Full<Bytes> {
    Full::new(Bytes::from(body))
}

async fn tower_sse_stack(listener: TcpListener) {
    use futures_util::StreamExt;
    let hub = Hub::new();
    let app = ServiceBuilder::new()
        .layer(SseLayer::new().heartbeat(heartbeat()))
        .service(service_fn(move |request: Request<Incoming>| {
            let hub = hub.clone();
            async move {
                match request.uri().path() {
                    "/publish" => {
                        hub.publish(IDLE_TOPIC, Event::data(PUBLISHED))
                            .expect("a topic the hub takes");
                        Ok::<_, Infallible>(Response::new(Either::Right(text("ok".into()))))
                    }
                    "/heap" => Ok(Response::new(Either::Right(text(heap_report())))),
                    "/burst" => {
                        let n: usize = request
                            .uri()
                            .query()
                            .and_then(|q| q.strip_prefix("n="))
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(1_000_000);
                        let event = Event::data(&"x".repeat(140));
                        let events = futures_util::stream::repeat(event).take(n);
                        let sse = tower_sse::Sse::new(events).into_response();
                        Ok(sse.map(|body| Either::Left(Either::Right(body))))
                    }
                    _ => {
                        let response = hub.oneshot(request).await?;
                        Ok(response.map(|body| Either::Left(Either::Left(body))))
                    }
                }
            }
        }));
    let max = std::env::var("MAX_CONNECTIONS")
        .ok()
        .map_or(19_990, |v| v.parse().expect("MAX_CONNECTIONS: a number"));
    tower_sse::serve(listener, app).max_connections(max).await;
}

async fn axum_stack(listener: TcpListener) {
    use axum::response::sse::{Event as AxumEvent, KeepAlive, Sse};
    use axum::routing::get;
    use futures_util::StreamExt;

    let (sender, _) = broadcast::channel::<Bytes>(16);
    let events = {
        let sender = sender.clone();
        move || {
            let receiver = sender.subscribe();
            async move {
                let stream = tokio_stream::wrappers::BroadcastStream::new(receiver).filter_map(
                    |item| async move {
                        let data = item.ok()?;
                        let data = std::str::from_utf8(&data).ok()?.to_owned();
                        Some(Ok::<_, Infallible>(AxumEvent::default().data(data)))
                    },
                );
                Sse::new(stream).keep_alive(KeepAlive::default().interval(heartbeat()))
            }
        }
    };
    let app = axum::Router::new()
        .route("/events", get(events))
        .route(
            "/publish",
            get(move || async move {
                let _ = sender.send(Bytes::from_static(PUBLISHED.as_bytes()));
                "ok"
            }),
        )
        .route("/heap", get(|| async { heap_report() }));
    axum::serve(listener, app).await.expect("axum serves");
}

async fn raw_stack(listener: TcpListener) {
    let (sender, _) = broadcast::channel::<Bytes>(16);
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(raw_connection(socket, sender.clone()));
    }
}

/// One connection of the raw floor: the head read into a buffer that is freed once
/// read, then only pre-encoded bytes written (close-delimited, no chunked framing).
async fn raw_connection(mut socket: TcpStream, sender: broadcast::Sender<Bytes>) {
    // Boxed: the task keeps no room for the head while it streams.
    let Some(head) = Box::pin(read_head(&mut socket)).await else {
        return;
    };
    let answer = |body: String| {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    if head.starts_with(b"GET /publish ") {
        let _ = sender.send(Bytes::from(format!("data: {PUBLISHED}\n\n")));
        let _ = socket.write_all(answer("ok".into()).as_bytes()).await;
        return;
    }
    if head.starts_with(b"GET /heap ") {
        let _ = socket.write_all(answer(heap_report()).as_bytes()).await;
        return;
    }
    drop(head);
    let mut events = sender.subscribe();
    drop(sender);
    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
        cache-control: no-cache\r\nconnection: close\r\n\r\n";
    if socket.write_all(HEAD).await.is_err() {
        return;
    }
    let mut buf = [0u8; 16];
    loop {
        let bytes = tokio::select! {
            event = events.recv() => match event {
                Ok(bytes) => bytes,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            () = tokio::time::sleep(heartbeat()) => Bytes::from_static(b":\n\n"),
            read = socket.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
        };
        if socket.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

/// The request head, read into a buffer of 2 KiB at most.
async fn read_head(socket: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(2048);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() == head.capacity() {
            return None;
        }
        match socket.read_buf(&mut head).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    Some(head)
}
