//! The load generator: opens many event streams against any URL, parses the events,
//! and measures publish-to-receive latency from a timestamp the publisher puts in the
//! event data. The `loadgen` binary is this, on the command line; the suite calls
//! [`run`].
//!
//! - Each connection is one tokio task: hyper's HTTP/1 client connection, read by the
//!   same task, and the tools' SSE parser ([`crate::sse`]).
//! - The event data is read for `"t":<unix microseconds>` (publish time), `"k":<topic>`
//!   and `"seq":<n>` (that topic's publish sequence number). Receive time minus `t` goes
//!   into an HDR histogram (1 us to 1 h, 3 significant digits); a jump in `seq` on one
//!   connection and topic counts the events lost in between.
//! - `-n 1000,5000,15000` is a ramp: connect 1,000 (at `--connect-rate` per second),
//!   wait `--settle` seconds, measure for `--duration` seconds, add 4,000 more, and so on.
//! - `--stats URL` (repeatable) reads `cpu_ns`, `rss_kib`, `syscw` and `subscribers`
//!   from each server before any connection and around each window: server CPU and
//!   write system calls per delivered event, RSS per connection.
//! - `--churn C`: C workers each loop connect, GET, read the response head, close.
//! - `--until-seq K`: each connection ends once it has event K; the report counts the
//!   connections that received exactly 1..=K in order.
//! - `--accept-encoding <codec>`: asks for a compressed stream (and fails a connection
//!   answered otherwise), and decodes it as it arrives before parsing. Every run counts
//!   the bytes read from the sockets (HTTP framing included) and the body bytes before
//!   and after decoding: bytes on the wire per delivered event.
//!
//! Per-connection errors are counted by kind and the first few printed; the binary then
//! exits with status 3.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::client::{self, Failure, Target};
use crate::codec::{Codec, Decoder};
use crate::{now_micros, sse, sys};

/// What the generator does.
#[derive(clap::Parser, Clone, Debug)]
#[command(name = "loadgen", about = "A Server-Sent Events load generator")]
pub struct Options {
    /// An event stream URL; repeat it to spread connections over several, round-robin.
    #[arg(long = "url", value_parser = Target::parse)]
    pub targets: Vec<Target>,
    /// Connections held at each step of a rising ramp, such as `1000,5000,15000`.
    #[arg(short = 'n', long = "connections", value_delimiter = ',', value_parser = crate::number::<usize>, default_value = "100")]
    pub steps: Vec<usize>,
    /// New connections per second.
    #[arg(long, default_value_t = 2000.0)]
    pub connect_rate: f64,
    /// Seconds between the last connection of a step and its window.
    #[arg(long, value_parser = crate::seconds, default_value = "2")]
    pub settle: Duration,
    /// Seconds of each measuring window (or of the churn).
    #[arg(long, value_parser = crate::seconds, default_value = "10")]
    pub duration: Duration,
    /// A server's stats URL (`cpu_ns`, `rss_kib`, `syscw`, `subscribers`); repeatable.
    #[arg(long = "stats", value_parser = Target::parse)]
    pub stats: Vec<Target>,
    /// Churn workers: connect, GET, read the head, close, again; instead of holding.
    #[arg(long)]
    pub churn: Option<usize>,
    /// End each connection at this `seq`; count those that got 1..=K in order.
    #[arg(long, value_parser = crate::number::<u64>)]
    pub until_seq: Option<u64>,
    /// Worker threads of the generator.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Write the report here as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress line.
    #[arg(short, long)]
    pub quiet: bool,
    /// Seconds to wait for a step's connections to answer.
    #[arg(long, value_parser = crate::seconds, default_value = "60")]
    pub connect_timeout: Duration,
    /// Ask for streams compressed with this codec, and decode them.
    #[arg(long, value_enum)]
    pub accept_encoding: Option<Codec>,
}

impl Default for Options {
    fn default() -> Self {
        clap::Parser::parse_from(["loadgen"])
    }
}

/// Percentiles of publish-to-receive latency, microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Events timed.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl Latency {
    /// The percentiles of `histogram`.
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        let at = |q| histogram.value_at_quantile(q);
        Latency {
            count: histogram.len(),
            p50_us: at(0.5),
            p90_us: at(0.9),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: histogram.max(),
        }
    }
}

/// One step of a ramp (or the churn).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
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
    /// Server write system calls in the window (`syscw`, summed).
    pub server_syscw: Option<u64>,
    /// Server write system calls per event received.
    pub server_syscw_per_event: Option<f64>,
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
    /// Churn: server RSS `settle` seconds after the churn, KiB (summed).
    pub server_rss_after_kib: Option<u64>,
    /// Subscribers the server counted at the end (churn: `settle` seconds after).
    pub server_subscribers: Option<u64>,
    /// Bytes read from the sockets in the window: HTTP framing included, TCP/IP not.
    #[serde(default)]
    pub wire_bytes: u64,
    /// `wire_bytes` per event received.
    #[serde(default)]
    pub wire_bytes_per_event: Option<f64>,
    /// Body bytes (content-coded, after HTTP/1.1's chunked framing) per event received.
    #[serde(default)]
    pub body_bytes_per_event: Option<f64>,
    /// Decoded body bytes (the event stream itself) per event received.
    #[serde(default)]
    pub decoded_bytes_per_event: Option<f64>,
}

/// What a run measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
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

/// Counters shared by every connection task.
struct Shared {
    connected: AtomicUsize,
    failed: AtomicUsize,
    open: AtomicUsize,
    complete: AtomicUsize,
    events: AtomicU64,
    comments: AtomicU64,
    lost: AtomicU64,
    reordered: AtomicU64,
    cycles: AtomicU64,
    /// Bytes read from the sockets.
    wire: Arc<AtomicU64>,
    /// Body bytes, as received and as decoded.
    body: AtomicU64,
    decoded: AtomicU64,
    /// What each connection asks for.
    extra: client::Extra,
    accept_encoding: Option<Codec>,
    latency: Mutex<Histogram<u64>>,
    /// Told whenever a connection has answered or failed.
    answered: Notify,
    stop: CancellationToken,
    errors: Mutex<BTreeMap<String, u64>>,
    quiet: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn error(&self, connection: usize, failure: &Failure) {
        let mut errors = lock(&self.errors);
        let seen: u64 = errors.values().sum();
        *errors.entry(failure.kind.clone()).or_default() += 1;
        if !self.quiet && seen < 5 {
            eprintln!(
                "\nconnection {connection}: {}: {}",
                failure.kind, failure.detail
            );
        }
    }

    fn answered(&self) -> usize {
        self.connected.load(Relaxed) + self.failed.load(Relaxed)
    }
}

/// Holds one event stream until told to stop (or, with `until_seq`, until event K).
async fn subscriber(index: usize, target: Target, shared: Arc<Shared>, until_seq: Option<u64>) {
    let result = stream_events(&target, &shared, until_seq).await;
    if let Err(failure) = result
        && !shared.stop.is_cancelled()
    {
        shared.failed.fetch_add(1, Relaxed);
        shared.answered.notify_waiters();
        shared.error(index, &failure);
    }
}

async fn stream_events(
    target: &Target,
    shared: &Shared,
    until_seq: Option<u64>,
) -> Result<(), Failure> {
    let mut response = client::event_stream_with(target, &shared.extra).await?;
    shared.connected.fetch_add(1, Relaxed);
    shared.answered.notify_waiters();
    shared.open.fetch_add(1, Relaxed);
    let _open = Guard(&shared.open);

    let mut parser = sse::Parser::new(true);
    // The last `seq` seen on each topic (`"k":`), 0 before the first.
    let mut last_seq: Vec<u64> = Vec::new();
    let (mut in_order, mut finished) = (true, false);
    let mut latencies = Vec::new();
    // Made at the first compressed byte: an idle stream holds no decoder.
    let mut decoder: Option<Decoder> = None;
    let mut decoded = Vec::new();
    while !finished {
        let chunk = tokio::select! {
            biased;
            _ = shared.stop.cancelled() => return Ok(()),
            chunk = response.chunk() => chunk,
        };
        let chunk = match chunk {
            Some(chunk) => chunk?,
            None => return Err(Failure::new("body ended", "")),
        };
        shared.body.fetch_add(chunk.len() as u64, Relaxed);
        let input: &[u8] = match shared.accept_encoding {
            None => &chunk,
            Some(codec) => {
                let decoder = match &mut decoder {
                    Some(decoder) => decoder,
                    None => {
                        decoder.insert(Decoder::new(codec).map_err(|e| Failure::new("decoder", e))?)
                    }
                };
                decoded.clear();
                decoder
                    .decode(&chunk, &mut decoded)
                    .map_err(|e| Failure::new(format!("decode {codec}"), e))?;
                &decoded
            }
        };
        shared.decoded.fetch_add(input.len() as u64, Relaxed);
        let (events, comments) = (parser.events, parser.comments);
        let now = now_micros();
        parser.feed(input, &mut |data| {
            if let Some(t) = sse::field(data, b"\"t\":") {
                latencies.push(now.saturating_sub(t));
            }
            let Some(seq) = sse::field(data, b"\"seq\":") else {
                return;
            };
            let topic = sse::field(data, b"\"k\":").unwrap_or(0) as usize;
            if last_seq.len() <= topic {
                last_seq.resize(topic + 1, 0);
            }
            let last = last_seq[topic];
            if last == 0 {
                in_order &= until_seq.is_none() || seq == 1;
            } else if seq <= last {
                shared.reordered.fetch_add(1, Relaxed);
                in_order = false;
            } else if seq > last + 1 {
                shared.lost.fetch_add(seq - last - 1, Relaxed);
                in_order = false;
            }
            last_seq[topic] = last.max(seq);
            finished |= until_seq.is_some_and(|k| seq >= k);
        });
        shared.events.fetch_add(parser.events - events, Relaxed);
        shared
            .comments
            .fetch_add(parser.comments - comments, Relaxed);
        if !latencies.is_empty() {
            let mut histogram = lock(&shared.latency);
            for latency in latencies.drain(..) {
                histogram.saturating_record(latency);
            }
        }
    }
    if let Some(k) = until_seq
        && in_order
        && last_seq == [k]
        && parser.events == k
    {
        shared.complete.fetch_add(1, Relaxed);
    }
    Ok(())
}

/// Counts down on drop.
struct Guard<'a>(&'a AtomicUsize);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// One churn worker: connect, GET, read the head, close; again until told to stop.
async fn churner(index: usize, targets: Arc<Vec<Target>>, shared: Arc<Shared>) {
    let mut n = index;
    while !shared.stop.is_cancelled() {
        n += 1;
        match client::event_stream(&targets[n % targets.len()]).await {
            Ok(_) => {
                shared.cycles.fetch_add(1, Relaxed);
            }
            Err(failure) => {
                shared.error(index, &failure);
                if failure.kind.starts_with("connect") {
                    // Out of ports or files, say: back off rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

/// What a server's stats endpoint said, summed over the servers.
#[derive(Clone, Copy, Debug, Default)]
struct ServerStats {
    usage: sys::Usage,
    subscribers: Option<u64>,
}

async fn server_stats(targets: &[Target]) -> Result<Option<ServerStats>, String> {
    if targets.is_empty() {
        return Ok(None);
    }
    let mut sum = ServerStats::default();
    sum.usage.syscw = Some(0);
    for target in targets {
        let fetch = client::get_json(target);
        let value = tokio::time::timeout(Duration::from_secs(30), fetch)
            .await
            .map_err(|_| format!("{target}: timed out"))??;
        let number = |key: &str| value[key].as_u64();
        sum.usage.cpu_ns += number("cpu_ns").ok_or("stats: no cpu_ns")?;
        sum.usage.rss_kib += number("rss_kib").ok_or("stats: no rss_kib")?;
        sum.usage.syscw = sum.usage.syscw.zip(number("syscw")).map(|(a, b)| a + b);
        sum.subscribers = match (sum.subscribers, number("subscribers")) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }
    Ok(Some(sum))
}

/// Runs the generator as `options` say, on a runtime of its own.
pub fn run(options: &Options) -> Result<Report, String> {
    if options.targets.is_empty() {
        return Err("--url is required".into());
    }
    if options.steps.is_empty() || options.steps.windows(2).any(|w| w[1] < w[0]) {
        return Err("-n: a rising list of connection counts".into());
    }
    if options.connect_rate.is_nan() || options.connect_rate <= 0.0 {
        return Err("--connect-rate must be positive".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let wire = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(Shared {
        connected: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        open: AtomicUsize::new(0),
        complete: AtomicUsize::new(0),
        events: AtomicU64::new(0),
        comments: AtomicU64::new(0),
        lost: AtomicU64::new(0),
        reordered: AtomicU64::new(0),
        cycles: AtomicU64::new(0),
        wire: wire.clone(),
        body: AtomicU64::new(0),
        decoded: AtomicU64::new(0),
        extra: client::Extra {
            accept_encoding: options.accept_encoding.map(Codec::token),
            read: Some(wire),
        },
        accept_encoding: options.accept_encoding,
        latency: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds")),
        answered: Notify::new(),
        stop: CancellationToken::new(),
        errors: Mutex::new(BTreeMap::new()),
        quiet: options.quiet,
    });
    let label = Arc::new(Mutex::new(String::from("starting")));
    let result = runtime.block_on(async {
        let progress =
            (!options.quiet).then(|| tokio::spawn(progress(shared.clone(), label.clone())));
        let result = drive(options, &shared, &label).await;
        shared.stop.cancel();
        if let Some(progress) = progress {
            progress.abort();
        }
        result
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    let mut report = result?;
    report.errors = lock(&shared.errors).clone();
    if options.until_seq.is_some() {
        report.complete = Some(shared.complete.load(Relaxed));
    }
    if let Some(path) = &options.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(report)
}

/// A progress line on stderr every second (on a terminal; every 5 s otherwise).
async fn progress(shared: Arc<Shared>, label: Arc<Mutex<String>>) {
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last = 0;
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    for tick in 0u64.. {
        ticks.tick().await;
        let events = shared.events.load(Relaxed);
        let line = format!(
            "[{:>6.1}s] {}: open {} connected {} failed {} events {} ({}/s) lost {} cycles {}",
            started.elapsed().as_secs_f64(),
            lock(&label),
            shared.open.load(Relaxed),
            shared.connected.load(Relaxed),
            shared.failed.load(Relaxed),
            events,
            events - last,
            shared.lost.load(Relaxed),
            shared.cycles.load(Relaxed),
        );
        last = events;
        if tty {
            eprint!("\r{line}\x1b[K");
        } else if tick % 5 == 4 {
            eprintln!("{line}");
        }
    }
}

async fn drive(
    options: &Options,
    shared: &Arc<Shared>,
    label: &Mutex<String>,
) -> Result<Report, String> {
    let set_label = |text: String| *lock(label) = text;
    let mut report = Report {
        urls: options.targets.iter().map(Target::to_string).collect(),
        ..Report::default()
    };
    let base = server_stats(&options.stats).await?;
    let cpu_between = |a: Option<ServerStats>, b: Option<ServerStats>| {
        a.zip(b)
            .map(|(a, b)| b.usage.cpu_ns.saturating_sub(a.usage.cpu_ns))
    };

    if let Some(workers) = options.churn {
        set_label(format!("churn with {workers} workers"));
        let targets = Arc::new(options.targets.clone());
        let client_before = sys::usage().cpu_ns;
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        for index in 0..workers {
            tasks.spawn(churner(index, targets.clone(), shared.clone()));
        }
        tokio::time::sleep(options.duration).await;
        shared.stop.cancel();
        let cycles = shared.cycles.load(Relaxed);
        let window = started.elapsed().as_secs_f64();
        tasks.join_all().await;
        let client_cpu_ns = sys::usage().cpu_ns.saturating_sub(client_before);
        let end = server_stats(&options.stats).await?;
        set_label("churn: settling".into());
        tokio::time::sleep(options.settle).await;
        let after = server_stats(&options.stats).await?;
        let cpu = cpu_between(base, end);
        report.steps.push(Step {
            connections: workers,
            window_secs: window,
            cycles,
            cycles_per_sec: cycles as f64 / window,
            server_cpu_ns: cpu,
            server_cpu_us_per_cycle: cpu.map(|c| c as f64 / 1e3 / cycles.max(1) as f64),
            server_rss_base_kib: base.map(|b| b.usage.rss_kib),
            server_rss_kib: end.map(|e| e.usage.rss_kib),
            server_rss_after_kib: after.map(|a| a.usage.rss_kib),
            server_subscribers: after.and_then(|a| a.subscribers),
            client_cpu_ns,
            ..Step::default()
        });
        return Ok(report);
    }

    let mut tasks = JoinSet::new();
    let mut opened = 0usize;
    for (index, &count) in options.steps.iter().enumerate() {
        let step_label = format!(
            "step {}/{} ({count} connections)",
            index + 1,
            options.steps.len()
        );
        set_label(format!("{step_label}: connecting"));
        // Open connections at the connect rate, in batches every 10 ms.
        let connect_started = Instant::now();
        let first = opened;
        while opened < count {
            let elapsed = connect_started.elapsed().as_secs_f64();
            let due = first + ((elapsed * options.connect_rate) as usize).max(1);
            while opened < count.min(due) {
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
        let deadline = tokio::time::Instant::now() + options.connect_timeout;
        loop {
            let answered = shared.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            if shared.answered() >= opened {
                break;
            }
            if tokio::time::timeout_at(deadline, answered).await.is_err() {
                return Err(format!(
                    "{step_label}: only {} of {opened} connections answered in {:?}",
                    shared.connected.load(Relaxed),
                    options.connect_timeout
                ));
            }
        }
        let connect_secs = connect_started.elapsed().as_secs_f64();
        let counts = |connections| Step {
            connections,
            connected: shared.connected.load(Relaxed),
            failed: shared.failed.load(Relaxed),
            open: shared.open.load(Relaxed),
            connect_secs,
            ..Step::default()
        };

        if options.until_seq.is_some() {
            // Every connection ends by itself once it has the last event.
            set_label(format!("{step_label}: waiting for the last event"));
            let started = Instant::now();
            let limit = options.duration.max(Duration::from_secs(1)) * 10;
            if tokio::time::timeout(limit, async { while tasks.join_next().await.is_some() {} })
                .await
                .is_err()
            {
                return Err(format!("{step_label}: streams did not finish"));
            }
            report.steps.push(Step {
                window_secs: started.elapsed().as_secs_f64(),
                events: shared.events.load(Relaxed),
                lost: shared.lost.load(Relaxed),
                reordered: shared.reordered.load(Relaxed),
                latency: Latency::of(&lock(&shared.latency)),
                ..counts(count)
            });
            continue;
        }

        set_label(format!("{step_label}: settling"));
        tokio::time::sleep(options.settle).await;
        set_label(format!("{step_label}: measuring"));
        let start = server_stats(&options.stats).await?;
        lock(&shared.latency).reset();
        let counters = [
            &shared.events,
            &shared.lost,
            &shared.reordered,
            &shared.comments,
            &*shared.wire,
            &shared.body,
            &shared.decoded,
        ];
        let before = counters.map(|counter| counter.load(Relaxed));
        let client_before = sys::usage().cpu_ns;
        let started = Instant::now();
        tokio::time::sleep(options.duration).await;
        let window = started.elapsed().as_secs_f64();
        let after = counters.map(|counter| counter.load(Relaxed));
        let [events, lost, reordered, comments, wire, body, decoded]: [u64; 7] =
            std::array::from_fn(|i| after[i] - before[i]);
        let bytes_per_event = |bytes: u64| (events > 0).then(|| bytes as f64 / events as f64);
        let latency = Latency::of(&lock(&shared.latency));
        let client_cpu_ns = sys::usage().cpu_ns.saturating_sub(client_before);
        let end = server_stats(&options.stats).await?;
        let cpu = cpu_between(start, end);
        let syscw = start
            .zip(end)
            .and_then(|(s, e)| Some(e.usage.syscw?.saturating_sub(s.usage.syscw?)));
        let per_event = |n: Option<u64>| n.map(|n| n as f64 / events.max(1) as f64);
        let step = Step {
            window_secs: window,
            events,
            events_per_sec: events as f64 / window,
            lost,
            reordered,
            comments,
            latency,
            server_cpu_ns: cpu,
            server_cpu_us_per_event: per_event(cpu).map(|ns| ns / 1e3),
            server_syscw: syscw,
            server_syscw_per_event: per_event(syscw),
            server_rss_base_kib: base.map(|b| b.usage.rss_kib),
            server_rss_kib: end.map(|e| e.usage.rss_kib),
            server_subscribers: end.and_then(|e| e.subscribers),
            server_rss_per_conn_kib: base.zip(end).map(|(b, e)| {
                (e.usage.rss_kib as f64 - b.usage.rss_kib as f64) / count.max(1) as f64
            }),
            client_cpu_ns,
            wire_bytes: wire,
            wire_bytes_per_event: bytes_per_event(wire),
            body_bytes_per_event: bytes_per_event(body),
            decoded_bytes_per_event: bytes_per_event(decoded),
            ..counts(count)
        };
        if !options.quiet {
            eprintln!("\n{}", step_line(&step));
        }
        report.steps.push(step);
    }
    shared.stop.cancel();
    tasks.join_all().await;
    Ok(report)
}

/// One line summing up a step.
pub fn step_line(step: &Step) -> String {
    let opt = |v: Option<f64>, unit: &str| v.map_or("-".into(), |v| format!("{v:.2} {unit}"));
    let ms = |us: u64| us as f64 / 1e3;
    format!(
        "{} conns ({} failed): {:.0} events/s, latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms, \
         lost {}, server cpu {}/event, {} write syscalls/event, rss {}/conn, \
         {} on the wire/event ({} decoded)",
        step.connections,
        step.failed,
        step.events_per_sec,
        ms(step.latency.p50_us),
        ms(step.latency.p99_us),
        ms(step.latency.max_us),
        step.lost,
        opt(step.server_cpu_us_per_event, "us"),
        opt(step.server_syscw_per_event, ""),
        opt(step.server_rss_per_conn_kib, "KiB"),
        opt(step.wire_bytes_per_event, "B"),
        opt(step.decoded_bytes_per_event, "B"),
    )
}
