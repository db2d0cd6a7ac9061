//! The shared log on Redis Streams: several server instances, one feed.
//!
//! [`RedisStorage`] holds the settings (`storage.rs`). Once the hub is used inside a
//! runtime, its tasks start (`tasks.rs`): a writer appends published events, each with
//! its own outcome (`writer.rs`), and a reader delivers the events of the topics this
//! instance has subscribers for (`reader.rs`); history pages are read on demand for
//! resuming subscribers. The Lua scripts number events from one shared counter
//! (`script.rs`), their replies are parsed in `reply.rs`, and `epoch.rs` finds out when
//! Redis lost data and takes the log up again above every id given before. What the
//! tasks share, and keep between runs, is in `shared.rs`.

mod epoch;
mod reader;
mod reply;
mod script;
mod shared;
mod storage;
mod tasks;
mod writer;

pub use storage::RedisStorage;
