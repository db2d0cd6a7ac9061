//! A subscriber's stream over one or several topics: where it starts (live, after a
//! replay, or after the reset event), the live merge of its topics, and the replay from
//! a shared log.

mod error;
mod live;
mod replay;
mod stream;

pub use error::SubscriptionError;
pub use stream::Subscription;
