//! Why a publish failed.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// Why an event could not be published.
///
/// ```
/// let err = tower_sse::hub::PublishError::QueueFull;
/// assert!(err.to_string().contains("full"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PublishError {
    /// The shared log cannot be reached now; the error of the last attempt is the
    /// [`source`](Error::source).
    Unreachable(Arc<dyn Error + Send + Sync>),
    /// Too many published events wait to be written to the shared log.
    QueueFull,
    /// The hub stopped before the event was stored.
    Stopped,
    /// The topic name is empty: an empty name is not a topic.
    EmptyTopic,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Unreachable(_) => f.write_str("the hub's shared log is unreachable"),
            PublishError::QueueFull => f.write_str("the hub's queue of events to write is full"),
            PublishError::Stopped => f.write_str("the hub stopped before the event was stored"),
            PublishError::EmptyTopic => f.write_str("an empty topic name is not a topic"),
        }
    }
}

impl Error for PublishError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            PublishError::Unreachable(source) => Some(&**source as &(dyn Error + 'static)),
            PublishError::QueueFull | PublishError::Stopped | PublishError::EmptyTopic => None,
        }
    }
}
