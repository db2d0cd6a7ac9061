//! [`EventError`]: why a field of an event was refused.

use std::fmt;

/// Why an [`EventBuilder`](crate::EventBuilder) refused to build an event.
///
/// ```
/// use tower_sse::{Event, EventError};
///
/// let err = Event::builder().id("a\nid: forged").data("x").build().unwrap_err();
/// assert!(matches!(err, EventError::InvalidId));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum EventError {
    /// The event type contains CR or LF, which would start another field.
    InvalidEventType,
    /// The id contains CR or LF, which would start another field, or NUL, which makes
    /// clients ignore the id.
    InvalidId,
    /// The id is longer than [`LastEventId::MAX_LEN`](crate::LastEventId::MAX_LEN)
    /// bytes, the longest `Last-Event-ID` the layer reads back.
    IdTooLong,
    /// The data could not be serialized as JSON.
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    Json(serde_json::Error),
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::InvalidEventType => f.write_str("SSE event type contains CR or LF"),
            EventError::InvalidId => f.write_str("SSE event id contains CR, LF or NUL"),
            EventError::IdTooLong => write!(
                f,
                "SSE event id is longer than {} bytes, the longest Last-Event-ID read back",
                crate::LastEventId::MAX_LEN
            ),
            #[cfg(feature = "json")]
            EventError::Json(err) => write!(f, "SSE event data could not be serialized: {err}"),
        }
    }
}

impl std::error::Error for EventError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            #[cfg(feature = "json")]
            EventError::Json(err) => Some(err),
            _ => None,
        }
    }
}
