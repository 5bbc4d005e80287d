//! A SQL script cut into its statements: where each one starts (its number and line) and
//! whether a text typed so far ends a statement. Quotes and comments are honoured, so a
//! `;` inside `'a;b'`, `"x;y"`, `-- ;` or `/* ; */` does not end one. No I/O.

/// One statement of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptStatement {
    /// 1 for the script's first statement.
    pub number: usize,
    /// The line (from 1) of the statement's first word.
    pub line: usize,
    /// The statement's text, without the `;` that ends it.
    pub text: String,
}

/// Where the scanner is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Code,
    Single,
    Double,
    LineComment,
    BlockComment(usize),
}

/// The scan of a text: each `;` that ends a statement (byte offsets), the byte offset of
/// each statement's first word, and where the scan ended.
struct Scan {
    ends: Vec<usize>,
    state: State,
}

fn scan(sql: &str) -> Scan {
    let bytes = sql.as_bytes();
    let mut state = State::Code;
    let mut ends = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let (c, next) = (bytes[i], bytes.get(i + 1).copied());
        match state {
            State::Code => match (c, next) {
                (b'\'', _) => state = State::Single,
                (b'"', _) => state = State::Double,
                (b'-', Some(b'-')) => {
                    state = State::LineComment;
                    i += 1;
                }
                (b'/', Some(b'*')) => {
                    state = State::BlockComment(1);
                    i += 1;
                }
                (b';', _) => ends.push(i),
                _ => {}
            },
            // A doubled quote inside a string is the quote itself.
            State::Single if c == b'\'' => {
                if next == Some(b'\'') {
                    i += 1;
                } else {
                    state = State::Code;
                }
            }
            State::Double if c == b'"' => {
                if next == Some(b'"') {
                    i += 1;
                } else {
                    state = State::Code;
                }
            }
            State::LineComment if c == b'\n' => state = State::Code,
            State::BlockComment(depth) => match (c, next) {
                (b'*', Some(b'/')) => {
                    state = if depth == 1 {
                        State::Code
                    } else {
                        State::BlockComment(depth - 1)
                    };
                    i += 1;
                }
                (b'/', Some(b'*')) => {
                    state = State::BlockComment(depth + 1);
                    i += 1;
                }
                _ => {}
            },
            _ => {}
        }
        i += 1;
    }
    Scan { ends, state }
}

/// The byte offset of the first character of `text` that is neither blank nor inside a
/// comment; `None` when there is none.
fn first_word(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1).copied()) {
            (c, _) if c.is_ascii_whitespace() => i += 1,
            (b'-', Some(b'-')) => match text[i..].find('\n') {
                Some(n) => i += n + 1,
                None => return None,
            },
            (b'/', Some(b'*')) => {
                // Only the outer comment's end matters here: nested ones are rare at a
                // statement's start, and the scan above already placed the `;`.
                match text[i + 2..].find("*/") {
                    Some(n) => i += n + 4,
                    None => return None,
                }
            }
            _ => return Some(i),
        }
    }
    None
}

/// The statements of `sql`, in order; blank pieces (only spaces and comments) are left
/// out. A last statement without a `;` counts.
pub fn split(sql: &str) -> Vec<ScriptStatement> {
    let mut cuts = scan(sql).ends;
    cuts.push(sql.len());
    let mut statements = Vec::new();
    let mut start = 0;
    for end in cuts {
        let piece = &sql[start..end];
        if let Some(offset) = first_word(piece) {
            let begin = start + offset;
            statements.push(ScriptStatement {
                number: statements.len() + 1,
                line: sql[..begin].matches('\n').count() + 1,
                text: sql[begin..end].trim_end().to_string(),
            });
        }
        start = (end + 1).min(sql.len());
    }
    statements
}

/// Whether `sql` (what was typed so far) holds a statement and ends it with a `;`, with
/// nothing but blanks and comments after it: the shell runs it then, and asks for more
/// lines otherwise. A backslash command (`\d`) is complete on its own line.
pub fn is_complete(sql: &str) -> bool {
    let trimmed = sql.trim_start();
    if trimmed.starts_with('\\') {
        return true;
    }
    let scan = scan(sql);
    if !matches!(scan.state, State::Code | State::LineComment) {
        return false;
    }
    match scan.ends.last() {
        Some(&end) => first_word(&sql[end + 1..]).is_none() && !split(sql).is_empty(),
        None => false,
    }
}

/// `message` with each `Line: L, Column: C` that a parser reports within a statement
/// moved to the script's lines, the statement starting on `line`.
pub fn script_position(message: &str, line: usize) -> String {
    const MARK: &str = "Line: ";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at + MARK.len()]);
        rest = &rest[at + MARK.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(within) if within >= 1 => out.push_str(&(within + line - 1).to_string()),
            _ => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_numbered_with_the_line_of_their_first_word() {
        let sql = "-- a script\nSELECT 1;\n\n  /* two */ SELECT\n 2 ;;\nSELECT 3";
        let got = split(sql);
        assert_eq!(
            got,
            vec![
                ScriptStatement {
                    number: 1,
                    line: 2,
                    text: "SELECT 1".into()
                },
                ScriptStatement {
                    number: 2,
                    line: 4,
                    text: "SELECT\n 2".into()
                },
                ScriptStatement {
                    number: 3,
                    line: 6,
                    text: "SELECT 3".into()
                },
            ]
        );
    }

    #[test]
    fn semicolons_in_strings_identifiers_and_comments_do_not_end_a_statement() {
        let sql = "SELECT 'a;''b', \"c;d\" -- e;\n/* f; /* g; */ h; */ FROM t; SELECT 2";
        let got = split(sql);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].text.ends_with("FROM t"), "{got:?}");
        assert_eq!(got[1].text, "SELECT 2");
    }

    #[test]
    fn a_statement_is_complete_at_its_semicolon() {
        assert!(!is_complete("SELECT 1"));
        assert!(!is_complete("SELECT 'a;"));
        assert!(!is_complete("SELECT 1 /* ; */"));
        assert!(!is_complete(";"));
        assert!(!is_complete("SELECT 1; SELECT"));
        assert!(is_complete("SELECT\n1;"));
        assert!(is_complete("SELECT 1; -- done"));
        assert!(is_complete("\\d lineitem"));
    }

    #[test]
    fn parser_positions_move_to_the_script_lines() {
        assert_eq!(
            script_position("Expected: ), found: x at Line: 2, Column: 5", 10),
            "Expected: ), found: x at Line: 11, Column: 5"
        );
        assert_eq!(script_position("no position", 3), "no position");
    }
}
