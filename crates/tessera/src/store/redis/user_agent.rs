//! User agents in a few bytes: the fragments every browser repeats, each
//! written as one control character.
//!
//! A desktop Chrome's 111-byte user agent becomes 7 bytes
//! (`\x01\x02\x03131\x04`). The coding is lossless for every string: a
//! control character of the input (which user agents do not carry, but a
//! client may send) is escaped with `\x00`, so codes and text never meet.
//! The output is valid UTF-8 (codes and escapes are ASCII), so the value
//! stays a MessagePack string the Lua scripts pass through untouched.

/// The fragments, coded as `\x01` for the first, `\x02` for the second and
/// so on (31 at most, the control characters after the escape).
///
/// Stored values refer to these by position: never change or reorder an
/// entry, only append (and an appended one is only understood by the
/// version that added it).
const FRAGMENTS: [&str; 31] = [
    "Mozilla/5.0 (",
    "Windows NT 10.0; Win64; x64",
    ") AppleWebKit/537.36 (KHTML, like Gecko) Chrome/",
    ".0.0.0 Safari/537.36",
    ".0.0.0 Mobile Safari/537.36",
    " Safari/537.36",
    "Macintosh; Intel Mac OS X 10_15_7",
    "Macintosh; Intel Mac OS X ",
    ") AppleWebKit/605.1.15 (KHTML, like Gecko)",
    " Version/",
    " Safari/605.1.15",
    "iPhone; CPU iPhone OS ",
    "iPad; CPU OS ",
    " like Mac OS X",
    " Mobile/15E148",
    " Safari/604.1",
    "Linux; Android ",
    "; K)",
    "X11; Linux x86_64",
    "; rv:",
    ") Gecko/20100101 Firefox/",
    " Edg/",
    ".0.0.0",
    " MicroMessenger/",
    "Mobile",
    "AppleWebKit/",
    " (KHTML, like Gecko)",
    "Windows NT ",
    "Chrome/",
    "Firefox/",
    "Safari/",
];

/// Marks the next character as itself, not a code.
const ESCAPE: char = '\0';

/// Characters with a meaning in coded text (the escape and the codes): an
/// input character among them is escaped.
fn reserved(c: char) -> bool {
    c < ' '
}

/// The longest fragment `text` starts with, and its code.
fn longest_fragment(text: &str) -> Option<(char, usize)> {
    FRAGMENTS
        .iter()
        .enumerate()
        .filter(|(_, f)| text.starts_with(*f))
        .max_by_key(|(_, f)| f.len())
        .map(|(i, f)| (char::from(i as u8 + 1), f.len()))
}

/// The coded form of a user agent.
pub(super) fn compress(user_agent: &str) -> String {
    let mut out = String::with_capacity(user_agent.len() / 4);
    let mut rest = user_agent;
    while let Some(c) = rest.chars().next() {
        if let Some((code, len)) = longest_fragment(rest) {
            out.push(code);
            rest = &rest[len..];
            continue;
        }
        if reserved(c) {
            out.push(ESCAPE);
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The user agent [`compress`] was given, or `None` if `coded` is not
/// something it wrote.
pub(super) fn expand(coded: &str) -> Option<String> {
    let mut out = String::with_capacity(coded.len() * 4);
    let mut chars = coded.chars();
    while let Some(c) = chars.next() {
        match c {
            ESCAPE => out.push(chars.next().filter(|&e| reserved(e))?),
            '\x01'..='\x1f' => out.push_str(FRAGMENTS[c as usize - 1]),
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

    #[test]
    fn a_desktop_chrome_takes_seven_bytes() {
        assert_eq!(compress(CHROME), "\x01\x02\x03131\x04");
        assert_eq!(expand(&compress(CHROME)).as_deref(), Some(CHROME));
    }

    #[test]
    fn common_browsers_shrink_to_a_fraction() {
        for ua in [
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        ] {
            let coded = compress(ua);
            assert!(coded.len() * 4 < ua.len(), "{ua}: {} bytes", coded.len());
            assert_eq!(expand(&coded).as_deref(), Some(ua));
        }
    }

    /// Strings built from fragments, codes, escapes, other control
    /// characters and multi-byte text, in every combination of three.
    #[test]
    fn any_string_round_trips() {
        let pieces = [
            "",
            "\0",
            "\x01",
            "\x04",
            "\x1f",
            "\x7f",
            "\n",
            "\0\x01",
            "网",
            "é",
            "Mozilla/5.0 (",
            "Mozilla/5.0",
            ".0.0",
            ".0.0.0",
            " Safari/537.36",
            "Chrome/",
            "x",
            FRAGMENTS[30],
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let ua = format!("{a}{b}{c}");
                    assert_eq!(expand(&compress(&ua)).as_deref(), Some(ua.as_str()), "{ua:?}");
                }
            }
        }
        for fragment in FRAGMENTS {
            assert_eq!(expand(&compress(fragment)).as_deref(), Some(fragment));
            assert_eq!(compress(fragment).len(), 1, "{fragment:?} is one code");
        }
    }

    #[test]
    fn what_compress_never_writes_is_refused() {
        assert_eq!(expand("\0"), None, "an escape at the end");
        assert_eq!(expand("\0a"), None, "an escaped character that needed none");
    }
}
