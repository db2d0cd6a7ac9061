//! The tools' HTTP client: hyper's HTTP/1 client connection on a socket that may be
//! bound to a source address (many loopback addresses, many more ports) and that counts
//! the bytes it reads (the bytes on the wire, HTTP framing included).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;
use tokio_util::io::InspectReader;

/// An `http://` URL, its address resolved once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub uri: Uri,
    pub addr: SocketAddr,
}

impl Target {
    /// Parses an `http://host:port/path` URL and resolves its host.
    pub fn parse(url: &str) -> Result<Target, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let host = uri.host().filter(|_| uri.scheme_str() == Some("http"));
        let host = host.ok_or_else(|| format!("{url}: not an http:// URL"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs = (host, uri.port_u16().unwrap_or(80)).to_socket_addrs();
        let addr = addrs.map_err(|e| format!("{url}: {e}"))?.next();
        Ok(Target {
            addr: addr.ok_or_else(|| format!("{url}: no address"))?,
            uri,
        })
    }

    /// Another path on the same server.
    pub fn at(&self, path_and_query: &str) -> Target {
        Target::parse(&format!("http://{}{path_and_query}", self.addr)).expect("a valid URL")
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.uri.fmt(f)
    }
}

/// A failed request: its kind (reports count failures by kind) and the whole message.
#[derive(Debug)]
pub struct Failure {
    pub kind: String,
    pub detail: String,
}

impl Failure {
    /// A failure of `kind`.
    pub fn new(kind: impl Into<String>, detail: impl ToString) -> Failure {
        Failure {
            kind: kind.into(),
            detail: detail.to_string(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

/// What a request adds to a plain `GET`: `Accept-Encoding` (the answer must then have it
/// as its `Content-Encoding`), a source address, a counter of the bytes read.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub accept_encoding: Option<&'static str>,
    pub source: Option<IpAddr>,
    pub wire: Arc<AtomicU64>,
}

/// A response; its connection runs on a task of its own, ended with the response.
#[derive(Debug)]
pub struct Response {
    pub head: http::response::Parts,
    pub body: Incoming,
    _connection: tokio_util::task::AbortOnDropHandle<()>,
}

/// `GET` with `accept`; returns once the response head is in, whatever its status.
pub async fn get(target: &Target, accept: &str, options: &Options) -> Result<Response, Failure> {
    let socket = match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    };
    let connected = async {
        let socket = socket?;
        if let Some(ip) = options.source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        socket.connect(target.addr).await
    };
    let socket = connected
        .await
        .map_err(|e| Failure::new(format!("connect {:?}", e.kind()), e))?;
    let _ = socket.set_nodelay(true);
    let wire = options.wire.clone();
    let count = move |bytes: &[u8]| _ = wire.fetch_add(bytes.len() as u64, Relaxed);
    let io = TokioIo::new(InspectReader::new(socket, count));
    let handshake = hyper::client::conn::http1::handshake(io).await;
    let (mut sender, connection) = handshake.map_err(|e| Failure::new("handshake", e))?;
    let connection = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let path = target.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = Request::get(path)
        .header(
            header::HOST,
            target.uri.authority().map_or("", |a| a.as_str()),
        )
        .header(header::ACCEPT, accept);
    if let Some(coding) = options.accept_encoding {
        request = request.header(header::ACCEPT_ENCODING, coding);
    }
    let response = sender
        .send_request(request.body(Empty::<Bytes>::new()).expect("a request"))
        .await;
    let (head, body) = response
        .map_err(|e| Failure::new("no response", e))?
        .into_parts();
    Ok(Response {
        head,
        body,
        _connection: connection,
    })
}

/// [`get`] of an event stream: fails unless the answer is `200 text/event-stream`, with
/// the `Content-Encoding` asked for, if any.
pub async fn event_stream(target: &Target, options: &Options) -> Result<Response, Failure> {
    let response = get(target, "text/event-stream", options).await?;
    let headers = &response.head.headers;
    if response.head.status != StatusCode::OK {
        return Err(Failure::new(
            format!("status {}", response.head.status.as_u16()),
            target,
        ));
    }
    let content_type = headers.get(header::CONTENT_TYPE);
    if !content_type.is_some_and(|c| c.as_bytes().starts_with(b"text/event-stream")) {
        return Err(Failure::new(
            "not text/event-stream",
            format!("{content_type:?}"),
        ));
    }
    let coding = headers.get(header::CONTENT_ENCODING).map(|c| c.as_bytes());
    if coding.filter(|&c| c != b"identity") != options.accept_encoding.map(str::as_bytes) {
        return Err(Failure::new("content-encoding", format!("{coding:?}")));
    }
    Ok(response)
}

/// `GET` a JSON document.
pub async fn get_json(target: &Target) -> Result<serde_json::Value, String> {
    let fail = |f: Failure| format!("{target}: {f}");
    let response = get(target, "application/json", &Options::default())
        .await
        .map_err(fail)?;
    let body = response
        .body
        .collect()
        .await
        .map_err(|e| format!("{target}: {e}"))?;
    serde_json::from_slice(&body.to_bytes()).map_err(|e| format!("{target}: {e}"))
}

/// [`get_json`], from outside a runtime.
pub fn get_json_blocking(target: &Target) -> Result<serde_json::Value, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    runtime
        .map_err(|e| e.to_string())?
        .block_on(get_json(target))
}
