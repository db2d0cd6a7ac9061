//! The `text/event-stream` media type: whether a response (or an `Accept` header) is
//! one, the headers every event stream carries, and the mark on an event stream that an
//! [`SseLayer`](crate::SseLayer) must leave as it is.

use http::header::{CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE};
use http::{Extensions, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// Writes the headers of an event stream: all of them, or with `only_missing` those a
/// handler did not set.
pub(crate) fn insert_headers(headers: &mut HeaderMap, only_missing: bool) {
    let mut put = |name: HeaderName, value: &'static str| {
        if !only_missing || !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    };
    put(CONTENT_TYPE, "text/event-stream");
    put(CACHE_CONTROL, "no-cache, no-transform");
    put(X_ACCEL_BUFFERING, "no");
    put(CONTENT_ENCODING, "identity");
}

/// Whether a response is an event stream: status 200 and `Content-Type:
/// text/event-stream` (parameters allowed).
pub(crate) fn is_event_stream<B>(response: &Response<B>) -> bool {
    response.status() == StatusCode::OK
        && response
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|value| is_event_stream_type(value.as_bytes()))
}

/// Whether a media type (or a list of them, as in `Accept`) names `text/event-stream`.
pub(crate) fn is_event_stream_type(value: &[u8]) -> bool {
    const TYPE: &[u8] = b"text/event-stream";
    value
        .split(|b| *b == b',')
        .map(|part| {
            part.split(|b| *b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii()
        })
        .any(|media| media.eq_ignore_ascii_case(TYPE))
}

/// The mark of a response that an `SseLayer` passes through as it is, event stream or
/// not: one an inner `SseLayer` already serves (the innermost layer's settings win), and
/// any made from a [`Refusal`](crate::Refusal), whose
/// [`reconnect_after`](crate::Refusal::reconnect_after) is a 200 event stream that must
/// not be counted, kept alive, compressed or reported as a stream.
///
/// A layer sees only the `http::Response` its inner service answers, of any body type,
/// so the response's extensions are the one place such a fact can travel in without
/// reaching the client.
#[derive(Clone, Copy, Debug)]
struct Served;

/// Marks a response as served: an `SseLayer` above passes it through.
pub(crate) fn mark_served(extensions: &mut Extensions) {
    extensions.insert(Served);
}

/// Whether a response was marked with [`mark_served`].
pub(crate) fn is_served<B>(response: &Response<B>) -> bool {
    response.extensions().get::<Served>().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_are_matched_without_case_or_parameters() {
        assert!(is_event_stream_type(b"text/event-stream"));
        assert!(is_event_stream_type(b"Text/Event-Stream; charset=utf-8"));
        assert!(is_event_stream_type(b"text/html, text/event-stream;q=0.9"));
        assert!(!is_event_stream_type(b"text/event-streams"));
        assert!(!is_event_stream_type(b"text/plain"));
        assert!(!is_event_stream_type(b""));
    }
}
