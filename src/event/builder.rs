//! [`EventBuilder`]: an [`Event`] encoded field by field, as each is given.

use std::cell::Cell;
use std::time::Duration;

use bytes::Bytes;

use super::encode::{write_field, write_lines, write_retry};
use super::{Event, EventError};

/// Builds an [`Event`], encoding each field as it is given.
///
/// Fields are written in the order they are set. Setting `event` or `id` twice writes two
/// lines, and parsers keep the last; calling `data` twice writes the lines of both, and the
/// client receives them joined by a line feed. The first invalid value is remembered and
/// returned by [`build`](EventBuilder::build), so a chain never panics.
///
/// ```
/// use std::time::Duration;
/// use tower_sse::Event;
///
/// let event = Event::builder()
///     .comment("sensor 7")
///     .retry(Duration::from_secs(3))
///     .event("sensor-update")
///     .data("21.5")
///     .build()?;
/// assert_eq!(
///     event.as_bytes().as_ref(),
///     b": sensor 7\nretry: 3000\nevent: sensor-update\ndata: 21.5\n\n"
/// );
/// # Ok::<(), tower_sse::EventError>(())
/// ```
#[derive(Debug)]
#[must_use = "an EventBuilder does nothing until `build` is called"]
pub struct EventBuilder {
    /// The frame so far: a reused per-thread buffer, copied once, at its exact size,
    /// into the event's own allocation by `build`.
    buf: Vec<u8>,
    error: Option<EventError>,
}

thread_local! {
    /// The buffer builders of this thread encode into, kept between events.
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A scratch buffer larger than this is not kept for the next event.
const MAX_SCRATCH: usize = 64 * 1024;

/// A frame larger than this becomes the event's allocation itself rather than being
/// copied out of the scratch buffer: copying costs more than the spare capacity.
const HAND_OVER: usize = 4 * 1024;

impl Default for EventBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBuilder {
    /// An empty builder.
    ///
    /// ```
    /// let builder = tower_sse::EventBuilder::new();
    /// ```
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty builder whose buffer has room for at least `capacity` bytes, so that a
    /// large event is encoded without growing it.
    ///
    /// ```
    /// let event = tower_sse::EventBuilder::with_capacity(16).data("x").build()?;
    /// # Ok::<(), tower_sse::EventError>(())
    /// ```
    pub fn with_capacity(capacity: usize) -> Self {
        let mut buf = SCRATCH.with(Cell::take);
        buf.clear();
        buf.reserve(capacity.max(256));
        EventBuilder { buf, error: None }
    }

    /// Sets the event type (the `event:` field); clients dispatch it to listeners of that
    /// name instead of `onmessage`.
    ///
    /// A type containing CR or LF is refused with [`EventError::InvalidEventType`].
    ///
    /// ```
    /// let event = tower_sse::Event::builder().event("position").data("{}").build()?;
    /// assert!(tower_sse::Event::builder().event("a\nb").build().is_err());
    /// # Ok::<(), tower_sse::EventError>(())
    /// ```
    pub fn event(mut self, event_type: &str) -> Self {
        if memchr::memchr2(b'\r', b'\n', event_type.as_bytes()).is_some() {
            self.fail(EventError::InvalidEventType);
        } else {
            write_field(&mut self.buf, b"event", event_type);
        }
        self
    }

    /// Sets the event id (the `id:` field), which the browser sends back as the
    /// `Last-Event-ID` header when it reconnects.
    ///
    /// An id containing CR, LF or NUL is refused with [`EventError::InvalidId`]. An id
    /// longer than [`LastEventId::MAX_LEN`](crate::LastEventId::MAX_LEN) bytes (1 KiB)
    /// is refused with [`EventError::IdTooLong`]: the layer would not read it back from
    /// a reconnecting client's `Last-Event-ID`, and the client would silently start
    /// over. An empty id is allowed: it clears the client's last event id.
    ///
    /// ```
    /// use tower_sse::{Event, EventError, LastEventId};
    ///
    /// let event = Event::builder().id("17").data("x").build()?;
    /// assert!(Event::builder().id("1\r").build().is_err());
    /// assert!(Event::builder().id("1\0").build().is_err());
    /// let long = "7".repeat(LastEventId::MAX_LEN + 1);
    /// assert!(matches!(Event::builder().id(&long).build(), Err(EventError::IdTooLong)));
    /// # Ok::<(), tower_sse::EventError>(())
    /// ```
    pub fn id(mut self, id: &str) -> Self {
        if memchr::memchr3(b'\r', b'\n', 0, id.as_bytes()).is_some() {
            self.fail(EventError::InvalidId);
        } else if id.len() > crate::LastEventId::MAX_LEN {
            self.fail(EventError::IdTooLong);
        } else {
            write_field(&mut self.buf, b"id", id);
        }
        self
    }

    /// Adds data: one `data:` line for each line of `data`.
    ///
    /// CRLF, LF and a lone CR each end exactly one line; an empty string still writes one
    /// `data:` line, so the event fires with empty data.
    ///
    /// ```
    /// let event = tower_sse::Event::builder().data("a\rb").build()?;
    /// assert_eq!(event.as_bytes().as_ref(), b"data: a\ndata: b\n\n");
    /// # Ok::<(), tower_sse::EventError>(())
    /// ```
    pub fn data(mut self, data: &str) -> Self {
        write_lines(&mut self.buf, b"data", data);
        self
    }

    /// Adds `value` serialized as JSON as the event's data.
    ///
    /// The JSON is written straight into the frame. Compact JSON has no line breaks; if a
    /// raw value brings some, they are split like any other data.
    ///
    /// ```
    /// #[derive(serde::Serialize)]
    /// struct Position { lat: f64, lon: f64 }
    ///
    /// let event = tower_sse::Event::builder()
    ///     .event("position")
    ///     .json_data(&Position { lat: 13.69, lon: 100.75 })
    ///     .build()?;
    /// # Ok::<(), tower_sse::EventError>(())
    /// ```
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn json_data<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Self {
        let start = self.buf.len();
        self.buf.extend_from_slice(b"data: ");
        let json_start = self.buf.len();
        match serde_json::to_writer(&mut self.buf, value) {
            Ok(()) => {
                let json = &self.buf[json_start..];
                if memchr::memchr2(b'\r', b'\n', json).is_some() {
                    // Only a raw value can bring line breaks; split them like any data.
                    let text = String::from_utf8_lossy(json).into_owned();
                    self.buf.truncate(start);
                    write_lines(&mut self.buf, b"data", &text);
                } else {
                    self.buf.push(b'\n');
                }
            }
            Err(err) => {
                self.buf.truncate(start);
                self.fail(EventError::Json(err));
            }
        }
        self
    }

    /// Sets the client's reconnection time (the `retry:` field), written in milliseconds.
    ///
    /// ```
    /// use std::time::Duration;
    /// let event = tower_sse::Event::builder().retry(Duration::from_millis(1500)).build()?;
    /// assert_eq!(event.as_bytes().as_ref(), b"retry: 1500\n\n");
    /// # Ok::<(), tower_sse::EventError>(())
    /// ```
    pub fn retry(mut self, retry: Duration) -> Self {
        write_retry(&mut self.buf, retry);
        self
    }

    /// Adds a comment, which clients ignore; a comment with line breaks becomes several
    /// comment lines.
    ///
    /// ```
    /// let event = tower_sse::Event::builder().comment("a\nb").data("x").build()?;
    /// assert_eq!(event.as_bytes().as_ref(), b": a\n: b\ndata: x\n\n");
    /// # Ok::<(), tower_sse::EventError>(())
    /// ```
    pub fn comment(mut self, text: &str) -> Self {
        write_lines(&mut self.buf, b"", text);
        self
    }

    /// Finishes the event, or returns the first field that was refused.
    ///
    /// ```
    /// let event = tower_sse::Event::builder().data("x").build()?;
    /// # Ok::<(), tower_sse::EventError>(())
    /// ```
    pub fn build(mut self) -> Result<Event, EventError> {
        let result = match self.error.take() {
            Some(error) => Err(error),
            None => {
                self.buf.push(b'\n');
                let frame = if self.buf.len() > HAND_OVER {
                    // A large frame keeps the buffer it was written into: no second copy.
                    Bytes::from(std::mem::take(&mut self.buf))
                } else {
                    Bytes::copy_from_slice(&self.buf)
                };
                Ok(Event::from_frame(frame))
            }
        };
        if self.buf.capacity() <= MAX_SCRATCH {
            SCRATCH.with(|scratch| scratch.set(std::mem::take(&mut self.buf)));
        }
        result
    }

    fn fail(&mut self, error: EventError) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(event: &Event) -> &[u8] {
        event.as_bytes().as_ref()
    }

    #[test]
    fn crlf_lf_and_lone_cr_each_end_one_line() {
        let event = Event::data("a\r\nb\nc\rd");
        assert_eq!(frame(&event), b"data: a\ndata: b\ndata: c\ndata: d\n\n");
    }

    #[test]
    fn line_breaks_at_the_edges_give_empty_data_lines() {
        assert_eq!(frame(&Event::data("\n")), b"data:\ndata:\n\n");
        assert_eq!(frame(&Event::data("\r\n\r")), b"data:\ndata:\ndata:\n\n");
        assert_eq!(frame(&Event::data("x\r")), b"data: x\ndata:\n\n");
    }

    #[test]
    fn empty_data_still_writes_a_data_line() {
        assert_eq!(frame(&Event::data("")), b"data:\n\n");
        let built = Event::builder().event("e").data("").build().unwrap();
        assert_eq!(frame(&built), b"event: e\ndata:\n\n");
    }

    #[test]
    fn leading_space_in_a_value_survives_the_one_stripped_space() {
        assert_eq!(frame(&Event::data(" x")), b"data:  x\n\n");
    }

    #[test]
    fn event_type_with_line_break_is_refused() {
        for bad in ["a\nb", "a\rb", "\r\n", "x\n"] {
            let err = Event::builder().event(bad).data("x").build().unwrap_err();
            assert!(matches!(err, EventError::InvalidEventType), "{bad:?}");
        }
    }

    #[test]
    fn id_with_line_break_or_nul_is_refused() {
        for bad in ["1\n", "1\r", "\0", "a\0b", "1\r\nevent: x"] {
            let err = Event::builder().id(bad).data("x").build().unwrap_err();
            assert!(matches!(err, EventError::InvalidId), "{bad:?}");
        }
    }

    #[test]
    fn an_id_longer_than_a_last_event_id_may_be_is_refused() {
        let longest = "9".repeat(crate::LastEventId::MAX_LEN);
        let event = Event::builder().id(&longest).data("x").build().unwrap();
        assert!(frame(&event).starts_with(format!("id: {longest}\n").as_bytes()));
        // Counted in bytes: 342 three-byte characters are 1,026 bytes.
        for long in ["9".repeat(crate::LastEventId::MAX_LEN + 1), "ก".repeat(342)] {
            let err = Event::builder().id(&long).data("x").build().unwrap_err();
            assert!(matches!(err, EventError::IdTooLong));
            assert_eq!(
                err.to_string(),
                "SSE event id is longer than 1024 bytes, the longest Last-Event-ID read back"
            );
        }
    }

    #[test]
    fn first_error_is_kept() {
        let err = Event::builder().event("\n").id("\n").build().unwrap_err();
        assert!(matches!(err, EventError::InvalidEventType));
    }

    #[test]
    fn empty_id_clears_and_empty_comment_is_a_bare_colon() {
        let event = Event::builder()
            .id("")
            .comment("")
            .data("x")
            .build()
            .unwrap();
        assert_eq!(frame(&event), b"id:\n:\ndata: x\n\n");
    }

    #[test]
    fn comment_lines_are_split() {
        assert_eq!(frame(&Event::comment("a\r\nb\rc")), b": a\n: b\n: c\n\n");
    }

    #[test]
    fn retry_is_written_in_milliseconds() {
        let event = Event::builder()
            .retry(Duration::from_micros(2_500_900))
            .build()
            .unwrap();
        assert_eq!(frame(&event), b"retry: 2500\n\n");
    }

    #[test]
    fn fields_keep_the_order_they_were_set() {
        let event = Event::builder()
            .id("7")
            .event("t")
            .data("d")
            .comment("c")
            .build()
            .unwrap();
        assert_eq!(frame(&event), b"id: 7\nevent: t\ndata: d\n: c\n\n");
    }

    #[test]
    fn non_ascii_values_are_written_as_utf8() {
        let event = Event::builder()
            .event("เครื่องบิน")
            .id("✈️42")
            .data("สวัสดี")
            .build()
            .unwrap();
        assert_eq!(
            frame(&event),
            "event: เครื่องบิน\nid: ✈️42\ndata: สวัสดี\n\n".as_bytes()
        );
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_is_written_in_place_and_raw_line_breaks_are_split() {
        let event = Event::json(&serde_json::json!({"a": "x\ny"})).unwrap();
        assert_eq!(frame(&event), b"data: {\"a\":\"x\\ny\"}\n\n");

        let raw = serde_json::value::RawValue::from_string("{\n\"a\": 1}".into()).unwrap();
        let event = Event::json(&raw).unwrap();
        assert_eq!(frame(&event), b"data: {\ndata: \"a\": 1}\n\n");
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_errors_are_returned_not_written() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(vec![1u8], 1);
        let err = Event::builder().data("kept").json_data(&map).build();
        assert!(matches!(err, Err(EventError::Json(_))));
    }
}
