//! The shared log on Redis Streams: several server instances, one feed.
//!
//! [`RedisStorage`] holds the settings; once the hub is built, a writer task appends
//! published events (numbered by a Lua script from one shared counter), a reader task
//! delivers the events of the topics this instance has subscribers for, and history
//! pages are read on demand for resuming subscribers.

mod reader;
mod script;
mod shared;
mod storage;
mod writer;

pub use storage::RedisStorage;
