//! The control listener of a server: `GET /stats` answers `{"published","subscribers"}`;
//! `/publish-idle` first publishes one event on the idle topic.

use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;

use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use super::floors::serve_http1;
use super::publisher::Publisher;

pub(super) fn start(listener: TcpListener, publisher: Publisher) {
    let service = tower::service_fn(move |request: Request<Incoming>| {
        if request.uri().path() == "/publish-idle" {
            publisher.publish_idle();
        }
        let (published, subscribers) =
            (publisher.published.load(Relaxed), publisher.sink.subscribers());
        let body = serde_json::json!({ "published": published, "subscribers": subscribers });
        std::future::ready(Ok::<_, Infallible>(Response::new(Full::<bytes::Bytes>::from(
            body.to_string(),
        ))))
    });
    tokio::spawn(serve_http1(listener, service));
}
