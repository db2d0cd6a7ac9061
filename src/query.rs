//! The values of one parameter of a request's query, as HTML forms encode them.

use std::borrow::Cow;

/// A query value that is not valid UTF-8 once percent-decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NotUtf8;

/// The values of the parameter `name` in `query` (names and values percent-decoded,
/// `+` as a space), in order. A value whose bytes are not UTF-8 is an error.
pub(crate) fn values<'a>(
    query: &'a str,
    name: &'a str,
) -> impl Iterator<Item = Result<Cow<'a, str>, NotUtf8>> + 'a {
    // `form_urlencoded` splits pairs at `&` and skips empty ones, as this does: the raw
    // pair beside each decoded one.
    let raw = query.split('&').filter(|pair| !pair.is_empty());
    form_urlencoded::parse(query.as_bytes())
        .zip(raw)
        .filter(move |((key, _), _)| key == name)
        .map(|((_, value), raw)| {
            if !value.contains(char::REPLACEMENT_CHARACTER) {
                return Ok(value);
            }
            // `form_urlencoded` puts U+FFFD where bytes were not UTF-8: tell those from
            // a U+FFFD the client sent, by decoding the raw value strictly.
            let raw_value = raw.split_once('=').map_or("", |(_, value)| value);
            let spaced = raw_value.replace('+', " ");
            let bytes: Vec<u8> = percent_encoding::percent_decode_str(&spaced).collect();
            String::from_utf8(bytes)
                .map(Cow::Owned)
                .map_err(|_| NotUtf8)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_decoded_in_order_and_bad_bytes_are_errors() {
        let query = "topic=a&&x=1&topic=b+c%2Bd&topic=%E0%B8%81&topic=%FF&top%69c=&topic=%EF%BF%BD";
        let found: Vec<_> = values(query, "topic").collect();
        assert_eq!(
            found,
            [
                Ok(Cow::from("a")),
                Ok(Cow::from("b c+d")),
                Ok(Cow::from("ก")),
                Err(NotUtf8),
                Ok(Cow::from("")),
                Ok(Cow::from("\u{FFFD}")),
            ]
        );
        assert_eq!(values("", "topic").count(), 0);
        assert_eq!(values("topics=a", "topic").count(), 0);
    }
}
