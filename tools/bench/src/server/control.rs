//! The control listener of a server: `GET /stats` answers `{"published","subscribers"}`;
//! `/publish-idle` first publishes one event on the idle topic.

use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;

use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;
use tokio::net::TcpListener;

use super::floors::serve_http1;
use super::publisher::Publisher;

pub(super) fn start(listener: TcpListener, publisher: Publisher) {
    let service = tower::service_fn(move |request: Request<Incoming>| {
        if request.uri().path() == "/publish-idle" {
            publisher.publish_idle();
        }
        let published = publisher.published.load(Relaxed);
        let body = json!({ "published": published, "subscribers": publisher.sink.subscribers() });
        let body = Full::<bytes::Bytes>::from(body.to_string());
        std::future::ready(Ok::<_, Infallible>(Response::new(body)))
    });
    tokio::spawn(serve_http1(listener, service));
}
