//! The machinery of one event stream under the layer, and the state the streams of a
//! service share.
//!
//! A [`ResponseBody`](crate::layer::ResponseBody) that wraps an event stream holds a
//! [`StreamState`]: it reads the inner body's frames through the [`boundary`] tracker
//! (the layer's own frames go out only where an event ended), coalesces what is ready
//! ([`coalesce`]), or waits for the service's clock ([`batch`]); writes heartbeats while
//! idle ([`heartbeat`]); ends at an event boundary on shutdown ([`shutdown`]) or when
//! its connection stopped taking frames ([`stall`]); compresses every frame
//! ([`encoder`]); holds its place under the limit ([`permit`]); and reports its end
//! ([`tracker`], [`ending`]).

mod batch;
mod boundary;
mod coalesce;
mod encoder;
mod ending;
mod heartbeat;
#[cfg(all(test, tower_sse_loom))]
mod loom;
mod permit;
mod shared;
mod shutdown;
mod stall;
mod state;
mod tracker;

pub(crate) use batch::MAX_BATCH_DELAY;
pub(crate) use encoder::Encoder;
pub(crate) use permit::{Counts, Scope, StreamPermit};
pub(crate) use shared::Shared;
pub(crate) use state::StreamState;
