//! [`Event`]: one server-sent event, encoded once into [`Bytes`].

use std::fmt;

use bytes::Bytes;

use super::EventBuilder;
#[cfg(feature = "json")]
use super::EventError;
use super::encode::write_line;

/// One event of a `text/event-stream`, already encoded as the bytes of its frame.
///
/// An `Event` is built once and then only moved or cloned: the frame lives in a
/// reference-counted [`Bytes`], so sending the same event to many clients costs one
/// reference-count increment per client, never a second encoding or a copy.
///
/// Build one with [`Event::builder`], or with the shortcuts [`Event::data`],
/// [`Event::comment`] and (with the `json` feature) [`Event::json`][event-json].
///
/// Every frame reads back, with a parser that follows the HTML standard, as exactly the
/// event that was built: the builder refuses an event type or id that would start a new
/// field or a new event, and it splits data and comments at every line break.
///
/// ```
/// use tower_sse::Event;
///
/// let event = Event::builder()
///     .event("position")
///     .id("42")
///     .data("first line\nsecond line")
///     .build()?;
/// assert_eq!(
///     event.as_bytes().as_ref(),
///     b"event: position\nid: 42\ndata: first line\ndata: second line\n\n"
/// );
/// # Ok::<(), tower_sse::EventError>(())
/// ```
#[cfg_attr(feature = "json", doc = "[event-json]: Event::json")]
#[cfg_attr(
    not(feature = "json"),
    doc = "[event-json]: https://docs.rs/tower-sse/latest/tower_sse/struct.Event.html#method.json"
)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Event {
    frame: Bytes,
}

impl Event {
    /// Starts building an event.
    ///
    /// ```
    /// let event = tower_sse::Event::builder().event("tick").data("1").build()?;
    /// # Ok::<(), tower_sse::EventError>(())
    /// ```
    pub fn builder() -> EventBuilder {
        EventBuilder::new()
    }

    /// An event of the default type (`message`) carrying `data`.
    ///
    /// Data cannot be refused: every line break in it (CRLF, LF or a lone CR) ends one
    /// `data:` line, and an empty string still writes one `data:` line so the browser
    /// fires an event with empty data.
    ///
    /// ```
    /// let event = tower_sse::Event::data("hello\r\nworld");
    /// assert_eq!(event.as_bytes().as_ref(), b"data: hello\ndata: world\n\n");
    /// ```
    pub fn data(data: &str) -> Event {
        if memchr::memchr2(b'\n', b'\r', data.as_bytes()).is_none() {
            // One line: the exact size is known, so one allocation, no scratch.
            let mut frame = Vec::with_capacity(data.len() + 8);
            write_line(&mut frame, b"data", data.as_bytes());
            frame.push(b'\n');
            return Event {
                frame: Bytes::from(frame),
            };
        }
        Event::builder()
            .data(data)
            .build()
            .expect("data cannot be refused")
    }

    /// A frame holding only a comment, which clients ignore: useful as a heartbeat.
    ///
    /// A comment with line breaks becomes several comment lines.
    ///
    /// ```
    /// let event = tower_sse::Event::comment("keep\nalive");
    /// assert_eq!(event.as_bytes().as_ref(), b": keep\n: alive\n\n");
    /// ```
    pub fn comment(text: &str) -> Event {
        Event::builder()
            .comment(text)
            .build()
            .expect("comments cannot be refused")
    }

    /// An event of the default type whose data is `value` serialized as JSON.
    ///
    /// ```
    /// let event = tower_sse::Event::json(&serde_json::json!({ "lat": 13.69 }))?;
    /// assert_eq!(event.as_bytes().as_ref(), b"data: {\"lat\":13.69}\n\n");
    /// # Ok::<(), tower_sse::EventError>(())
    /// ```
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Event, EventError> {
        Event::builder().json_data(value).build()
    }

    /// The encoded frame, ending with the blank line that dispatches the event.
    ///
    /// ```
    /// assert_eq!(tower_sse::Event::data("x").as_bytes().as_ref(), b"data: x\n\n");
    /// ```
    pub fn as_bytes(&self) -> &Bytes {
        &self.frame
    }

    /// Takes the encoded frame out of the event.
    ///
    /// ```
    /// let bytes: bytes::Bytes = tower_sse::Event::data("x").into_bytes();
    /// assert_eq!(bytes.as_ref(), b"data: x\n\n");
    /// ```
    pub fn into_bytes(self) -> Bytes {
        self.frame
    }

    /// An event whose frame is `frame`, known to be one whole encoded event.
    pub(super) fn from_frame(frame: Bytes) -> Event {
        Event { frame }
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Event")
            .field(&String::from_utf8_lossy(&self.frame))
            .finish()
    }
}

impl From<Event> for Bytes {
    fn from(event: Event) -> Bytes {
        event.frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_allocation() {
        let event = Event::data("shared");
        let copy = event.clone();
        assert_eq!(event.as_bytes().as_ptr(), copy.as_bytes().as_ptr());
    }
}
