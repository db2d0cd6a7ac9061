//! What the streams of one service share, built once when the layer wraps the service.

use std::sync::Arc;

use super::batch::Ticker;
use super::heartbeat::HeartbeatClock;
use super::stall::StallWatch;
use crate::layer::settings::Settings;

/// The layer's settings and the state its streams share: the clock batching streams
/// write at, the times heartbeats fire at and the sweep that ends the streams their
/// connection stopped taking frames from. Built by [`Layer::layer`](tower_layer::Layer::layer) (or
/// [`SseService::new`](crate::SseService::new)) and shared by the service's clones, so
/// a server that clones the service per connection still has one clock and one sweep.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    /// With batching: the clock.
    pub(crate) ticker: Option<Arc<Ticker>>,
    /// When streams are watched for stalls: the watch.
    pub(crate) stall: Option<Arc<StallWatch>>,
    /// With heartbeats: the times they fire at.
    pub(crate) heartbeat_clock: Option<HeartbeatClock>,
}

impl Shared {
    pub(crate) fn new(settings: Settings) -> Arc<Self> {
        Arc::new(Shared {
            ticker: settings.batch_delay.map(Ticker::new),
            stall: settings.stall_timeout().map(StallWatch::new),
            heartbeat_clock: settings.heartbeat.map(HeartbeatClock::new),
            settings,
        })
    }
}
