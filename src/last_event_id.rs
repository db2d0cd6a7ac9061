//! The `Last-Event-ID` a reconnecting client sends.

use std::fmt;

use http::{HeaderMap, Request};

/// The name of the header browsers send when they reconnect.
pub const LAST_EVENT_ID: &str = "last-event-id";

/// Longest accepted id, in bytes; a longer one counts as absent.
pub const MAX_LAST_EVENT_ID_LEN: usize = 1024;

/// The id of the last event a reconnecting client received.
///
/// [`SseLayer`](crate::SseLayer) reads it from the `Last-Event-ID` header (decoded as
/// UTF-8 from its raw bytes, so non-ASCII ids survive) or, for clients that cannot set
/// headers, from a query parameter (`lastEventId` by default), and inserts it into the
/// request's extensions for the inner service. A malformed value (not UTF-8, longer than
/// [`MAX_LAST_EVENT_ID_LEN`]) never fails the request: it counts as absent and is traced.
///
/// ```
/// use http::Request;
/// use tower_sse::LastEventId;
///
/// let request = Request::get("/events")
///     .header("last-event-id", "41")
///     .body(())
///     .unwrap();
/// let id = LastEventId::from_request(&request, Some("lastEventId")).unwrap();
/// assert_eq!(id.as_str(), "41");
/// assert_eq!(id.parse::<u64>().ok(), Some(41));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LastEventId(String);

impl LastEventId {
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

    /// Reads the id from the `Last-Event-ID` header.
    ///
    /// An absent or empty header gives `Ok(None)`; a malformed one an error.
    ///
    /// ```
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("last-event-id", http::HeaderValue::from_bytes("รหัส-9".as_bytes()).unwrap());
    /// let id = tower_sse::LastEventId::from_headers(&headers).unwrap().unwrap();
    /// assert_eq!(id.as_str(), "รหัส-9");
    /// ```
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, LastEventIdError> {
        match headers.get(LAST_EVENT_ID) {
            None => Ok(None),
            Some(value) => Self::from_bytes(value.as_bytes()),
        }
    }

    /// Reads the id from the query parameter `name` (percent-decoded, `+` as space).
    ///
    /// ```
    /// let uri: http::Uri = "/events?topic=a&lastEventId=%E0%B8%81-1".parse().unwrap();
    /// let id = tower_sse::LastEventId::from_query(&uri, "lastEventId").unwrap().unwrap();
    /// assert_eq!(id.as_str(), "ก-1");
    /// ```
    pub fn from_query(uri: &http::Uri, name: &str) -> Result<Option<Self>, LastEventIdError> {
        let Some(query) = uri.query() else {
            return Ok(None);
        };
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if decode(key).as_deref() != Ok(name.as_bytes()) {
                continue;
            }
            return decode(value)
                .map_err(|_| LastEventIdError::TooLong)
                .and_then(|bytes| Self::from_bytes(&bytes));
        }
        Ok(None)
    }

    /// Reads the id as the layer does: the header first, then the query parameter
    /// `query` (if given). A malformed value counts as absent and is traced.
    ///
    /// ```
    /// let request = http::Request::get("/events?lastEventId=12").body(()).unwrap();
    /// let id = tower_sse::LastEventId::from_request(&request, Some("lastEventId"));
    /// assert_eq!(id.unwrap().as_str(), "12");
    /// ```
    pub fn from_request<B>(request: &Request<B>, query: Option<&str>) -> Option<Self> {
        let from_header = Self::from_headers(request.headers());
        if let Ok(Some(id)) = from_header {
            return Some(id);
        }
        if let Err(error) = from_header {
            tracing::warn!(%error, "ignoring malformed Last-Event-ID header");
        }
        let query = query?;
        match Self::from_query(request.uri(), query) {
            Ok(id) => id,
            Err(error) => {
                tracing::warn!(%error, parameter = query, "ignoring malformed last event id in query");
                None
            }
        }
    }

    fn from_bytes(bytes: &[u8]) -> Result<Option<Self>, LastEventIdError> {
        if bytes.len() > MAX_LAST_EVENT_ID_LEN {
            return Err(LastEventIdError::TooLong);
        }
        if bytes.is_empty() {
            return Ok(None);
        }
        match std::str::from_utf8(bytes) {
            Ok(id) => Ok(Some(LastEventId(id.to_owned()))),
            Err(_) => Err(LastEventIdError::InvalidUtf8),
        }
    }
}

impl fmt::Display for LastEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a `Last-Event-ID` value was ignored.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// headers.insert("last-event-id", http::HeaderValue::from_bytes(b"\xff").unwrap());
/// let err = tower_sse::LastEventId::from_headers(&headers).unwrap_err();
/// assert_eq!(err, tower_sse::LastEventIdError::InvalidUtf8);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LastEventIdError {
    /// The value is not valid UTF-8.
    InvalidUtf8,
    /// The value is longer than [`MAX_LAST_EVENT_ID_LEN`] bytes.
    TooLong,
}

impl fmt::Display for LastEventIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LastEventIdError::InvalidUtf8 => f.write_str("last event id is not valid UTF-8"),
            LastEventIdError::TooLong => write!(
                f,
                "last event id is longer than {MAX_LAST_EVENT_ID_LEN} bytes"
            ),
        }
    }
}

impl std::error::Error for LastEventIdError {}

/// Percent-decodes a query component, `+` standing for a space. Gives up (with `Err`)
/// once the result is longer than an id may be, so a huge query costs little.
fn decode(component: &str) -> Result<Vec<u8>, ()> {
    if component.len() > 3 * MAX_LAST_EVENT_ID_LEN + 3 {
        return Err(());
    }
    let spaced = component.replace('+', " ");
    let out: Vec<u8> = percent_encoding::percent_decode_str(&spaced).collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, header: Option<&[u8]>) -> Request<()> {
        let mut builder = Request::get(uri);
        if let Some(value) = header {
            builder = builder.header(LAST_EVENT_ID, http::HeaderValue::from_bytes(value).unwrap());
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn header_wins_over_query() {
        let req = request("/e?lastEventId=q", Some(b"h"));
        assert_eq!(
            LastEventId::from_request(&req, Some("lastEventId"))
                .unwrap()
                .as_str(),
            "h"
        );
    }

    #[test]
    fn malformed_header_falls_back_to_query() {
        let req = request("/e?lastEventId=q", Some(b"\xc3\x28"));
        assert_eq!(
            LastEventId::from_request(&req, Some("lastEventId"))
                .unwrap()
                .as_str(),
            "q"
        );
    }

    #[test]
    fn too_long_or_invalid_values_count_as_absent() {
        let long = vec![b'7'; MAX_LAST_EVENT_ID_LEN + 1];
        assert_eq!(
            LastEventId::from_request(&request("/e", Some(&long)), None),
            None
        );
        let exact = vec![b'7'; MAX_LAST_EVENT_ID_LEN];
        assert!(LastEventId::from_request(&request("/e", Some(&exact)), None).is_some());
        let req = request("/e?lastEventId=%FF%FE", None);
        assert_eq!(LastEventId::from_request(&req, Some("lastEventId")), None);
        let huge = format!("/e?lastEventId={}", "%41".repeat(5000));
        assert_eq!(
            LastEventId::from_request(&request(&huge, None), Some("lastEventId")),
            None
        );
    }

    #[test]
    fn empty_values_count_as_absent() {
        assert_eq!(
            LastEventId::from_request(&request("/e?lastEventId=", Some(b"")), Some("lastEventId")),
            None
        );
    }

    #[test]
    fn query_is_percent_decoded_with_plus_as_space() {
        let req = request("/e?x=1&lastEventId=a+b%2Bc&lastEventId=second", None);
        assert_eq!(
            LastEventId::from_request(&req, Some("lastEventId"))
                .unwrap()
                .as_str(),
            "a b+c"
        );
    }

    #[test]
    fn query_is_ignored_when_disabled() {
        assert_eq!(
            LastEventId::from_request(&request("/e?lastEventId=1", None), None),
            None
        );
    }
}
