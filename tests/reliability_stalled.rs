//! Stalled, slow and vanished clients against a real server with a `Hub`, over real
//! sockets, with every accepted connection wrapped in `WriteTimeout::tcp`:
//!
//! - a client that never reads and one that reads one byte a second are closed (the hub
//!   cuts their subscriptions when they fall behind, the write timeout closes their
//!   connections), while healthy clients on the same server receive every event, in
//!   order, and the hub's history stays within its bound;
//! - a client that vanishes without closing, on a quiet stream that only carries
//!   heartbeats: its packets are dropped (its network interface is taken down, in a
//!   network namespace), and the connection is closed once the heartbeat goes
//!   unacknowledged for the timeout.
//!
//! Waiting is bounded by generous hang guards; no duration is asserted.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tower::ServiceBuilder;
use tower_sse::{EndReason, Event, Hub, SseLayer, WriteTimeout};

const HEARTBEAT: Duration = Duration::from_secs(1);
/// Twice the heartbeat, as `WriteTimeout` recommends.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
const HISTORY: usize = 1_000;
const QUEUE: usize = 256;
/// Hang guard: far beyond anything the tests wait for.
const GUARD: Duration = Duration::from_secs(120);

/// A server as the `WriteTimeout` docs recommend: `/events?topic=..` on a hub, every
/// connection wrapped in `WriteTimeout::tcp`. It counts open connections and reports.
struct Server {
    addr: SocketAddr,
    hub: Hub,
    connections: Arc<AtomicUsize>,
    ends: Arc<Mutex<Vec<EndReason>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Decrements the connection count when the connection task ends, however it ends.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn start(ip: IpAddr) -> Server {
    let hub = Hub::builder()
        .history_events(HISTORY)
        .queue_events(QUEUE)
        .build();
    let ends = Arc::new(Mutex::new(Vec::new()));
    let layer = SseLayer::new().heartbeat(HEARTBEAT).on_end({
        let ends = ends.clone();
        move |end| ends.lock().unwrap().push(end.reason)
    });
    let service = ServiceBuilder::new().layer(layer).service(hub.clone());
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let accept = tokio::spawn({
        let connections = connections.clone();
        async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let socket = WriteTimeout::tcp(socket, WRITE_TIMEOUT).unwrap();
                connections.fetch_add(1, Ordering::SeqCst);
                let open = Open(connections.clone());
                let service = TowerToHyperService::new(service.clone());
                tokio::spawn(async move {
                    let _open = open;
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        }
    });
    Server {
        addr,
        hub,
        connections,
        ends,
        accept,
    }
}

impl Server {
    fn gone(&self) -> usize {
        let ends = self.ends.lock().unwrap();
        ends.iter().filter(|r| **r == EndReason::ClientGone).count()
    }

    fn ends(&self) -> usize {
        self.ends.lock().unwrap().len()
    }
}

/// A raw HTTP/1.1 request for an event stream.
fn request_bytes(topic: &str) -> Vec<u8> {
    format!("GET /events?topic={topic} HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n")
        .into_bytes()
}

/// The ids in the complete frames of `text`, consuming them; `true` once the event
/// whose data is `last` is among them.
fn take_ids(text: &mut String, ids: &mut Vec<u64>) -> bool {
    let Some(end) = text.rfind("\n\n") else {
        return false;
    };
    let mut last = false;
    for line in text[..end].lines() {
        if let Some(id) = line.strip_prefix("id: ") {
            ids.push(id.parse().unwrap());
        }
        last |= line == "data: last";
    }
    text.drain(..end + 2);
    last
}

/// A healthy client: reads everything, and tells how many events it has so far.
fn healthy(
    addr: SocketAddr,
    topic: &'static str,
    received: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<u64>> {
    tokio::spawn(async move {
        let mut client = h1_connect(addr).await;
        let response = client
            .send(
                get(&format!("/events?topic={topic}"))
                    .body(empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut text = String::new();
        let mut ids = Vec::new();
        while let Some(data) = next_data(&mut body).await {
            text.push_str(std::str::from_utf8(&data).unwrap());
            let last = take_ids(&mut text, &mut ids);
            received.store(ids.len(), Ordering::SeqCst);
            if last {
                break;
            }
        }
        ids
    })
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    timeout(GUARD, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("hang guard: {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_or_read_a_byte_a_second_are_closed_and_healthy_ones_get_everything()
 {
    let server = start(IpAddr::from([127, 0, 0, 1])).await;
    const HEALTHY: usize = 3;
    let counts: Vec<Arc<AtomicUsize>> = (0..HEALTHY).map(|_| Arc::default()).collect();
    let readers: Vec<_> = counts
        .iter()
        .map(|count| healthy(server.addr, "t", count.clone()))
        .collect();

    // Never reads: sends its request and sits there.
    let mut never = TcpStream::connect(server.addr).await.unwrap();
    never.write_all(&request_bytes("t")).await.unwrap();
    // Reads one byte a second, for as long as the test runs.
    let slow_bytes = Arc::new(AtomicUsize::new(0));
    let slow = tokio::spawn({
        let (addr, slow_bytes) = (server.addr, slow_bytes.clone());
        async move {
            let mut socket = TcpStream::connect(addr).await.unwrap();
            socket.write_all(&request_bytes("t")).await.unwrap();
            let mut byte = [0u8; 1];
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                match socket.read(&mut byte).await {
                    Ok(1) => slow_bytes.fetch_add(1, Ordering::SeqCst),
                    _ => break,
                };
            }
        }
    });
    until("every client subscribed", || {
        server.hub.stats("t").map_or(0, |s| s.subscribers) == HEALTHY + 2
    })
    .await;
    assert_eq!(server.connections.load(Ordering::SeqCst), HEALTHY + 2);

    // Publish 2 KiB events, never more than 100 ahead of the slowest healthy client
    // (its queue holds 256), until both stalled clients' connections are closed.
    let payload = "p".repeat(2048);
    let mut published = Vec::new();
    let mut max_history = 0;
    timeout(GUARD, async {
        while server.connections.load(Ordering::SeqCst) > HEALTHY || server.gone() < 2 {
            let event = Event::data(&format!("{} {payload}", published.len()));
            published.push(server.hub.publish("t", event).unwrap().id().unwrap());
            max_history = max_history.max(server.hub.stats("t").unwrap().history);
            while counts
                .iter()
                .any(|c| published.len() - c.load(Ordering::SeqCst).min(published.len()) > 100)
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    })
    .await
    .expect("hang guard: the stalled clients were not closed");

    // Both stalled clients are gone: their connections closed, their subscriptions
    // dropped, each end reported once; the healthy ones are untouched.
    assert_eq!(server.connections.load(Ordering::SeqCst), HEALTHY);
    assert_eq!(server.hub.stats("t").unwrap().subscribers, HEALTHY);
    assert_eq!(server.gone(), 2);
    assert_eq!(server.ends(), 2);
    assert!(max_history <= HISTORY, "history stayed within its bound");
    let stats = server.hub.stats("t").unwrap();
    assert!(stats.lagged <= 2, "{stats:?}");
    println!(
        "published {} events of 2 KiB; stalled clients closed; the slow one read {} bytes; hub: {stats:?}",
        published.len(),
        slow_bytes.load(Ordering::SeqCst)
    );

    // Every healthy client received every event, in order, exactly once (it closes
    // after the last one, so that one goes out only now).
    published.push(
        server
            .hub
            .publish("t", Event::data("last"))
            .unwrap()
            .id()
            .unwrap(),
    );

    for reader in readers {
        let ids = timeout(GUARD, reader)
            .await
            .expect("hang guard: a healthy client reads up to the last event")
            .unwrap();
        assert_eq!(ids, published);
    }
    slow.abort();
    drop(never);
}

// ---- A peer that vanishes without closing, in a network namespace -------------------

/// A network namespace joined to this one by a veth pair: the host side has `host`, the
/// namespace side `peer`. Removed when dropped.
struct Netns {
    name: String,
    inside: String,
    host_if: String,
    host: IpAddr,
    peer: IpAddr,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Netns {
    /// `None` where namespaces cannot be made (not root, no `ip`).
    fn create() -> Option<Netns> {
        let pid = std::process::id();
        let (x, y) = ((pid / 64) % 256, (pid % 64) * 4);
        let netns = Netns {
            name: format!("tower-sse-{pid}"),
            inside: format!("tsse{pid}b"),
            host_if: format!("tsse{pid}a"),
            // 198.18.0.0/15 is set aside for network tests (RFC 2544).
            host: IpAddr::from([198, 18, x as u8, y as u8 + 1]),
            peer: IpAddr::from([198, 18, x as u8, y as u8 + 2]),
        };
        let (host, peer) = (format!("{}/30", netns.host), format!("{}/30", netns.peer));
        let ok = ip(&["netns", "add", &netns.name])
            && ip(&[
                "link",
                "add",
                &netns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &netns.inside,
            ])
            && ip(&["link", "set", &netns.inside, "netns", &netns.name])
            && ip(&["addr", "add", &host, "dev", &netns.host_if])
            && ip(&["link", "set", &netns.host_if, "up"])
            && netns.exec(&["ip", "addr", "add", &peer, "dev", &netns.inside])
            && netns.exec(&["ip", "link", "set", &netns.inside, "up"])
            && netns.exec(&["ip", "link", "set", "lo", "up"]);
        ok.then_some(netns)
    }

    fn exec(&self, command: &[&str]) -> bool {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(command);
        ip(&args)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        ip(&["link", "del", &self.host_if]);
        ip(&["netns", "del", &self.name]);
    }
}

/// The client in the namespace: run by the test as a child process with
/// `TOWER_SSE_HALF_OPEN` set to the server's address. It opens a stream, prints `READY`
/// once the first heartbeat arrives, and reads until killed.
#[test]
fn half_open_client() {
    let Ok(addr) = std::env::var("TOWER_SSE_HALF_OPEN") else {
        return;
    };
    let addr: SocketAddr = addr.parse().unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async move {
            let mut client = h1_connect(addr).await;
            let response = client
                .send(get("/events?topic=quiet").body(empty()).unwrap())
                .await;
            assert_eq!(response.status(), 200);
            let mut body = response.into_body();
            let first: Bytes = next_data(&mut body).await.unwrap();
            assert_eq!(first, ":\n\n");
            println!("READY");
            while next_data(&mut body).await.is_some() {}
            std::future::pending::<()>().await;
        });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "test-netns"),
    ignore = "needs root and ip netns: cargo test --features test-netns"
)]
async fn a_client_that_vanishes_without_closing_is_closed_after_the_heartbeat_goes_unacknowledged()
{
    let Some(netns) = Netns::create() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to make network namespaces (ip netns, as root)"
        );
        eprintln!("skipped: network namespaces are not available here (needs root and ip)");
        return;
    };
    let server = start(netns.host).await;
    // A healthy client on the same quiet topic, from this namespace.
    let healthy_count = Arc::new(AtomicUsize::new(0));
    let reader = healthy(server.addr, "quiet", healthy_count.clone());

    use std::io::BufRead;
    let mut child = KillOnDrop(
        Command::new("ip")
            .args(["netns", "exec", &netns.name])
            .arg(std::env::current_exe().unwrap())
            .args([
                "half_open_client",
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("TOWER_SSE_HALF_OPEN", server.addr.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("READY"))
    });
    assert!(
        timeout(GUARD, ready)
            .await
            .expect("hang guard: the client in the namespace prints READY")
            .unwrap(),
        "the client started"
    );
    until("both clients subscribed", || {
        server.hub.stats("quiet").map_or(0, |s| s.subscribers) == 2
    })
    .await;
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);

    // The client's network goes away: nothing it sends or is sent arrives any more, and
    // nothing tells the server so. It stays alive, holding its socket open.
    assert!(netns.exec(&["ip", "link", "set", &netns.inside, "down"]));

    until("the vanished client's connection closed", || {
        server.connections.load(Ordering::SeqCst) == 1
    })
    .await;
    until("its end reported", || server.ends() == 1).await;
    assert_eq!(server.gone(), 1);
    assert_eq!(server.hub.stats("quiet").unwrap().subscribers, 1);

    // The healthy client is still served.
    let id = server
        .hub
        .publish("quiet", Event::data("last"))
        .unwrap()
        .id()
        .unwrap();
    let ids = timeout(GUARD, reader)
        .await
        .expect("hang guard: the healthy client reads the last event")
        .unwrap();
    assert_eq!(ids, [id]);
    // (No count of ends here: the healthy client has left once it read `last`, and its
    // end may be reported at any moment; it was still subscribed above.)
    drop(child);
}

/// Kills the client process however the test ends, before its namespace goes.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---- Clients that stop reading, under a stream limit, in a server process -------------

/// The server is an axum `Router`, served by `axum::serve` or `tower_sse::serve`.
#[cfg(feature = "axum")]
mod stop_reading {
    use super::*;

    /// `examples/flood_server.rs` in its own process: streams that send as fast as the
    /// client reads, under a limit of 50, with `/open` saying how many hold a place.
    struct FloodServer {
        child: std::process::Child,
        addr: SocketAddr,
        /// Its stderr, line by line, as it comes.
        log: Arc<Mutex<Vec<String>>>,
    }

    const FLOOD_LIMIT: usize = 50;
    const FLOOD_CLIENTS: usize = 200;

    impl FloodServer {
        fn start(envs: &[(&str, &str)]) -> FloodServer {
            use std::io::BufRead;
            let binary = build_examples(&["flood_server"]).join("flood_server");
            let mut child = Command::new(binary)
                .env("STREAM_LIMIT", FLOOD_LIMIT.to_string())
                .envs(envs.iter().copied())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let log = Arc::new(Mutex::new(Vec::new()));
            let stderr = child.stderr.take().unwrap();
            std::thread::spawn({
                let log = log.clone();
                move || {
                    for line in std::io::BufReader::new(stderr)
                        .lines()
                        .map_while(Result::ok)
                    {
                        log.lock().unwrap().push(line);
                    }
                }
            });
            let stdout = child.stdout.take().unwrap();
            let addr = listening_address(
                std::io::BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok),
            );
            FloodServer { child, addr, log }
        }

        fn open_fds(&self) -> usize {
            std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
                .unwrap()
                .count()
        }

        /// Log lines that contain `needle`.
        fn lines(&self, needle: &str) -> usize {
            let log = self.log.lock().unwrap();
            log.iter().filter(|line| line.contains(needle)).count()
        }

        fn ends(&self) -> usize {
            self.lines("stream ended: ")
        }
    }

    impl Drop for FloodServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Asks the server how many streams hold a place, on the test's own connection.
    async fn open_streams(stats: &mut H1) -> usize {
        use http_body_util::BodyExt;
        let response = stats
            .send(http::Request::get("/open").body(empty()).unwrap())
            .await;
        assert_eq!(response.status(), 200);
        let body = timeout(GUARD, response.into_body().collect())
            .await
            .expect("hang guard: the body of /open")
            .unwrap()
            .to_bytes();
        std::str::from_utf8(&body).unwrap().parse().unwrap()
    }

    /// A client that asks for a stream with a small receive buffer, reads the response's
    /// head (and whatever came with it), and then never reads again. Gives the status and
    /// the socket, which it holds open.
    async fn stop_reading_client(addr: SocketAddr) -> (u16, TcpStream) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(addr).await.unwrap();
        stream.write_all(&request_bytes("flood")).await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let read = stream.read(&mut buf).await.unwrap();
            assert!(read > 0, "the server closed before answering");
            head.extend_from_slice(&buf[..read]);
        }
        let status = std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap();
        (status, stream)
    }

    /// `count` clients that connect at once and stop reading: how many were served (200),
    /// how many refused (503), and the sockets of those served.
    async fn stop_reading_clients(addr: SocketAddr, count: usize) -> (Vec<TcpStream>, usize) {
        let clients: Vec<_> = (0..count)
            .map(|_| tokio::spawn(stop_reading_client(addr)))
            .collect();
        let mut served = Vec::new();
        let mut refused = 0;
        for client in clients {
            let (status, socket) = timeout(GUARD, client)
                .await
                .expect("hang guard: a client got no answer")
                .unwrap();
            match status {
                200 => served.push(socket),
                503 => refused += 1,
                other => panic!("status {other}"),
            }
        }
        (served, refused)
    }

    /// Checks that every connection the server holds for a stream also holds its place
    /// under the limit, and gives how many such connections there are: the server's file
    /// descriptors beyond `baseline`, less the `idle` connections of refused clients (at
    /// most: the server may have closed some). The count of places is read first; a
    /// connection that lets go of its stream closes before the place is given back (hyper
    /// drops a connection's socket before its response body), so a connection seen open
    /// after the count held its place when it was read.
    async fn check_places_held(
        server: &FloodServer,
        stats: &mut H1,
        baseline: usize,
        idle: usize,
    ) -> usize {
        let places = open_streams(stats).await;
        let connections = server.open_fds().saturating_sub(baseline + idle);
        assert!(
            connections <= places,
            "{connections} connections are open for streams, but only {places} places are held"
        );
        assert!(places <= FLOOD_LIMIT);
        connections
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_axum_serve_stalled_streams_hold_their_places_until_their_connections_go() {
        let server = FloodServer::start(&[
            ("SERVER", "axum"),
            ("HEARTBEAT_MS", "250"),
            ("STALL_TIMEOUT_MS", "1000"),
        ]);
        let mut stats = h1_connect(server.addr).await;
        assert_eq!(open_streams(&mut stats).await, 0);
        let fds_before = server.open_fds();

        // 200 clients at once, each holding its connection: the limit serves 50 (more only
        // if places came back meanwhile), and refuses the others.
        let clients: Vec<_> = (0..FLOOD_CLIENTS)
            .map(|_| tokio::spawn(stop_reading_client(server.addr)))
            .collect();
        let (mut served, mut refused) = (Vec::new(), Vec::new());
        for client in clients {
            let (status, socket) = timeout(GUARD, client)
                .await
                .expect("hang guard: a client got no answer")
                .unwrap();
            match status {
                200 => served.push(socket),
                503 => refused.push(socket),
                other => panic!("status {other}"),
            }
        }
        assert!(served.len() >= FLOOD_LIMIT, "{} served", served.len());
        assert_eq!(served.len() + refused.len(), FLOOD_CLIENTS);
        let idle = refused.len();

        // Every stream served is found stalled and reported once. From then on, a stalled
        // stream either goes with its connection (the layer wakes its task, and if hyper
        // polls it, it fails the connection) or keeps its place for as long as the
        // connection is held: axum::serve has no write timeout, and hyper polls no body
        // whose connection cannot write.
        until("every stream served reported stalled", || {
            server.lines("stream ended: stalled") == served.len()
        })
        .await;
        let mut samples = 0;
        let mut held = usize::MAX;
        while held > 0 && samples < 100 {
            held = check_places_held(&server, &mut stats, fds_before, idle).await;
            samples += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "axum::serve: {} served, {} refused; {held} stalled connections still held after \
             {samples} looks",
            served.len(),
            refused.len()
        );
        // Clients that come now are served only as places come back.
        let (late, late_refused) = stop_reading_clients(server.addr, FLOOD_LIMIT).await;
        check_places_held(&server, &mut stats, fds_before, idle + late_refused).await;
        assert_eq!(
            server.lines("stream ended: stalled"),
            served.len(),
            "each stream's end reported once"
        );

        // The clients go: their connections, places and file descriptors come back.
        drop((served, refused, late));
        until(
            "the server's file descriptors back to where they were",
            || server.open_fds() == fds_before,
        )
        .await;
        assert_eq!(open_streams(&mut stats).await, 0);
        let (fresh, refused) = stop_reading_clients(server.addr, FLOOD_LIMIT).await;
        assert_eq!(
            (fresh.len(), refused),
            (FLOOD_LIMIT, 0),
            "fresh clients are served"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_tower_sse_serve_stalled_streams_hold_their_places_until_the_write_timeout_closes_them()
     {
        let server = FloodServer::start(&[
            ("SERVER", "tower-sse"),
            ("HEARTBEAT_MS", "250"),
            ("STALL_TIMEOUT_MS", "1000"),
            ("WRITE_TIMEOUT_MS", "4000"),
        ]);
        let mut stats = h1_connect(server.addr).await;
        assert_eq!(open_streams(&mut stats).await, 0);
        let fds_before = server.open_fds();

        let (stalled, refused) = stop_reading_clients(server.addr, FLOOD_LIMIT).await;
        assert_eq!((stalled.len(), refused), (FLOOD_LIMIT, 0));
        // Found stalled (the stall timeout is the shorter), then gone with their
        // connections, at the latest when the write timeout closes them; until then each
        // holds its place.
        until("the 50 streams reported stalled", || {
            server.lines("stream ended: stalled") == FLOOD_LIMIT
        })
        .await;
        timeout(GUARD, async {
            while check_places_held(&server, &mut stats, fds_before, 0).await > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("hang guard: the stalled connections are closed");
        assert_eq!(open_streams(&mut stats).await, 0, "every place came back");
        assert_eq!(
            server.ends(),
            FLOOD_LIMIT,
            "each stream's end reported once"
        );

        // Fresh clients are served: as many as the limit.
        let (fresh, refused) = stop_reading_clients(server.addr, FLOOD_LIMIT).await;
        assert_eq!((fresh.len(), refused), (FLOOD_LIMIT, 0));
        drop((fresh, stalled));
    }
}
