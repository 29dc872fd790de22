//! How each Mooncake server reads the `key` out of a request target.
//!
//! - The wheel's server (aiohttp) decodes the query as a form (`+` is a space, `%XX` escapes,
//!   invalid UTF-8 becomes U+FFFD, malformed escapes stay as they are), takes the first `key`
//!   field and strips Python whitespace from both ends of it.
//! - `mooncake_master` (cinatra) takes the first `key` field as it is on the wire: no decoding,
//!   no stripping.
//!
//! Both servers percent-decode the path before routing (`/%6Detadata` is `/metadata`).

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// The first `key` of `query` as the wheel's server sees it (`""` when there is none).
pub fn decoded_key(query: &str) -> String {
    fields(query)
        .find(|(name, _)| unquote_plus(name) == "key")
        .map(|(_, value)| python_strip(&unquote_plus(value)).to_string())
        .unwrap_or_default()
}

/// The first `key` of `query` as `mooncake_master` sees it: the raw bytes (`""` when there is
/// none).
pub fn raw_key(query: &str) -> &str {
    fields(query).find(|(name, _)| *name == "key").map(|(_, value)| value).unwrap_or("")
}

/// The path with `%XX` escapes decoded, for routing.
pub fn decoded_path(path: &str) -> Cow<'_, str> {
    percent_decode_str(path).decode_utf8_lossy()
}

/// `name=value` fields of a query string, split at `&` (empty fields skipped) and at the first
/// `=` (a field without one has an empty value).
fn fields(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query.split('&').filter(|f| !f.is_empty()).map(|f| f.split_once('=').unwrap_or((f, "")))
}

/// Python's `urllib.parse.unquote_plus(s, errors="replace")`.
fn unquote_plus(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// Python's `str.strip()`: Unicode white space plus the separators U+001C..U+001F.
fn python_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_key_follows_aiohttp() {
        // Measured against the wheel's server (aiohttp 3.14 / yarl 1.25).
        let cases = [
            ("key=mooncake%2Fram%2Fnode%3A1", "mooncake/ram/node:1"),
            ("key=mooncake/ram/node:1", "mooncake/ram/node:1"),
            ("key=a+b", "a b"),
            ("key=a%2Bb", "a+b"),
            ("key=%20sp%20", "sp"),
            ("key=%09tab%0A", "tab"),
            ("key=%1Cfs", "fs"),
            ("key=%E3%80%80x", "x"),
            ("key=%zz", "%zz"),
            ("key=%25zz", "%zz"),
            ("key=a%", "a%"),
            ("key=%FF", "\u{fffd}"),
            ("key=%E2%82", "\u{fffd}"),
            ("key=%ED%A0%80", "\u{fffd}\u{fffd}\u{fffd}"),
            ("key=%C3%A9", "é"),
            ("key=k1&key=k2", "k1"),
            ("key=&key=k2", ""),
            ("foo=1&key=k1", "k1"),
            ("&key=x&", "x"),
            ("k%65y=v", "v"),
            ("key+=v", ""),
            ("KEY=v", ""),
            ("key==a", "=a"),
            ("key=a;b", "a;b"),
            ("key", ""),
            ("key=", ""),
            ("key=%20", ""),
            ("", ""),
        ];
        for (query, want) in cases {
            assert_eq!(decoded_key(query), want, "query {query:?}");
        }
    }

    #[test]
    fn raw_key_follows_cinatra() {
        let cases = [
            ("key=mooncake%2Fram%2Fnode%3A1", "mooncake%2Fram%2Fnode%3A1"),
            ("key=a+b", "a+b"),
            ("key=%20sp%20", "%20sp%20"),
            ("key=k1&key=k2", "k1"),
            ("key=&key=k2", ""),
            ("&key=x&", "x"),
            ("k%65y=v", ""),
            ("key==a", "=a"),
            ("key=a;b", "a;b"),
            ("key", ""),
            ("", ""),
        ];
        for (query, want) in cases {
            assert_eq!(raw_key(query), want, "query {query:?}");
        }
    }

    #[test]
    fn paths_are_decoded() {
        assert_eq!(decoded_path("/%6Detadata"), "/metadata");
        assert_eq!(decoded_path("/metadata"), "/metadata");
        assert_eq!(decoded_path("/metadata/"), "/metadata/");
    }
}
