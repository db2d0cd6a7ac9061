//! One event stream of the load generator: hyper's client, the body decoded if it is
//! content-coded, then `eventsource-stream`. Each event's data is read for the
//! publisher's stamp: `t` (publish time, Unix microseconds), `k` (topic) and `seq`
//! (that topic's sequence number: a jump counts the events lost in between).

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use hdrhistogram::Histogram;
use http::Uri;
use http_body_util::BodyDataStream;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::options::Options;
use crate::client::{self, Failure};
use crate::codec::Codec;
use crate::feed::now_micros;
use crate::results::Latency;

/// Counters shared by every stream of one load generator. `first`: streams that
/// received an event; `changed` is told whenever a stream answers, fails or receives
/// its first event.
#[derive(Default)]
pub(super) struct Shared {
    pub(super) connected: AtomicUsize,
    pub(super) failed: AtomicUsize,
    pub(super) first: AtomicUsize,
    pub(super) events: AtomicU64,
    pub(super) lost: AtomicU64,
    pub(super) reordered: AtomicU64,
    pub(super) cycles: AtomicU64,
    /// What every stream's request adds (its source address aside), and its counter of
    /// the bytes on the wire.
    pub(super) request: client::Options,
    latency: Mutex<Option<Histogram<u64>>>,
    pub(super) changed: Notify,
    pub(super) stop: CancellationToken,
    pub(super) errors: Mutex<BTreeMap<String, u64>>,
    codec: Option<Codec>,
    quiet: bool,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(super) fn new(options: &Options) -> Arc<Shared> {
        let mut shared = Shared::default();
        (shared.codec, shared.quiet) = (options.accept_encoding, options.quiet);
        shared.request.accept_encoding = shared.codec.map(Codec::token);
        Arc::new(shared)
    }

    /// The latency recorded since the last call.
    pub(super) fn latency(&self) -> Latency {
        let histogram = lock(&self.latency).take();
        let at = |q| histogram.as_ref().map_or(0, |h| h.value_at_quantile(q));
        Latency {
            p50_us: at(0.5),
            p99_us: at(0.99),
            max_us: at(1.0),
        }
    }

    /// Counts a failure by kind; prints the first few.
    pub(super) fn error(&self, failure: &Failure) {
        let mut errors = lock(&self.errors);
        if !self.quiet && errors.values().sum::<u64>() < 5 {
            eprintln!("loadgen: {failure}");
        }
        *errors.entry(failure.kind.clone()).or_default() += 1;
    }

    /// Streams that answered or failed.
    pub(super) fn answered(&self) -> usize {
        self.connected.load(Relaxed) + self.failed.load(Relaxed)
    }
}

/// Holds one event stream until told to stop.
pub(super) async fn subscriber(target: Uri, source: Option<IpAddr>, shared: Arc<Shared>) {
    if let Err(failure) = read_events(&target, source, &shared).await
        && !shared.stop.is_cancelled()
    {
        shared.failed.fetch_add(1, Relaxed);
        shared.error(&failure);
    }
    shared.changed.notify_waiters();
}

/// The publisher's stamp in an event's data.
#[derive(serde::Deserialize)]
struct Stamp {
    t: u64,
    #[serde(default)]
    k: usize,
    seq: u64,
}

async fn read_events(target: &Uri, source: Option<IpAddr>, shared: &Shared) -> Result<(), Failure> {
    let mut request = shared.request.clone();
    request.source = source;
    let response = client::event_stream(target, &request).await?;
    shared.connected.fetch_add(1, Relaxed);
    shared.changed.notify_waiters();
    let body = BodyDataStream::new(response.body).map(|chunk| chunk.map_err(io::Error::other));
    let body = Codec::decode(shared.codec, body);
    let mut events = std::pin::pin!(pieces(body).eventsource());
    // The last `seq` of each topic, 0 before the first.
    let (mut last_seq, mut first) = (Vec::<u64>::new(), true);
    loop {
        let event = tokio::select! {
            biased;
            _ = shared.stop.cancelled() => return Ok(()),
            event = events.next() => event.ok_or_else(|| Failure::new("body ended", target))?,
        };
        let event = event.map_err(|e| Failure::new("event stream", e))?;
        shared.events.fetch_add(1, Relaxed);
        if std::mem::take(&mut first) {
            shared.first.fetch_add(1, Relaxed);
            shared.changed.notify_waiters();
        }
        let Ok(Stamp { t, k, seq }) = serde_json::from_str(&event.data) else {
            continue;
        };
        let (latency, mut histogram) = (now_micros().saturating_sub(t), lock(&shared.latency));
        let new = || Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds");
        histogram.get_or_insert_with(new).saturating_record(latency);
        drop(histogram);
        if last_seq.len() <= k {
            last_seq.resize(k + 1, 0);
        }
        match std::mem::replace(&mut last_seq[k], seq) {
            0 => {}
            last if seq <= last => {
                shared.reordered.fetch_add(1, Relaxed);
                last_seq[k] = last;
            }
            last => drop(shared.lost.fetch_add(seq - last - 1, Relaxed)),
        }
    }
}

/// The event stream's bytes cut after each blank line: `eventsource-stream` copies the
/// rest of its buffer at every line it parses, so it is handed one event at a time.
fn pieces(body: BoxStream<'static, io::Result<Bytes>>) -> impl Stream<Item = io::Result<Bytes>> {
    body.flat_map(|chunk| {
        let mut chunk = match chunk {
            Ok(chunk) => chunk,
            Err(err) => return stream::iter(vec![Err(err)]),
        };
        let mut pieces = Vec::new();
        while let Some(end) = memchr::memmem::find(&chunk, b"\n\n") {
            pieces.push(Ok(chunk.split_to(end + 2)));
        }
        pieces.extend((!chunk.is_empty()).then_some(Ok(chunk)));
        stream::iter(pieces)
    })
}

/// Opens streams until `count` are open, as fast as the server answers, 512 at a time.
pub(super) async fn open(
    options: &Options,
    shared: &Arc<Shared>,
    tasks: &mut JoinSet<()>,
    count: usize,
) -> Result<(), String> {
    for n in tasks.len()..count {
        if !wait_for(shared, options.timeout, || shared.answered() + 512 > n).await {
            return Err(format!("{n} opened, the rest wait"));
        }
        let target = options.targets[n % options.targets.len()].clone();
        let source = options.sources.get(n % options.sources.len().max(1));
        tasks.spawn(subscriber(target, source.copied(), shared.clone()));
    }
    let (timeout, opened) = (options.timeout, tasks.len());
    if !wait_for(shared, timeout, || shared.answered() >= opened).await {
        let connected = shared.connected.load(Relaxed);
        return Err(format!(
            "only {connected} of {opened} streams answered in {timeout:?}"
        ));
    }
    Ok(())
}

/// Waits until `done`, woken by every change of the streams: whether it is, by the
/// deadline.
pub(super) async fn wait_for(shared: &Shared, timeout: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut changed = std::pin::pin!(shared.changed.notified());
        changed.as_mut().enable();
        if done() {
            return true;
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return false;
        }
    }
}
