//! What a request asks the hub for: topics from its query, the resume point, whether it
//! may have them, and the refusal when it may not. Written once, used by the hub as a
//! tower service, by the axum extractor and by any handler.

use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{Extensions, HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use tower_service::Service;

use super::{Hub, Subscription};
use crate::{LastEventId, Refusal, Sse, query};

/// Why a request could not be subscribed.
///
/// It turns into the [`Refusal`] to answer with: 403 for a topic the
/// [`authorize`](super::HubBuilder::authorize) hook refused, 400 for the others. The
/// refusal's text never repeats the request's topic names.
///
/// ```
/// let request = http::Request::get("/events").body(()).unwrap();
/// let err = tower_sse::Hub::new().subscribe_request(&request).unwrap_err();
/// assert_eq!(err, tower_sse::hub::RequestError::NoTopic);
/// assert_eq!(tower_sse::Refusal::from(err).status(), 400);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// The request names no topic.
    NoTopic,
    /// The request names more topics than allowed.
    TooManyTopics {
        /// The most a subscription may read.
        max: usize,
    },
    /// A topic name is empty (`?topic=`), or not valid UTF-8 once decoded.
    InvalidTopic,
    /// The [`authorize`](super::HubBuilder::authorize) hook refused a topic.
    Forbidden {
        /// The first topic refused.
        topic: String,
    },
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::NoTopic => f.write_str("no topic to subscribe to"),
            RequestError::TooManyTopics { max } => {
                write!(f, "too many topics: at most {max} per subscription")
            }
            RequestError::InvalidTopic => f.write_str("a topic name is empty or not valid UTF-8"),
            RequestError::Forbidden { topic } => {
                write!(f, "not allowed to subscribe to topic {topic:?}")
            }
        }
    }
}

impl std::error::Error for RequestError {}

impl From<RequestError> for Refusal {
    /// 403 for [`RequestError::Forbidden`], 400 for the others, with a short text
    /// that does not repeat the request's topic names.
    ///
    /// ```
    /// use tower_sse::{Refusal, hub::RequestError};
    /// assert_eq!(Refusal::from(RequestError::InvalidTopic).status(), 400);
    /// ```
    fn from(error: RequestError) -> Self {
        match error {
            RequestError::Forbidden { .. } => Refusal::new(
                StatusCode::FORBIDDEN,
                "not allowed to subscribe to this topic",
            ),
            RequestError::NoTopic
            | RequestError::TooManyTopics { .. }
            | RequestError::InvalidTopic => {
                Refusal::new(StatusCode::BAD_REQUEST, &error.to_string())
            }
        }
    }
}

/// The hook of [`HubBuilder::authorize`](super::HubBuilder::authorize).
#[derive(Clone)]
pub(crate) struct Authorize(Arc<AuthorizeFn>);

type AuthorizeFn = dyn Fn(&str, &Parts) -> bool + Send + Sync;

impl Authorize {
    pub(crate) fn new<F>(allowed: F) -> Self
    where
        F: Fn(&str, &Parts) -> bool + Send + Sync + 'static,
    {
        Authorize(Arc::new(allowed))
    }

    /// Refuses at the first topic the hook refuses.
    fn check(&self, topics: &[Arc<str>], parts: &Parts) -> Result<(), RequestError> {
        match topics.iter().find(|topic| !(self.0)(topic, parts)) {
            None => Ok(()),
            Some(topic) => {
                tracing::debug!(topic = %topic, "hub refused a topic");
                Err(RequestError::Forbidden {
                    topic: topic.to_string(),
                })
            }
        }
    }
}

impl fmt::Debug for Authorize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Authorize(..)")
    }
}

impl Hub {
    /// Subscribes as the request asks: topics from the query (`?topic=a&topic=b`, the
    /// parameter set by [`HubBuilder::topic_param`](super::HubBuilder::topic_param)),
    /// resumed from the [`LastEventId`] that [`SseLayer`](crate::SseLayer) put in the
    /// request's extensions (or, without the layer, read as the layer reads it: the
    /// `Last-Event-ID` header, else the `lastEventId` query parameter).
    ///
    /// A request that names no topic, an empty topic (`?topic=`), a topic that is not
    /// UTF-8, more topics than
    /// [`max_topics`](super::HubBuilder::max_topics), or a topic the
    /// [`authorize`](super::HubBuilder::authorize) hook refuses is refused with a
    /// [`RequestError`], which turns into the [`Refusal`] to answer with (400, or 403
    /// for a refused topic). A malformed, unknown or too old `Last-Event-ID` is no
    /// error: the subscriber first receives the reset event.
    ///
    /// ```
    /// let hub = tower_sse::Hub::new();
    /// let request = http::Request::get("/events?topic=a&topic=b%20c").body(()).unwrap();
    /// let subscription = hub.subscribe_request(&request)?;
    /// assert_eq!(subscription.topics().collect::<Vec<_>>(), ["a", "b c"]);
    /// # Ok::<(), tower_sse::hub::RequestError>(())
    /// ```
    pub fn subscribe_request<B>(&self, request: &Request<B>) -> Result<Subscription, RequestError> {
        let head = Head {
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        };
        self.subscribe_head(head, || {
            // The hook takes the head as `Parts`: a copy, made only when there is a hook.
            let (mut parts, ()) = Request::new(()).into_parts();
            parts.method = request.method().clone();
            parts.uri = request.uri().clone();
            parts.version = request.version();
            parts.headers = request.headers().clone();
            parts.extensions = request.extensions().clone();
            parts
        })
    }

    /// [`subscribe_request`](Hub::subscribe_request) for code that holds the request's
    /// head, such as an extractor: the same topics, authorization and resume point.
    ///
    /// ```
    /// let hub = tower_sse::Hub::new();
    /// let (parts, ()) = http::Request::get("/events?topic=a")
    ///     .header("last-event-id", "7")
    ///     .body(())?
    ///     .into_parts();
    /// let subscription = hub.subscribe_parts(&parts).unwrap();
    /// assert_eq!(subscription.topics().collect::<Vec<_>>(), ["a"]);
    /// # Ok::<(), http::Error>(())
    /// ```
    pub fn subscribe_parts(&self, parts: &Parts) -> Result<Subscription, RequestError> {
        let head = Head {
            uri: &parts.uri,
            headers: &parts.headers,
            extensions: &parts.extensions,
        };
        self.subscribe_head(head, || parts.clone())
    }

    fn subscribe_head<'a>(
        &self,
        head: Head<'a>,
        parts: impl FnOnce() -> Parts,
    ) -> Result<Subscription, RequestError> {
        let config = &self.inner.config;
        let names = topics(head.uri, &config.topic_param, config.max_topics)?;
        if let Some(authorize) = &config.authorize {
            authorize.check(&names, &parts())?;
        }
        let last_event_id = LastEventId::read(
            head.extensions.get(),
            head.headers.get(LastEventId::HEADER),
            head.uri.query(),
            Some(LastEventId::QUERY_PARAM),
        );
        Ok(self.inner.subscribe(names, last_event_id.as_ref()))
    }
}

/// The parts of a request head the hub reads.
#[derive(Clone, Copy)]
struct Head<'a> {
    uri: &'a Uri,
    headers: &'a HeaderMap,
    extensions: &'a Extensions,
}

/// The distinct topics the query of `uri` names under `param`, in order. Stops reading
/// at the first topic past `max`, so thousands of them cost little.
fn topics(uri: &Uri, param: &str, max: usize) -> Result<Vec<Arc<str>>, RequestError> {
    let mut names: Vec<Arc<str>> = Vec::new();
    for topic in query::values(uri.query().unwrap_or(""), param) {
        let topic = topic.map_err(|query::NotUtf8| RequestError::InvalidTopic)?;
        if topic.is_empty() {
            return Err(RequestError::InvalidTopic);
        }
        if names.iter().any(|name| **name == *topic) {
            continue;
        }
        if names.len() == max {
            return Err(RequestError::TooManyTopics { max });
        }
        names.push(Arc::from(topic.as_ref()));
    }
    if names.is_empty() {
        return Err(RequestError::NoTopic);
    }
    Ok(names)
}

/// The hub as a tower service: each request subscribes as
/// [`subscribe_request`](Hub::subscribe_request) reads it and is answered with the
/// subscription's event stream, or with the [`Refusal`] (400, 403). Put
/// [`SseLayer`](crate::SseLayer) around it.
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_sse::{Hub, SseLayer};
///
/// let hub = Hub::new();
/// // `GET /?topic=news&topic=weather`, resumed from the client's Last-Event-ID.
/// let service = ServiceBuilder::new().layer(SseLayer::new()).service(hub.clone());
/// ```
impl<B> Service<Request<B>> for Hub {
    type Response = Response<Either<Sse<Subscription>, Full<Bytes>>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let response = match self.subscribe_request(&request) {
            Ok(subscription) => Sse::new(subscription).into_response().map(Either::Left),
            Err(error) => Refusal::from(error).into_response().map(Either::Right),
        };
        ready(Ok(response))
    }
}
