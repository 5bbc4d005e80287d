//! Escaping text for the two formats the stage graph is written in.

/// `text` as XML character data or an attribute value: markup characters as entities,
/// and characters that XML 1.0 forbids (most control characters) as U+FFFD.
pub fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `text` for the inside of a DOT double-quoted string: backslashes and quotes escaped,
/// so the only escape sequences in a label are the ones the writer adds (`\n`, `\l`).
pub(super) fn dot(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_markup_and_drops_forbidden_characters() {
        assert_eq!(
            xml(r#"a < b && c > "d" 'e'"#),
            "a &lt; b &amp;&amp; c &gt; &quot;d&quot; &apos;e&apos;"
        );
        assert_eq!(xml("x\u{1}y"), "x\u{FFFD}y");
    }

    #[test]
    fn dot_escapes_backslashes_and_quotes() {
        assert_eq!(dot(r#"a "b" \l"#), r#"a \"b\" \\l"#);
    }
}
