//! Compressed event streams (`SseLayer::compression`) over real connections: every frame
//! decodes, with a decoder of its own, into exactly the events written so far.

#![cfg(feature = "compression-full")]

mod support;

use std::convert::Infallible;
use std::io::Write;

use bytes::Bytes;
use http::Request;
use hyper::body::Incoming;
use support::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tower::{ServiceBuilder, service_fn};
use tower_sse::{Compression, Event, Sse, SseLayer};

/// A decoder fed the wire frame by frame, holding what it has decoded so far.
enum Decoder {
    Gzip(flate2::write::GzDecoder<Vec<u8>>),
    Deflate(flate2::write::ZlibDecoder<Vec<u8>>),
    Brotli(Box<brotli::DecompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
}

impl Decoder {
    fn new(codec: &str) -> Self {
        match codec {
            "gzip" => Decoder::Gzip(flate2::write::GzDecoder::new(Vec::new())),
            "deflate" => Decoder::Deflate(flate2::write::ZlibDecoder::new(Vec::new())),
            "br" => Decoder::Brotli(Box::new(brotli::DecompressorWriter::new(Vec::new(), 4096))),
            "zstd" => Decoder::Zstd(zstd::stream::write::Decoder::new(Vec::new()).unwrap()),
            other => panic!("no decoder for {other}"),
        }
    }

    /// Feeds one frame; gives everything decoded from it.
    fn feed(&mut self, frame: &[u8]) -> Vec<u8> {
        let out = match self {
            Decoder::Gzip(d) => {
                d.write_all(frame).unwrap();
                d.flush().unwrap();
                d.get_mut()
            }
            Decoder::Deflate(d) => {
                d.write_all(frame).unwrap();
                d.flush().unwrap();
                d.get_mut()
            }
            Decoder::Brotli(d) => {
                d.write_all(frame).unwrap();
                d.flush().unwrap();
                d.get_mut()
            }
            Decoder::Zstd(d) => {
                d.write_all(frame).unwrap();
                d.flush().unwrap();
                d.get_mut()
            }
        };
        std::mem::take(out)
    }
}

#[tokio::test]
async fn every_frame_decodes_at_once_into_exactly_its_events() {
    let (senders_tx, mut senders) = mpsc::unbounded_channel();
    let service = ServiceBuilder::new()
        .layer(SseLayer::new().compression(Compression::new()))
        .service(service_fn(move |_: Request<Incoming>| {
            let (tx, rx) = mpsc::unbounded_channel::<Event>();
            senders_tx.send(tx).unwrap();
            let events = Sse::new(UnboundedReceiverStream::new(rx));
            async move { Ok::<_, Infallible>(events.into_response()) }
        }));
    let server = serve(service).await;
    for codec in ["gzip", "deflate", "br", "zstd"] {
        for http2 in [false, true] {
            let request = get("/events")
                .header("accept-encoding", codec)
                .body(empty())
                .unwrap();
            let response = if http2 {
                h2_connect(server.addr).await.send(request).await
            } else {
                h1_connect(server.addr).await.send(request).await
            };
            assert_eq!(response.headers()["content-encoding"], codec);
            assert_eq!(response.headers()["vary"], "accept-encoding");
            let mut body = response.into_body();
            let sender: mpsc::UnboundedSender<Event> = senders.recv().await.unwrap();
            let mut decoder = Decoder::new(codec);
            let mut plain = 0;
            let mut wire = 0;
            for n in 0..50 {
                let event = Event::builder()
                    .event("position")
                    .id(&n.to_string())
                    .data(&format!(
                        r#"{{"flight":"TG{n:03}","lat":13.{n},"lon":100.{n},"alt":35000}}"#
                    ))
                    .build()
                    .unwrap();
                sender.send(event.clone()).unwrap();
                let frame: Bytes = next_data(&mut body).await.unwrap();
                wire += frame.len();
                plain += event.as_bytes().len();
                assert_eq!(
                    decoder.feed(&frame),
                    event.as_bytes().as_ref(),
                    "{codec} http2={http2} event {n}"
                );
            }
            eprintln!("{codec} http2={http2}: {plain} bytes of events, {wire} on the wire");
            assert!(wire < plain, "{codec} made it smaller");
            drop(sender);
            // The end of the compressed stream, then the end of the body.
            while let Some(frame) = next_data(&mut body).await {
                assert!(decoder.feed(&frame).is_empty());
            }
        }
    }
}
