//! One event stream of the load generator: hyper's client, the body decoded if it is
//! content-coded, then `eventsource-stream`. Each event's data is read for the
//! publisher's stamp: `t` (publish time, Unix microseconds), `k` (topic) and `seq`
//! (that topic's sequence number: a jump counts the events lost in between).

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt, stream};
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::client::{self, Failure, Target};
use crate::codec::{Codec, Decoder};
use crate::feed::now_micros;

/// Counters shared by every stream of one load generator.
#[derive(Default)]
pub(super) struct Shared {
    pub(super) connected: AtomicUsize,
    pub(super) failed: AtomicUsize,
    /// Streams that received an event.
    pub(super) first: AtomicUsize,
    pub(super) events: AtomicU64,
    pub(super) lost: AtomicU64,
    pub(super) reordered: AtomicU64,
    pub(super) cycles: AtomicU64,
    pub(super) wire: Arc<AtomicU64>,
    pub(super) decoded: AtomicU64,
    pub(super) latency: Mutex<Option<Histogram<u64>>>,
    /// Told whenever a stream answers, fails or receives its first event.
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
    pub(super) fn new(codec: Option<Codec>, quiet: bool) -> Arc<Shared> {
        let histogram = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds");
        let latency = Mutex::new(Some(histogram));
        Arc::new(Shared {
            codec,
            quiet,
            latency,
            ..Shared::default()
        })
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
pub(super) async fn subscriber(target: Target, source: Option<IpAddr>, shared: Arc<Shared>) {
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

async fn read_events(
    target: &Target,
    source: Option<IpAddr>,
    shared: &Shared,
) -> Result<(), Failure> {
    let accept_encoding = shared.codec.map(Codec::token);
    let wire = shared.wire.clone();
    let response = client::event_stream(
        target,
        &client::Options {
            accept_encoding,
            source,
            wire,
        },
    )
    .await?;
    shared.connected.fetch_add(1, Relaxed);
    shared.changed.notify_waiters();
    let decoder = shared
        .codec
        .map(Decoder::new)
        .transpose()
        .map_err(|e| Failure::new("decoder", e))?;
    let mut events = std::pin::pin!(pieces(response.body, decoder, shared).eventsource());
    // The last `seq` of each topic, 0 before the first.
    let (mut last_seq, mut first) = (Vec::<u64>::new(), true);
    loop {
        let event = tokio::select! {
            biased;
            _ = shared.stop.cancelled() => return Ok(()),
            event = events.next() => event,
        };
        let event = event.ok_or_else(|| Failure::new("body ended", target))?;
        let event = event.map_err(|e| Failure::new("event stream", e))?;
        shared.events.fetch_add(1, Relaxed);
        if std::mem::take(&mut first) {
            shared.first.fetch_add(1, Relaxed);
            shared.changed.notify_waiters();
        }
        let Ok(Stamp { t, k, seq }) = serde_json::from_str(&event.data) else {
            continue;
        };
        if let Some(histogram) = lock(&shared.latency).as_mut() {
            histogram.saturating_record(now_micros().saturating_sub(t));
        }
        if last_seq.len() <= k {
            last_seq.resize(k + 1, 0);
        }
        let last = std::mem::replace(&mut last_seq[k], seq);
        if last != 0 && seq <= last {
            shared.reordered.fetch_add(1, Relaxed);
            last_seq[k] = last;
        } else if last != 0 && seq > last + 1 {
            shared.lost.fetch_add(seq - last - 1, Relaxed);
        }
    }
}

/// The body as the event stream's bytes: counted, decoded, and cut after each blank
/// line (`eventsource-stream` copies the rest of its buffer at every line it parses,
/// so it is handed one event at a time).
fn pieces(
    body: Incoming,
    decoder: Option<Decoder>,
    shared: &Shared,
) -> impl Stream<Item = Result<Bytes, Failure>> + '_ {
    let state = (body, decoder, VecDeque::<Bytes>::new());
    stream::unfold(
        state,
        move |(mut body, mut decoder, mut ready)| async move {
            while ready.is_empty() {
                let chunk = match body.frame().await?.map(|f| f.into_data()) {
                    Ok(Ok(chunk)) => chunk,
                    Ok(Err(_trailers)) => continue,
                    Err(err) => return Some((Err(Failure::new("body", err)), (body, None, ready))),
                };
                let chunk = match decoder.as_mut().map(|d| d.decode(&chunk)) {
                    None => chunk,
                    Some(Ok(decoded)) => Bytes::from(decoded),
                    Some(Err(err)) => {
                        return Some((Err(Failure::new("decode", err)), (body, None, ready)));
                    }
                };
                shared.decoded.fetch_add(chunk.len() as u64, Relaxed);
                let mut at = 0;
                for end in memchr::memmem::find_iter(&chunk, b"\n\n").map(|end| end + 2) {
                    ready.push_back(chunk.slice(at..end));
                    at = end;
                }
                if at < chunk.len() {
                    ready.push_back(chunk.slice(at..));
                }
            }
            Some((Ok(ready.pop_front()?), (body, decoder, ready)))
        },
    )
}
