//! tower-sse's benchmark tools, each a binary of this crate: `fanout-server`
//! ([`server`]), `loadgen` ([`loadgen`]) and `bench-suite` ([`suite`]), which runs
//! them and criterion's `benches/burst.rs` and `benches/encode.rs`, and writes
//! `benches/results/results.json` and, from it, `results.md` ([`markdown`]). Methods,
//! targets and how to run each section: `benches/README.md`.
//!
//! What each module uses; no module uses one above it in this list, so there is no
//! cycle (inside a folder, `mod.rs` uses its files and no file uses `mod.rs`):
//!
//! ```text
//! proc, feed, codec, client, results   leaves: /proc, payloads, codings, HTTP, JSON
//! markdown  -> results
//! server    -> client, codec, feed, proc
//!                                      options <- publisher <- broadcasts, floors, tower_sse
//! loadgen   -> client, codec, feed, proc, results
//!                                      options <- stream <- churn, hold
//! suite     -> loadgen, client, codec, proc, results, markdown
//!                                      config, child <- idle, sections
//! ```

pub mod client;
pub mod codec;
pub mod feed;
pub mod loadgen;
pub mod markdown;
pub mod proc;
pub mod results;
pub mod server;
pub mod suite;
