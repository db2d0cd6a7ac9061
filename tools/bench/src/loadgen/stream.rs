//! One event stream of the load generator: hyper's client, the body decoded if it is
//! content-coded, then `eventsource-stream`. Each event's data is read for the
//! publisher's stamp: `t` (publish time, Unix microseconds), `k` (topic), `seq` (that
//! topic's sequence number).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt, stream};
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::client::{self, Failure, Target};
use crate::codec::{Codec, Decoder};
use crate::feed::now_micros;

/// Counters shared by every stream of one load generator.
pub(crate) struct Shared {
    pub(crate) connected: AtomicUsize,
    pub(crate) failed: AtomicUsize,
    pub(crate) open: AtomicUsize,
    /// Streams that received at least one event.
    pub(crate) first: AtomicUsize,
    /// With `until_seq`: streams that received exactly 1..=K, in order.
    pub(crate) complete: AtomicUsize,
    pub(crate) events: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) reordered: AtomicU64,
    pub(crate) cycles: AtomicU64,
    pub(crate) wire: Arc<AtomicU64>,
    pub(crate) body: AtomicU64,
    pub(crate) decoded: AtomicU64,
    pub(crate) latency: Mutex<Histogram<u64>>,
    /// Told whenever a stream answers, fails, ends or receives its first event.
    pub(crate) changed: Notify,
    pub(crate) stop: CancellationToken,
    pub(crate) errors: Mutex<BTreeMap<String, u64>>,
    pub(crate) client: client::Options,
    pub(crate) codec: Option<Codec>,
    pub(crate) quiet: bool,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn new(codec: Option<Codec>, quiet: bool) -> Arc<Shared> {
        let wire = Arc::new(AtomicU64::new(0));
        let client = client::Options {
            accept_encoding: codec.map(Codec::token),
            source: None,
            wire: Some(wire.clone()),
        };
        Arc::new(Shared {
            connected: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            first: AtomicUsize::new(0),
            complete: AtomicUsize::new(0),
            events: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            reordered: AtomicU64::new(0),
            cycles: AtomicU64::new(0),
            wire,
            body: AtomicU64::new(0),
            decoded: AtomicU64::new(0),
            latency: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds")),
            changed: Notify::new(),
            stop: CancellationToken::new(),
            errors: Mutex::new(BTreeMap::new()),
            client,
            codec,
            quiet,
        })
    }

    /// Counts a failure by kind; prints the first few.
    pub(crate) fn error(&self, failure: &Failure) {
        let mut errors = lock(&self.errors);
        if !self.quiet && errors.values().sum::<u64>() < 5 {
            eprintln!("\n{}: {}", failure.kind, failure.detail);
        }
        *errors.entry(failure.kind.clone()).or_default() += 1;
    }

    /// Connections that answered or failed.
    pub(crate) fn answered(&self) -> usize {
        self.connected.load(Relaxed) + self.failed.load(Relaxed)
    }
}

/// Holds one event stream until told to stop (or, with `until_seq`, until event K).
pub(crate) async fn subscriber(
    target: Target,
    source: Option<std::net::IpAddr>,
    shared: Arc<Shared>,
    until_seq: Option<u64>,
) {
    let result = read_events(&target, source, &shared, until_seq).await;
    if let Err(failure) = result
        && !shared.stop.is_cancelled()
    {
        shared.failed.fetch_add(1, Relaxed);
        shared.error(&failure);
    }
    shared.changed.notify_waiters();
}

/// The publisher's stamp in an event's data.
#[derive(Deserialize)]
struct Stamp {
    t: u64,
    #[serde(default)]
    k: usize,
    seq: u64,
}

/// Counts down on drop.
struct Open<'a>(&'a AtomicUsize);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

async fn read_events(
    target: &Target,
    source: Option<std::net::IpAddr>,
    shared: &Shared,
    until_seq: Option<u64>,
) -> Result<(), Failure> {
    let options = client::Options {
        source,
        ..shared.client.clone()
    };
    let response = client::event_stream(target, &options).await?;
    shared.connected.fetch_add(1, Relaxed);
    shared.open.fetch_add(1, Relaxed);
    shared.changed.notify_waiters();
    let _open = Open(&shared.open);
    let decoder = shared.codec.map(Decoder::new).transpose();
    let decoder = decoder.map_err(|e| Failure::new("decoder", e))?;
    let mut events = std::pin::pin!(pieces(response.body, decoder, shared).eventsource());
    // The last `seq` seen on each topic, 0 before the first.
    let (mut last_seq, mut received, mut in_order) = (Vec::<u64>::new(), 0u64, true);
    loop {
        let event = tokio::select! {
            biased;
            _ = shared.stop.cancelled() => return Ok(()),
            event = events.next() => event,
        };
        let event = match event {
            None => return Err(Failure::new("body ended", target)),
            Some(Err(err)) => return Err(Failure::new("event stream", err)),
            Some(Ok(event)) => event,
        };
        shared.events.fetch_add(1, Relaxed);
        received += 1;
        if received == 1 {
            shared.first.fetch_add(1, Relaxed);
            shared.changed.notify_waiters();
        }
        let Ok(stamp) = serde_json::from_str::<Stamp>(&event.data) else {
            continue;
        };
        lock(&shared.latency).saturating_record(now_micros().saturating_sub(stamp.t));
        if last_seq.len() <= stamp.k {
            last_seq.resize(stamp.k + 1, 0);
        }
        let last = last_seq[stamp.k];
        last_seq[stamp.k] = last.max(stamp.seq);
        if last == 0 {
            in_order &= until_seq.is_none() || stamp.seq == 1;
        } else if stamp.seq <= last {
            shared.reordered.fetch_add(1, Relaxed);
            in_order = false;
        } else if stamp.seq > last + 1 {
            shared.lost.fetch_add(stamp.seq - last - 1, Relaxed);
            in_order = false;
        }
        if let Some(k) = until_seq
            && stamp.seq >= k
        {
            if in_order && last_seq == [k] && received == k {
                shared.complete.fetch_add(1, Relaxed);
            }
            return Ok(());
        }
    }
}

/// The body as the event stream's bytes: counted, decoded, and cut after each blank
/// line (`eventsource-stream` copies the rest of its buffer at every line, so it is
/// handed one event at a time).
fn pieces<'a>(
    body: Incoming,
    decoder: Option<Decoder>,
    shared: &'a Shared,
) -> impl Stream<Item = Result<Bytes, Failure>> + 'a {
    let state = (body, decoder, VecDeque::<Bytes>::new());
    stream::unfold(
        state,
        move |(mut body, mut decoder, mut ready)| async move {
            while ready.is_empty() {
                let frame = match body.frame().await? {
                    Ok(frame) => frame,
                    Err(err) => {
                        return Some((Err(Failure::new("body", err)), (body, decoder, ready)));
                    }
                };
                let Ok(chunk) = frame.into_data() else {
                    continue;
                };
                shared.body.fetch_add(chunk.len() as u64, Relaxed);
                let chunk = match &mut decoder {
                    None => chunk,
                    Some(decoder) => match decoder.decode(&chunk) {
                        Ok(decoded) => Bytes::from(decoded),
                        Err(err) => {
                            let failure = Failure::new("decode", err);
                            return Some((Err(failure), (body, None, ready)));
                        }
                    },
                };
                shared.decoded.fetch_add(chunk.len() as u64, Relaxed);
                let mut at = 0;
                for end in memchr::memmem::find_iter(&chunk, b"\n\n") {
                    ready.push_back(chunk.slice(at..end + 2));
                    at = end + 2;
                }
                if at < chunk.len() {
                    ready.push_back(chunk.slice(at..));
                }
            }
            let piece = ready.pop_front()?;
            Some((Ok(piece), (body, decoder, ready)))
        },
    )
}
