//! Recording what event streams do: refusals, starts and ends, and each stream's
//! writes, summed in the stream and handed to the recorder in batches.
//!
//! Without the `metrics` feature every helper is empty (and every type a zero-sized
//! one), so the calls compile to nothing.

#![cfg_attr(not(feature = "metrics"), allow(unused_variables, clippy::unused_self))]

#[cfg(feature = "metrics")]
use std::time::Duration;

#[cfg(feature = "metrics")]
use ::metrics::{counter, gauge, histogram};
// The std clock, not tokio's: a metric wants real time, and tokio's `Instant::now`
// costs more where tokio's `test-util` is on.
#[cfg(feature = "metrics")]
use std::time::Instant;

#[cfg(feature = "metrics")]
use super::*;
#[cfg(feature = "metrics")]
use crate::EndReason;

/// The `reason` label of an end.
#[cfg(feature = "metrics")]
pub(super) fn end_label(reason: EndReason) -> &'static str {
    match reason {
        EndReason::Finished => "finished",
        EndReason::ClientGone => "client_gone",
        EndReason::Error => "error",
        EndReason::Shutdown => "shutdown",
        EndReason::Stalled => "stalled",
    }
}

/// A stream refused by the layer: `limit`, `per_client` or `method`.
#[inline]
pub(crate) fn refused(reason: &'static str) {
    #[cfg(feature = "metrics")]
    counter!(STREAMS_REFUSED, "reason" => reason).increment(1);
}

/// A response the layer passes through: counted when it is a refusal made by the
/// service below (a [`Refusal`](crate::Refusal), marked as served, that is not a
/// stream).
#[inline]
pub(crate) fn passed_through<B>(response: &http::Response<B>) {
    #[cfg(feature = "metrics")]
    if crate::event_stream::is_served(response) && !crate::event_stream::is_event_stream(response) {
        let reason = match response.status().as_u16() {
            204 => "stop",
            503 => "unavailable",
            400 => "bad_request",
            403 => "forbidden",
            _ => "other",
        };
        refused(reason);
    }
}

/// What one stream has written and not yet handed to the recorder, and its share of the
/// gauges: counted open from its start to its drop.
///
/// Per-event counters are summed here and flushed on drop, every 256 writes, and
/// otherwise once a second has passed, as seen at every fourth write or at a
/// heartbeat: thousands of streams writing one event each do not each touch the
/// recorder's shared counters per event, nor read the clock per write.
#[derive(Debug, Default)]
pub(crate) struct StreamMeter {
    // In the stream's own allocation: a write touches no other cache line for it.
    #[cfg(feature = "metrics")]
    inner: Option<MeterState>,
}

/// Writes after which a stream's sums are flushed whatever the time.
#[cfg(feature = "metrics")]
const FLUSH_WRITES: u32 = 256;
/// How long a stream's sums wait to be flushed, at least.
#[cfg(feature = "metrics")]
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// The clock is read at every this many writes (and at each heartbeat), not at every
/// write: a clock read costs more than the rest of the meter.
#[cfg(feature = "metrics")]
const CLOCK_EVERY: u32 = 4;

#[cfg(feature = "metrics")]
#[derive(Debug)]
struct MeterState {
    /// When the request reached the layer, until the first frame is written.
    requested: Option<Instant>,
    compression: &'static str,
    last_flush: Instant,
    events: u64,
    written: u64,
    uncompressed: u64,
    writes: u32,
    batched: u32,
    heartbeats: u32,
}

impl StreamMeter {
    /// A stream starts, requested at `requested`, compressed with `compression` (a
    /// codec's token) or not.
    #[cfg(feature = "metrics")]
    pub(super) fn start(requested: Option<Instant>, compression: Option<&'static str>) -> Self {
        {
            counter!(STREAMS_OPENED).increment(1);
            gauge!(STREAMS_OPEN).increment(1.0);
            let now = Instant::now();
            StreamMeter {
                inner: Some(MeterState {
                    requested,
                    compression: compression.unwrap_or("none"),
                    last_flush: now,
                    events: 0,
                    written: 0,
                    uncompressed: 0,
                    writes: 0,
                    batched: 0,
                    heartbeats: 0,
                }),
            }
        }
    }

    /// A frame handed to the connection: `events` events, `raw` bytes before
    /// compression, `wire` after.
    #[inline]
    pub(crate) fn wrote(&mut self, events: u64, raw: usize, wire: usize) {
        #[cfg(feature = "metrics")]
        if let Some(state) = &mut self.inner {
            state.wrote(events, raw, wire);
        }
    }

    /// The frame about to be written is a heartbeat.
    #[inline]
    pub(crate) fn heartbeat(&mut self) {
        #[cfg(feature = "metrics")]
        if let Some(state) = &mut self.inner {
            state.heartbeats += 1;
        }
    }
}

#[cfg(feature = "metrics")]
impl MeterState {
    fn wrote(&mut self, events: u64, raw: usize, wire: usize) {
        if let Some(requested) = self.requested.take() {
            histogram!(STREAM_FIRST_BYTE).record(requested.elapsed());
        }
        self.events += events;
        self.written += wire as u64;
        self.uncompressed += raw as u64;
        self.writes += 1;
        if events > 1 {
            self.batched += 1;
        }
        let look = self.writes.is_multiple_of(CLOCK_EVERY) || self.heartbeats > 0;
        if self.writes >= FLUSH_WRITES || (look && self.last_flush.elapsed() >= FLUSH_EVERY) {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.last_flush = Instant::now();
        if self.writes == 0 && self.heartbeats == 0 {
            return;
        }
        let compression = self.compression;
        if self.events > 0 {
            counter!(STREAM_EVENTS).increment(std::mem::take(&mut self.events));
        }
        counter!(STREAM_WRITTEN_BYTES, "compression" => compression)
            .increment(std::mem::take(&mut self.written));
        let uncompressed = std::mem::take(&mut self.uncompressed);
        if compression != "none" {
            counter!(STREAM_UNCOMPRESSED_BYTES, "compression" => compression)
                .increment(uncompressed);
        }
        counter!(STREAM_WRITES).increment(u64::from(std::mem::take(&mut self.writes)));
        if self.batched > 0 {
            counter!(STREAM_BATCHED_WRITES).increment(u64::from(std::mem::take(&mut self.batched)));
        }
        if self.heartbeats > 0 {
            counter!(STREAM_HEARTBEATS).increment(u64::from(std::mem::take(&mut self.heartbeats)));
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for StreamMeter {
    fn drop(&mut self) {
        if let Some(state) = &mut self.inner {
            state.flush();
            gauge!(STREAMS_OPEN).decrement(1.0);
        }
    }
}
