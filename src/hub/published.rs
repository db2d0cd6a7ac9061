//! The outcome of a publish: the id now, or a promise of it.

use tokio::sync::oneshot;

use super::PublishError;

/// The outcome of [`Hub::publish`](crate::Hub::publish).
///
/// The in-memory hub numbers and stores an event before `publish` returns. On a shared
/// log (`HubBuilder::redis`) the event is written a moment later: then
/// [`id`](Published::id) is `None` and [`acknowledged`](Published::acknowledged) tells
/// when it was stored, and under which id.
///
/// ```
/// let published = tower_sse::Hub::new().publish("t", tower_sse::Event::data("x"))?;
/// assert!(published.id().is_some());
/// # Ok::<(), tower_sse::hub::PublishError>(())
/// ```
#[derive(Debug)]
pub struct Published {
    id: Option<u64>,
    ack: Option<oneshot::Receiver<Result<u64, PublishError>>>,
}

impl Published {
    pub(crate) fn stored(id: u64) -> Self {
        Published {
            id: Some(id),
            ack: None,
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn pending(ack: oneshot::Receiver<Result<u64, PublishError>>) -> Self {
        Published {
            id: None,
            ack: Some(ack),
        }
    }

    /// The id the event was given, when it is known at once (in memory it always is).
    ///
    /// ```
    /// let published = tower_sse::Hub::new().publish("t", tower_sse::Event::data("x"))?;
    /// println!("sent as {}", published.id().unwrap());
    /// # Ok::<(), tower_sse::hub::PublishError>(())
    /// ```
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// Waits until the event is stored, and gives its id. On Redis, a write waits (and
    /// is retried, never stored twice) while Redis is unreachable; it fails with
    /// [`PublishError::Rejected`] if Redis refuses this event (other events go on), and
    /// with [`PublishError::Stopped`] if the hub stops first.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let hub = tower_sse::Hub::new();
    /// let id = hub.publish("t", tower_sse::Event::data("x"))?.acknowledged().await?;
    /// # Ok::<(), tower_sse::hub::PublishError>(())
    /// # }).unwrap();
    /// ```
    pub async fn acknowledged(self) -> Result<u64, PublishError> {
        match (self.id, self.ack) {
            (Some(id), _) => Ok(id),
            (None, Some(ack)) => ack.await.unwrap_or(Err(PublishError::Stopped)),
            (None, None) => Err(PublishError::Stopped),
        }
    }
}
