//! Churn: many connect/read/disconnect cycles, many at once, against a server with a
//! `Hub` in its own process (this test binary run again as a child). Clients close
//! cleanly, reset, abort before the answer, or reset HTTP/2 streams. Afterwards every
//! subscriber is gone, the end report fired exactly once per stream, every place under
//! the limit is free, and the server's live heap is back where it was.
//!
//! "Before" is measured after the same load has run twice over (memory grows from idle
//! to a working size for the load, and stays there): a leak shows as growth after that.
//! The verdict rests on what is exact: the counts above, and the server's live heap
//! bytes (a counting global allocator, the least of ten readings), which must come back
//! to within 128 KiB, where a leak of 16 bytes a stream would show. RSS is reported, not
//! judged closely: the allocator keeps freed pages as it sees fit (+14% in RSS was seen
//! with the live heap 3 KB apart), so RSS is only held under twice its peak during the
//! warm-up, which no retention reaches and a gross leak does.
//!
//! `cargo test --all-features --test reliability` runs 10,000 cycles; the full run of
//! 100,000 is `cargo test --release --all-features --test reliability -- --ignored`
//! (`CHURN_CYCLES` and `CHURN_CONCURRENCY` override the size). Each run prints one
//! `CHURN ...` line with its figures.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_sse::{Hub, SseLayer, StreamLimit, WriteTimeout};

// ---- Live heap bytes --------------------------------------------------------------------
//
// The system allocator, counting the bytes allocated and not yet freed: an exact leak
// check next to RSS (which the allocator keeps at its high-water mark). The library
// forbids unsafe code; a global allocator cannot be written without it, so this test
// allows it for this one item.

mod live {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicIsize, Ordering};

    pub(crate) struct Counting {
        pub(crate) live: AtomicIsize,
    }

    #[allow(unsafe_code)]
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract, forwarded unchanged.
            let ptr = unsafe { System.alloc(layout) };
            if !ptr.is_null() {
                self.live
                    .fetch_add(layout.size() as isize, Ordering::Relaxed);
            }
            ptr
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract, forwarded unchanged.
            let ptr = unsafe { System.alloc_zeroed(layout) };
            if !ptr.is_null() {
                self.live
                    .fetch_add(layout.size() as isize, Ordering::Relaxed);
            }
            ptr
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: `ptr` and `layout` come from this allocator; forwarded unchanged.
            let new = unsafe { System.realloc(ptr, layout, new_size) };
            if !new.is_null() {
                let change = new_size as isize - layout.size() as isize;
                self.live.fetch_add(change, Ordering::Relaxed);
            }
            new
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` and `layout` come from this allocator; forwarded unchanged.
            unsafe { System.dealloc(ptr, layout) };
            self.live
                .fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
    }
}

#[global_allocator]
static HEAP: live::Counting = live::Counting {
    live: std::sync::atomic::AtomicIsize::new(0),
};

/// Topics the server publishes on, round robin.
const TOPICS: u64 = 8;
/// Hang guard for one cycle and for settling; never a time the test asserts.
const GUARD: Duration = Duration::from_secs(60);

// ---- The server, in its own process --------------------------------------------------

/// The server: `/events?topic=..` on a hub that gets an event every millisecond, and
/// `/stats` with its counters. Runs when `TOWER_SSE_CHURN_SERVER` is set; prints its
/// address and serves until killed.
#[test]
fn churn_server() {
    if std::env::var_os("TOWER_SSE_CHURN_SERVER").is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        const HISTORY: u64 = 1024;
        let hub = Hub::builder().history_events(HISTORY as usize).build();
        // Full histories from the start, so that the memory they take is there before
        // the clients come (and the publisher below keeps them full).
        for n in 0..HISTORY * TOPICS {
            let topic = format!("churn-{}", n % TOPICS);
            hub.publish(&topic, tower_sse::Event::data(&n.to_string()))
                .unwrap();
        }
        let limit = StreamLimit::new(20_000);
        let opened = Arc::new(AtomicU64::new(0));
        let ended = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let layer = SseLayer::new().limit(limit.clone()).on_end({
            let ended = ended.clone();
            move |_| {
                ended.fetch_add(1, Ordering::SeqCst);
            }
        });
        let sse = ServiceBuilder::new()
            .layer(layer)
            // Counted where the body is made: the layer builds it in the same poll.
            .map_response({
                let opened = opened.clone();
                move |response: Response<Either<_, _>>| {
                    if matches!(response.body(), Either::Left(_)) {
                        opened.fetch_add(1, Ordering::SeqCst);
                    }
                    response
                }
            })
            .service(hub.clone());
        let app = service_fn({
            let (hub, connections) = (hub.clone(), connections.clone());
            move |request: Request<Incoming>| {
                let sse = sse.clone();
                let stats = format!(
                    "opened={} ended={} subscribers={} open_streams={} connections={} topics={} heap={}",
                    opened.load(Ordering::SeqCst),
                    ended.load(Ordering::SeqCst),
                    hub.all_stats().iter().map(|s| s.subscribers).sum::<usize>(),
                    limit.open_streams(),
                    connections.load(Ordering::SeqCst),
                    hub.all_stats().len(),
                    HEAP.live.load(Ordering::Relaxed),
                );
                async move {
                    if request.uri().path() == "/stats" {
                        let body = Full::new(Bytes::from(stats))
                            .map_err(|e| match e {})
                            .boxed();
                        return Ok::<_, Infallible>(Response::new(body));
                    }
                    let response = sse.oneshot(request).await?;
                    Ok(response.map(|body| body.boxed()))
                }
            }
        });
        tokio::spawn({
            let hub = hub.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_millis(1));
                for n in 0u64.. {
                    tick.tick().await;
                    let topic = format!("churn-{}", n % TOPICS);
                    hub.publish(&topic, tower_sse::Event::data(&n.to_string()))
                        .unwrap();
                }
            }
        });
        // A backlog above the clients' concurrency: bursts of connects are queued, not
        // dropped.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
        let listener = socket.listen(4096).unwrap();
        println!("LISTENING {}", listener.local_addr().unwrap());
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let Ok(socket) = WriteTimeout::tcp(socket, Duration::from_secs(30)) else {
                continue;
            };
            connections.fetch_add(1, Ordering::SeqCst);
            let connections = connections.clone();
            let service = TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
                connections.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
}

struct ServerProcess {
    addr: SocketAddr,
    child: Child,
}

impl ServerProcess {
    fn spawn() -> Self {
        let (child, addr) = spawn_self("churn_server", &[("TOWER_SSE_CHURN_SERVER", "1")]);
        ServerProcess { addr, child }
    }

    /// Resident memory, in KiB.
    fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    async fn stats(&self) -> Stats {
        let body = timeout(GUARD, async {
            let mut client = h1_connect(self.addr).await;
            let response = client
                .send(Request::get("/stats").body(empty()).unwrap())
                .await;
            response.into_body().collect().await.unwrap().to_bytes()
        })
        .await
        .expect("hang guard: the server's answer to /stats");
        let text = String::from_utf8(body.to_vec()).unwrap();
        let field = |name: &str| -> u64 {
            text.split(' ')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap()
                .parse()
                .unwrap()
        };
        Stats {
            opened: field("opened"),
            ended: field("ended"),
            subscribers: field("subscribers"),
            open_streams: field("open_streams"),
            // Less the connection asking.
            connections: field("connections") - 1,
            topics: field("topics"),
            heap: field("heap"),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[derive(Debug, PartialEq)]
struct Stats {
    opened: u64,
    ended: u64,
    subscribers: u64,
    open_streams: u64,
    connections: u64,
    topics: u64,
    /// Live heap bytes.
    heap: u64,
}

// ---- The clients ----------------------------------------------------------------------

/// An id a recent client saw, for the clients that resume.
static RECENT_ID: AtomicU64 = AtomicU64::new(0);

fn topic(cycle: usize) -> String {
    format!("/events?topic=churn-{}", cycle as u64 % TOPICS)
}

/// One connect/read/disconnect cycle, in one of five ways. Returns the events read.
async fn cycle(addr: SocketAddr, n: usize) -> usize {
    match n % 5 {
        // Live, HTTP/1.1: the next event, then a clean close.
        0 => {
            let mut client = h1_connect(addr).await;
            let response = client.send(get(&topic(n)).body(empty()).unwrap()).await;
            assert_eq!(response.status(), 200);
            let mut events = events(response);
            let event = futures_util::StreamExt::next(&mut events).await.unwrap();
            RECENT_ID.store(event.id.parse().unwrap(), Ordering::Relaxed);
            drop(events);
            client.close();
            1
        }
        // Resuming with a Last-Event-ID: three events, in order, then a clean close.
        1 => {
            let resume = RECENT_ID.load(Ordering::Relaxed);
            let mut client = h1_connect(addr).await;
            let mut request = get(&topic(n));
            if resume > 0 {
                request = request.header("last-event-id", resume.to_string());
            }
            let response = client.send(request.body(empty()).unwrap()).await;
            let mut events = events(response);
            let mut last = 0;
            for _ in 0..3 {
                let event = futures_util::StreamExt::next(&mut events).await.unwrap();
                if event.event == "stream-reset" {
                    continue; // resumed from an id history no longer covers
                }
                let id: u64 = event.id.parse().unwrap();
                assert!(id > last.max(resume), "ids go up: {id} after {last}");
                last = id;
            }
            drop(events);
            client.close();
            3
        }
        // Abort: the request, then gone before the answer.
        2 => {
            let mut socket = TcpStream::connect(addr).await.unwrap();
            let request = format!("GET {} HTTP/1.1\r\nhost: x\r\n\r\n", topic(n));
            socket.write_all(request.as_bytes()).await.unwrap();
            0
        }
        // Reset: the first event, then an RST instead of a close.
        3 => {
            let mut socket = TcpStream::connect(addr).await.unwrap();
            let request = format!("GET {} HTTP/1.1\r\nhost: x\r\n\r\n", topic(n));
            socket.write_all(request.as_bytes()).await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            // The head, then one event (in a chunk of the chunked body).
            let event_read = |seen: &[u8]| {
                seen.windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .is_some_and(|head| seen[head + 4..].windows(2).any(|w| w == b"\n\n"))
            };
            while !event_read(&seen) {
                let read = socket.read(&mut buf).await.unwrap();
                assert!(read > 0, "the stream ended early");
                seen.extend_from_slice(&buf[..read]);
            }
            #[allow(deprecated)] // linger 0 resets at once; it never blocks
            socket.set_linger(Some(Duration::ZERO)).unwrap();
            1
        }
        // HTTP/2: two streams on one connection, each reset after an event.
        _ => {
            let mut client = h2_connect(addr).await;
            let mut read = 0;
            for _ in 0..2 {
                let response = client.send(get(&topic(n)).body(empty()).unwrap()).await;
                let mut events = events(response);
                futures_util::StreamExt::next(&mut events).await.unwrap();
                read += 1;
            }
            client.close();
            read
        }
    }
}

/// Streams one cycle opens (HTTP/2 cycles open two; aborted ones may open none).
fn streams_of(n: usize) -> u64 {
    match n % 5 {
        2 => 0,
        4 => 2,
        _ => 1,
    }
}

async fn settle(server: &ServerProcess) -> Stats {
    timeout(GUARD, async {
        loop {
            let stats = server.stats().await;
            if stats.subscribers == 0
                && stats.open_streams == 0
                && stats.connections == 0
                && stats.opened == stats.ended
            {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("hang guard: the server did not settle"))
}

/// The live heap of a settled server, as the least of a few readings: what is allocated
/// for a moment (an event being published, the `/stats` request itself) is not counted.
async fn heap_floor(server: &ServerProcess) -> u64 {
    let mut floor = u64::MAX;
    for _ in 0..10 {
        floor = floor.min(server.stats().await.heap);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    floor
}

async fn churn(cycles: usize, concurrency: usize) {
    let server = ServerProcess::spawn();
    let rss_cold = server.rss_kib();
    // The sampler records the highest RSS of each phase.
    let peak = Arc::new(AtomicU64::new(rss_cold));
    let running = Arc::new(AtomicBool::new(true));
    let sampler = std::thread::spawn({
        let (pid, peak, running) = (server.child.id(), peak.clone(), running.clone());
        move || {
            while running.load(Ordering::SeqCst) {
                peak.fetch_max(rss_kib(pid), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    });

    // The same load first, twice over: a server's memory grows from idle to its working
    // size for a load (runtime and allocator structures sized to the peak concurrency,
    // the hub's slots), and the allocator keeps the pages of its high-water mark. The
    // run must then add nothing: the live heap must come back to where it was. RSS is
    // reported, and only bounded by twice the warm-up's peak.
    run_cycles(&server, concurrency, size("CHURN_WARMUP", 2 * cycles)).await;
    let warm = settle(&server).await;
    let heap_before = heap_floor(&server).await;
    let rss_before = server.rss_kib();
    let warm_peak = peak.swap(rss_before, Ordering::SeqCst).max(rss_before);

    let read = run_cycles(&server, concurrency, cycles).await;
    let after = settle(&server).await;
    let heap_after = heap_floor(&server).await;
    let rss_after = server.rss_kib();
    running.store(false, Ordering::SeqCst);
    sampler.join().unwrap();
    let run_peak = peak.load(Ordering::SeqCst).max(rss_after);

    println!(
        "CHURN cycles={cycles} concurrency={concurrency} events_read={read} streams={} \
         ends_reported={} subscribers_after={} open_streams_after={} connections_after={} \
         heap_before={} heap_after={} rss_cold_kib={rss_cold} rss_warmup_peak_kib={warm_peak} \
         rss_before_kib={rss_before} rss_peak_kib={run_peak} rss_after_kib={rss_after} \
         rss_change={:+.1}%",
        after.opened - warm.opened,
        after.ended - warm.ended,
        after.subscribers,
        after.open_streams,
        after.connections,
        heap_before,
        heap_after,
        (rss_after as f64 / rss_before as f64 - 1.0) * 100.0,
    );
    // Every stream that was opened reported its end once: never twice (the counts would
    // differ), never zero (its subscription and its place would still be held).
    assert_eq!(after.opened, after.ended);
    let least: u64 = (0..cycles).map(streams_of).sum();
    assert!(after.opened - warm.opened >= least, "{after:?}");
    assert_eq!(
        (after.subscribers, after.open_streams, after.connections),
        (0, 0, 0)
    );
    // Topics are those the publisher keeps (with history), no more.
    assert_eq!(after.topics, TOPICS);
    // The live heap is back, but for structures that grew to a new peak of concurrent
    // streams (the topics' slot tables): at most 128 KiB, where a leak of 16 bytes a
    // stream would show as 160 KiB at the CI size.
    assert!(
        heap_after <= heap_before + 128 * 1024,
        "live heap after {} bytes grew by more than 128 KiB from {}",
        heap_after,
        heap_before
    );
    // What the allocator keeps is bounded by what the same load touched before; only a
    // gross leak doubles it.
    assert!(
        rss_after <= 2 * warm_peak,
        "RSS after {rss_after} KiB is more than twice the warm-up's peak of {warm_peak} KiB"
    );
}

/// Runs `cycles` cycles, `concurrency` at a time; returns the events read.
async fn run_cycles(server: &ServerProcess, concurrency: usize, cycles: usize) -> usize {
    let next = Arc::new(AtomicUsize::new(0));
    let read = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (addr, next, read) = (server.addr, next.clone(), read.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= cycles {
                        return;
                    }
                    let events = timeout(GUARD, cycle(addr, n))
                        .await
                        .unwrap_or_else(|_| panic!("hang guard: cycle {n}"));
                    read.fetch_add(events, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    read.load(Ordering::SeqCst)
}

fn size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_of_10_000_cycles_leaves_nothing_behind() {
    churn(size("CHURN_CYCLES", 10_000), size("CHURN_CONCURRENCY", 200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the full run: cargo test --release --all-features --test reliability -- --ignored"]
async fn churn_of_100_000_cycles_leaves_nothing_behind() {
    churn(
        size("CHURN_CYCLES", 100_000),
        size("CHURN_CONCURRENCY", 1_000),
    )
    .await;
}
