//! Burst: N ready events streamed to one loopback HTTP/1.1 client, through
//!
//! - `tower-sse`: `SseLayer::new()` (defaults: heartbeat every 15 idle seconds, ready
//!   events coalesced into frames of up to 64 KiB) over a tower `service_fn` answering
//!   with `Sse::new(stream::iter(1..=N).map(|n| Event::builder().id(n).data(PAYLOAD)
//!   .build())).into_response()`;
//! - `axum`: an axum `Router` whose handler returns
//!   `Sse::new(stream::iter(1..=N).map(|n| Ok(Event::default().id(n).data(PAYLOAD))))
//!   .keep_alive(KeepAlive::default())`;
//! - `warp`: warp 0.4's `warp::sse::reply(warp::sse::keep_alive().stream(..))` over
//!   `stream::iter(1..=N).map(|n| Ok(warp::sse::Event::default().id(n).data(PAYLOAD)))`,
//!   served through `warp::service` (warp writes `data:PAYLOAD\nid:n\n\n`, without the
//!   optional spaces: 2 bytes less per event);
//! - `ceiling`: the same bytes, encoded before the clock starts, served in 64 KiB chunks
//!   as a plain streaming body (`http_body_util::StreamBody`): what the connection alone
//!   costs.
//!
//! Every event is `id: <n>\ndata: <81 bytes of JSON>\n\n` (about 100 bytes), built inside
//! the stream as the body is polled, the same way on every SSE stack (and to the same
//! bytes on tower-sse and axum).
//!
//! All four are served by the same code: hyper's HTTP/1 connection
//! (`hyper::server::conn::http1`, default settings) over a `TcpStream` with `TCP_NODELAY`,
//! on a multi-thread tokio runtime with 2 workers, so only the SSE stack differs.
//!
//! The client is a blocking `std::net::TcpStream` on its own thread (the caller's) in the
//! same process: it sends one GET, decodes the chunked body itself and counts frame ends
//! (`\n\n`), telling heartbeat comments apart from events. It is a few instructions per
//! event, so it measures the server rather than a client library, it never competes with
//! the server for a tokio worker, and being in-process it can be driven by the smoke test
//! (`tests/bench_smoke.rs` includes this file as a module). Every run checks that exactly N
//! events and exactly the expected bytes arrived.
//!
//! `cargo bench --bench burst` runs every stack 3 times, interleaved, after one untimed
//! warm-up each, and prints the median. Options: `--events N` (default 1,000,000),
//! `--runs R` (default 3).

use std::convert::Infallible;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http::{Request, Response, header};
use http_body_util::StreamBody;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// The data of every event: 81 bytes of compact JSON.
pub const PAYLOAD: &str =
    r#"{"icao":"4b1805","lat":47.46472,"lon":8.54917,"alt":36000,"gs":452.3,"trk":271.4}"#;

/// Events per run when `--events` is not given.
pub const DEFAULT_EVENTS: u64 = 1_000_000;

/// Size of the pre-encoded chunks of the ceiling.
pub const CEILING_CHUNK: usize = 64 * 1024;

/// The server side of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    /// tower-sse's `SseLayer` over a tower service.
    TowerSse,
    /// axum's `Sse` from a `Router` handler.
    Axum,
    /// warp's `sse::reply` through `warp::service`.
    Warp,
    /// Pre-encoded bytes in 64 KiB chunks, as a plain streaming body.
    Ceiling,
}

impl Stack {
    /// Every stack, in the order they run and print.
    pub const ALL: [Stack; 4] = [Stack::TowerSse, Stack::Axum, Stack::Warp, Stack::Ceiling];

    /// The stack called `name` on the command line: `tower-sse`, `axum`, `warp` or
    /// `ceiling`.
    pub fn from_name(name: &str) -> Option<Stack> {
        match name {
            "tower-sse" => Some(Stack::TowerSse),
            "axum" => Some(Stack::Axum),
            "warp" => Some(Stack::Warp),
            "ceiling" => Some(Stack::Ceiling),
            _ => None,
        }
    }

    /// The name printed in the table.
    pub fn name(self) -> &'static str {
        match self {
            Stack::TowerSse => "tower-sse",
            Stack::Axum => "axum",
            Stack::Warp => "warp",
            Stack::Ceiling => "ceiling (pre-encoded)",
        }
    }
}

/// What one run delivered, as the client counted it.
#[derive(Clone, Debug)]
pub struct Run {
    /// The server side.
    pub stack: Stack,
    /// Events received (frames ended by a blank line that are not comments).
    pub events: u64,
    /// Comment-only frames received (heartbeats).
    pub heartbeats: u64,
    /// Bytes of the event stream (the decoded body).
    pub body_bytes: u64,
    /// Bytes read from the socket after the response head (body with chunk framing).
    pub wire_bytes: u64,
    /// From connecting to the end of the body.
    pub elapsed: Duration,
    /// CPU time of the whole process during the run (user + system), where the OS
    /// tells it (Linux `/proc`; 10 ms resolution).
    pub cpu_process: Option<Duration>,
    /// CPU time of the client thread during the run.
    pub cpu_client: Option<Duration>,
}

impl Run {
    /// Events per second.
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    /// Megabytes (10^6) of event stream per second.
    pub fn mb_per_sec(&self) -> f64 {
        self.body_bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// The runtime the servers run on: multi-thread, 2 workers.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The frame of event `n`.
pub fn frame(n: u64) -> String {
    format!("id: {n}\ndata: {PAYLOAD}\n\n")
}

/// Bytes of the event stream of events `1..=events`.
pub fn expected_bytes(events: u64) -> u64 {
    let fixed = ("id: \ndata: \n\n".len() + PAYLOAD.len()) as u64;
    let mut digits_total = 0;
    let mut low = 1;
    let mut digits = 1;
    while low <= events {
        let high = (low * 10 - 1).min(events);
        digits_total += (high - low + 1) * digits;
        low *= 10;
        digits += 1;
    }
    events * fixed + digits_total
}

/// Bytes of the event stream of events `1..=events` as `stack` writes them: warp
/// leaves out the optional space after `id:` and `data:`.
pub fn expected_stack_bytes(stack: Stack, events: u64) -> u64 {
    match stack {
        Stack::Warp => expected_bytes(events) - 2 * events,
        _ => expected_bytes(events),
    }
}

/// Runs one burst of `events` events through `stack` and returns what the client
/// counted; an error if the connection or the response was not as expected. Does not
/// check the counts: see [`check`].
pub fn run_burst(rt: &Runtime, stack: Stack, events: u64) -> io::Result<Run> {
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    // The ceiling's bytes are encoded before the clock starts.
    let chunks = (stack == Stack::Ceiling).then(|| pre_encode(events));
    let server = rt.spawn(serve_one(listener, stack, events, chunks));

    let cpu_before = (
        cpu_time("/proc/self/stat"),
        cpu_time("/proc/thread-self/stat"),
    );
    let start = Instant::now();
    let counts = read_event_stream(addr);
    let elapsed = start.elapsed();
    let cpu_after = (
        cpu_time("/proc/self/stat"),
        cpu_time("/proc/thread-self/stat"),
    );

    let served = rt.block_on(server);
    let counts = counts?;
    match served {
        Ok(Ok(())) => {}
        Ok(Err(err)) => return Err(io::Error::other(format!("server: {err}"))),
        Err(err) => return Err(io::Error::other(format!("server task: {err}"))),
    }
    Ok(Run {
        stack,
        events: counts.events,
        heartbeats: counts.comments,
        body_bytes: counts.body_bytes,
        wire_bytes: counts.wire_bytes,
        elapsed,
        cpu_process: cpu_after
            .0
            .zip(cpu_before.0)
            .map(|(a, b)| a.saturating_sub(b)),
        cpu_client: cpu_after
            .1
            .zip(cpu_before.1)
            .map(|(a, b)| a.saturating_sub(b)),
    })
}

/// User + system CPU time from a `/proc/.../stat` file, if there is one.
fn cpu_time(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces):
    // state is field 3, utime field 14, stime field 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // Clock ticks: 100 per second on every Linux configuration in use.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Checks that `run` delivered exactly `events` events and exactly their bytes (plus
/// any heartbeat comments, `:\n\n` each).
pub fn check(run: &Run, events: u64) -> Result<(), String> {
    let expected = expected_stack_bytes(run.stack, events) + 3 * run.heartbeats;
    if run.events != events {
        return Err(format!(
            "{}: received {} events, expected {events}",
            run.stack.name(),
            run.events
        ));
    }
    if run.body_bytes != expected {
        return Err(format!(
            "{}: received {} body bytes, expected {expected}",
            run.stack.name(),
            run.body_bytes
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Servers.

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Accepts one connection and serves it with `stack` until the client closes it.
async fn serve_one(
    listener: TcpListener,
    stack: Stack,
    events: u64,
    chunks: Option<Vec<Bytes>>,
) -> Result<(), BoxError> {
    let (socket, _) = listener.accept().await?;
    socket.set_nodelay(true)?;
    let io = TokioIo::new(socket);
    let http = hyper::server::conn::http1::Builder::new();
    match stack {
        Stack::TowerSse => {
            let service = tower::ServiceBuilder::new()
                .layer(tower_sse::SseLayer::new())
                .service(tower::service_fn(move |_request: Request<Incoming>| {
                    let events = stream::iter(1..=events).map(|n| {
                        tower_sse::Event::builder()
                            .id(itoa::Buffer::new().format(n))
                            .data(PAYLOAD)
                            .build()
                    });
                    let response = tower_sse::Sse::new(events).into_response();
                    async move { Ok::<_, Infallible>(response) }
                }));
            http.serve_connection(io, TowerToHyperService::new(service))
                .await?;
        }
        Stack::Axum => {
            use axum::response::sse::{Event, KeepAlive, Sse};
            let router = axum::Router::new().route(
                "/",
                axum::routing::get(move || async move {
                    let events = stream::iter(1..=events).map(|n| {
                        Ok::<_, Infallible>(
                            Event::default()
                                .id(itoa::Buffer::new().format(n))
                                .data(PAYLOAD),
                        )
                    });
                    Sse::new(events).keep_alive(KeepAlive::default())
                }),
            );
            http.serve_connection(io, TowerToHyperService::new(router))
                .await?;
        }
        Stack::Warp => {
            use warp::Filter;
            let filter = warp::get().map(move || {
                let events = stream::iter(1..=events).map(|n| {
                    Ok::<_, Infallible>(
                        warp::sse::Event::default()
                            .id(itoa::Buffer::new().format(n))
                            .data(PAYLOAD),
                    )
                });
                warp::sse::reply(warp::sse::keep_alive().stream(events))
            });
            http.serve_connection(io, TowerToHyperService::new(warp::service(filter)))
                .await?;
        }
        Stack::Ceiling => {
            let chunks = chunks.expect("the ceiling's chunks");
            let service = hyper::service::service_fn(move |_request: Request<Incoming>| {
                let frames = stream::iter(chunks.clone())
                    .map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)));
                let response = Response::builder()
                    .header(header::CONTENT_TYPE, "text/event-stream")
                    .header(header::CACHE_CONTROL, "no-cache")
                    .body(StreamBody::new(frames))
                    .expect("response");
                async move { Ok::<_, Infallible>(response) }
            });
            http.serve_connection(io, service).await?;
        }
    }
    Ok(())
}

/// The event stream of events `1..=events`, in 64 KiB slices of one buffer.
fn pre_encode(events: u64) -> Vec<Bytes> {
    let mut all = Vec::with_capacity(expected_bytes(events) as usize);
    for n in 1..=events {
        all.extend_from_slice(frame(n).as_bytes());
    }
    let all = Bytes::from(all);
    (0..all.len())
        .step_by(CEILING_CHUNK)
        .map(|at| all.slice(at..(at + CEILING_CHUNK).min(all.len())))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Client.

/// What the client read.
#[derive(Debug, Default)]
struct Counts {
    events: u64,
    comments: u64,
    body_bytes: u64,
    wire_bytes: u64,
}

/// Connects, sends one GET and reads the whole response, counting frames.
fn read_event_stream(addr: SocketAddr) -> io::Result<Counts> {
    let mut socket = std::net::TcpStream::connect(addr)?;
    socket.set_nodelay(true)?;
    socket.set_read_timeout(Some(Duration::from_secs(60)))?;
    socket.write_all(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n")?;

    let mut buf = vec![0u8; 256 * 1024];
    let mut filled = 0;
    // The response head.
    let head_end = loop {
        if filled == buf.len() {
            return Err(io::Error::other("response head too large"));
        }
        let n = socket.read(&mut buf[filled..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        filled += n;
        if let Some(at) = memchr::memmem::find(&buf[..filled], b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        return Err(io::Error::other(format!("unexpected response: {head}")));
    }
    if !head.contains("\r\ncontent-type: text/event-stream") {
        return Err(io::Error::other(format!("not an event stream: {head}")));
    }
    if !head.contains("\r\ntransfer-encoding: chunked") {
        return Err(io::Error::other(format!("body is not chunked: {head}")));
    }

    let mut body = Chunked::default();
    let mut counter = FrameCounter::default();
    let mut wire = (filled - head_end) as u64;
    body.feed(&buf[head_end..filled], &mut counter)?;
    while !body.done {
        let n = socket.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("body ended early after {} events", counter.events),
            ));
        }
        wire += n as u64;
        body.feed(&buf[..n], &mut counter)?;
    }
    Ok(Counts {
        events: counter.events,
        comments: counter.comments,
        body_bytes: counter.bytes,
        wire_bytes: wire,
    })
}

/// A decoder of `Transfer-Encoding: chunked` that hands the data to a [`FrameCounter`].
#[derive(Debug, Default)]
pub(crate) struct Chunked {
    state: ChunkState,
    size: u64,
    /// The last chunk and the trailers have been read.
    pub(crate) done: bool,
}

#[derive(Debug, Default, Clone, Copy)]
enum ChunkState {
    /// Reading the hex size of the next chunk.
    #[default]
    Size,
    /// Skipping a chunk extension up to the end of the size line.
    Extension,
    /// Reading the chunk's data; `size` bytes remain.
    Data,
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: at the start of a trailer line.
    TrailerLine,
    /// Inside a trailer line.
    Trailer,
}

impl Chunked {
    /// Decodes `input`, the next bytes of the body, handing the data to `counter`.
    pub(crate) fn feed(&mut self, mut input: &[u8], counter: &mut FrameCounter) -> io::Result<()> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        while !input.is_empty() {
            if self.done {
                return Err(bad("bytes after the end of the body"));
            }
            match self.state {
                ChunkState::Data => {
                    let take = input.len().min(self.size as usize);
                    counter.feed(&input[..take]);
                    input = &input[take..];
                    self.size -= take as u64;
                    if self.size == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                    continue;
                }
                ChunkState::Size => match input[0] {
                    b @ (b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                        let digit = (b as char).to_digit(16).expect("hex digit");
                        self.size = self.size * 16 + u64::from(digit);
                    }
                    b';' => self.state = ChunkState::Extension,
                    b'\r' => {}
                    b'\n' => {
                        self.state = if self.size == 0 {
                            ChunkState::TrailerLine
                        } else {
                            ChunkState::Data
                        };
                    }
                    _ => return Err(bad("bad chunk size")),
                },
                ChunkState::Extension => {
                    if input[0] == b'\n' {
                        self.state = if self.size == 0 {
                            ChunkState::TrailerLine
                        } else {
                            ChunkState::Data
                        };
                    }
                }
                ChunkState::DataEnd => match input[0] {
                    b'\r' => {}
                    b'\n' => self.state = ChunkState::Size,
                    _ => return Err(bad("chunk data longer than its size")),
                },
                ChunkState::TrailerLine => match input[0] {
                    b'\r' => {}
                    b'\n' => self.done = true,
                    _ => self.state = ChunkState::Trailer,
                },
                ChunkState::Trailer => {
                    if input[0] == b'\n' {
                        self.state = ChunkState::TrailerLine;
                    }
                }
            }
            input = &input[1..];
        }
        Ok(())
    }
}

/// Counts the frames of an event stream: a blank line ends a frame; a frame whose first
/// line is a comment (`:`) is a heartbeat, any other is an event.
#[derive(Debug)]
pub(crate) struct FrameCounter {
    /// Frames that are not comments.
    pub(crate) events: u64,
    /// Frames whose first line is a comment.
    pub(crate) comments: u64,
    /// Bytes fed.
    pub(crate) bytes: u64,
    /// The last byte seen was a line feed.
    after_lf: bool,
    /// The next byte starts a frame.
    at_frame_start: bool,
    /// The current frame starts with a comment.
    comment: bool,
}

impl Default for FrameCounter {
    fn default() -> Self {
        FrameCounter {
            events: 0,
            comments: 0,
            bytes: 0,
            after_lf: false,
            at_frame_start: true,
            comment: false,
        }
    }
}

impl FrameCounter {
    /// Counts the frames that end in `data`, the next bytes of the event stream.
    pub(crate) fn feed(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        let mut at = 0;
        while at < data.len() {
            if self.at_frame_start {
                self.comment = data[at] == b':';
                self.at_frame_start = false;
            }
            match memchr::memchr(b'\n', &data[at..]) {
                None => {
                    self.after_lf = false;
                    return;
                }
                Some(offset) => {
                    if offset == 0 && self.after_lf {
                        // A blank line: the frame ends.
                        if self.comment {
                            self.comments += 1;
                        } else {
                            self.events += 1;
                        }
                        self.after_lf = false;
                        self.at_frame_start = true;
                    } else {
                        self.after_lf = true;
                    }
                    at += offset + 1;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The benchmark.

/// Command-line options (unknown arguments, such as cargo's `--bench`, are ignored).
#[derive(Debug)]
pub struct Options {
    /// Events per run.
    pub events: u64,
    /// Timed runs per stack.
    pub runs: usize,
    /// The stacks to run, in order.
    pub stacks: Vec<Stack>,
}

impl Options {
    /// Reads `--events N`, `--runs R` and `--stack NAME[,NAME...]` (also `--events=N`).
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Options {
        let mut options = Options {
            events: DEFAULT_EVENTS,
            runs: 3,
            stacks: Vec::new(),
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (name, value) = match arg.split_once('=') {
                Some((name, value)) => (name.to_string(), Some(value.to_string())),
                None => (arg, None),
            };
            match name.as_str() {
                "--events" | "--runs" | "--stack" => {
                    let value = value
                        .or_else(|| args.next())
                        .unwrap_or_else(|| panic!("{name} needs a value"));
                    match name.as_str() {
                        "--events" => {
                            options.events = value.replace('_', "").parse().expect("--events N")
                        }
                        "--runs" => options.runs = value.parse().expect("--runs R"),
                        _ => {
                            for name in value.split(',') {
                                let stack = Stack::from_name(name).unwrap_or_else(|| {
                                    panic!(
                                        "--stack: tower-sse, axum, warp or ceiling, not {name:?}"
                                    )
                                });
                                options.stacks.push(stack);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if options.stacks.is_empty() {
            options.stacks = Stack::ALL.to_vec();
        }
        assert!(options.events > 0 && options.runs > 0);
        options
    }
}

/// Runs every chosen stack `runs` times, interleaved, after one untimed warm-up each;
/// panics if any run did not deliver exactly every event. Returns the runs of each
/// stack, in the order of `options.stacks`.
pub fn bench(
    rt: &Runtime,
    options: &Options,
    mut report: impl FnMut(&Run),
) -> Vec<(Stack, Vec<Run>)> {
    let warm_up = options.events.min(100_000);
    for &stack in &options.stacks {
        let run = run_burst(rt, stack, warm_up).expect("warm-up run");
        check(&run, warm_up).expect("warm-up run");
    }
    let mut runs: Vec<(Stack, Vec<Run>)> =
        options.stacks.iter().map(|&s| (s, Vec::new())).collect();
    for _ in 0..options.runs {
        for (stack, stack_runs) in &mut runs {
            let run = run_burst(rt, *stack, options.events).expect("run");
            if let Err(err) = check(&run, options.events) {
                panic!("{err}");
            }
            report(&run);
            stack_runs.push(run);
        }
    }
    runs
}

/// The run of median duration.
pub fn median(runs: &[Run]) -> &Run {
    let mut sorted: Vec<&Run> = runs.iter().collect();
    sorted.sort_by_key(|run| run.elapsed);
    sorted[sorted.len() / 2]
}

fn main() {
    let options = Options::from_args(std::env::args().skip(1));
    let rt = runtime();
    println!(
        "burst: {} events of ~{} bytes ({} bytes), {} runs per stack, interleaved; \
         server: hyper http1, tokio multi-thread 2 workers; client: blocking TcpStream, same process",
        options.events,
        expected_bytes(options.events) / options.events,
        expected_bytes(options.events),
        options.runs,
    );
    let ms = |cpu: Option<Duration>| cpu.map_or("?".to_string(), |d| d.as_millis().to_string());
    let runs = bench(&rt, &options, |run| {
        let server_cpu = run
            .cpu_process
            .zip(run.cpu_client)
            .map(|(p, c)| p.saturating_sub(c));
        println!(
            "  run {:<22} {:>8.3} s {:>12.0} events/s {:>8.1} MB/s  \
             cpu ms: server {:>5} client {:>5}  (wire {} bytes, heartbeats {})",
            run.stack.name(),
            run.elapsed.as_secs_f64(),
            run.events_per_sec(),
            run.mb_per_sec(),
            ms(server_cpu),
            ms(run.cpu_client),
            run.wire_bytes,
            run.heartbeats,
        );
    });

    let axum = runs
        .iter()
        .find(|(stack, _)| *stack == Stack::Axum)
        .map(|(_, runs)| median(runs).events_per_sec());
    println!();
    println!(
        "{:<22} {:>14} {:>10} {:>12}",
        "stack (median)", "events/s", "MB/s", "vs axum"
    );
    for (stack, stack_runs) in &runs {
        let run = median(stack_runs);
        let ratio = axum.map_or("-".to_string(), |a| {
            format!("{:.2}x", run.events_per_sec() / a)
        });
        println!(
            "{:<22} {:>14.0} {:>10.1} {:>12}",
            stack.name(),
            run.events_per_sec(),
            run.mb_per_sec(),
            ratio
        );
    }
}
