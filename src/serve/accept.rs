//! The accept loop: connections taken under a cap, a pause after accept errors, and a
//! graceful shutdown that waits for every connection.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::{Semaphore, TryAcquireError};
use tokio::time::Instant;
use tower_service::Service;

use super::Serve;
use super::connection::{Held, Settings, serve_connection};
use crate::WriteTimeout;
use crate::error::BoxError;

/// The cap where the open-file limit cannot be read.
const FALLBACK_MAX_CONNECTIONS: usize = 10_000;
/// The first pause after an accept error; each further error in a row doubles it.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// While the cap stays reached, it is logged at most this often.
const CAP_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// An HTTP/2 connection is pinged when it has been quiet this long, and closed when the
/// ping is not answered within hyper's keep-alive timeout (20 seconds).
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);

/// Runs the server: accepts connections until the shutdown token is cancelled, then
/// waits until every connection is closed.
pub(super) async fn run<S, B>(serve: Serve<S>)
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let Serve {
        listener,
        service,
        header_read_timeout,
        first_request_timeout,
        max_connections,
        write_timeout,
        max_concurrent_streams,
        shutdown,
    } = serve;

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(max_concurrent_streams)
        .keep_alive_interval(HTTP2_PING_INTERVAL);
    let settings = Arc::new(Settings {
        builder,
        first_request_timeout,
        header_read_timeout,
        shutdown: shutdown.clone(),
    });

    // `acquire_many` below takes a u32.
    let max_connections = max_connections
        .unwrap_or_else(default_max_connections)
        .clamp(1, u32::MAX as usize);
    let permits = Arc::new(Semaphore::new(max_connections));
    tracing::debug!(
        address = ?listener.local_addr().ok(),
        max_connections,
        "serving"
    );
    let mut pause: Option<Duration> = None;
    let mut cap_logged: Option<Instant> = None;

    loop {
        // The cap is taken before accepting: at the cap, connections wait in the
        // kernel's backlog.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits) => {
                crate::metrics::accept_paused(true);
                if cap_logged.is_none_or(|at| at.elapsed() >= CAP_LOG_INTERVAL) {
                    tracing::warn!(
                        max_connections,
                        "connection limit reached: new connections wait in the listen \
                         backlog until one closes"
                    );
                    cap_logged = Some(Instant::now());
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => {
                        permit.expect("the semaphore is never closed")
                    }
                    () = shutdown.cancelled() => break,
                }
            }
            Err(TryAcquireError::Closed) => unreachable!("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                pause = None;
                accepted
            }
            Err(error) if is_connection_error(&error) => {
                // One connection that failed before it was accepted; the next one is
                // there or not, no reason to wait.
                crate::metrics::accept_error(true);
                tracing::debug!(%error, "accept failed for one connection");
                continue;
            }
            Err(error) => {
                let next = pause.map_or(FIRST_PAUSE, |pause| (pause * 2).min(MAX_PAUSE));
                pause = Some(next);
                crate::metrics::accept_error(false);
                crate::metrics::accept_paused(false);
                tracing::warn!(
                    %error,
                    pause_ms = next.as_millis() as u64,
                    "accept failed: pausing before accepting again"
                );
                drop(permit);
                tokio::select! {
                    () = tokio::time::sleep(next) => continue,
                    () = shutdown.cancelled() => break,
                }
            }
        };
        let stream = match WriteTimeout::tcp(stream, write_timeout) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%peer, %error, "could not set up the connection");
                continue;
            }
        };
        let io = Held {
            io: stream,
            _permit: permit,
            rewind: Bytes::new(),
        };
        tokio::spawn(serve_connection(
            settings.clone(),
            io,
            peer,
            service.clone(),
        ));
    }

    drop(listener);
    // Every connection holds a permit until its socket is closed.
    let _all_closed = permits.acquire_many(max_connections as u32).await;
}

/// Errors about one connection that failed before it was accepted, as opposed to the
/// listener or the process running out of something.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

fn default_max_connections() -> usize {
    open_file_limit().map_or(FALLBACK_MAX_CONNECTIONS, |limit| (limit - limit / 8).max(1))
}

/// The soft limit on open files, where `/proc` tells it.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_file_limit(&limits)
}

fn parse_open_file_limit(limits: &str) -> Option<usize> {
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_open_file_limit_is_read_from_proc() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             127720               127720               processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_file_limit(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_file_limit(unlimited), None);
        assert_eq!(parse_open_file_limit(""), None);
    }

    #[test]
    fn the_default_cap_leaves_an_eighth_of_the_open_files() {
        let cap = default_max_connections();
        match open_file_limit() {
            Some(limit) => assert_eq!(cap, limit - limit / 8),
            None => assert_eq!(cap, FALLBACK_MAX_CONNECTIONS),
        }
    }

    #[test]
    fn only_errors_about_one_connection_skip_the_pause() {
        assert!(is_connection_error(
            &io::ErrorKind::ConnectionAborted.into()
        ));
        // EMFILE
        assert!(!is_connection_error(&io::Error::from_raw_os_error(24)));
    }
}
