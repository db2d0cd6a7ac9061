//! Why a subscription stream ended early.

use std::fmt;

/// Why a subscription stream ended early.
///
/// ```
/// use tower_sse::hub::SubscriptionError;
/// let lagged = SubscriptionError::Lagged { skipped: 12 };
/// assert_eq!(lagged.to_string(), "hub subscriber fell too far behind (12 events unread)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// The subscriber fell too far behind (under
    /// [`LagPolicy::Disconnect`](crate::hub::LagPolicy::Disconnect)): `skipped` events of
    /// its topics were published that it had not read. The client reconnects with its
    /// `Last-Event-ID` and catches up from history.
    Lagged {
        /// Events it had not read when its stream ended.
        skipped: u64,
    },
}

impl fmt::Display for SubscriptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscriptionError::Lagged { skipped } => write!(
                f,
                "hub subscriber fell too far behind ({skipped} events unread)"
            ),
        }
    }
}

impl std::error::Error for SubscriptionError {}
