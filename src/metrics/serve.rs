//! Recording what `serve` does with connections: open, accepted, timed out, accept
//! errors and pauses.
//!
//! Without the `metrics` feature every helper is empty (and every type a zero-sized
//! one), so the calls compile to nothing.

#![cfg_attr(not(feature = "metrics"), allow(unused_variables, clippy::unused_self))]

#[cfg(feature = "metrics")]
use ::metrics::{counter, gauge};

#[cfg(feature = "metrics")]
use super::*;

// Called by `serve` (feature `serve`) and `WriteTimeout`.

/// One connection accepted, counted open until this is dropped.
#[derive(Debug)]
#[cfg_attr(not(feature = "serve"), allow(dead_code))]
pub(crate) struct OpenConnection(());

/// A connection was accepted: counted open until the value returned is dropped.
#[inline]
#[cfg_attr(not(feature = "serve"), allow(dead_code))]
pub(crate) fn connection_open() -> OpenConnection {
    #[cfg(feature = "metrics")]
    {
        counter!(CONNECTIONS_ACCEPTED).increment(1);
        gauge!(CONNECTIONS_OPEN).increment(1.0);
    }
    OpenConnection(())
}

#[cfg(feature = "metrics")]
impl Drop for OpenConnection {
    fn drop(&mut self) {
        gauge!(CONNECTIONS_OPEN).decrement(1.0);
    }
}

/// A connection closed at a deadline: `first_request`, `header_read` or `write`.
#[inline]
pub(crate) fn connection_timed_out(deadline: &'static str) {
    #[cfg(feature = "metrics")]
    counter!(CONNECTIONS_TIMED_OUT, "deadline" => deadline).increment(1);
}

/// A connection ended with `error`: counted when hyper closed it at its header read
/// timeout.
#[inline]
#[cfg_attr(not(feature = "serve"), allow(dead_code, unused_variables))]
pub(crate) fn connection_error(error: &(dyn std::error::Error + 'static)) {
    #[cfg(all(feature = "metrics", feature = "serve"))]
    if error
        .downcast_ref::<hyper::Error>()
        .is_some_and(hyper::Error::is_timeout)
    {
        connection_timed_out("header_read");
    }
}

/// An accept error: about one connection, or not (`resources`).
#[inline]
#[cfg_attr(not(feature = "serve"), allow(dead_code))]
pub(crate) fn accept_error(one_connection: bool) {
    #[cfg(feature = "metrics")]
    {
        let kind = if one_connection {
            "connection"
        } else {
            "resources"
        };
        counter!(ACCEPT_ERRORS, "kind" => kind).increment(1);
    }
}

/// Accepting paused: at the connection cap, or after an accept error.
#[inline]
#[cfg_attr(not(feature = "serve"), allow(dead_code))]
pub(crate) fn accept_paused(at_cap: bool) {
    #[cfg(feature = "metrics")]
    {
        let cause = if at_cap { "cap" } else { "error" };
        counter!(ACCEPT_PAUSES, "cause" => cause).increment(1);
    }
}
