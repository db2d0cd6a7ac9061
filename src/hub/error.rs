//! Why a publish failed.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use super::conflate::MAX_KEY_LEN;

/// Why an event could not be published.
///
/// On a shared log, [`Hub::publish`](crate::Hub::publish) fails at once with
/// `Unreachable`, `QueueFull` or `NoRuntime`; an event it took fails later, in
/// [`Published::acknowledged`](crate::hub::Published::acknowledged), with `Rejected` (that
/// event only) or `Stopped`.
///
/// ```
/// let err = tower_sse::hub::PublishError::QueueFull;
/// assert!(err.to_string().contains("full"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PublishError {
    /// The shared log cannot be reached now (a connection error, or Redis loading,
    /// busy or read-only); the error of the last attempt is the
    /// [`source`](Error::source). Events already taken are written once it is back.
    Unreachable(Arc<dyn Error + Send + Sync>),
    /// The shared log refused this event, for good: Redis answered its write with an
    /// error (a topic key of another type, no permission, out of memory, a script
    /// error). Other events are not affected. Redis's error is the
    /// [`source`](Error::source), and its message is in this error's message.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_sse::hub::PublishError;
    ///
    /// let redis = std::io::Error::other("WRONGTYPE the key holds a string");
    /// let err = PublishError::Rejected(Arc::new(redis));
    /// assert!(err.to_string().contains("WRONGTYPE"));
    /// ```
    Rejected(Arc<dyn Error + Send + Sync>),
    /// The shared log's tasks are not running and cannot start here: publish inside a
    /// tokio runtime (they start on the first publish or subscribe made inside one, and
    /// again there if the runtime that ran them is gone).
    NoRuntime,
    /// Too many published events wait to be written to the shared log.
    QueueFull,
    /// The hub stopped before the event was stored.
    Stopped,
    /// The topic name is empty: an empty name is not a topic.
    EmptyTopic,
    /// The conflation key given to [`Hub::publish_keyed`](crate::Hub::publish_keyed) is
    /// empty, or longer than [`MAX_KEY_LEN`](crate::hub::MAX_KEY_LEN) (256) bytes.
    ///
    /// ```
    /// use tower_sse::{Event, Hub, hub::PublishError};
    ///
    /// let err = Hub::new().publish_keyed("t", "", Event::data("x")).unwrap_err();
    /// assert!(matches!(err, PublishError::InvalidKey { len: 0 }));
    /// assert_eq!(err.to_string(), "a conflation key must be 1 to 256 bytes long, not 0");
    /// ```
    InvalidKey {
        /// The length of the key given, in bytes.
        len: usize,
    },
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Unreachable(_) => f.write_str("the hub's shared log is unreachable"),
            PublishError::QueueFull => f.write_str("the hub's queue of events to write is full"),
            PublishError::Rejected(source) => {
                write!(f, "the hub's shared log refused the event: {source}")
            }
            PublishError::NoRuntime => f.write_str(
                "the hub's shared log needs a tokio runtime to start its tasks: publish inside one",
            ),
            PublishError::Stopped => f.write_str("the hub stopped before the event was stored"),
            PublishError::EmptyTopic => f.write_str("an empty topic name is not a topic"),
            PublishError::InvalidKey { len } => write!(
                f,
                "a conflation key must be 1 to {MAX_KEY_LEN} bytes long, not {len}"
            ),
        }
    }
}

impl Error for PublishError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            PublishError::Unreachable(source) | PublishError::Rejected(source) => {
                Some(&**source as &(dyn Error + 'static))
            }
            PublishError::QueueFull
            | PublishError::NoRuntime
            | PublishError::Stopped
            | PublishError::EmptyTopic
            | PublishError::InvalidKey { .. } => None,
        }
    }
}
