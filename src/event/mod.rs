//! Events and their encoding: [`Event`], built once by an [`EventBuilder`] into the
//! bytes of its frame (or refused with an [`EventError`]), and the [`LastEventId`] a
//! reconnecting client sends back, read from a request in one place.

mod builder;
mod encode;
mod error;
// Named after the type it holds, beside the builder and the error.
#[allow(clippy::module_inception)]
mod event;
mod last_event_id;
mod trusted;

pub use builder::EventBuilder;
pub(crate) use encode::write_retry;
pub use error::EventError;
pub use event::Event;
pub use last_event_id::LastEventId;
