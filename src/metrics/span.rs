//! One `sse_stream` span per request that reaches the layer, so that the lines of one
//! stream (its refusal, start, stall and end) can be told apart from another's, and
//! what a stream carries from its request to its end for the metrics.

use std::net::SocketAddr;
use std::sync::Arc;

use tracing::Span;
use tracing::span::{Entered, EnteredSpan};

use super::StreamMeter;
use crate::{EndReason, LastEventId};

#[cfg(feature = "metrics")]
use super::stream::end_label;
#[cfg(feature = "metrics")]
use super::{STREAMS_ENDED, STREAMS_STALLED};
#[cfg(feature = "metrics")]
use std::sync::atomic::{AtomicBool, Ordering};

/// What the layer knows of a request that may become a stream: its span (boxed, and
/// only when enabled, so that a stream holds one pointer when it is not), and, for the
/// metrics, when it arrived and how its stream is compressed.
#[derive(Debug, Default)]
pub(crate) struct StreamStart {
    span: Option<Box<Span>>,
    #[cfg(feature = "metrics")]
    requested: Option<std::time::Instant>,
    #[cfg(feature = "metrics")]
    compression: Option<&'static str>,
}

impl StreamStart {
    /// The span of `request` (read after the layer put its `LastEventId` in it). Its
    /// fields are read only when the span is enabled.
    pub(crate) fn new<B>(request: &http::Request<B>) -> Self {
        let span = tracing::debug_span!(
            "sse_stream",
            method = %request.method(),
            path = request.uri().path(),
            version = ?request.version(),
            client = client(request).map(tracing::field::display),
            resumed_from = request.extensions().get::<LastEventId>().map(LastEventId::as_str),
            topics = tracing::field::Empty,
        );
        StreamStart {
            span: (!span.is_disabled()).then(|| Box::new(span)),
            #[cfg(feature = "metrics")]
            requested: Some(std::time::Instant::now()),
            #[cfg(feature = "metrics")]
            compression: None,
        }
    }

    /// The span, entered (a clone of it, which the caller may hold while it moves
    /// `self`), if it is enabled.
    pub(crate) fn entered(&self) -> Option<EnteredSpan> {
        self.span.as_deref().map(|span| span.clone().entered())
    }

    /// The answer is served as an event stream, compressed with the codec `codec` or
    /// not: logged in the span.
    pub(crate) fn serving(self, codec: Option<&'static str>) -> Self {
        if let Some(span) = &self.span {
            tracing::debug!(
                parent: &**span,
                compression = codec.unwrap_or("none"),
                "sse stream started"
            );
        }
        StreamStart {
            #[cfg(feature = "metrics")]
            compression: codec,
            ..self
        }
    }

    /// The stream starts: what its end report keeps, and its meter.
    pub(crate) fn into_parts(self) -> (Observed, StreamMeter) {
        #[cfg(feature = "metrics")]
        let meter = StreamMeter::start(self.requested, self.compression);
        #[cfg(not(feature = "metrics"))]
        let meter = StreamMeter::default();
        let observed = Observed {
            span: self.span,
            #[cfg(feature = "metrics")]
            stalled: AtomicBool::new(false),
        };
        (observed, meter)
    }
}

/// The client address of a request: the `SocketAddr` that `serve` (or any hyper server)
/// puts in its extensions, or axum's `ConnectInfo`.
fn client<B>(request: &http::Request<B>) -> Option<SocketAddr> {
    let extensions = request.extensions();
    let found = extensions.get::<SocketAddr>().copied();
    #[cfg(feature = "axum")]
    let found = found.or_else(|| {
        extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|info| info.0)
    });
    found
}

/// Records the topics a hub subscribes the current request to, in its span.
pub(crate) fn record_topics(topics: &[Arc<str>]) {
    Span::current().record("topics", tracing::field::debug(topics));
}

/// What a stream's end report keeps: the stream's span, and whether it was counted as
/// stalled (taken back off the gauge once the stream is dropped).
#[derive(Debug, Default)]
pub(crate) struct Observed {
    span: Option<Box<Span>>,
    #[cfg(feature = "metrics")]
    stalled: AtomicBool,
}

impl Observed {
    /// The stream ended for `reason`: counted, and the span entered for the log line of
    /// its end.
    pub(crate) fn ended(&self, reason: EndReason) -> Option<Entered<'_>> {
        #[cfg(feature = "metrics")]
        {
            ::metrics::counter!(STREAMS_ENDED, "reason" => end_label(reason)).increment(1);
            if reason == EndReason::Stalled && !self.stalled.swap(true, Ordering::Relaxed) {
                ::metrics::gauge!(STREAMS_STALLED).increment(1.0);
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = reason;
        self.enter()
    }

    /// The stream's span, entered, if it is enabled.
    pub(crate) fn enter(&self) -> Option<Entered<'_>> {
        self.span.as_deref().map(Span::enter)
    }

    /// The connection let go of the stream: if it was counted as stalled, it no longer
    /// is (once, however often this is called).
    pub(crate) fn released(&self) {
        #[cfg(feature = "metrics")]
        if self.stalled.swap(false, Ordering::Relaxed) {
            ::metrics::gauge!(STREAMS_STALLED).decrement(1.0);
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for Observed {
    fn drop(&mut self) {
        self.released();
    }
}
