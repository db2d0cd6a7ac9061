//! The tools' HTTP client: hyper's HTTP/1 client connection on a socket that may be
//! bound to a source address (many loopback addresses, many more ports) and that counts
//! the bytes it reads (the bytes on the wire, HTTP framing included).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::io::InspectReader;
use tokio_util::task::AbortOnDropHandle;

/// A failed request: its kind (reports count failures by kind) and the whole message.
#[derive(Debug)]
pub struct Failure {
    pub kind: String,
    pub detail: String,
}

impl Failure {
    pub fn new(kind: impl Into<String>, detail: impl ToString) -> Failure {
        let (kind, detail) = (kind.into(), detail.to_string());
        Failure { kind, detail }
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
    _connection: AbortOnDropHandle<()>,
}

/// A socket for `addr`'s family, with `TCP_NODELAY` (a listener's accepted sockets
/// inherit it on Linux).
pub fn socket(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }?;
    socket.set_nodelay(true)?;
    Ok(socket)
}

/// Connects to the host of `uri` (`host:port`) from `source`, if any.
async fn connect(uri: &Uri, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let authority = uri.authority().map_or("", |a| a.as_str());
    let addr = tokio::net::lookup_host(authority).await?.next();
    let addr = addr.ok_or(std::io::ErrorKind::AddrNotAvailable)?;
    let socket = socket(addr)?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(addr).await
}

/// `GET` with `accept`; returns once the response head is in, whatever its status.
pub async fn get(uri: &Uri, accept: &str, options: &Options) -> Result<Response, Failure> {
    let socket = connect(uri, options.source).await;
    let socket = socket.map_err(|e| Failure::new(format!("connect {:?}", e.kind()), e))?;
    let wire = options.wire.clone();
    let count = move |bytes: &[u8]| _ = wire.fetch_add(bytes.len() as u64, Relaxed);
    let io = TokioIo::new(InspectReader::new(socket, count));
    let handshake = hyper::client::conn::http1::handshake(io).await;
    let (mut sender, connection) = handshake.map_err(|e| Failure::new("handshake", e))?;
    let connection = AbortOnDropHandle::new(tokio::spawn(async move { _ = connection.await }));
    let mut request = Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(header::HOST, uri.authority().map_or("", |a| a.as_str()))
        .header(header::ACCEPT, accept);
    if let Some(coding) = options.accept_encoding {
        request = request.header(header::ACCEPT_ENCODING, coding);
    }
    let request = request.body(Empty::<Bytes>::new()).expect("a request");
    let response = sender.send_request(request).await;
    let response = response.map_err(|e| Failure::new("no response", e))?;
    let (head, body) = response.into_parts();
    Ok(Response {
        head,
        body,
        _connection: connection,
    })
}

/// [`get`] of an event stream: fails unless the answer is `200 text/event-stream`, with
/// the `Content-Encoding` asked for, if any.
pub async fn event_stream(uri: &Uri, options: &Options) -> Result<Response, Failure> {
    let response = get(uri, "text/event-stream", options).await?;
    let (status, headers) = (response.head.status, &response.head.headers);
    if status != StatusCode::OK {
        return Err(Failure::new(format!("status {}", status.as_u16()), uri));
    }
    let content_type = headers.get(header::CONTENT_TYPE).map(|c| c.as_bytes());
    if !content_type.is_some_and(|c| c.starts_with(b"text/event-stream")) {
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
pub async fn get_json(uri: &Uri) -> Result<serde_json::Value, String> {
    let response = get(uri, "application/json", &Options::default()).await;
    let body = response
        .map_err(|f| format!("{uri}: {f}"))?
        .body
        .collect()
        .await;
    let body = body.map_err(|e| format!("{uri}: {e}"))?.to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("{uri}: {e}"))
}

/// [`get_json`], from outside a runtime.
pub fn get_json_blocking(uri: &Uri) -> Result<serde_json::Value, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    runtime.map_err(|e| e.to_string())?.block_on(get_json(uri))
}
