//! [`StreamLimit`]: a cap on concurrent event streams, per server and per client
//! address.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;

use super::stream::{Counts, Scope, StreamPermit};
use crate::Refusal;

/// Picks the address a request is counted under for [`StreamLimit::per_client`].
type ClientKey = Arc<dyn Fn(&Parts) -> Option<IpAddr> + Send + Sync>;

/// A cap on the event streams open at once: per server, and optionally per client
/// address. A stream over the cap is answered at once, 503 with `Retry-After` by
/// default.
///
/// Give it to [`SseLayer::limit`](crate::SseLayer::limit). Clones share the counts, so
/// one `StreamLimit` given to several layers caps them together.
///
/// The client address is, unless [`client_key`](StreamLimit::client_key) says
/// otherwise, the IP of a `std::net::SocketAddr` in the request's extensions (a hyper
/// server inserts it with one `map_request`). Behind axum, whose
/// `into_make_service_with_connect_info` inserts `ConnectInfo<SocketAddr>` instead, or
/// behind a reverse proxy, say where it is with `client_key`. A request without one
/// counts only toward the server cap.
///
/// ```
/// use std::time::Duration;
/// use tower_sse::{SseLayer, StreamLimit};
///
/// let limit = StreamLimit::new(10_000)
///     .per_client(16)
///     .retry_after(Duration::from_secs(10));
/// let layer = SseLayer::new().limit(limit.clone());
/// assert_eq!(limit.open_streams(), 0);
/// ```
///
/// # Why not tower's `ConcurrencyLimit`
///
/// tower's [`ConcurrencyLimitLayer`] (and `GlobalConcurrencyLimitLayer`) hold a permit
/// while the *response future* runs. An SSE response future completes as soon as the
/// headers are ready; the stream then lives on in the response body, for hours. So those
/// layers count nothing that matters here, and a request over their limit waits in
/// `poll_ready` instead of being answered. [`StreamLimit`] counts open response
/// *bodies*: the place moves into the [`ResponseBody`](crate::layer::ResponseBody) and is released when
/// the stream ends, the client goes away, or the server shuts down.
///
/// tower's own layers that do fit an SSE endpoint:
///
/// - `tower::limit::RateLimitLayer` or a load-shedding stack in front of the endpoint
///   bounds the *rate* of new connections, which matters after a restart when every
///   browser reconnects at once.
/// - `tower_http::cors::CorsLayer` goes *outside* [`SseLayer`](crate::SseLayer), and
///   answers preflight requests itself.
/// - `tower_http::timeout::TimeoutLayer` bounds only the time to the headers; it never
///   cuts a stream short. `ResponseBodyTimeoutLayer` ends a body that yields nothing for
///   its timeout: keep that above the heartbeat interval, or it ends idle streams.
///
/// [`ConcurrencyLimitLayer`]: https://docs.rs/tower/latest/tower/limit/struct.ConcurrencyLimitLayer.html
#[derive(Clone)]
pub struct StreamLimit {
    max: usize,
    per_client: Option<usize>,
    retry_after: Duration,
    retry_in_stream: bool,
    client_key: Option<ClientKey>,
    counts: Arc<Counts>,
}

impl StreamLimit {
    /// At most `max` streams open at once; over it, 503 with `Retry-After: 5`.
    ///
    /// ```
    /// let limit = tower_sse::StreamLimit::new(1000);
    /// ```
    pub fn new(max: usize) -> Self {
        StreamLimit {
            max,
            per_client: None,
            retry_after: Duration::from_secs(5),
            retry_in_stream: false,
            client_key: None,
            counts: Arc::default(),
        }
    }

    /// Also at most `max` streams open at once from one client address.
    ///
    /// Browsers open one connection per `EventSource`, so a handful per address is
    /// plenty for one user with several tabs; set it higher when many users share an
    /// address (an office behind NAT).
    ///
    /// ```
    /// let limit = tower_sse::StreamLimit::new(1000).per_client(8);
    /// ```
    pub fn per_client(mut self, max: usize) -> Self {
        self.per_client = Some(max);
        self
    }

    /// How long a refused client is told to wait (default 5 seconds), as `Retry-After`
    /// in whole seconds, rounded up.
    ///
    /// ```
    /// let limit = tower_sse::StreamLimit::new(1000).retry_after(std::time::Duration::from_secs(30));
    /// ```
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = after;
        self
    }

    /// Answers over the cap with [`Refusal::reconnect_after`] instead of 503: a 200
    /// event stream that only sets `retry:` and ends, so that a browser's `EventSource`
    /// comes back by itself after [`retry_after`](StreamLimit::retry_after). (After a
    /// 503 it closes for good, and only the page's code can try again.)
    ///
    /// ```
    /// let limit = tower_sse::StreamLimit::new(1000).retry_in_stream();
    /// ```
    pub fn retry_in_stream(mut self) -> Self {
        self.retry_in_stream = true;
        self
    }

    /// Sets how a request's client address is found: axum's `ConnectInfo`, or a header
    /// set by your own reverse proxy. (Trust such a header only when the proxy
    /// overwrites it: a client can send any value.)
    ///
    /// ```
    /// use std::net::{IpAddr, SocketAddr};
    /// use axum::extract::ConnectInfo;
    ///
    /// // axum served with `into_make_service_with_connect_info::<SocketAddr>()`:
    /// let limit = tower_sse::StreamLimit::new(1000)
    ///     .per_client(8)
    ///     .client_key(|parts| Some(parts.extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip()));
    ///
    /// // Behind a proxy that sets `X-Real-IP` on every request:
    /// let limit = tower_sse::StreamLimit::new(1000)
    ///     .per_client(8)
    ///     .client_key(|parts| {
    ///         let value = parts.headers.get("x-real-ip")?.to_str().ok()?;
    ///         value.parse::<IpAddr>().ok()
    ///     });
    /// ```
    pub fn client_key<F>(mut self, key: F) -> Self
    where
        F: Fn(&Parts) -> Option<IpAddr> + Send + Sync + 'static,
    {
        self.client_key = Some(Arc::new(key));
        self
    }

    /// Takes a permit for one stream from `client` (when known), or says which cap is
    /// reached. The stream counts as open until the permit is dropped.
    pub(crate) fn try_acquire(&self, client: Option<IpAddr>) -> Result<StreamPermit, LimitReached> {
        let per_client = self.per_client.zip(client);
        self.counts
            .acquire(self.max, per_client)
            .map_err(|scope| self.reached(scope))
    }

    /// The client the request whose head is `parts` counts under, found as
    /// [`client_key`](StreamLimit::client_key) says; `None` without a per-client cap.
    pub(crate) fn client_of(&self, parts: &Parts) -> Option<IpAddr> {
        self.per_client?;
        let client = match &self.client_key {
            Some(key) => key(parts),
            None => parts.extensions.get::<SocketAddr>().map(SocketAddr::ip),
        };
        if client.is_none() {
            tracing::debug!(
                "no client address for this request: it counts only toward the server cap"
            );
        }
        client
    }

    fn reached(&self, scope: Scope) -> LimitReached {
        crate::metrics::refused(match scope {
            Scope::Server { .. } => "limit",
            Scope::Client { .. } => "per_client",
        });
        let reached = LimitReached {
            scope,
            retry_after: self.retry_after,
            retry_in_stream: self.retry_in_stream,
        };
        tracing::debug!(%reached, "refusing an event stream");
        reached
    }

    /// The streams open now, under this limit and its clones.
    ///
    /// ```
    /// let limit = tower_sse::StreamLimit::new(10);
    /// assert_eq!(limit.open_streams(), 0);
    /// ```
    pub fn open_streams(&self) -> usize {
        self.counts.open()
    }

    /// The streams open now from `client`, when a per-client cap is set.
    ///
    /// ```
    /// use std::net::{IpAddr, Ipv6Addr};
    /// let limit = tower_sse::StreamLimit::new(10).per_client(2);
    /// assert_eq!(limit.open_streams_from(IpAddr::V6(Ipv6Addr::LOCALHOST)), 0);
    /// ```
    pub fn open_streams_from(&self, client: IpAddr) -> usize {
        self.counts.open_from(client)
    }

    /// How many streams were refused so far, for metrics.
    ///
    /// ```
    /// let limit = tower_sse::StreamLimit::new(0);
    /// assert_eq!(limit.refused(), 0);
    /// ```
    pub fn refused(&self) -> u64 {
        self.counts.refused()
    }
}

impl fmt::Debug for StreamLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamLimit")
            .field("max", &self.max)
            .field("per_client", &self.per_client)
            .field("retry_after", &self.retry_after)
            .field("retry_in_stream", &self.retry_in_stream)
            .field("client_key", &self.client_key.as_ref().map(|_| ".."))
            .field("open", &self.counts.open())
            .finish_non_exhaustive()
    }
}

/// A [`StreamLimit`] refused a stream: the server, or this client, has as many open as
/// it may. Turns into the refusal to answer with ([`Refusal::unavailable`], or
/// [`Refusal::reconnect_after`] with [`StreamLimit::retry_in_stream`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LimitReached {
    scope: Scope,
    retry_after: Duration,
    retry_in_stream: bool,
}

impl fmt::Display for LimitReached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scope {
            Scope::Server { max } => {
                write!(
                    f,
                    "too many open event streams on this server (at most {max})"
                )
            }
            Scope::Client { addr, max } => {
                write!(f, "too many open event streams from {addr} (at most {max})")
            }
        }
    }
}

impl std::error::Error for LimitReached {}

impl From<LimitReached> for Refusal {
    fn from(reached: LimitReached) -> Self {
        if reached.retry_in_stream {
            Refusal::reconnect_after(reached.retry_after)
        } else {
            Refusal::unavailable(reached.retry_after)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn permits_count_per_server_and_per_client_until_dropped() {
        let limit = StreamLimit::new(3).per_client(2);
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let alice = Some(ip);
        let bob = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
        let first = limit.try_acquire(alice).unwrap();
        let _second = limit.try_acquire(alice).unwrap();
        let reached = limit.try_acquire(alice).unwrap_err();
        assert_eq!(
            reached.to_string(),
            "too many open event streams from 127.0.0.2 (at most 2)"
        );
        let _third = limit.try_acquire(bob).unwrap();
        let reached = limit.try_acquire(None).unwrap_err();
        assert_eq!(
            reached.to_string(),
            "too many open event streams on this server (at most 3)"
        );
        assert_eq!((limit.open_streams(), limit.refused()), (3, 2));
        drop(first);
        assert_eq!(limit.open_streams_from(ip), 1);
        assert!(limit.try_acquire(alice).is_ok());
        assert_eq!(Refusal::from(reached).status(), 503);
    }
}
