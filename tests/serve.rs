//! `tower_sse::serve` against connections that never become streams, with the server
//! (`examples/hostile_server.rs`) in its own process under an open-file limit of 1,024,
//! its first-request deadline and header read timeout set to one second:
//!
//! - 1,100 connections that send nothing, more than the server has file descriptors for:
//!   once with the default cap (below the open-file limit: the cap is reached and said
//!   so), once with a cap above it (accept fails with `EMFILE` and pauses). Every one of
//!   them is closed by the server's deadline, fresh clients are served, the server's CPU
//!   stays low and its accept-error lines few, and its file descriptors come back to
//!   where they were.
//! - A header dripped a byte at a time and an unfinished 300 KiB header, on a new
//!   connection and on a kept-alive one, and HTTP/2 connections that open no stream: all
//!   closed, by the deadline or by hyper's header read timeout, each counted in the log.
//!
//! - Five HTTP/2 connections of 200 streams each that grant no flow-control window,
//!   under a stream limit of 1,000: the layer's stall timeout gives their places back.
//!
//! - `serve` reads the first request head itself and writes plain event streams from a
//!   task of its own: 19,000 connections that send half a head (under an open-file limit
//!   of 20,000) are closed at the deadline and hold about 3 KiB each meanwhile (hyper's
//!   connection held 16 KiB each); heads dripped a byte a second are closed by the
//!   header read timeout; streams whose clients close or reset end as `client gone` and
//!   give their places back.
//!
//! Next to each attack a healthy client reads an event stream and must receive every
//! event, in order, throughout. No duration is asserted: only counts and states, with
//! generous hang guards. Each run prints one `SERVE ...` line with its figures.
//!
//! The last tests run `serve` in this process: its graceful shutdown, and every request
//! shape it leaves to hyper (smuggling shapes, bodies, `Expect`, pipelining, obsolete line
//! folding, HTTP/1.0, 64 KiB and malformed heads) answered as hyper alone answers it.

mod support;

use std::future::IntoFuture;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Hang guard for each wait; never a time the test asserts.
const GUARD: Duration = Duration::from_secs(90);
/// The open-file limit the server runs under.
const OPEN_FILES: usize = 1024;
/// More silent connections than the server has file descriptors.
const SILENT: usize = 1100;
const FRESH: usize = 10;
/// Attackers of each other kind.
const EACH: usize = 20;
/// CPU time (in clock ticks, a hundredth of a second on Linux) the server may use while
/// the 1,100 silent connections are held and closed. A server that retries a failing
/// accept at once uses a whole core for as long as they are held.
const CPU_TICKS_BOUND: u64 = 150;

/// The server's log lines for a connection closed by the first-request deadline, one
/// closed by hyper's header read timeout, a pause after an accept error, and the cap
/// reached.
const DEADLINE_LINE: &str = "no request before the deadline";
const HEADER_TIMEOUT_LINE: &str = "read header from client timeout";
const PAUSE_LINE: &str = "accept failed: pausing";
const CAP_LINE: &str = "connection limit reached";

/// The tests with a server process run one at a time: their figures stay their own, and
/// this process needs sockets for one attack at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---- The server process ---------------------------------------------------------------

/// `examples/hostile_server.rs`, built with the features this test was built with (a
/// no-op when `cargo test` has built it already).
fn server_binary() -> PathBuf {
    support::build_examples(&["hostile_server"]).join("hostile_server")
}

struct Server {
    child: Child,
    addr: SocketAddr,
    /// Its log (stderr), line by line, as it comes.
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts the server under an open-file limit of 1,024 with `envs` set.
    fn start(envs: &[(&str, &str)]) -> Server {
        Server::start_with(envs, OPEN_FILES)
    }

    /// Starts the server under an open-file limit of `open_files` with `envs` set.
    fn start_with(envs: &[(&str, &str)], open_files: usize) -> Server {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {open_files} && exec \"$0\""))
            .arg(server_binary())
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
        let lines = std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok);
        let addr = listening_address(lines);
        let server = Server { child, addr, log };
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
        assert!(
            limits.lines().any(|line| line.starts_with("Max open files")
                && line.split_whitespace().nth(3) == Some(&open_files.to_string())),
            "the server runs under an open-file limit of {open_files}:\n{limits}"
        );
        server
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User and system CPU time so far, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // The fields after the command name, which is in parentheses: utime and stime
        // are the 14th and 15th fields of the line, the 12th and 13th after it.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap()
    }

    /// Log lines that contain `needle`.
    fn lines(&self, needle: &str) -> usize {
        let log = self.log.lock().unwrap();
        log.iter().filter(|line| line.contains(needle)).count()
    }

    /// Waits until the log has `count` lines with `needle`, and checks it has no more.
    async fn expect_lines(&self, needle: &str, count: usize) {
        let enough = timeout(GUARD, async {
            while self.lines(needle) < count {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        if enough.await.is_err() {
            let log = self.log.lock().unwrap();
            let closes: Vec<&String> = log.iter().filter(|l| l.contains("closed")).collect();
            panic!(
                "hang guard: {} of {count} log lines with {needle:?}; lines about closes:\n{}",
                self.lines(needle),
                closes
                    .iter()
                    .map(|l| l.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        assert_eq!(self.lines(needle), count, "log lines with {needle:?}");
    }

    /// Waits until the server holds `fds` file descriptors again.
    async fn expect_fds(&self, fds: usize) {
        until(&format!("the server back to {fds} open files"), || {
            self.open_fds() == fds
        })
        .await;
    }
}

impl Drop for Server {
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

/// Polls `done` until it holds; panics after the hang guard.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    timeout(GUARD, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("hang guard: {what}"));
}

/// This process must be able to open the attackers' sockets.
fn check_own_open_file_limit() {
    check_open_file_limit_for(SILENT);
}

/// This process must be able to open `sockets` sockets.
fn check_open_file_limit_for(sockets: usize) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let soft = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap();
    if let Ok(soft) = soft.parse::<usize>() {
        assert!(
            soft >= sockets + 500,
            "this test opens {sockets} sockets: raise the open-file limit (ulimit -n) above {}",
            sockets + 500
        );
    }
}

// ---- The healthy client -----------------------------------------------------------------

/// A client that reads `ticks` throughout, checking that it misses no event.
struct Healthy {
    received: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Healthy {
    async fn start(addr: SocketAddr) -> Healthy {
        let mut client = h1_connect(addr).await;
        let response = client
            .send(get("/events?topic=ticks").body(empty()).unwrap())
            .await;
        assert_eq!(response.status(), 200);
        let received = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let received = received.clone();
            async move {
                let _client = client;
                let mut events = events(response);
                let mut last: Option<u64> = None;
                while let Some(event) = events.next().await {
                    let n: u64 = event.data.parse().expect("a number");
                    if let Some(last) = last {
                        assert_eq!(n, last + 1, "the healthy client missed an event");
                    }
                    last = Some(n);
                    received.fetch_add(1, Ordering::SeqCst);
                }
                panic!("the healthy client's stream ended");
            }
        });
        let healthy = Healthy { received, task };
        healthy.expect_more(10).await;
        healthy
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    /// Waits until `more` events have come in, so the stream is still served.
    async fn expect_more(&self, more: u64) {
        let from = self.received();
        until("the healthy client receives events", || {
            assert!(!self.task.is_finished(), "the healthy client stopped");
            self.received() >= from + more
        })
        .await;
    }

    /// Checks that every event came, in order, and that events still come.
    async fn check(self) -> u64 {
        self.expect_more(50).await;
        assert!(!self.task.is_finished());
        self.task.abort();
        match self.task.await {
            Err(error) if error.is_cancelled() => {}
            Err(error) => std::panic::resume_unwind(error.into_panic()),
            Ok(()) => unreachable!(),
        }
        self.received.load(Ordering::SeqCst)
    }
}

// ---- The attackers ----------------------------------------------------------------------

/// Reads until the server closes the connection (EOF or a reset); what it sends is
/// discarded.
async fn until_closed(mut socket: TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Writes `head` and then one more header byte every 100 ms, until the server closes the
/// connection.
async fn drip(socket: TcpStream, head: &[u8]) {
    let (mut reader, mut writer) = socket.into_split();
    writer.write_all(head).await.unwrap();
    let mut buf = [0u8; 4096];
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = tick.tick() => {
                if writer.write_all(b"x").await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Writes `head` and a header of 300 KiB that never ends, then waits for the close.
async fn huge(socket: TcpStream, head: &[u8]) {
    let (mut reader, mut writer) = socket.into_split();
    let mut buf = [0u8; 4096];
    let bytes = [head, b"x-huge: ".as_slice(), &vec![b'a'; 300 << 10]].concat();
    tokio::select! {
        written = writer.write_all(&bytes) => {
            if written.is_err() {
                return;
            }
        }
        _ = reader.read(&mut buf) => return,
    }
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// A connection that asks for `/hello`, reads the answer, and stays open: the next
/// request on it is the attack.
async fn kept_alive(addr: SocketAddr) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.ends_with(b"hello") {
        let read = timeout(GUARD, socket.read(&mut buf))
            .await
            .expect("hang guard: the answer to /hello on a kept-alive connection")
            .unwrap();
        assert!(
            read > 0,
            "the server closed a kept-alive connection at once"
        );
        seen.extend_from_slice(&buf[..read]);
    }
    assert!(seen.starts_with(b"HTTP/1.1 200"));
    socket
}

/// A request to `/hello` on a new connection, which must be answered.
async fn fresh_client(addr: SocketAddr) {
    let mut client = h1_connect(addr).await;
    let response = client
        .send(http::Request::get("/hello").body(empty()).unwrap())
        .await;
    assert_eq!(response.status(), 200);
    client.close();
}

/// Waits for every attacker, each under the hang guard, and checks that the server
/// closed each one.
async fn all_closed(what: &str, attackers: Vec<JoinHandle<()>>) {
    let count = attackers.len();
    let finished = || attackers.iter().filter(|a| a.is_finished()).count();
    let all = timeout(GUARD, async {
        while finished() < count {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    if all.await.is_err() {
        panic!(
            "hang guard: {} of {count} {what} still open",
            count - finished()
        );
    }
    for attacker in attackers {
        attacker.await.unwrap();
    }
    println!("{what}: {count} closed by the server");
}

// ---- The tests --------------------------------------------------------------------------

/// 1,100 silent connections; `max_connections` unset (the default, under the open-file
/// limit) or set above the open-file limit.
async fn silent_connections(max_connections: Option<&str>) {
    let _one = ONE_AT_A_TIME.lock().await;
    check_own_open_file_limit();
    // Three seconds: long enough that a server spinning on accept meanwhile would show
    // in its CPU time.
    let mut envs = vec![("FIRST_REQUEST_TIMEOUT_MS", "3000")];
    if let Some(max) = max_connections {
        envs.push(("MAX_CONNECTIONS", max));
    }
    let server = Server::start(&envs);
    let addr = server.addr;
    let healthy = Healthy::start(addr).await;
    let fds_before = server.open_fds();
    let rss_before = server.rss_kib();
    let cpu_before = server.cpu_ticks();

    // They connect one after the other (those the server does not accept wait in its
    // listen backlog), and wait for the server to close them.
    let mut silent = Vec::new();
    for _ in 0..SILENT {
        let socket = timeout(GUARD, TcpStream::connect(addr))
            .await
            .expect("hang guard: connect")
            .unwrap();
        silent.push(tokio::spawn(until_closed(socket)));
    }
    // Fresh clients come while they sit there, and are served.
    let fresh: Vec<_> = (0..FRESH)
        .map(|_| tokio::spawn(fresh_client(addr)))
        .collect();
    for client in fresh {
        timeout(GUARD, client)
            .await
            .expect("hang guard: a fresh client")
            .unwrap();
    }
    all_closed("silent connections", silent).await;
    // Each was closed by the deadline, one log line each.
    server.expect_lines(DEADLINE_LINE, SILENT).await;
    server.expect_fds(fds_before).await;
    let cpu = server.cpu_ticks() - cpu_before;
    let rss_after = server.rss_kib();
    let received = healthy.check().await;

    let pauses = server.lines(PAUSE_LINE);
    let caps = server.lines(CAP_LINE);
    println!(
        "SERVE silent={SILENT} max_connections={} cpu_ticks={cpu} accept_pauses={pauses} \
         cap_reached_lines={caps} fds_before={fds_before} rss_before_kib={rss_before} \
         rss_after_kib={rss_after} healthy_events={received}",
        max_connections.unwrap_or("default"),
    );
    assert!(
        cpu < CPU_TICKS_BOUND,
        "the server used {cpu} CPU ticks while the silent connections were held"
    );
    match max_connections {
        // The cap (7/8 of 1,024) is reached, and said so; accept never fails.
        None => {
            assert!((1..=5).contains(&caps), "cap lines: {caps}");
            assert_eq!(pauses, 0);
        }
        // Accept fails for want of file descriptors: a few pauses, not a busy loop.
        Some(_) => {
            assert!((1..=100).contains(&pauses), "accept pauses: {pauses}");
            assert_eq!(caps, 0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_beyond_the_cap_are_closed_at_the_deadline_and_fresh_clients_served() {
    silent_connections(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_beyond_the_open_file_limit_pause_accept_instead_of_spinning() {
    silent_connections(Some("5000")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dripped_and_unfinished_headers_and_idle_http2_connections_are_closed() {
    let _one = ONE_AT_A_TIME.lock().await;
    // The header read timeout longer than the deadline, so that each guard is seen to
    // close the connections it is for.
    let server = Server::start(&[
        ("FIRST_REQUEST_TIMEOUT_MS", "1000"),
        ("HEADER_READ_TIMEOUT_MS", "1500"),
    ]);
    let addr = server.addr;
    let healthy = Healthy::start(addr).await;
    let fds_before = server.open_fds();
    let rss_before = server.rss_kib();
    const HEAD: &[u8] = b"GET /events?topic=ticks HTTP/1.1\r\nhost: x\r\n";
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // An empty SETTINGS frame.
    const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

    let mut first = Vec::new();
    let mut next = Vec::new();
    for _ in 0..EACH {
        // On a new connection: the first-request deadline closes them.
        first.push(tokio::spawn(async move {
            drip(TcpStream::connect(addr).await.unwrap(), HEAD).await
        }));
        first.push(tokio::spawn(async move {
            huge(TcpStream::connect(addr).await.unwrap(), HEAD).await
        }));
        first.push(tokio::spawn(async move {
            let mut socket = TcpStream::connect(addr).await.unwrap();
            socket
                .write_all(&[PREFACE, SETTINGS].concat())
                .await
                .unwrap();
            until_closed(socket).await
        }));
        // On a kept-alive connection, after a request: hyper's header read timeout.
        next.push(tokio::spawn(async move {
            drip(kept_alive(addr).await, HEAD).await
        }));
        next.push(tokio::spawn(async move {
            huge(kept_alive(addr).await, HEAD).await
        }));
    }
    let (first_count, next_count) = (first.len(), next.len());
    all_closed("new connections with no complete request", first).await;
    all_closed("kept-alive connections with no complete next request", next).await;
    server.expect_lines(DEADLINE_LINE, first_count).await;
    server.expect_lines(HEADER_TIMEOUT_LINE, next_count).await;
    server.expect_fds(fds_before).await;
    let rss_after = server.rss_kib();
    let received = healthy.check().await;
    println!(
        "SERVE dripped_and_huge first_request={first_count} next_request={next_count} \
         fds_before={fds_before} rss_before_kib={rss_before} rss_after_kib={rss_after} \
         healthy_events={received}"
    );
}

/// HTTP/2 streams whose client grants them no flow-control window: the connection never
/// takes a frame from them and their writes never block, so no write timeout sees them.
/// Five connections of 200 such streams fill a limit of 1,000 (with the healthy
/// client's stream); once the stall timeout has passed every one of them is reported
/// stalled. hyper polls no stream without window, so they cannot end: each keeps its
/// place (and fresh clients are refused) for as long as its client keeps it, which
/// bounds what they hold. They give their places back when the client lets the
/// connection poll them again (it opens the window: the layer resets each stream) or
/// closes the connection, and fresh clients are served again; the server's file
/// descriptors come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_that_never_drain_give_back_their_places() {
    const CONNECTIONS: usize = 5;
    const STREAMS_EACH: usize = 200;
    const LIMIT: usize = CONNECTIONS * STREAMS_EACH;
    const STALLED_LINE: &str = "stream ended: stalled";
    let _one = ONE_AT_A_TIME.lock().await;
    let limit = LIMIT.to_string();
    let server = Server::start(&[
        ("STREAM_LIMIT", &limit),
        // Long enough that a busy machine never keeps the healthy client's stream from
        // being taken for that long; nothing waits on it but the hang guard.
        ("HEARTBEAT_MS", "1000"),
        ("STALL_TIMEOUT_MS", "5000"),
    ]);
    let addr = server.addr;
    let healthy = Healthy::start(addr).await;
    let mut stats = h1_connect(addr).await;
    assert_eq!(open_streams(&mut stats).await, 1);
    let fds_before = server.open_fds();

    let mut stuck = Vec::new();
    let mut bodies = Vec::new();
    let mut refused = 0;
    for _ in 0..CONNECTIONS {
        let mut connection = ZeroWindow::connect(addr).await;
        for _ in 0..STREAMS_EACH {
            let response = connection.get("/events?topic=ticks").await;
            match response.status().as_u16() {
                200 => bodies.push(response.into_body()),
                503 => refused += 1,
                other => panic!("status {other}"),
            }
        }
        stuck.push(connection);
    }
    // The healthy client holds one place: the last attacking stream found none.
    assert_eq!((bodies.len(), refused), (LIMIT - 1, 1));
    let full = h1_connect(addr)
        .await
        .send(get("/events?topic=ticks").body(empty()).unwrap())
        .await;
    assert_eq!(full.status(), 503, "every place is taken");

    // Reported stalled, each once; their places stay taken while the client keeps them.
    server.expect_lines(STALLED_LINE, LIMIT - 1).await;
    assert_eq!(open_streams(&mut stats).await, LIMIT);
    let full = h1_connect(addr)
        .await
        .send(get("/events?topic=ticks").body(empty()).unwrap())
        .await;
    assert_eq!(full.status(), 503, "a stalled stream keeps its place");

    // Two connections open their windows: the connection polls their streams again, and
    // the layer resets each one. The other three are closed.
    let closed = stuck.split_off(2);
    for connection in &mut stuck {
        connection.open_window();
    }
    drop(closed);
    timeout(GUARD, async {
        while open_streams(&mut stats).await > 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("hang guard: the stalled streams give their places back");
    for _ in 0..FRESH {
        let mut client = h1_connect(addr).await;
        let response = client
            .send(get("/events?topic=ticks").body(empty()).unwrap())
            .await;
        assert_eq!(response.status(), 200, "a fresh client is served again");
    }
    server
        .expect_lines("stream ended: client gone", FRESH)
        .await;
    assert_eq!(
        server.lines(STALLED_LINE),
        LIMIT - 1,
        "each stalled stream reported once"
    );
    drop(bodies);
    drop(stuck);
    server.expect_fds(fds_before).await;
    let received = healthy.check().await;
    println!(
        "SERVE zero_window_http2 connections={CONNECTIONS} streams={} stalled={} \
         healthy_events={received}",
        LIMIT - 1,
        server.lines(STALLED_LINE)
    );
}

/// Graceful shutdown, in this process: once the token is cancelled the listener closes,
/// an idle connection is closed, a stream ends through the SSE layer's shutdown, and
/// the server's future completes.
#[tokio::test]
async fn graceful_shutdown_closes_the_listener_and_completes_once_every_connection_is_closed() {
    use tokio_util::sync::CancellationToken;
    use tower::ServiceBuilder;
    use tower_sse::{Hub, SseLayer};

    // One token for the streams (the layer's) and the server.
    let hub = Hub::new();
    let stop = CancellationToken::new();
    let service = ServiceBuilder::new()
        .layer(SseLayer::new().graceful_shutdown(stop.clone()))
        .service(hub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tower_sse::serve(listener, service)
            .graceful_shutdown(stop.clone())
            .into_future(),
    );

    let mut client = h1_connect(addr).await;
    let response = client
        .send(get("/events?topic=news").body(empty()).unwrap())
        .await;
    let mut body = response.into_body();
    hub.publish("news", tower_sse::Event::data("one")).unwrap();
    let event = timeout(GUARD, next_data(&mut body))
        .await
        .expect("hang guard: the event");
    assert!(event.is_some());
    // Accepted or still in the backlog, it is closed either way.
    let idle = TcpStream::connect(addr).await.unwrap();

    stop.cancel();
    timeout(GUARD, server)
        .await
        .expect("hang guard: the server completes")
        .unwrap();
    timeout(GUARD, until_closed(idle))
        .await
        .expect("hang guard: the idle connection is closed");
    // The stream ended: what is left of the body ends.
    timeout(GUARD, async {
        while next_data(&mut body).await.is_some() {}
    })
    .await
    .expect("hang guard: the stream ends");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

// ---- Requests that `serve` hands to hyper, and what it serves itself --------------------

/// What a server answered to raw request bytes: the status line and the framing headers
/// of the first response (or `closed` when it closed without one), and whether the
/// connection was closed after it.
async fn answer_to(addr: SocketAddr, request: &[u8]) -> String {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    // The client may be cut off while it writes (hyper closes on an error): what it
    // managed to send is what is answered.
    let _ = socket.write_all(request).await;
    let mut seen = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let head_end = |seen: &[u8]| seen.windows(4).position(|w| w == b"\r\n\r\n");
    let closed = loop {
        if head_end(&seen).is_some() {
            break false;
        }
        match timeout(GUARD, socket.read(&mut buf)).await {
            Err(_) => panic!(
                "hang guard: no answer to {:?}",
                String::from_utf8_lossy(request)
            ),
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    };
    let Some(end) = head_end(&seen) else {
        return format!("closed after {} bytes", seen.len());
    };
    let head = String::from_utf8_lossy(&seen[..end]).to_lowercase();
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default().to_owned();
    let mut framing: Vec<&str> = lines
        .filter(|l| {
            [
                "content-type",
                "transfer-encoding",
                "content-length",
                "connection",
            ]
            .iter()
            .any(|name| l.starts_with(name))
        })
        .collect();
    framing.sort_unstable();
    format!(
        "{status} | {} | closed early: {closed}",
        framing.join(" | ")
    )
}

/// Each request shape that `serve` leaves to hyper (a body, `Transfer-Encoding`,
/// `Expect`, pipelined bytes, obsolete line folding, duplicate `Content-Length`,
/// HTTP/1.0, an upgrade, heads too large or malformed) gets the answer hyper alone gives
/// it, with the same service behind both: `tower_sse::serve` next to hyper-util's
/// `auto::Builder` on another port. The plain requests for an event stream, served by
/// `serve` itself, too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_shape_is_answered_as_hyper_alone_answers_it() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceBuilder;
    use tower_sse::{Hub, SseLayer};

    let hub = Hub::new();
    let service = ServiceBuilder::new()
        .layer(SseLayer::new())
        .service(hub.clone());
    let ours = support::serve(service.clone()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hyper_addr = listener.local_addr().unwrap();
    let hyper_alone = tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(socket), service)
                    .await;
            });
        }
    });

    const GET: &str = "GET /events?topic=news HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n";
    let huge_value = "a".repeat(64 * 1024);
    let many: String = (0..150).map(|i| format!("x-{i}: y\r\n")).collect();
    let shapes: Vec<(&str, String)> = vec![
        ("plain", format!("{GET}\r\n")),
        ("keep-alive", format!("{GET}connection: keep-alive\r\n\r\n")),
        ("no topic", "GET /events HTTP/1.1\r\naccept: text/event-stream\r\n\r\n".into()),
        ("content-length and transfer-encoding", format!(
            "{GET}content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
        )),
        ("two content-lengths", format!(
            "{GET}content-length: 5\r\ncontent-length: 6\r\n\r\nhello!"
        )),
        ("two equal content-lengths", format!(
            "{GET}content-length: 5\r\ncontent-length: 5\r\n\r\nhello"
        )),
        ("a body on a GET", format!("{GET}content-length: 5\r\n\r\nhello")),
        ("chunked body", format!("{GET}transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")),
        ("expect", format!("{GET}expect: 100-continue\r\ncontent-length: 0\r\n\r\n")),
        ("pipelined", format!("{GET}\r\nGET /events?topic=b HTTP/1.1\r\n\r\n")),
        ("obsolete line folding", format!("{GET}x-folded: a\r\n b\r\n\r\n")),
        ("HTTP/1.0", "GET /events?topic=news HTTP/1.0\r\naccept: text/event-stream\r\n\r\n".into()),
        ("upgrade", format!("{GET}connection: upgrade\r\nupgrade: websocket\r\n\r\n")),
        ("connection close", format!("{GET}connection: close\r\n\r\n")),
        ("absolute form", "GET http://x/events?topic=news HTTP/1.1\r\naccept: text/event-stream\r\n\r\n".into()),
        ("64 KiB header", format!("{GET}x-huge: {huge_value}\r\n\r\n")),
        ("150 headers", format!("{GET}{many}\r\n")),
        ("control byte in a value", format!("{GET}x-bad: a\x01b\r\n\r\n")),
        ("no colon", format!("{GET}bad header\r\n\r\n")),
        ("space before colon", format!("{GET}x-bad : a\r\n\r\n")),
        ("bad request line", "GET  /events HTTP/1.1\r\naccept: text/event-stream\r\n\r\n".into()),
        ("POST", "POST /events?topic=news HTTP/1.1\r\naccept: text/event-stream\r\ncontent-length: 0\r\n\r\n".into()),
    ];
    for (name, request) in &shapes {
        let expected = answer_to(hyper_addr, request.as_bytes()).await;
        let got = answer_to(ours.addr, request.as_bytes()).await;
        println!("SHAPE {name}: {got}");
        assert_eq!(got, expected, "{name}");
    }
    hyper_alone.abort();
}

/// Opens a connection from `from` (a loopback address), so that many connections do not
/// share one address's ports.
async fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind a loopback source address");
    timeout(GUARD, socket.connect(addr))
        .await
        .expect("hang guard: connect")
        .unwrap()
}

/// Waits until the server closes the connection, with a small buffer (thousands of
/// these run at once).
async fn until_closed_small(mut socket: TcpStream) {
    let mut buf = [0u8; 64];
    loop {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// 19,000 connections that send half a request head (the start of a request for an
/// event stream, which `serve` reads itself) and nothing more, in a server that may
/// hold 20,000 open files: every one is closed at the first-request deadline, with one
/// log line each; the healthy stream misses nothing; the memory they hold while open
/// is small and does not follow what they send (a head is read into at most 8 KiB, and
/// most of these hold 1 KiB); the server's file descriptors come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nineteen_thousand_half_heads_are_closed_at_the_deadline() {
    const HALF_HEADS: usize = 19_000;
    /// RSS the server may hold per connection that sent half a head: hyper's own
    /// connection state alone is more than 16 KiB (its 8 KiB read buffer and 8 KiB
    /// header buffer).
    const KIB_PER_HALF_HEAD: f64 = 6.0;
    let _one = ONE_AT_A_TIME.lock().await;
    check_open_file_limit_for(HALF_HEADS);
    let server = Server::start_with(
        &[
            // Long enough to open them all while the first ones wait.
            ("FIRST_REQUEST_TIMEOUT_MS", "45000"),
            ("HEADER_READ_TIMEOUT_MS", "60000"),
            ("MAX_CONNECTIONS", "19500"),
        ],
        20_000,
    );
    let addr = server.addr;
    let healthy = Healthy::start(addr).await;
    let fds_before = server.open_fds();
    let rss_before = server.rss_kib();
    const HALF: &[u8] =
        b"GET /events?topic=ticks HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n";

    let mut attackers = Vec::with_capacity(HALF_HEADS);
    for i in 0..HALF_HEADS {
        // Four source addresses: about 5,000 ports each.
        let from = [127, 0, 0, 2 + (i % 4) as u8];
        let mut socket = connect_from(from, addr).await;
        socket.write_all(HALF).await.unwrap();
        attackers.push(tokio::spawn(until_closed_small(socket)));
    }
    // Every one of them is accepted and has sent its bytes: the server holds them all.
    until("the server holds every half head", || {
        server.open_fds() >= fds_before + HALF_HEADS
    })
    .await;
    let rss_held = server.rss_kib();
    let kib_each = (rss_held.saturating_sub(rss_before)) as f64 / HALF_HEADS as f64;
    all_closed("connections with half a head", attackers).await;
    server.expect_lines(DEADLINE_LINE, HALF_HEADS).await;
    server.expect_fds(fds_before).await;
    let received = healthy.check().await;
    println!(
        "SERVE half_heads={HALF_HEADS} rss_before_kib={rss_before} rss_held_kib={rss_held} \
         kib_each={kib_each:.2} healthy_events={received}"
    );
    assert!(
        kib_each < KIB_PER_HALF_HEAD,
        "{kib_each:.2} KiB of RSS per connection holding half a head"
    );
}

/// Heads dripped one byte a second, on new connections whose first-request deadline is
/// further away than the header read timeout: `serve` reads these heads itself, and its
/// header read timeout closes each one (one log line each), whether the head asks for
/// an event stream (read by `serve`) or is too long to be read there (hyper's, then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_dripped_one_byte_a_second_are_closed_by_the_header_read_timeout() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = Server::start(&[
        ("FIRST_REQUEST_TIMEOUT_MS", "60000"),
        ("HEADER_READ_TIMEOUT_MS", "2000"),
    ]);
    let addr = server.addr;
    let healthy = Healthy::start(addr).await;
    let fds_before = server.open_fds();
    const HEAD: &[u8] = b"GET /events?topic=ticks HTTP/1.1\r\naccept: text/event-stream\r\n";

    /// Writes `head`, then a byte a second until the server closes the connection.
    async fn slow_drip(socket: TcpStream, head: Vec<u8>) {
        let (mut reader, mut writer) = socket.into_split();
        if writer.write_all(&head).await.is_err() {
            return;
        }
        let mut buf = [0u8; 64];
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                read = reader.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                _ = tick.tick() => {
                    if writer.write_all(b"x").await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    let mut attackers = Vec::new();
    for i in 0..EACH {
        let head = if i % 2 == 0 {
            HEAD.to_vec()
        } else {
            // Longer than what `serve` reads itself: hyper reads on.
            [HEAD, b"x-long: ", &[b'a'; 12 * 1024]].concat()
        };
        let socket = TcpStream::connect(addr).await.unwrap();
        attackers.push(tokio::spawn(slow_drip(socket, head)));
    }
    all_closed("heads dripped a byte a second", attackers).await;
    server.expect_lines(HEADER_TIMEOUT_LINE, EACH).await;
    assert_eq!(server.lines(DEADLINE_LINE), 0);
    server.expect_fds(fds_before).await;
    let received = healthy.check().await;
    println!("SERVE dripped_slowly={EACH} healthy_events={received}");
}

/// Event streams that `serve` writes itself, whose clients close the connection
/// (a FIN) or reset it (an RST): each stream ends as `client gone`, once, and gives its
/// place under the limit back, while the healthy stream goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_whose_clients_close_or_reset_end_as_client_gone_and_free_their_places() {
    const STREAMS: usize = 40;
    const GONE_LINE: &str = "stream ended: client gone";
    let _one = ONE_AT_A_TIME.lock().await;
    let server = Server::start(&[("STREAM_LIMIT", "100")]);
    let addr = server.addr;
    let healthy = Healthy::start(addr).await;
    let mut stats = h1_connect(addr).await;
    let fds_before = server.open_fds();

    let mut sockets = Vec::new();
    for _ in 0..STREAMS {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(
                b"GET /events?topic=ticks HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n",
            )
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        // The head and a first event.
        while !seen.windows(6).any(|w| w == b"data: ") {
            let n = timeout(GUARD, socket.read(&mut buf))
                .await
                .expect("hang guard: the stream's first event")
                .unwrap();
            assert!(n > 0, "the stream ended at once");
            seen.extend_from_slice(&buf[..n]);
        }
        assert!(seen.starts_with(b"HTTP/1.1 200 OK\r\n"));
        sockets.push(socket);
    }
    assert_eq!(open_streams(&mut stats).await, STREAMS + 1);
    for (i, socket) in sockets.into_iter().enumerate() {
        if i % 2 == 0 {
            // An RST: close with a zero linger.
            #[allow(deprecated)] // linger 0 resets at once; it never blocks
            socket.set_linger(Some(Duration::ZERO)).unwrap();
        }
        drop(socket);
    }
    timeout(GUARD, async {
        while open_streams(&mut stats).await > 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("hang guard: the places come back");
    server.expect_lines(GONE_LINE, STREAMS).await;
    server.expect_fds(fds_before).await;
    let received = healthy.check().await;
    println!("SERVE closed_and_reset={STREAMS} healthy_events={received}");
}
