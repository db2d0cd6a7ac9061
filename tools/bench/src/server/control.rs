//! The control listener of a server: `GET /stats` (`{"published","subscribers"}`),
//! `/start` (a `--paused` publisher starts) and `/publish-idle` (one event on the idle
//! topic), on hyper's HTTP/1 connection.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use super::floors::serve_http1;
use super::publisher::Publisher;

/// Serves the control listener.
pub(super) fn start(listener: TcpListener, publisher: Publisher) {
    let service = tower::service_fn(move |request: Request<Incoming>| {
        let body = match request.uri().path() {
            "/start" => {
                publisher.start();
                "{}".to_string()
            }
            "/publish-idle" => {
                publisher.publish_idle();
                "{}".to_string()
            }
            _ => {
                let (published, subscribers) = publisher.stats();
                serde_json::json!({ "published": published, "subscribers": subscribers })
                    .to_string()
            }
        };
        let response = Response::new(Full::new(Bytes::from(body)));
        async move { Ok::<_, Infallible>(response) }
    });
    tokio::spawn(serve_http1(listener, service));
}
