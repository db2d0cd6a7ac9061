//! The values of one parameter of a request's query, as HTML forms encode them.

use std::borrow::Cow;

/// A query value that is not valid UTF-8 once percent-decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NotUtf8;

/// The values of the parameter `name` in `query` (percent-decoded, `+` as a space), in
/// order. A value whose bytes are not UTF-8 is an error; so is one holding U+FFFD, the
/// replacement character `form_urlencoded` puts where such bytes were.
pub(crate) fn values<'a>(
    query: &'a str,
    name: &'a str,
) -> impl Iterator<Item = Result<Cow<'a, str>, NotUtf8>> + 'a {
    form_urlencoded::parse(query.as_bytes())
        .filter(move |(key, _)| key == name)
        .map(|(_, value)| {
            if value.contains(char::REPLACEMENT_CHARACTER) {
                Err(NotUtf8)
            } else {
                Ok(value)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_decoded_in_order_and_bad_bytes_are_errors() {
        let query = "topic=a&x=1&topic=b+c%2Bd&topic=%E0%B8%81&topic=%FF&topic=";
        let found: Vec<_> = values(query, "topic").collect();
        assert_eq!(
            found,
            [
                Ok(Cow::from("a")),
                Ok(Cow::from("b c+d")),
                Ok(Cow::from("ก")),
                Err(NotUtf8),
                Ok(Cow::from("")),
            ]
        );
        assert_eq!(values("", "topic").count(), 0);
        assert_eq!(values("topics=a", "topic").count(), 0);
    }
}
