//! Serving connections: [`serve`], the accept loop with the guards an SSE server needs
//! before a connection becomes a stream (feature `serve`), and [`WriteTimeout`], the
//! per-connection write deadline for clients that stop reading.

#[cfg(feature = "serve")]
mod accept;
#[cfg(feature = "serve")]
mod connection;
#[cfg(feature = "serve")]
mod head;
#[cfg(feature = "serve")]
mod request;
#[cfg(feature = "serve")]
mod server;
#[cfg(feature = "serve")]
mod stream;
mod write_timeout;

#[cfg(feature = "serve")]
pub use server::{Serve, serve};
pub use write_timeout::WriteTimeout;
