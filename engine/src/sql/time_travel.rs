//! `VERSION AS OF N` and `TIMESTAMP AS OF 'T'` after a table's name, as Spark and
//! Databricks write time travel on Delta tables. DataFusion's SQL parser has no such
//! clause, so [`pin_versions`] finds it in the statement's tokens (so that strings and
//! comments are never touched) and puts a name of its own in its place; the session
//! registers that name as the table at that version while it plans the statement.

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};
use ember_connectors::delta::DeltaVersion;

/// A table named with a version in a statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PinnedTable {
    /// The table's name as written (`t`, `s.t`), without quotes.
    pub name: String,
    /// The name that stands for it at `version` in the rewritten statement.
    pub alias: String,
    /// The version asked for.
    pub version: DeltaVersion,
}

/// `text` with every `NAME VERSION AS OF N` / `NAME TIMESTAMP AS OF 'T'` replaced by a
/// name of its own, and the tables so named; `None` when the text has no such clause.
pub(crate) fn pin_versions(
    text: &str,
) -> Result<Option<(String, Vec<PinnedTable>)>, DataFusionError> {
    if !text.to_ascii_uppercase().contains("AS OF") {
        return Ok(None);
    }
    let tokens = Tokenizer::new(&GenericDialect {}, text)
        .tokenize()
        .map_err(|e| DataFusionError::SQL(Box::new(e.into()), None))?;
    let significant =
        |from: usize| (from..tokens.len()).find(|&i| !matches!(tokens[i], Token::Whitespace(_)));
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut pinned = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let clause = match &tokens[i] {
            Token::Word(w) if matches!(w.keyword, Keyword::VERSION | Keyword::TIMESTAMP) => {
                w.keyword
            }
            _ => {
                out.push(tokens[i].clone());
                i += 1;
                continue;
            }
        };
        let as_at = significant(i + 1);
        let of_at = as_at.and_then(|a| significant(a + 1));
        let value_at = of_at.and_then(|o| significant(o + 1));
        let is = |at: Option<usize>, keyword: Keyword| {
            at.is_some_and(|a| matches!(&tokens[a], Token::Word(w) if w.keyword == keyword))
        };
        let (true, true, Some(value_at)) =
            (is(as_at, Keyword::AS), is(of_at, Keyword::OF), value_at)
        else {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        };
        let version = match (clause, &tokens[value_at]) {
            (Keyword::VERSION, Token::Number(n, _)) => {
                DeltaVersion::Version(n.parse::<u64>().map_err(|e| {
                    DataFusionError::Plan(format!("VERSION AS OF {n}: not a version number: {e}"))
                })?)
            }
            (Keyword::TIMESTAMP, Token::SingleQuotedString(t)) => {
                DeltaVersion::Timestamp(parse_time(t)?)
            }
            (keyword, other) => {
                return Err(DataFusionError::Plan(format!(
                    "{keyword:?} AS OF takes {}, not {other}",
                    if keyword == Keyword::VERSION {
                        "a version number"
                    } else {
                        "a quoted time ('2026-12-01 10:00:00' or RFC 3339)"
                    }
                )));
            }
        };
        // The table's name: the words (and dots) just before the clause.
        while matches!(out.last(), Some(Token::Whitespace(_))) {
            out.pop();
        }
        let mut parts = Vec::new();
        while let Some(Token::Word(w)) = out.last() {
            parts.push(w.value.clone());
            out.pop();
            if matches!(out.last(), Some(Token::Period)) {
                out.pop();
            } else {
                break;
            }
        }
        if parts.is_empty() {
            return Err(DataFusionError::Plan(format!(
                "{clause:?} AS OF must follow a table's name"
            )));
        }
        parts.reverse();
        let name = parts.join(".");
        let alias = format!("__ember_pinned_{}", pinned.len());
        out.push(Token::Word(Word {
            value: alias.clone(),
            quote_style: Some('"'),
            keyword: Keyword::NoKeyword,
        }));
        pinned.push(PinnedTable {
            name,
            alias,
            version,
        });
        i = value_at + 1;
    }
    if pinned.is_empty() {
        return Ok(None);
    }
    let text = out.iter().map(ToString::to_string).collect::<String>();
    Ok(Some((text, pinned)))
}

/// A time in RFC 3339 or as `YYYY-MM-DD[ HH:MM:SS]` (UTC).
fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, DataFusionError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc());
    }
    Err(DataFusionError::Plan(format!(
        "TIMESTAMP AS OF '{text}': not a time (RFC 3339, or 'YYYY-MM-DD HH:MM:SS' in UTC)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_versions_after_table_names() {
        let (text, pinned) = pin_versions(
            "SELECT * FROM s.t VERSION AS OF 3 JOIN u TIMESTAMP AS OF '2026-01-02' ON a = b",
        )
        .expect("parses")
        .expect("pinned");
        assert_eq!(pinned.len(), 2);
        assert_eq!(pinned[0].name, "s.t");
        assert_eq!(pinned[0].version, DeltaVersion::Version(3));
        assert_eq!(pinned[1].name, "u");
        assert!(matches!(pinned[1].version, DeltaVersion::Timestamp(_)));
        assert!(
            text.contains("FROM \"__ember_pinned_0\" JOIN \"__ember_pinned_1\" ON"),
            "{text}"
        );
    }

    #[test]
    fn leaves_strings_and_plain_text_alone() {
        assert_eq!(
            pin_versions("SELECT 'x VERSION AS OF 3' FROM t").expect("ok"),
            None
        );
        assert_eq!(pin_versions("SELECT 1").expect("ok"), None);
        let e = pin_versions("SELECT * FROM t VERSION AS OF 'x'").expect_err("bad");
        assert!(e.to_string().contains("version number"), "{e}");
        let e = pin_versions("SELECT * FROM t TIMESTAMP AS OF 'soon'").expect_err("bad");
        assert!(e.to_string().contains("not a time"), "{e}");
    }
}
