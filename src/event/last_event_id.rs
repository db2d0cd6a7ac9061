//! The `Last-Event-ID` a reconnecting client sends, and the one function that reads it
//! from a request.

use std::fmt;

use http::request::Parts;
use http::{HeaderName, HeaderValue, Request};

use crate::query;

/// The id of the last event a reconnecting client received.
///
/// [`SseLayer`](crate::SseLayer) reads it from the `Last-Event-ID` header (decoded as
/// UTF-8 from its raw bytes, so non-ASCII ids survive) or, for clients that cannot set
/// headers, from a query parameter ([`QUERY_PARAM`](LastEventId::QUERY_PARAM) by
/// default), and inserts it into the request's extensions, where handlers, the axum
/// extractor, the warp filter and the [`Hub`](crate::Hub) find it. Without the layer,
/// they read it the same way themselves. A malformed value (not UTF-8, longer than
/// [`MAX_LEN`](LastEventId::MAX_LEN) bytes) never fails the request: it counts as
/// absent and is traced at debug level (a client cannot make the server log a line per
/// request at the default levels).
///
/// ```
/// use http::Request;
/// use tower_sse::LastEventId;
///
/// let request = Request::get("/events").header("last-event-id", "41").body(())?;
/// let id = LastEventId::from_request(&request, Some(LastEventId::QUERY_PARAM)).unwrap();
/// assert_eq!(id.as_str(), "41");
/// assert_eq!(id.parse::<u64>().ok(), Some(41));
/// # Ok::<(), http::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LastEventId(String);

/// Why a value was ignored.
#[derive(Clone, Copy, Debug)]
enum Malformed {
    NotUtf8,
    TooLong,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::NotUtf8 => f.write_str("last event id is not valid UTF-8"),
            Malformed::TooLong => write!(
                f,
                "last event id is longer than {} bytes",
                LastEventId::MAX_LEN
            ),
        }
    }
}

impl LastEventId {
    /// The header browsers send when they reconnect, for CORS settings:
    /// `CorsLayer::new().allow_headers([LastEventId::HEADER])`.
    ///
    /// ```
    /// assert_eq!(tower_sse::LastEventId::HEADER, "last-event-id");
    /// ```
    pub const HEADER: HeaderName = HeaderName::from_static("last-event-id");

    /// The query parameter read as the last event id when the header is absent, unless
    /// the layer is told otherwise
    /// ([`last_event_id_query`](crate::SseLayer::last_event_id_query)): the one name the
    /// layer, the axum extractors, the warp filter and the [`Hub`](crate::Hub) read by
    /// default.
    ///
    /// ```
    /// assert_eq!(tower_sse::LastEventId::QUERY_PARAM, "lastEventId");
    /// ```
    pub const QUERY_PARAM: &'static str = "lastEventId";

    /// Longest accepted id, in bytes; a longer one counts as absent.
    /// [`EventBuilder::id`](crate::EventBuilder::id) refuses longer ids with
    /// [`EventError::IdTooLong`](crate::EventError::IdTooLong), so that every id an event
    /// carries comes back intact when the client reconnects.
    ///
    /// ```
    /// assert_eq!(tower_sse::LastEventId::MAX_LEN, 1024);
    /// ```
    pub const MAX_LEN: usize = 1024;

    /// Wraps an id that was obtained elsewhere.
    ///
    /// ```
    /// let id = tower_sse::LastEventId::new("7");
    /// ```
    pub fn new(id: impl Into<String>) -> Self {
        LastEventId(id.into())
    }

    /// The id as sent by the client.
    ///
    /// ```
    /// assert_eq!(tower_sse::LastEventId::new("7").as_str(), "7");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the id, for servers whose ids are numbers.
    ///
    /// ```
    /// assert_eq!(tower_sse::LastEventId::new("7").parse::<u64>().ok(), Some(7));
    /// ```
    pub fn parse<T: std::str::FromStr>(&self) -> Result<T, T::Err> {
        self.0.parse()
    }

    /// Takes the id out.
    ///
    /// ```
    /// assert_eq!(tower_sse::LastEventId::new("7").into_string(), "7");
    /// ```
    pub fn into_string(self) -> String {
        self.0
    }

    /// The id of a request as the layer reads it, for code that runs without the
    /// layer: the one already in its extensions, else the `Last-Event-ID` header, else
    /// the query parameter `query` (if given; the layer's default is
    /// [`QUERY_PARAM`](LastEventId::QUERY_PARAM)). Absent, empty and malformed values
    /// give `None`; malformed ones are traced.
    ///
    /// ```
    /// use tower_sse::LastEventId;
    ///
    /// let request = http::Request::get("/events?lastEventId=%E0%B8%81-12").body(())?;
    /// let id = LastEventId::from_request(&request, Some(LastEventId::QUERY_PARAM));
    /// assert_eq!(id.unwrap().as_str(), "ก-12");
    /// # Ok::<(), http::Error>(())
    /// ```
    pub fn from_request<B>(request: &Request<B>, query: Option<&str>) -> Option<Self> {
        Self::read(
            request.extensions().get(),
            request.headers().get(Self::HEADER),
            request.uri().query(),
            query,
        )
    }

    /// [`from_request`](LastEventId::from_request) for a request's head.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn from_parts(parts: &Parts, query: Option<&str>) -> Option<Self> {
        Self::read(
            parts.extensions.get(),
            parts.headers.get(Self::HEADER),
            parts.uri.query(),
            query,
        )
    }

    /// The one reader of a request's last event id, which everything else calls: the id
    /// `found` in the request's extensions (put there by the layer), else the header's
    /// value, else the parameter `param` of the query string. Empty and malformed values
    /// count as absent; malformed ones are traced at debug level.
    pub(crate) fn read(
        found: Option<&LastEventId>,
        header: Option<&HeaderValue>,
        query: Option<&str>,
        param: Option<&str>,
    ) -> Option<Self> {
        if let Some(id) = found {
            return Some(id.clone());
        }
        if let Some(value) = header {
            match Self::from_bytes(value.as_bytes()) {
                Ok(Some(id)) => return Some(id),
                Ok(None) => {}
                Err(error) => tracing::debug!(%error, "ignoring malformed Last-Event-ID header"),
            }
        }
        let (query, param) = (query?, param?);
        let value = query::values(query, param).next()?;
        let read = match value {
            Ok(value) => Self::from_bytes(value.as_bytes()),
            Err(query::NotUtf8) => Err(Malformed::NotUtf8),
        };
        read.unwrap_or_else(|error| {
            tracing::debug!(%error, parameter = param, "ignoring malformed last event id in query");
            None
        })
    }

    fn from_bytes(bytes: &[u8]) -> Result<Option<Self>, Malformed> {
        if bytes.len() > Self::MAX_LEN {
            return Err(Malformed::TooLong);
        }
        if bytes.is_empty() {
            return Ok(None);
        }
        match std::str::from_utf8(bytes) {
            Ok(id) => Ok(Some(LastEventId(id.to_owned()))),
            Err(_) => Err(Malformed::NotUtf8),
        }
    }
}

impl fmt::Display for LastEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, header: Option<&[u8]>) -> Request<()> {
        let mut builder = Request::get(uri);
        if let Some(value) = header {
            builder = builder.header(LastEventId::HEADER, HeaderValue::from_bytes(value).unwrap());
        }
        builder.body(()).unwrap()
    }

    fn read(uri: &str, header: Option<&[u8]>, param: Option<&str>) -> Option<String> {
        LastEventId::from_request(&request(uri, header), param).map(LastEventId::into_string)
    }

    #[test]
    fn header_wins_over_query() {
        assert_eq!(
            read("/e?lastEventId=q", Some(b"h"), Some("lastEventId")).unwrap(),
            "h"
        );
    }

    #[test]
    fn malformed_header_falls_back_to_query() {
        let id = read("/e?lastEventId=q", Some(b"\xc3\x28"), Some("lastEventId"));
        assert_eq!(id.unwrap(), "q");
    }

    #[test]
    fn too_long_or_invalid_values_count_as_absent() {
        let long = vec![b'7'; LastEventId::MAX_LEN + 1];
        assert_eq!(read("/e", Some(&long), None), None);
        let exact = vec![b'7'; LastEventId::MAX_LEN];
        assert!(read("/e", Some(&exact), None).is_some());
        assert_eq!(
            read("/e?lastEventId=%FF%FE", None, Some("lastEventId")),
            None
        );
        let huge = format!("/e?lastEventId={}", "%41".repeat(5000));
        assert_eq!(read(&huge, None, Some("lastEventId")), None);
    }

    #[test]
    fn empty_values_count_as_absent() {
        assert_eq!(
            read("/e?lastEventId=", Some(b""), Some("lastEventId")),
            None
        );
    }

    #[test]
    fn query_is_percent_decoded_with_plus_as_space() {
        let id = read(
            "/e?x=1&lastEventId=a+b%2Bc&lastEventId=second",
            None,
            Some("lastEventId"),
        );
        assert_eq!(id.unwrap(), "a b+c");
    }

    #[test]
    fn query_is_ignored_when_disabled() {
        assert_eq!(read("/e?lastEventId=1", None, None), None);
    }

    #[test]
    fn an_id_already_in_the_extensions_wins() {
        let mut request = request("/e?lastEventId=q", Some(b"h"));
        request.extensions_mut().insert(LastEventId::new("x"));
        let id = LastEventId::from_request(&request, Some("lastEventId")).unwrap();
        assert_eq!(id.as_str(), "x");
    }
}
