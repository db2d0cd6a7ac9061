//! A Server-Sent Events load generator: opens many HTTP/1.1 event streams against any
//! URL, parses the events, and measures publish-to-receive latency from a timestamp the
//! publisher puts in the event data.
//!
//! ```text
//! cargo bench --bench loadgen -- --url http://127.0.0.1:3000/events -n 1000,5000 \
//!     --connect-rate 2000 --settle 2 --duration 10 [--stats http://127.0.0.1:3001/stats]
//! ```
//!
//! - Each connection is one tokio task over a raw `TcpStream` (one 4 KiB read buffer,
//!   a line buffer and a data buffer: a few KiB per connection), so one process holds
//!   15,000 streams next to the server on a 2-core machine.
//! - The response body is decoded (chunked or read to the end) and parsed as SSE
//!   incrementally: `data:` lines are collected, a blank line dispatches the event,
//!   comments (heartbeats) are counted apart.
//! - Latency: the event data is read for `"t":<unix microseconds>` (the publish time)
//!   and `"seq":<n>` (the publish sequence number); receive time minus `t` goes into a
//!   log-linear histogram (1 us resolution up to 1 ms, then 0.2 %). Events whose data
//!   has no `"t":` are counted but not timed. A jump in `seq` on one connection counts
//!   the events lost in between.
//! - `-n` takes a ramp: `-n 1000,5000,15000` connects 1,000, measures, adds 4,000 more,
//!   measures, and so on. Connections are opened at `--connect-rate` per second.
//!   Each step: connect, wait `--settle` seconds, then measure for `--duration` seconds.
//! - `--stats URL` (repeatable) reads a JSON object with `cpu_ns` and `rss_kib` from
//!   the server at the start (before any connection) and around each window, to give
//!   server CPU per delivered event and RSS per connection.
//! - `--churn C`: instead of holding streams, C workers each loop connect, GET, read the
//!   response head, close, for `--duration` seconds: connects+disconnects per second.
//! - `--until-seq K`: every connection ends once it has the event with `seq` K; the
//!   report says whether every connection received exactly `seq` 1..=K in order.
//! - Several `--url`s: connections are spread over them round-robin.
//! - A progress line is printed to stderr every second; `--json FILE` writes the report.
//!
//! Per-connection errors (refused, reset, bad status, not an event stream, early end)
//! are counted by kind, and the first few are printed with the connection's number; the
//! exit status is then 3.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------
// Targets and options.

/// A parsed `http://host:port/path?query` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: String,
    /// Path and query.
    pub path: String,
}

impl Target {
    /// Parses an `http://` URL whose host is an IP address or `localhost`.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs"))?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.contains(']'))
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let resolvable = with_port.replacen("localhost", "127.0.0.1", 1);
        let addr = resolvable
            .parse()
            .map_err(|err| format!("{url}: {err} (give an IP address)"))?;
        Ok(Target {
            addr,
            host: authority.to_string(),
            path: path.to_string(),
        })
    }

    fn request(&self) -> Vec<u8> {
        format!(
            "GET {} HTTP/1.1\r\nhost: {}\r\naccept: text/event-stream\r\n\
             cache-control: no-cache\r\nuser-agent: tower-sse-loadgen\r\n\r\n",
            self.path, self.host
        )
        .into_bytes()
    }

    /// `http://addr/path`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.host, self.path)
    }
}

/// What the generator does.
#[derive(Clone, Debug)]
pub struct Options {
    /// Event stream URLs; connections are spread over them round-robin.
    pub targets: Vec<Target>,
    /// Connections held at each step of the ramp.
    pub steps: Vec<usize>,
    /// New connections per second.
    pub connect_rate: f64,
    /// Time between the last connection of a step and its window.
    pub settle: Duration,
    /// Length of each measuring window (or of the churn).
    pub duration: Duration,
    /// Stats endpoints of the servers (`cpu_ns`, `rss_kib`).
    pub stats: Vec<Target>,
    /// Churn workers; `None` holds streams instead.
    pub churn: Option<usize>,
    /// End each connection once it has this `seq`, and check 1..=K arrived in order.
    pub until_seq: Option<u64>,
    /// Worker threads of the generator's runtime.
    pub threads: usize,
    /// Write the report here as JSON.
    pub json: Option<PathBuf>,
    /// No progress line.
    pub quiet: bool,
    /// Give up on a step whose connections are not all up (or failed) by then.
    pub connect_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            targets: Vec::new(),
            steps: vec![100],
            connect_rate: 2000.0,
            settle: Duration::from_secs(2),
            duration: Duration::from_secs(10),
            stats: Vec::new(),
            churn: None,
            until_seq: None,
            threads: 2,
            json: None,
            quiet: false,
            connect_timeout: Duration::from_secs(60),
        }
    }
}

impl Options {
    /// Reads the command line (see the module docs); unknown flags such as cargo's
    /// `--bench` are ignored.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut options = Options::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let takes_value = matches!(
                name.as_str(),
                "--url"
                    | "-n"
                    | "--connections"
                    | "--connect-rate"
                    | "--settle"
                    | "--duration"
                    | "--stats"
                    | "--churn"
                    | "--until-seq"
                    | "--threads"
                    | "--json"
                    | "--connect-timeout"
            );
            if !takes_value {
                match name.as_str() {
                    "--quiet" | "-q" => options.quiet = true,
                    "--help" | "-h" => return Err(USAGE.to_string()),
                    _ => {}
                }
                continue;
            }
            let value = inline
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))?;
            let secs = |v: &str| -> Result<Duration, String> {
                v.parse::<f64>()
                    .map(Duration::from_secs_f64)
                    .map_err(|_| format!("{name}: seconds, not {v:?}"))
            };
            let number = |v: &str| -> Result<u64, String> {
                v.replace('_', "")
                    .parse::<u64>()
                    .map_err(|_| format!("{name}: a number, not {v:?}"))
            };
            match name.as_str() {
                "--url" => options.targets.push(Target::parse(&value)?),
                "-n" | "--connections" => {
                    options.steps = value
                        .split(',')
                        .map(|s| number(s).map(|n| n as usize))
                        .collect::<Result<_, _>>()?;
                }
                "--connect-rate" => {
                    options.connect_rate = value
                        .parse()
                        .map_err(|_| format!("--connect-rate: not {value:?}"))?
                }
                "--settle" => options.settle = secs(&value)?,
                "--duration" => options.duration = secs(&value)?,
                "--connect-timeout" => options.connect_timeout = secs(&value)?,
                "--stats" => options.stats.push(Target::parse(&value)?),
                "--churn" => options.churn = Some(number(&value)? as usize),
                "--until-seq" => options.until_seq = Some(number(&value)?),
                "--threads" => options.threads = number(&value)?.max(1) as usize,
                "--json" => options.json = Some(PathBuf::from(value)),
                _ => unreachable!(),
            }
        }
        if options.targets.is_empty() {
            return Err(format!("--url is required\n{USAGE}"));
        }
        if options.steps.is_empty() || options.steps.windows(2).any(|w| w[1] < w[0]) {
            return Err("-n: a rising list of connection counts".to_string());
        }
        if options.connect_rate.is_nan() || options.connect_rate <= 0.0 {
            return Err("--connect-rate must be positive".to_string());
        }
        Ok(options)
    }
}

/// The command line help.
pub const USAGE: &str = "\
usage: loadgen --url http://HOST:PORT/PATH [--url ...] [-n N[,N...]] [--connect-rate R]
               [--settle S] [--duration S] [--stats http://HOST:PORT/stats ...]
               [--churn WORKERS] [--until-seq K] [--threads T] [--json FILE] [--quiet]";

// ---------------------------------------------------------------------------------------
// Latency histogram.

/// A log-linear histogram of microseconds with atomic buckets: exact below 1,024 us,
/// then 512 buckets per power of two (0.2 %).
pub struct Histogram {
    buckets: Vec<AtomicU64>,
    max: AtomicU64,
}

const LINEAR: u64 = 1024;
const SUB_BITS: u32 = 9;

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram").finish_non_exhaustive()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram covering up to 2^40 us.
    pub fn new() -> Self {
        let buckets = LINEAR as usize + (40 - 10) * (1 << SUB_BITS);
        Histogram {
            buckets: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }

    fn index(value: u64) -> usize {
        if value < LINEAR {
            return value as usize;
        }
        let exp = 63 - value.leading_zeros(); // >= 10
        let sub = (value >> (exp - SUB_BITS)) & ((1 << SUB_BITS) - 1);
        let index = LINEAR as usize + (exp as usize - 10) * (1 << SUB_BITS) + sub as usize;
        index.min(LINEAR as usize + 30 * (1 << SUB_BITS) - 1)
    }

    /// The lowest value of bucket `index`.
    fn value(index: usize) -> u64 {
        if index < LINEAR as usize {
            return index as u64;
        }
        let rest = index - LINEAR as usize;
        let exp = (rest >> SUB_BITS) as u32 + 10;
        let sub = (rest & ((1 << SUB_BITS) - 1)) as u64;
        (1u64 << exp) + (sub << (exp - SUB_BITS))
    }

    /// Records one value.
    pub fn record(&self, micros: u64) {
        self.buckets[Self::index(micros)].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(micros, Ordering::Relaxed);
    }

    /// The counts now, and the largest value since the last call; the maximum restarts.
    pub fn snapshot(&self) -> (Vec<u64>, u64) {
        let counts = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        (counts, self.max.swap(0, Ordering::Relaxed))
    }
}

/// Percentiles of the values recorded between two snapshots.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    /// Values timed.
    pub count: u64,
    /// Median, microseconds.
    pub p50_us: u64,
    /// 90th percentile, microseconds.
    pub p90_us: u64,
    /// 99th percentile, microseconds.
    pub p99_us: u64,
    /// 99.9th percentile, microseconds.
    pub p999_us: u64,
    /// Largest, microseconds.
    pub max_us: u64,
}

impl Latency {
    /// Percentiles of the values recorded between snapshot `before` and `after`.
    pub fn between(before: &[u64], after: &[u64], max: u64) -> Latency {
        let diff: Vec<u64> = after
            .iter()
            .zip(before)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        let count: u64 = diff.iter().sum();
        let at = |q: f64| -> u64 {
            if count == 0 {
                return 0;
            }
            let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
            let mut seen = 0;
            for (index, n) in diff.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return Histogram::value(index);
                }
            }
            max
        };
        Latency {
            count,
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: max,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Incremental parsing: chunked transfer coding, then SSE.

/// What one event carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamp {
    /// `"t":` publish time, unix microseconds.
    pub t: Option<u64>,
    /// `"seq":` publish sequence number.
    pub seq: Option<u64>,
}

/// Reads the unsigned integer after `key` (such as `"t":`) in `data`.
pub fn field(data: &[u8], key: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(data, key)? + key.len();
    let digits =
        data[at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .fold((0u64, 0), |(n, len), b| {
                (
                    n.wrapping_mul(10).wrapping_add(u64::from(b - b'0')),
                    len + 1,
                )
            });
    (digits.1 > 0).then_some(digits.0)
}

/// An incremental SSE parser that keeps only what the generator needs: the data of
/// each event (for its stamp) and counts.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    pending_cr: bool,
    /// Events dispatched.
    pub events: u64,
    /// Comment lines seen (heartbeats).
    pub comments: u64,
}

impl SseParser {
    /// Feeds body bytes; calls `on_event` with the stamp of each dispatched event.
    pub fn feed(&mut self, mut input: &[u8], on_event: &mut impl FnMut(Stamp)) {
        while !input.is_empty() {
            if self.pending_cr {
                self.pending_cr = false;
                if input[0] == b'\n' {
                    input = &input[1..];
                    continue;
                }
            }
            match memchr::memchr2(b'\n', b'\r', input) {
                None => {
                    self.line.extend_from_slice(input);
                    return;
                }
                Some(at) => {
                    if self.line.is_empty() {
                        self.end_line(&input[..at], on_event);
                    } else {
                        self.line.extend_from_slice(&input[..at]);
                        let line = std::mem::take(&mut self.line);
                        self.end_line(&line, on_event);
                        self.line = line;
                        self.line.clear();
                    }
                    self.pending_cr = input[at] == b'\r';
                    input = &input[at + 1..];
                }
            }
        }
    }

    fn end_line(&mut self, line: &[u8], on_event: &mut impl FnMut(Stamp)) {
        if line.is_empty() {
            if self.has_data {
                self.events += 1;
                on_event(Stamp {
                    t: field(&self.data, b"\"t\":"),
                    seq: field(&self.data, b"\"seq\":"),
                });
            }
            self.data.clear();
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            self.comments += 1;
            return;
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(at) => {
                let value = &line[at + 1..];
                (&line[..at], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        if name == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
    }
}

/// A decoder of `Transfer-Encoding: chunked` (or a plain body read to the end).
#[derive(Debug)]
pub struct Body {
    chunked: bool,
    state: Chunk,
    size: u64,
    /// The last chunk was read.
    pub done: bool,
}

#[derive(Debug, Clone, Copy)]
enum Chunk {
    Size,
    Extension,
    Data,
    DataEnd,
    Trailers,
}

impl Body {
    /// A body with (`chunked`) or without chunked coding.
    pub fn new(chunked: bool) -> Self {
        Body {
            chunked,
            state: Chunk::Size,
            size: 0,
            done: false,
        }
    }

    /// Decodes `input`, handing the data to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut impl FnMut(&[u8])) -> Result<(), String> {
        if !self.chunked {
            out(input);
            return Ok(());
        }
        while !input.is_empty() && !self.done {
            match self.state {
                Chunk::Data => {
                    let take = input.len().min(self.size as usize);
                    out(&input[..take]);
                    input = &input[take..];
                    self.size -= take as u64;
                    if self.size == 0 {
                        self.state = Chunk::DataEnd;
                    }
                    continue;
                }
                Chunk::Size => match input[0] {
                    b @ (b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                        let digit = (b as char).to_digit(16).unwrap_or(0);
                        self.size = self.size.checked_mul(16).ok_or("chunk size overflow")?
                            + u64::from(digit);
                    }
                    b';' => self.state = Chunk::Extension,
                    b'\r' => {}
                    b'\n' => {
                        self.state = if self.size == 0 {
                            Chunk::Trailers
                        } else {
                            Chunk::Data
                        }
                    }
                    _ => return Err("bad chunk size".to_string()),
                },
                Chunk::Extension => {
                    if input[0] == b'\n' {
                        self.state = if self.size == 0 {
                            Chunk::Trailers
                        } else {
                            Chunk::Data
                        };
                    }
                }
                Chunk::DataEnd => match input[0] {
                    b'\r' => {}
                    b'\n' => self.state = Chunk::Size,
                    _ => return Err("chunk longer than its size".to_string()),
                },
                Chunk::Trailers => {
                    // The generator does not read trailers; the body is over.
                    self.done = true;
                }
            }
            input = &input[1..];
        }
        Ok(())
    }
}

/// Parses a response head: status 200, `text/event-stream`, chunked or not.
pub fn check_head(head: &[u8]) -> Result<bool, String> {
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let status = text.lines().next().unwrap_or("");
    if !status.starts_with("http/1.1 200") && !status.starts_with("http/1.0 200") {
        return Err(format!("status {}", status.trim()));
    }
    if !text.contains("\ncontent-type: text/event-stream") {
        return Err("not text/event-stream".to_string());
    }
    Ok(text.contains("\ntransfer-encoding: chunked"))
}

// ---------------------------------------------------------------------------------------
// Shared state of a run.

/// Counters shared by every connection task.
pub struct Shared {
    /// Connections whose response head arrived.
    pub connected: AtomicUsize,
    /// Connections that ended with an error.
    pub failed: AtomicUsize,
    /// Connections open now.
    pub open: AtomicUsize,
    /// Events received.
    pub events: AtomicU64,
    /// Heartbeat comments received.
    pub comments: AtomicU64,
    /// Events lost: jumps in `seq` on one connection.
    pub lost: AtomicU64,
    /// Events whose `seq` was not above the previous one on the connection.
    pub reordered: AtomicU64,
    /// Connections that ended with every `seq` of 1..=K in order (with `--until-seq`).
    pub complete: AtomicUsize,
    /// Churn cycles done.
    pub cycles: AtomicU64,
    /// Latencies.
    pub latency: Histogram,
    /// Set to stop every task.
    pub stop: AtomicBool,
    cancel: tokio_util::sync::CancellationToken,
    errors: Mutex<BTreeMap<String, u64>>,
    printed_errors: AtomicUsize,
    quiet: bool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("connected", &self.connected)
            .field("failed", &self.failed)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn new(quiet: bool) -> Self {
        Shared {
            connected: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            events: AtomicU64::new(0),
            comments: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            reordered: AtomicU64::new(0),
            complete: AtomicUsize::new(0),
            cycles: AtomicU64::new(0),
            latency: Histogram::new(),
            stop: AtomicBool::new(false),
            cancel: tokio_util::sync::CancellationToken::new(),
            errors: Mutex::new(BTreeMap::new()),
            printed_errors: AtomicUsize::new(0),
            quiet,
        }
    }

    fn error(&self, connection: usize, kind: &str, detail: &str) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind.to_string())
            .or_default() += 1;
        if !self.quiet && self.printed_errors.fetch_add(1, Ordering::Relaxed) < 5 {
            eprintln!("\nconnection {connection}: {kind}: {detail}");
        }
    }

    fn error_counts(&self) -> BTreeMap<String, u64> {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn error_kind(err: &std::io::Error) -> String {
    format!("{:?}", err.kind())
}

/// Holds one event stream until told to stop.
async fn subscriber(index: usize, target: Target, shared: Arc<Shared>, until_seq: Option<u64>) {
    let mut socket = match TcpStream::connect(target.addr).await {
        Ok(socket) => socket,
        Err(err) => {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            shared.error(
                index,
                &format!("connect {}", error_kind(&err)),
                &err.to_string(),
            );
            return;
        }
    };
    let _ = socket.set_nodelay(true);
    shared.open.fetch_add(1, Ordering::Relaxed);
    let result = stream_events(&mut socket, &target, &shared, until_seq).await;
    shared.open.fetch_sub(1, Ordering::Relaxed);
    if let Err((kind, detail)) = result {
        shared.failed.fetch_add(1, Ordering::Relaxed);
        shared.error(index, &kind, &detail);
    }
}

async fn read_head(
    socket: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<(bool, usize, usize), (String, String)> {
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            if buf.len() >= 64 * 1024 {
                return Err(("head too large".into(), String::new()));
            }
            buf.resize(buf.len() * 2, 0);
        }
        let n = socket
            .read(&mut buf[filled..])
            .await
            .map_err(|e| (format!("read {}", error_kind(&e)), e.to_string()))?;
        if n == 0 {
            return Err(("closed before the head".into(), String::new()));
        }
        filled += n;
        if let Some(at) = memchr::memmem::find(&buf[..filled], b"\r\n\r\n") {
            let chunked =
                check_head(&buf[..at + 4]).map_err(|e| ("bad response".to_string(), e))?;
            return Ok((chunked, at + 4, filled));
        }
    }
}

async fn stream_events(
    socket: &mut TcpStream,
    target: &Target,
    shared: &Shared,
    until_seq: Option<u64>,
) -> Result<(), (String, String)> {
    socket
        .write_all(&target.request())
        .await
        .map_err(|e| (format!("write {}", error_kind(&e)), e.to_string()))?;
    let mut buf = vec![0u8; 4096];
    let (chunked, head_end, filled) = read_head(socket, &mut buf).await?;
    shared.connected.fetch_add(1, Ordering::Relaxed);

    let mut body = Body::new(chunked);
    let mut parser = SseParser::default();
    let mut last_seq: Option<u64> = None;
    let mut in_order = true;
    let mut finished = false;
    let mut comments = 0;
    let mut on_data = |data: &[u8], parser: &mut SseParser, finished: &mut bool| {
        parser.feed(data, &mut |stamp: Stamp| {
            let now = now_micros();
            shared.events.fetch_add(1, Ordering::Relaxed);
            if let Some(t) = stamp.t {
                shared.latency.record(now.saturating_sub(t));
            }
            if let Some(seq) = stamp.seq {
                match last_seq {
                    Some(last) if seq <= last => {
                        shared.reordered.fetch_add(1, Ordering::Relaxed);
                        in_order = false;
                    }
                    Some(last) if seq > last + 1 => {
                        shared.lost.fetch_add(seq - last - 1, Ordering::Relaxed);
                        in_order = false;
                    }
                    None if until_seq.is_some() && seq != 1 => in_order = false,
                    _ => {}
                }
                last_seq = Some(last_seq.map_or(seq, |l| l.max(seq)));
                if until_seq.is_some_and(|k| seq >= k) {
                    *finished = true;
                }
            }
        });
    };
    let mut fail = None;
    body.feed(&buf[head_end..filled], &mut |d| {
        on_data(d, &mut parser, &mut finished)
    })
    .map_err(|e| ("bad chunked body".to_string(), e))?;
    buf.truncate(4096);
    while !finished {
        let read = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break,
            read = socket.read(&mut buf) => read,
        };
        match read {
            Ok(0) => {
                fail = Some(("server closed the stream".to_string(), String::new()));
                break;
            }
            Ok(n) => {
                if let Err(e) =
                    body.feed(&buf[..n], &mut |d| on_data(d, &mut parser, &mut finished))
                {
                    fail = Some(("bad chunked body".to_string(), e));
                    break;
                }
                if parser.comments != comments {
                    shared
                        .comments
                        .fetch_add(parser.comments - comments, Ordering::Relaxed);
                    comments = parser.comments;
                }
                if body.done {
                    fail = Some(("body ended".to_string(), String::new()));
                    break;
                }
            }
            Err(err) => {
                fail = Some((format!("read {}", error_kind(&err)), err.to_string()));
                break;
            }
        }
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
    }
    if let Some(k) = until_seq
        && finished
        && in_order
        && last_seq == Some(k)
        && parser.events == k
    {
        shared.complete.fetch_add(1, Ordering::Relaxed);
    }
    match fail {
        Some(fail) if !shared.stop.load(Ordering::Relaxed) => Err(fail),
        _ => Ok(()),
    }
}

/// One churn worker: connect, GET, read the head, close; again until told to stop.
async fn churner(index: usize, targets: Arc<Vec<Target>>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 4096];
    let mut n = index;
    while !shared.stop.load(Ordering::Relaxed) {
        let target = &targets[n % targets.len()];
        n += 1;
        let mut socket = match TcpStream::connect(target.addr).await {
            Ok(socket) => socket,
            Err(err) => {
                shared.error(
                    index,
                    &format!("connect {}", error_kind(&err)),
                    &err.to_string(),
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        if let Err(err) = socket.write_all(&target.request()).await {
            shared.error(
                index,
                &format!("write {}", error_kind(&err)),
                &err.to_string(),
            );
            continue;
        }
        match read_head(&mut socket, &mut buf).await {
            Ok(_) => {
                shared.cycles.fetch_add(1, Ordering::Relaxed);
            }
            Err((kind, detail)) => shared.error(index, &kind, &detail),
        }
        drop(socket);
    }
}

// ---------------------------------------------------------------------------------------
// Server stats.

/// What a server's stats endpoint said.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ServerStats {
    /// CPU time of the server process, nanoseconds.
    pub cpu_ns: u64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Subscribers the server counts, if it says.
    pub subscribers: Option<u64>,
}

async fn fetch_stats(target: &Target) -> Result<ServerStats, String> {
    let get = async {
        let mut socket = TcpStream::connect(target.addr).await?;
        let request = format!(
            "GET {} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
            target.path, target.host
        );
        socket.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        socket.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(30), get)
        .await
        .map_err(|_| "stats: timed out".to_string())?
        .map_err(|e| format!("stats: {e}"))?;
    let at = memchr::memmem::find(&response, b"\r\n\r\n").ok_or("stats: no head")?;
    let body = &response[at + 4..];
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("stats: {e}"))?;
    Ok(ServerStats {
        cpu_ns: value["cpu_ns"].as_u64().ok_or("stats: no cpu_ns")?,
        rss_kib: value["rss_kib"].as_u64().ok_or("stats: no rss_kib")?,
        subscribers: value["subscribers"].as_u64(),
    })
}

async fn fetch_all(targets: &[Target]) -> Result<Vec<ServerStats>, String> {
    let mut all = Vec::new();
    for target in targets {
        all.push(fetch_stats(target).await?);
    }
    Ok(all)
}

/// CPU time of this process so far (all threads), nanoseconds.
pub fn own_cpu_ns() -> u64 {
    process_cpu_ns().unwrap_or(0)
}

/// CPU time of this process (sum of its threads' run time from `schedstat`, else
/// utime + stime from `/proc/self/stat`), nanoseconds.
pub fn process_cpu_ns() -> Option<u64> {
    let mut total = 0u64;
    let mut any = false;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let path = task.path().join("schedstat");
            if let Ok(text) = std::fs::read_to_string(path)
                && let Some(ns) = text
                    .split_whitespace()
                    .next()
                    .and_then(|s| s.parse::<u64>().ok())
            {
                total += ns;
                any = true;
            }
        }
    }
    if any && total > 0 {
        return Some(total);
    }
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 10_000_000)
}

/// Resident set size of this process (`VmRSS`), KiB.
pub fn process_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------------------
// Reports.

/// One step of a ramp (or the churn).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Step {
    /// Connections asked for.
    pub connections: usize,
    /// Connections whose response head arrived, in all.
    pub connected: usize,
    /// Connections failed, in all.
    pub failed: usize,
    /// Connections open at the end of the window.
    pub open: usize,
    /// Time to open this step's connections, seconds.
    pub connect_secs: f64,
    /// Length of the window, seconds.
    pub window_secs: f64,
    /// Events received in the window.
    pub events: u64,
    /// Events per second received in the window.
    pub events_per_sec: f64,
    /// Events lost in the window (jumps in `seq`).
    pub lost: u64,
    /// Out-of-order or repeated events in the window.
    pub reordered: u64,
    /// Heartbeat comments in the window.
    pub comments: u64,
    /// Publish-to-receive latency of the events of the window.
    pub latency: Latency,
    /// Server CPU time in the window, nanoseconds (summed over servers).
    pub server_cpu_ns: Option<u64>,
    /// Server CPU per event received, microseconds.
    pub server_cpu_us_per_event: Option<f64>,
    /// Server RSS before any connection, KiB (summed).
    pub server_rss_base_kib: Option<u64>,
    /// Server RSS at the end of the window, KiB (summed).
    pub server_rss_kib: Option<u64>,
    /// (RSS at the end of the window - RSS before any connection) / connections, KiB.
    pub server_rss_per_conn_kib: Option<f64>,
    /// The generator's own CPU in the window, nanoseconds.
    pub client_cpu_ns: u64,
    /// Churn: connect + GET + head + close cycles in the window.
    pub cycles: u64,
    /// Churn: cycles per second.
    pub cycles_per_sec: f64,
    /// Churn: server CPU per cycle, microseconds.
    pub server_cpu_us_per_cycle: Option<f64>,
    /// Churn: server RSS measured `settle` seconds after the churn, KiB (summed).
    pub server_rss_after_kib: Option<u64>,
    /// Subscribers the server counted at the end (churn: `settle` seconds after).
    pub server_subscribers: Option<u64>,
}

/// What a run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// The URLs.
    pub urls: Vec<String>,
    /// One per step.
    pub steps: Vec<Step>,
    /// Errors by kind, over the whole run.
    pub errors: BTreeMap<String, u64>,
    /// With `--until-seq`: connections that received exactly 1..=K in order.
    pub complete: Option<usize>,
}

// ---------------------------------------------------------------------------------------
// Running.

fn progress(shared: &Shared, label: &str, started: Instant, last: &mut (Instant, u64)) -> String {
    let events = shared.events.load(Ordering::Relaxed);
    let now = Instant::now();
    let rate = (events - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
    *last = (now, events);
    format!(
        "[{:>6.1}s] {label}: open {} connected {} failed {} events {} ({:.0}/s) lost {} cycles {}",
        started.elapsed().as_secs_f64(),
        shared.open.load(Ordering::Relaxed),
        shared.connected.load(Ordering::Relaxed),
        shared.failed.load(Ordering::Relaxed),
        events,
        rate,
        shared.lost.load(Ordering::Relaxed),
        shared.cycles.load(Ordering::Relaxed),
    )
}

/// Prints a progress line every second until `done` is set.
fn spawn_progress(
    shared: Arc<Shared>,
    label: Arc<Mutex<String>>,
    done: Arc<AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    if shared.quiet {
        return None;
    }
    Some(std::thread::spawn(move || {
        let tty = std::io::stderr().is_terminal();
        let started = Instant::now();
        let mut last = (Instant::now(), 0);
        let mut ticks = 0u64;
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(250));
            ticks += 1;
            if !ticks.is_multiple_of(4) {
                continue;
            }
            let label = label.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let line = progress(&shared, &label, started, &mut last);
            if tty {
                eprint!("\r{line}\x1b[K");
            } else if ticks.is_multiple_of(20) {
                eprintln!("{line}");
            }
        }
        if tty {
            eprintln!();
        }
    }))
}

/// Runs the generator as `options` say, on a runtime of its own.
pub fn run(options: &Options) -> Result<Report, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let report = runtime.block_on(run_async(options));
    runtime.shutdown_timeout(Duration::from_secs(2));
    let report = report?;
    if let Some(path) = &options.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(report)
}

async fn run_async(options: &Options) -> Result<Report, String> {
    let shared = Arc::new(Shared::new(options.quiet));
    let label = Arc::new(Mutex::new(String::from("starting")));
    let done = Arc::new(AtomicBool::new(false));
    let printer = spawn_progress(shared.clone(), label.clone(), done.clone());
    let result = drive(options, &shared, &label).await;
    shared.stop.store(true, Ordering::Relaxed);
    shared.cancel.cancel();
    done.store(true, Ordering::Relaxed);
    if let Some(printer) = printer {
        let _ = printer.join();
    }
    let mut report = result?;
    report.errors = shared.error_counts();
    if options.until_seq.is_some() {
        report.complete = Some(shared.complete.load(Ordering::Relaxed));
    }
    Ok(report)
}

fn set_label(label: &Mutex<String>, text: String) {
    *label.lock().unwrap_or_else(|e| e.into_inner()) = text;
}

fn sum(stats: &[ServerStats]) -> ServerStats {
    stats
        .iter()
        .fold(ServerStats::default(), |a, s| ServerStats {
            cpu_ns: a.cpu_ns + s.cpu_ns,
            rss_kib: a.rss_kib + s.rss_kib,
            subscribers: match (a.subscribers, s.subscribers) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            },
        })
}

async fn drive(
    options: &Options,
    shared: &Arc<Shared>,
    label: &Mutex<String>,
) -> Result<Report, String> {
    let mut report = Report {
        urls: options.targets.iter().map(Target::url).collect(),
        ..Report::default()
    };
    let has_stats = !options.stats.is_empty();
    let base = if has_stats {
        Some(sum(&fetch_all(&options.stats).await?))
    } else {
        None
    };

    if let Some(workers) = options.churn {
        set_label(label, format!("churn with {workers} workers"));
        let targets = Arc::new(options.targets.clone());
        let client_before = own_cpu_ns();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for index in 0..workers {
            tasks.push(tokio::spawn(churner(
                index,
                targets.clone(),
                shared.clone(),
            )));
        }
        tokio::time::sleep(options.duration).await;
        shared.stop.store(true, Ordering::Relaxed);
        let cycles = shared.cycles.load(Ordering::Relaxed);
        let window = started.elapsed().as_secs_f64();
        for task in tasks {
            let _ = task.await;
        }
        let client_cpu_ns = own_cpu_ns().saturating_sub(client_before);
        let end = if has_stats {
            Some(sum(&fetch_all(&options.stats).await?))
        } else {
            None
        };
        set_label(label, "churn: settling".to_string());
        tokio::time::sleep(options.settle).await;
        let after = if has_stats {
            Some(sum(&fetch_all(&options.stats).await?))
        } else {
            None
        };
        let cpu = base
            .zip(end)
            .map(|(b, e)| e.cpu_ns.saturating_sub(b.cpu_ns));
        report.steps.push(Step {
            connections: workers,
            window_secs: window,
            cycles,
            cycles_per_sec: cycles as f64 / window,
            server_cpu_ns: cpu,
            server_cpu_us_per_cycle: cpu.map(|c| c as f64 / 1e3 / cycles.max(1) as f64),
            server_rss_base_kib: base.map(|b| b.rss_kib),
            server_rss_kib: end.map(|e| e.rss_kib),
            server_rss_after_kib: after.map(|a| a.rss_kib),
            server_subscribers: after.and_then(|a| a.subscribers),
            client_cpu_ns,
            ..Step::default()
        });
        return Ok(report);
    }

    let mut tasks = tokio::task::JoinSet::new();
    let mut opened = 0usize;
    for (step_index, &target_count) in options.steps.iter().enumerate() {
        let step_label = format!(
            "step {}/{} ({target_count} connections)",
            step_index + 1,
            options.steps.len()
        );
        set_label(label, format!("{step_label}: connecting"));
        // Open connections at the connect rate, in batches every 10 ms.
        let connect_started = Instant::now();
        let first = opened;
        while opened < target_count {
            let due = first
                + ((connect_started.elapsed().as_secs_f64() * options.connect_rate) as usize)
                    .max(1);
            while opened < target_count.min(due) {
                let target = options.targets[opened % options.targets.len()].clone();
                tasks.spawn(subscriber(
                    opened,
                    target,
                    shared.clone(),
                    options.until_seq,
                ));
                opened += 1;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Wait for every connection to answer or fail.
        let deadline = Instant::now() + options.connect_timeout;
        while shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed)
            < opened
        {
            if Instant::now() > deadline {
                return Err(format!(
                    "{step_label}: only {} of {opened} connections answered in {:?}",
                    shared.connected.load(Ordering::Relaxed),
                    options.connect_timeout
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let connect_secs = connect_started.elapsed().as_secs_f64();

        if options.until_seq.is_some() {
            // Every connection ends by itself once it has the last seq.
            set_label(label, format!("{step_label}: waiting for the last event"));
            let started = Instant::now();
            let deadline = started + options.duration.max(Duration::from_secs(1)) * 10;
            while !tasks.is_empty() {
                match tokio::time::timeout_at(deadline.into(), tasks.join_next()).await {
                    Ok(_) => {}
                    Err(_) => return Err(format!("{step_label}: streams did not finish")),
                }
            }
            report.steps.push(Step {
                connections: target_count,
                connected: shared.connected.load(Ordering::Relaxed),
                failed: shared.failed.load(Ordering::Relaxed),
                connect_secs,
                window_secs: started.elapsed().as_secs_f64(),
                events: shared.events.load(Ordering::Relaxed),
                lost: shared.lost.load(Ordering::Relaxed),
                reordered: shared.reordered.load(Ordering::Relaxed),
                latency: {
                    let (counts, max) = shared.latency.snapshot();
                    Latency::between(&vec![0; counts.len()], &counts, max)
                },
                ..Step::default()
            });
            continue;
        }

        set_label(label, format!("{step_label}: settling"));
        tokio::time::sleep(options.settle).await;

        set_label(label, format!("{step_label}: measuring"));
        let start_stats = if has_stats {
            Some(sum(&fetch_all(&options.stats).await?))
        } else {
            None
        };
        let (hist_before, _) = shared.latency.snapshot();
        let events_before = shared.events.load(Ordering::Relaxed);
        let lost_before = shared.lost.load(Ordering::Relaxed);
        let reordered_before = shared.reordered.load(Ordering::Relaxed);
        let comments_before = shared.comments.load(Ordering::Relaxed);
        let client_before = own_cpu_ns();
        let started = Instant::now();
        tokio::time::sleep(options.duration).await;
        let window = started.elapsed().as_secs_f64();
        let events = shared.events.load(Ordering::Relaxed) - events_before;
        let (hist_after, max) = shared.latency.snapshot();
        let client_cpu_ns = own_cpu_ns().saturating_sub(client_before);
        let end_stats = if has_stats {
            Some(sum(&fetch_all(&options.stats).await?))
        } else {
            None
        };
        let cpu = start_stats
            .zip(end_stats)
            .map(|(s, e)| e.cpu_ns.saturating_sub(s.cpu_ns));
        let step = Step {
            connections: target_count,
            connected: shared.connected.load(Ordering::Relaxed),
            failed: shared.failed.load(Ordering::Relaxed),
            open: shared.open.load(Ordering::Relaxed),
            connect_secs,
            window_secs: window,
            events,
            events_per_sec: events as f64 / window,
            lost: shared.lost.load(Ordering::Relaxed) - lost_before,
            reordered: shared.reordered.load(Ordering::Relaxed) - reordered_before,
            comments: shared.comments.load(Ordering::Relaxed) - comments_before,
            latency: Latency::between(&hist_before, &hist_after, max),
            server_cpu_ns: cpu,
            server_cpu_us_per_event: cpu.map(|c| c as f64 / 1e3 / events.max(1) as f64),
            server_rss_base_kib: base.map(|b| b.rss_kib),
            server_rss_kib: end_stats.map(|e| e.rss_kib),
            server_subscribers: end_stats.and_then(|e| e.subscribers),
            server_rss_per_conn_kib: base
                .zip(end_stats)
                .map(|(b, e)| (e.rss_kib as f64 - b.rss_kib as f64) / target_count.max(1) as f64),
            client_cpu_ns,
            ..Step::default()
        };
        if !options.quiet {
            eprintln!("\n{}", step_line(&step));
        }
        report.steps.push(step);
    }
    shared.stop.store(true, Ordering::Relaxed);
    shared.cancel.cancel();
    while tasks.join_next().await.is_some() {}
    Ok(report)
}

/// One line summing up a step.
pub fn step_line(step: &Step) -> String {
    let opt = |v: Option<f64>, unit: &str| v.map_or("-".to_string(), |v| format!("{v:.2} {unit}"));
    format!(
        "{} conns ({} failed): {:.0} events/s, latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms, \
         lost {}, server cpu {}/event, rss {}/conn",
        step.connections,
        step.failed,
        step.events_per_sec,
        step.latency.p50_us as f64 / 1e3,
        step.latency.p99_us as f64 / 1e3,
        step.latency.max_us as f64 / 1e3,
        step.lost,
        opt(step.server_cpu_us_per_event, "us"),
        opt(step.server_rss_per_conn_kib, "KiB"),
    )
}

#[allow(dead_code)]
fn main() {
    let options = match Options::from_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(2);
        }
    };
    match run(&options) {
        Ok(report) => {
            for step in &report.steps {
                if options.churn.is_some() {
                    println!(
                        "churn: {} cycles in {:.1} s = {:.0} connects+disconnects/s",
                        step.cycles, step.window_secs, step.cycles_per_sec
                    );
                } else {
                    println!("{}", step_line(step));
                }
            }
            if let Some(complete) = report.complete {
                println!("connections with every event in order: {complete}");
            }
            if !report.errors.is_empty() {
                println!("errors: {:?}", report.errors);
                // Some connection failed: say so to scripts, too.
                std::process::exit(3);
            }
        }
        Err(err) => {
            eprintln!("loadgen: {err}");
            std::process::exit(1);
        }
    }
}
