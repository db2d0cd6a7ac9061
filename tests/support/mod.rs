//! Shared by the integration tests: a real server (`tower_sse::serve`) on a free loopback
//! port (HTTP/1.1 and h2c on one port), real HTTP/1.1 and HTTP/2 clients, and an SSE reader
//! built on an independent spec parser (`eventsource-stream`).
#![allow(dead_code, unreachable_pub)]

pub mod redis;
pub mod upstream;

use std::convert::Infallible;
use std::future::IntoFuture;
use std::net::SocketAddr;

use bytes::Bytes;
use eventsource_stream::{Event as ParsedEvent, Eventsource};
use futures_util::{Stream, StreamExt};
use http::{Request, Response};
use http_body_util::{BodyDataStream, BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// `tower_sse::serve` on `127.0.0.1:<free port>`: HTTP/1.1 and HTTP/2 (prior knowledge)
/// on the same port, with the crate's default guards and each connection's peer address
/// in the request extensions (where `StreamLimit` finds it). Stops accepting when
/// dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

pub async fn serve<S, B>(service: S) -> TestServer
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
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = tokio::spawn(tower_sse::serve(listener, service).into_future());
    TestServer { addr, accept }
}

/// An HTTP/1.1 connection from `from`, another loopback address (`127.0.0.0/8`), so
/// that tests can play several clients.
pub async fn h1_from(from: std::net::IpAddr, to: SocketAddr) -> H1 {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    h1_over(socket.connect(to).await.unwrap()).await
}

/// An HTTP/1.1 connection.
pub struct H1 {
    pub sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    pub conn: JoinHandle<()>,
}

pub async fn h1_connect(addr: SocketAddr) -> H1 {
    h1_over(TcpStream::connect(addr).await.unwrap()).await
}

pub async fn h1_over(stream: TcpStream) -> H1 {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    H1 { sender, conn }
}

impl H1 {
    /// Closes the connection at once, whatever is in flight on it. (Dropping the
    /// client only stops new requests; the connection lives while a body is read.)
    pub fn close(self) {
        self.conn.abort();
    }

    pub async fn send(&mut self, request: Request<Empty<Bytes>>) -> Response<Incoming> {
        hang_guard(&response_head_of(&request), async {
            self.sender.ready().await.unwrap();
            self.sender.send_request(request).await.unwrap()
        })
        .await
    }
}

/// An HTTP/2 connection with prior knowledge (h2c); `sender` can be cloned to open
/// many streams on it.
pub struct H2 {
    pub sender: hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    pub conn: JoinHandle<()>,
}

pub async fn h2_connect(addr: SocketAddr) -> H2 {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    H2 { sender, conn }
}

impl H2 {
    /// Closes the connection at once, whatever is in flight on it. (Dropping the
    /// client only stops new requests; the connection lives while a body is read.)
    pub fn close(self) {
        self.conn.abort();
    }

    pub async fn send(&mut self, request: Request<Empty<Bytes>>) -> Response<Incoming> {
        hang_guard(&response_head_of(&request), async {
            self.sender.ready().await.unwrap();
            self.sender.send_request(request).await.unwrap()
        })
        .await
    }
}

/// How long a test waits for anything it awaits before it fails.
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// What a client awaits after sending `request`, said in a hang guard's failure.
fn response_head_of<B>(request: &Request<B>) -> String {
    format!(
        "the response head of {} {}",
        request.method(),
        request.uri()
    )
}

/// The deadline built into the helpers that every test uses (`send`, `next_data`), longer
/// than any deadline a test puts around them, so that it never shortens one: a server
/// that never answers fails the test with a message instead of hanging it. (In a test
/// that pauses tokio's clock these helpers are awaited under [`within_real`], which holds
/// the clock still, so it cannot fire early there either.)
pub const HANG_GUARD: std::time::Duration = std::time::Duration::from_secs(180);

async fn hang_guard<F: IntoFuture>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(HANG_GUARD, future).await {
        Ok(output) => output,
        Err(_) => panic!("waited {HANG_GUARD:?} for {what}"),
    }
}

/// The output of `future`, or a failure that says what was awaited (`what`) when it
/// has not come within [`DEADLINE`]. On tokio's clock: in a test that pauses it, only
/// where no real socket is awaited (the paused clock runs ahead while one is).
pub async fn within<F: IntoFuture>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(DEADLINE, future).await {
        Ok(output) => output,
        Err(_) => panic!("waited {DEADLINE:?} for {what}"),
    }
}

/// [`within`] for a test that pauses tokio's clock and awaits a real socket: the
/// deadline is on the wall clock, and while `future` is awaited the paused clock
/// stands still (a blocking task holds tokio's auto-advance back, on the current-thread
/// runtime that a paused clock needs). So no timer of the test or of the server fires
/// while bytes are in flight; time moves only where the test moves it.
pub async fn within_real<F: IntoFuture>(what: &str, future: F) -> F::Output {
    let (done, wait) = std::sync::mpsc::channel::<()>();
    // Ends at the deadline, or as soon as `done` is dropped.
    let mut deadline = tokio::task::spawn_blocking(move || {
        let _ = wait.recv_timeout(DEADLINE);
    });
    let future = future.into_future();
    tokio::pin!(future);
    tokio::select! {
        biased;
        output = &mut future => {
            drop(done);
            // The clock may move again once the blocking task is over.
            deadline.await.unwrap();
            output
        }
        _ = &mut deadline => panic!("waited {DEADLINE:?} (wall clock) for {what}"),
    }
}

/// Waits until `ready` holds, looking every millisecond; fails with `what` after
/// [`DEADLINE`].
pub async fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    within(what, async {
        while !ready() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .await;
}

/// `GET uri` as a browser's EventSource sends it.
pub fn get(uri: &str) -> http::request::Builder {
    Request::get(uri)
        .header("accept", "text/event-stream")
        .header("cache-control", "no-cache")
}

pub fn empty() -> Empty<Bytes> {
    Empty::new()
}

/// The events of a response body, parsed by `eventsource-stream`.
pub fn events(response: Response<Incoming>) -> impl Stream<Item = ParsedEvent> + Unpin {
    BodyDataStream::new(response.into_body())
        .eventsource()
        .map(|event| event.expect("the stream parses as SSE"))
        .boxed()
}

/// The next data frame of a body, or `None` at its end. Callers put their own deadline
/// on it; [`HANG_GUARD`] is the last resort.
pub async fn next_data(body: &mut Incoming) -> Option<Bytes> {
    hang_guard("the next frame of a body", async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("body frame").into_data() {
                return Some(data);
            }
        }
        None
    })
    .await
}

/// This test binary, to be run again as a child process that runs only the test `name`:
/// the tests that serve from their own process when an environment variable says so.
pub fn self_command(name: &str) -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command.args([name, "--exact", "--nocapture", "--test-threads", "1"]);
    command
}

/// Reads a child's output until the line on which it printed `LISTENING <addr>`, and
/// gives that address. (The harness prints `test <name> ... ` on the same line.)
pub fn listening_address(lines: impl IntoIterator<Item = String>) -> SocketAddr {
    for line in lines {
        if let Some((_, addr)) = line.split_once("LISTENING ") {
            return addr.trim().parse().expect("an address after LISTENING");
        }
    }
    panic!("the child ended without printing its address");
}

/// Runs the test `name` of this binary as a server in its own process (with `envs`
/// set), and gives the process and the address it listens on.
pub fn spawn_self(name: &str, envs: &[(&str, &str)]) -> (std::process::Child, SocketAddr) {
    use std::io::BufRead;
    let mut child = self_command(name)
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok);
    (child, listening_address(lines))
}

/// Builds the examples `names` (package `tower-sse-examples`, whose features have the
/// library's names) with the features this test was built with, and gives the folder of
/// their binaries. The library and the examples are selected together, as `cargo test`
/// selects them, so that the library and its dependencies are those the test was built
/// with (a no-op when `cargo test` has built them already).
pub fn build_examples(names: &[&str]) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    // <target>/<profile>/deps/<test>-<hash>
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_owned();
    if let Some(cargo) = std::env::var_os("CARGO") {
        let features: Vec<&str> = [
            ("serve", cfg!(feature = "serve")),
            ("json", cfg!(feature = "json")),
            ("redis", cfg!(feature = "redis")),
            ("axum", cfg!(feature = "axum")),
            ("warp", cfg!(feature = "warp")),
            ("compression-gzip", cfg!(feature = "compression-gzip")),
            ("compression-deflate", cfg!(feature = "compression-deflate")),
            ("compression-br", cfg!(feature = "compression-br")),
            ("compression-zstd", cfg!(feature = "compression-zstd")),
            ("metrics", cfg!(feature = "metrics")),
            ("test-redis", cfg!(feature = "test-redis")),
            ("test-browser", cfg!(feature = "test-browser")),
            ("test-nginx", cfg!(feature = "test-nginx")),
            ("test-netns", cfg!(feature = "test-netns")),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
        let mut command = std::process::Command::new(cargo);
        command.args([
            "build",
            "--quiet",
            "-p",
            "tower-sse",
            "-p",
            "tower-sse-examples",
        ]);
        for name in names {
            command.args(["--example", name]);
        }
        command
            .args(["--no-default-features", "--features", &features.join(",")])
            .arg("--manifest-path")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .arg("--target-dir")
            .arg(profile_dir.parent().unwrap());
        if !cfg!(debug_assertions) {
            command.arg("--release");
        }
        let status = command.status().unwrap();
        assert!(status.success(), "cargo build of the examples {names:?}");
    }
    let dir = profile_dir.join("examples");
    for name in names {
        assert!(
            dir.join(name).exists(),
            "{} is missing: cargo build -p tower-sse-examples --example {name}",
            dir.join(name).display()
        );
    }
    dir
}

/// An HTTP/2 connection (the `h2` crate's client, which hyper builds on) whose client
/// grants its streams no flow-control window: the server can send headers, never data,
/// until the test opens the window.
pub struct ZeroWindow {
    client: h2::client::SendRequest<Bytes>,
    addr: std::net::SocketAddr,
    open_window: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ZeroWindow {
    pub async fn connect(addr: std::net::SocketAddr) -> Self {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, mut connection) = h2::client::Builder::new()
            .initial_window_size(0)
            .handshake::<_, Bytes>(tcp)
            .await
            .unwrap();
        let (open_window, opened) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            tokio::select! {
                _ = &mut connection => return,
                _ = opened => {}
            }
            // A new initial window applies to every open stream at once.
            connection.set_initial_window_size(1 << 20).unwrap();
            let _ = connection.await;
        });
        ZeroWindow {
            client,
            addr,
            open_window: Some(open_window),
        }
    }

    pub async fn get(&mut self, path: &str) -> http::Response<h2::RecvStream> {
        let request = http::Request::get(format!("http://{}{path}", self.addr))
            .header("accept", "text/event-stream")
            .body(())
            .unwrap();
        let client = self.client.clone().ready().await.unwrap();
        self.client = client;
        let (response, _) = self.client.send_request(request, true).unwrap();
        response.await.unwrap()
    }

    pub fn open_window(&mut self) {
        self.open_window.take().unwrap().send(()).unwrap();
    }
}
