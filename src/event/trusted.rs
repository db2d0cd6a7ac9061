//! Events the hub makes from bytes it vouches for, past the builder's checks: an id it
//! assigned, added to an encoded event, and a frame read back from its shared log.

use bytes::Bytes;

use super::Event;

impl Event {
    /// An event read back from storage as the bytes of its frame, if they are one
    /// complete frame as this crate writes them: UTF-8, no CR, one blank line, at the end.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn from_stored_frame(frame: Bytes) -> Option<Event> {
        let valid = std::str::from_utf8(&frame).is_ok()
            && frame.ends_with(b"\n\n")
            && !frame.starts_with(b"\n")
            && memchr::memchr(b'\r', &frame).is_none()
            && memchr::memmem::find(&frame[..frame.len() - 1], b"\n\n").is_none();
        valid.then(|| Event::from_frame(frame))
    }

    /// The same event with an `id:` line holding `id` added before its final blank line.
    ///
    /// Parsers keep the last `id:` of an event, so this id replaces any the event had.
    /// `id` must be known to hold no CR, LF or NUL (the hub passes numbers). One copy,
    /// made once per published event, never per subscriber.
    pub(crate) fn with_trusted_id(&self, id: &str) -> Event {
        debug_assert!(memchr::memchr3(b'\r', b'\n', 0, id.as_bytes()).is_none());
        let frame = self.as_bytes();
        let body = &frame[..frame.len() - 1];
        let mut buf = Vec::with_capacity(body.len() + id.len() + 6);
        buf.extend_from_slice(body);
        buf.extend_from_slice(b"id: ");
        buf.extend_from_slice(id.as_bytes());
        buf.extend_from_slice(b"\n\n");
        Event::from_frame(Bytes::from(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_id_is_added_before_the_blank_line() {
        let event = Event::builder().event("t").data("d").build().unwrap();
        assert_eq!(
            event.with_trusted_id("99").as_bytes().as_ref(),
            b"event: t\ndata: d\nid: 99\n\n"
        );
    }

    #[test]
    fn stored_frames_are_taken_only_whole_and_single() {
        let good = Event::builder().event("t").data("a\nb").build().unwrap();
        assert_eq!(
            Event::from_stored_frame(good.as_bytes().clone()),
            Some(good)
        );
        for bad in [
            &b"data: a\n"[..],
            b"data: a\n\ndata: b\n\n",
            b"data: a\r\n\n",
            b"\n\n",
            b"data: \xff\n\n",
        ] {
            assert_eq!(Event::from_stored_frame(Bytes::copy_from_slice(bad)), None);
        }
    }
}
