//! The first request head of a connection, read by `serve` itself into a small buffer:
//! a plain request for an event stream is served by [`stream`](super::stream); anything
//! else, with every byte read so far, goes to hyper.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::event_stream::is_event_stream_type;

/// The first read's buffer: a browser's `EventSource` request fits, cookies included.
const FIRST_READ: usize = 1024;
/// The largest head read here; a longer one goes to hyper, which has its own limits.
pub(super) const MAX_HEAD: usize = 8 * 1024;
/// Headers looked at; a head with more goes to hyper (whose limit is 100).
const MAX_HEADERS: usize = 48;

/// What the first bytes of a connection turned out to be.
#[derive(Debug)]
pub(super) enum Sniffed {
    /// A complete head that asks for an event stream and nothing else: `GET`,
    /// HTTP/1.1, `Accept: text/event-stream`, no body, no upgrade, no other request
    /// after it. The bytes are exactly the head.
    Stream(Bytes),
    /// Anything else: hyper serves the connection, starting with these bytes.
    Hyper(Bytes),
    /// The client closed the connection, or it failed, before a whole head came.
    Closed,
    /// The head did not come whole within the header read timeout.
    TimedOut,
}

/// Reads the first request head from `io`: the header read timeout runs from the first
/// byte. Every byte read is in the answer (hyper gets them back).
pub(super) async fn read_head<IO>(io: &mut IO, header_read_timeout: Option<Duration>) -> Sniffed
where
    IO: AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(FIRST_READ);
    match io.read_buf(&mut buf).await {
        Ok(0) | Err(_) => return Sniffed::Closed,
        Ok(_) => {}
    }
    let deadline = tokio::time::sleep(header_read_timeout.unwrap_or(Duration::MAX));
    tokio::pin!(deadline);
    loop {
        match judge(&buf) {
            Judged::Stream => return Sniffed::Stream(Bytes::from(buf)),
            Judged::Hyper => return Sniffed::Hyper(Bytes::from(buf)),
            Judged::Partial if buf.len() >= MAX_HEAD => return Sniffed::Hyper(Bytes::from(buf)),
            Judged::Partial => {}
        }
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity().min(MAX_HEAD - buf.len()));
        }
        tokio::select! {
            read = io.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => return Sniffed::Closed,
                Ok(_) => {}
            },
            () = &mut deadline, if header_read_timeout.is_some() => return Sniffed::TimedOut,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Judged {
    Stream,
    Hyper,
    /// So far a request for an event stream, not complete yet.
    Partial,
}

/// Whether `buf` is, or may still become, a plain request for an event stream.
fn judge(buf: &[u8]) -> Judged {
    // Anything that is not a GET (an HTTP/2 preface too) goes at once.
    let start = &buf[..buf.len().min(4)];
    if start != &b"GET "[..start.len()] {
        return Judged::Hyper;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Judged::Partial,
        // Malformed, obsolete line folding, too many headers: hyper answers or refuses.
        Err(_) => return Judged::Hyper,
    };
    // Pipelined bytes after the head are hyper's.
    let plain = len == buf.len()
        && request.method == Some("GET")
        && request.version == Some(1)
        && request.path.is_some_and(|path| path.starts_with('/'));
    if !plain {
        return Judged::Hyper;
    }
    let mut accepts = false;
    for header in request.headers.iter() {
        let name = header.name;
        let is = |known: &str| name.eq_ignore_ascii_case(known);
        if is("accept") {
            accepts |= is_event_stream_type(header.value);
        } else if is("connection") {
            // Only the default of HTTP/1.1 said out loud: `close` or `upgrade` are
            // hyper's.
            if !header
                .value
                .trim_ascii()
                .eq_ignore_ascii_case(b"keep-alive")
            {
                return Judged::Hyper;
            }
        } else if is("content-length")
            || is("transfer-encoding")
            || is("expect")
            || is("upgrade")
            || is("http2-settings")
            || is("te")
        {
            // A body, or something a stream does not do.
            return Judged::Hyper;
        }
    }
    if accepts {
        Judged::Stream
    } else {
        Judged::Hyper
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: &str = "GET /events?topic=a HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n";

    fn head(extra: &str) -> Vec<u8> {
        format!("{GET}{extra}\r\n").into_bytes()
    }

    #[test]
    fn a_plain_request_for_an_event_stream_is_served_here() {
        assert_eq!(judge(&head("")), Judged::Stream);
        assert_eq!(
            judge(&head("connection: keep-alive\r\nlast-event-id: 7\r\n")),
            Judged::Stream
        );
        assert_eq!(
            judge(b"GET / HTTP/1.1\r\naccept: text/html, Text/Event-Stream;q=1\r\n\r\n"),
            Judged::Stream
        );
    }

    #[test]
    fn an_unfinished_head_is_read_on() {
        let whole = head("");
        for cut in 1..whole.len() {
            assert_eq!(judge(&whole[..cut]), Judged::Partial, "cut at {cut}");
        }
    }

    #[test]
    fn anything_else_goes_to_hyper() {
        let hyper = [
            b"POST /events HTTP/1.1\r\naccept: text/event-stream\r\n\r\n".to_vec(),
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            b"GEX".to_vec(),
            b"GET /events HTTP/1.0\r\naccept: text/event-stream\r\n\r\n".to_vec(),
            b"GET /events HTTP/1.1\r\n\r\n".to_vec(),
            b"GET http://x/events HTTP/1.1\r\naccept: text/event-stream\r\n\r\n".to_vec(),
            head("content-length: 0\r\n"),
            head("content-length: 5\r\n"),
            head("content-length: 5\r\ncontent-length: 5\r\n"),
            head("transfer-encoding: chunked\r\n"),
            head("content-length: 5\r\ntransfer-encoding: chunked\r\n"),
            head("expect: 100-continue\r\n"),
            head("upgrade: websocket\r\nconnection: upgrade\r\n"),
            head("connection: close\r\n"),
            head("te: trailers\r\n"),
            head("x-folded: a\r\n b\r\n"),
            head("bad header\r\n"),
            // A request pipelined after the head.
            [head(""), b"GET /hello HTTP/1.1\r\n\r\n".to_vec()].concat(),
            // A body after a GET.
            [head(""), b"hello".to_vec()].concat(),
            // Too many headers to look at here.
            head(&"x-a: b\r\n".repeat(MAX_HEADERS)),
        ];
        for bytes in hyper {
            assert_eq!(
                judge(&bytes),
                Judged::Hyper,
                "{:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    #[tokio::test]
    async fn the_head_is_read_as_it_comes_and_every_byte_is_kept() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let whole = head("");
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for chunk in whole.chunks(7) {
                client.write_all(chunk).await.unwrap();
            }
            client
        });
        match read_head(&mut server, Some(Duration::from_secs(5))).await {
            Sniffed::Stream(bytes) => assert_eq!(bytes, head("")),
            other => panic!("{other:?}"),
        }
        drop(writer.await.unwrap());
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"POST / HTTP/1.1\r\n")
            .await
            .unwrap();
        match read_head(&mut server, None).await {
            Sniffed::Hyper(bytes) => assert_eq!(&bytes[..], b"POST / HTTP/1.1\r\n"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_does_not_come_whole_in_time_is_cut() {
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET /events HT")
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        assert!(matches!(
            read_head(&mut server, Some(Duration::from_secs(3))).await,
            Sniffed::TimedOut
        ));
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test]
    async fn a_head_longer_than_the_buffer_goes_to_hyper_whole() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let long = head(&format!("cookie: {}\r\n", "a".repeat(MAX_HEAD)));
        tokio::io::AsyncWriteExt::write_all(&mut client, &long)
            .await
            .unwrap();
        match read_head(&mut server, None).await {
            Sniffed::Hyper(bytes) => {
                assert!(bytes.len() >= MAX_HEAD && bytes.len() < long.len());
                assert_eq!(&bytes[..], &long[..bytes.len()]);
            }
            other => panic!("{other:?}"),
        }
    }
}
