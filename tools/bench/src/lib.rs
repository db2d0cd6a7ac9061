//! tower-sse's benchmark tools, each a binary of this crate: `fanout-server`
//! ([`server`]), `loadgen` ([`loadgen`]), `burst` ([`burst`]) and `bench-suite`
//! ([`suite`]), which runs them all and writes `benches/results/results.json` and,
//! from it, `results.md` ([`markdown`]). Methods and how to run each section:
//! `benches/README.md`.
//!
//! The modules and what each uses (no cycles):
//!
//! ```text
//! proc, feed, codec, client        leaves (/proc; payloads; content codings; HTTP client)
//! server    -> feed, codec, proc   the fan-out servers
//! loadgen   -> client, codec, feed, proc
//! burst     -> client, server      (server: hyper's accept loop of the ceiling)
//! results   -> loadgen             the JSON document
//! markdown  -> results, loadgen
//! suite     -> server, loadgen, burst, client, codec, proc, results, markdown
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
