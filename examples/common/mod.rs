//! What every example reads from its environment, and how it says what is wrong with it.
//! Each example includes this file with `#[path = "../common/mod.rs"] mod common;` (a
//! directory without `main.rs` is no example of its own).
//!
//! - `ADDR`: where to listen, `host:port` (default `127.0.0.1:3000`); a host name such as
//!   `localhost:3000` is resolved, and port 0 picks a free port.
//! - `RUST_LOG`: what to log, as `tracing-subscriber`'s `EnvFilter` reads it (default
//!   `info`; `tower_sse=debug` shows every refusal and guard).
//! - `MAX_STREAMS`, `PER_CLIENT`, `TRUST_PROXY`: the cap on open event streams, for the
//!   examples that set one (see [`Limits`]).
//!
//! A value that cannot be used ends the example before it serves anything: one line on
//! stderr naming the variable, the value and what is expected, and exit status 2. So
//! does an address it cannot listen on (a port already taken).
//!
//! Not every example uses every function here.
#![allow(dead_code)]

use std::fmt::Display;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use tokio::net::TcpListener;
use tower_sse::StreamLimit;

/// The example's name, which starts every line it prints about its configuration.
pub(crate) const EXAMPLE: &str = env!("CARGO_CRATE_NAME");

/// The address every example listens on unless `ADDR` says otherwise.
pub(crate) const DEFAULT_ADDR: &str = "127.0.0.1:3000";

/// Prints `<example>: <message>` on stderr and exits with status 2: the end of an
/// example whose configuration cannot be used.
pub(crate) fn exit(message: impl Display) -> ! {
    eprintln!("{EXAMPLE}: {message}");
    std::process::exit(2)
}

/// The value, or the end of the example with the error as its one line.
pub(crate) fn or_exit<T>(result: Result<T, String>) -> T {
    result.unwrap_or_else(|message| exit(message))
}

/// `NAME=value` as a user would type it: the value quoted only when it has blanks,
/// control characters or nothing at all, so that the line stays one line.
pub(crate) fn shown(name: &str, value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"');
    if plain {
        format!("{name}={value}")
    } else {
        format!("{name}={value:?}")
    }
}

/// The variable `name`, or `None` when it is unset or empty. A value that is not UTF-8
/// is an error.
pub(crate) fn var(name: &str) -> Result<Option<String>, String> {
    match std::env::var(name) {
        Ok(value) if value.is_empty() => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(value)) => {
            Err(format!("{name}={value:?} is not UTF-8 text"))
        }
    }
}

/// The variable `name` read with `parse` (`default` when unset); when `parse` gives
/// `None`, the error says that the value is not `expected`.
pub(crate) fn read<T>(
    name: &str,
    default: T,
    expected: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, String> {
    match var(name)? {
        None => Ok(default),
        Some(value) => {
            parse(value.trim()).ok_or_else(|| format!("{} is not {expected}", shown(name, &value)))
        }
    }
}

/// A number from `min` to `max` (`default` when unset).
pub(crate) fn number<T>(name: &str, default: T, min: T, max: T) -> Result<T, String>
where
    T: FromStr + PartialOrd + Display + Copy,
{
    let expected = format!("a number from {min} to {max} (default {default})");
    read(name, default, &expected, |value| {
        value.parse::<T>().ok().filter(|n| *n >= min && *n <= max)
    })
}

/// `1`/`true`/`yes` or `0`/`false`/`no` (`default` when unset).
pub(crate) fn flag(name: &str, default: bool) -> Result<bool, String> {
    read(name, default, "1 or 0", |value| {
        match value.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" => Some(true),
            "0" | "false" | "no" => Some(false),
            _ => None,
        }
    })
}

/// Where to listen: `ADDR` as given, and every address it resolves to.
#[derive(Clone, Debug)]
pub(crate) struct Addr {
    /// `ADDR=...` as the user gave it (or the default), for messages.
    pub(crate) shown: String,
    /// What the host resolved to, in the resolver's order; never empty.
    pub(crate) addrs: Vec<SocketAddr>,
}

impl Addr {
    /// The first address `ADDR` resolved to.
    pub(crate) fn first(&self) -> SocketAddr {
        self.addrs[0]
    }
}

/// Reads `ADDR`: `host:port`, where the host is an IP address (IPv6 in brackets) or a
/// name the system resolves (`localhost:3000`).
pub(crate) fn addr() -> Result<Addr, String> {
    let (value, shown) = match var("ADDR")? {
        Some(value) => {
            let shown = self::shown("ADDR", &value);
            (value, shown)
        }
        None => (
            DEFAULT_ADDR.to_owned(),
            format!("ADDR={DEFAULT_ADDR} (the default)"),
        ),
    };
    let expected = "host:port (for instance 127.0.0.1:3000, [::1]:3000 or localhost:3000)";
    // A URL (`http://127.0.0.1:3000`) is the likeliest slip: say what to drop.
    if let Some((scheme, rest)) = value.split_once("://") {
        let authority = rest.split('/').next().unwrap_or_default();
        let instead = if authority.is_empty() {
            "127.0.0.1:3000"
        } else {
            authority
        };
        return Err(format!(
            "{shown} is a URL: drop the `{scheme}://`, ADDR is host:port (for instance ADDR={instead})"
        ));
    }
    let port = value
        .rsplit_once(':')
        .filter(|(host, _)| !host.is_empty())
        .map(|(_, port)| port);
    match port {
        Some(port) if port.parse::<u16>().is_ok() => {}
        Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(format!(
                "{shown}: the port {port} is out of range (0 to 65535; 0 picks a free port)"
            ));
        }
        _ => return Err(format!("{shown} is not {expected}")),
    }
    // The system's resolver, as `tokio::net::lookup_host` uses it, here before anything
    // is served (a blocking look-up at start-up is what an example can afford).
    match value.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err(format!(
                    "{shown}: the host has no address; expected {expected}"
                ))
            } else {
                Ok(Addr { shown, addrs })
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::InvalidInput => {
            Err(format!("{shown} is not {expected}"))
        }
        Err(error) => Err(format!(
            "{shown}: cannot resolve the host ({error}); expected {expected}"
        )),
    }
}

/// Listens on the first of `addr`'s addresses that can be bound. When none can (the
/// port is taken, the address is not this machine's), the example ends with one line
/// naming `ADDR`, its value and the system's error, and status 2.
pub(crate) async fn bind(addr: &Addr) -> TcpListener {
    let mut failed = None;
    for candidate in &addr.addrs {
        match TcpListener::bind(candidate).await {
            Ok(listener) => {
                if var("ADDR").ok().flatten().is_none() && var("PORT").ok().flatten().is_some() {
                    tracing::warn!(
                        "PORT is set, but the examples read ADDR (host:port); listening on the default {DEFAULT_ADDR}"
                    );
                }
                return listener;
            }
            Err(error) => failed = Some((candidate, error)),
        }
    }
    let (candidate, error) = failed.expect("an address resolves to at least one");
    let resolved = if addr.shown.contains(&candidate.to_string()) {
        String::new()
    } else {
        format!(" ({candidate})")
    };
    exit(format!(
        "cannot listen on {}{resolved}: {error}; set ADDR to a free host:port",
        addr.shown
    ))
}

/// Installs the log: `tracing` events (the library's warnings about storage, limits,
/// malformed requests and accept errors, and the example's own) on stderr, filtered by
/// `RUST_LOG` (default `info`). A filter that does not parse ends the example.
pub(crate) fn init_tracing() {
    use tracing_subscriber::filter::{EnvFilter, LevelFilter};
    let filter = EnvFilter::builder().with_default_directive(LevelFilter::INFO.into());
    let filter = match var("RUST_LOG") {
        Ok(None) => filter.parse_lossy(""),
        Ok(Some(value)) => filter.parse(&value).unwrap_or_else(|error| {
            exit(format!(
                "{} is not a log filter (for instance info, or warn,tower_sse=debug): {error}",
                shown("RUST_LOG", &value)
            ))
        }),
        Err(message) => exit(message),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The cap on open event streams of the examples that set one:
///
/// - `MAX_STREAMS`: event streams open at once on this server (default 10,000).
/// - `TRUST_PROXY`: the addresses of your reverse proxies, comma-separated (for instance
///   `127.0.0.1` or `10.0.0.2,10.0.0.3`). A request whose connection comes from one of
///   them counts under the client address the proxy forwarded: the last address of
///   `X-Forwarded-For` (nginx: `proxy_set_header X-Forwarded-For
///   $proxy_add_x_forwarded_for;`), else `X-Real-IP`; a request from any other address
///   counts under that address, whatever headers it sends. Unset: no proxy is trusted,
///   and no header is read.
/// - `PER_CLIENT`: event streams one client address may hold open (default 32 with
///   `TRUST_PROXY`, none without). Without `TRUST_PROXY` every browser behind one proxy
///   or NAT has the same address, so the examples set no per-client cap unless asked:
///   only `MAX_STREAMS` holds, for one address as for many. Set `PER_CLIENT` without
///   `TRUST_PROXY` only when clients connect directly.
///
/// Every stream over HTTP/1.1 is a connection, and every connection an open file: the
/// server's cap on connections ([`Limits::max_connections`]) follows `MAX_STREAMS`,
/// within the open-file limit (`ulimit -n`). `MAX_STREAMS=20000` needs
/// `ulimit -n 20200` or so; with less, the start-up line says how many connections fit.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub(crate) max_streams: usize,
    pub(crate) per_client: Option<usize>,
    pub(crate) trusted: Arc<[IpAddr]>,
}

/// The default of `MAX_STREAMS`.
pub(crate) const MAX_STREAMS: usize = 10_000;
/// The default of `PER_CLIENT` when a proxy is trusted.
pub(crate) const PER_CLIENT: usize = 32;
/// Connections the server takes beyond `MAX_STREAMS`: requests that are no event stream
/// (preflights, other routes), and streams answered 503 while `MAX_STREAMS` are open.
pub(crate) const CONNECTION_HEADROOM: usize = 100;
/// Open files kept for what the process opens besides connections (the listener, the
/// runtime's, logs, a Redis connection).
pub(crate) const FILE_RESERVE: usize = 64;

/// The soft limit on open files (`ulimit -n`), where `/proc` tells it (Linux).
pub(crate) fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Reads `MAX_STREAMS`, `TRUST_PROXY` and `PER_CLIENT`.
pub(crate) fn limits() -> Result<Limits, String> {
    let max_streams = number("MAX_STREAMS", MAX_STREAMS, 1, 1_000_000)?;
    let trusted: Vec<IpAddr> = read(
        "TRUST_PROXY",
        Vec::new(),
        "a comma-separated list of proxy IP addresses (for instance 127.0.0.1 or 10.0.0.2,10.0.0.3)",
        |value| {
            value
                .split(',')
                .map(|part| {
                    part.trim()
                        .parse::<IpAddr>()
                        .ok()
                        .map(|ip| ip.to_canonical())
                })
                .collect()
        },
    )?;
    let default = (!trusted.is_empty()).then_some(PER_CLIENT.min(max_streams));
    let per_client = match var("PER_CLIENT")? {
        None => default,
        Some(_) => Some(number("PER_CLIENT", PER_CLIENT, 1, max_streams)?),
    };
    Ok(Limits {
        max_streams,
        per_client,
        trusted: trusted.into(),
    })
}

impl Limits {
    /// The `StreamLimit`: `MAX_STREAMS`, and `PER_CLIENT` keyed as `TRUST_PROXY` says.
    /// A refused stream is told to come back in `retry_after`.
    pub(crate) fn stream_limit(&self, retry_after: Duration) -> StreamLimit {
        let limit = StreamLimit::new(self.max_streams).retry_after(retry_after);
        let Some(per_client) = self.per_client else {
            return limit;
        };
        let trusted = self.trusted.clone();
        // `tower_sse::serve` puts the peer's address in every request's extensions.
        limit.per_client(per_client).client_key(move |parts| {
            let peer = parts.extensions.get::<SocketAddr>()?.ip().to_canonical();
            if !trusted.contains(&peer) {
                return Some(peer);
            }
            let forwarded = forwarded_client(&parts.headers);
            if forwarded.is_none() {
                tracing::debug!(
                    %peer,
                    "a trusted proxy forwarded no client address: the stream counts only toward MAX_STREAMS"
                );
            }
            forwarded
        })
    }

    /// The cap on open connections for `tower_sse::serve`: `MAX_STREAMS` and
    /// [`CONNECTION_HEADROOM`] more, within the open-file limit less [`FILE_RESERVE`],
    /// and never below the server's default (7/8 of the limit; 10,000 where the limit
    /// cannot be read). With the default `MAX_STREAMS` and limit that is the default.
    pub(crate) fn max_connections(&self) -> usize {
        let wanted = self.max_streams + CONNECTION_HEADROOM;
        match open_file_limit() {
            Some(files) => wanted
                .min(files.saturating_sub(FILE_RESERVE))
                .max(files - files / 8),
            None => wanted.max(10_000),
        }
    }

    /// One line for the start-up log.
    pub(crate) fn describe(&self) -> String {
        let per_client = match self.per_client {
            None => "no per-client cap (PER_CLIENT unset)".to_owned(),
            Some(n) if self.trusted.is_empty() => {
                format!("at most {n} per connection address (PER_CLIENT; no proxy trusted)")
            }
            Some(n) => {
                let proxies: Vec<String> = self.trusted.iter().map(IpAddr::to_string).collect();
                format!(
                    "at most {n} per client (PER_CLIENT), read from X-Forwarded-For or X-Real-IP on connections from {} (TRUST_PROXY)",
                    proxies.join(", ")
                )
            }
        };
        let connections = self.max_connections();
        let files = match open_file_limit() {
            Some(files) if connections < self.max_streams + CONNECTION_HEADROOM => format!(
                " (all the open-file limit of {files} allows: raise it with ulimit -n {})",
                self.max_streams + CONNECTION_HEADROOM + FILE_RESERVE
            ),
            _ => String::new(),
        };
        format!(
            "at most {} event streams (MAX_STREAMS), {per_client}; at most {connections} connections{files}",
            self.max_streams
        )
    }
}

/// The client address a trusted proxy forwarded: the last entry of the last
/// `X-Forwarded-For` header (the address the proxy itself saw; entries before it are
/// whatever the client claimed), else `X-Real-IP`.
pub(crate) fn forwarded_client(headers: &HeaderMap) -> Option<IpAddr> {
    let parse = |text: &str| {
        let text = text.trim();
        text.parse::<IpAddr>()
            .ok()
            .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
            .map(|ip| ip.to_canonical())
    };
    let last_hop = headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(parse);
    last_hop.or_else(|| {
        headers
            .get("x-real-ip")
            .and_then(|value| value.to_str().ok())
            .and_then(parse)
    })
}

/// Serves `service` with `tower_sse::serve`'s guards until Ctrl-C, then shuts down:
/// `shutdown` (the token the SSE layer also holds) ends every event stream at an event
/// boundary and stops the server, which waits up to 10 s for its connections to close.
/// The cap on connections is [`Limits::max_connections`] (`configure` may change it).
pub(crate) async fn serve_until_ctrl_c<S, B>(
    listener: TcpListener,
    service: S,
    shutdown: tokio_util::sync::CancellationToken,
    configure: impl FnOnce(tower_sse::Serve<S>) -> tower_sse::Serve<S>,
) where
    S: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use std::future::IntoFuture;
    // The example has read its limits already (and ended on a bad value).
    let connections = limits().map_or(MAX_STREAMS, |l| l.max_connections());
    let server = tower_sse::serve(listener, service)
        .graceful_shutdown(shutdown.clone())
        .max_connections(connections);
    let server = configure(server).into_future();
    tokio::pin!(server);
    tokio::select! {
        () = &mut server => return,
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down: ending every event stream");
    shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(10), server).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!("gave up waiting for connections to close after 10 s"),
    }
}
