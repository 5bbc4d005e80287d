//! Ember's own statements, told apart from DataFusion's before anything is planned:
//! `SET ember.KEY = VALUE`, `SHOW ember.KEY` (or `SHOW ember` for all), and
//! `CREATE [OR REPLACE] TABLE [IF NOT EXISTS] NAME [STORED AS FORMAT] [LOCATION 'PATH']
//! AS QUERY`, which Ember writes through its commit protocol instead of into memory.
//! Everything else is DataFusion's. No I/O.

use datafusion::error::DataFusionError;
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{self, Expr, Value};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;
use ember_planner::WriteFormat;

/// One parsed statement.
#[derive(Debug)]
pub enum EmberStatement {
    /// `SET ember.KEY = VALUE`.
    SetEmber {
        /// `ember.output.mode`, ...
        key: String,
        /// The value, unquoted.
        value: String,
    },
    /// `SHOW ember.KEY`, or `SHOW ember` (every key).
    ShowEmber {
        /// `ember.output.mode`, or `ember`.
        key: String,
    },
    /// `CREATE TABLE ... AS SELECT`, written to a location.
    CreateTableAs(CreateTableAs),
    /// Anything DataFusion plans.
    DataFusion(Box<DFStatement>),
}

/// `CREATE [OR REPLACE] TABLE [IF NOT EXISTS] NAME [STORED AS F] [LOCATION 'P'] AS QUERY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTableAs {
    /// The table's name as written.
    pub name: String,
    /// The files' format (Parquet when not given).
    pub format: WriteFormat,
    /// `STORED AS DELTA`: a Delta table (of Parquet files).
    pub delta: bool,
    /// Where the files go; `None` for a folder named after the table in the warehouse.
    pub location: Option<String>,
    /// `OR REPLACE`: an existing table of that name is replaced (its files overwritten).
    pub or_replace: bool,
    /// `IF NOT EXISTS`: nothing happens when the table exists.
    pub if_not_exists: bool,
    /// The query's text, as parsed.
    pub query: String,
}

/// Parses one statement (the text holds exactly one).
pub fn parse(text: &str) -> Result<EmberStatement, DataFusionError> {
    if let Some(ctas) = parse_create_table_as(text).map_err(parser_error)? {
        return Ok(EmberStatement::CreateTableAs(ctas));
    }
    let mut statements = DFParser::parse_sql(text)?;
    let statement = match (statements.pop_front(), statements.is_empty()) {
        (Some(statement), true) => statement,
        (None, _) => return Err(DataFusionError::Plan("no statement".into())),
        (Some(_), false) => {
            return Err(DataFusionError::Plan(
                "more than one statement where one was expected".into(),
            ));
        }
    };
    if let DFStatement::Statement(inner) = &statement {
        match inner.as_ref() {
            ast::Statement::Set(ast::Set::SingleAssignment {
                variable, values, ..
            }) if is_ember(&variable.to_string()) => {
                let value = match values.as_slice() {
                    [Expr::Value(v)] => match &v.value {
                        Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                        other => other.to_string(),
                    },
                    [other] => other.to_string(),
                    _ => {
                        return Err(DataFusionError::Plan(format!(
                            "SET {variable} takes one value"
                        )));
                    }
                };
                return Ok(EmberStatement::SetEmber {
                    key: variable.to_string().to_ascii_lowercase(),
                    value,
                });
            }
            ast::Statement::ShowVariable { variable } => {
                let key = variable
                    .iter()
                    .map(|i| i.value.as_str())
                    .collect::<Vec<_>>()
                    .join(".");
                if is_ember(&key) {
                    return Ok(EmberStatement::ShowEmber {
                        key: key.to_ascii_lowercase(),
                    });
                }
            }
            ast::Statement::ShowTables { show_options, .. }
                if show_options.show_in.is_none()
                    && show_options.starts_with.is_none()
                    && show_options.limit.is_none()
                    && show_options.filter_position.is_none() =>
            {
                // DataFusion lists tables in hash order; a listing that changes from run
                // to run is no use in a script. The session's own tables come first.
                return parse(SHOW_TABLES);
            }
            _ => {}
        }
    }
    Ok(EmberStatement::DataFusion(Box::new(statement)))
}

/// What `SHOW TABLES` runs: the tables in a stable order, the session's before the
/// `information_schema` ones.
const SHOW_TABLES: &str = "SELECT table_catalog, table_schema, table_name, table_type \
     FROM information_schema.tables \
     ORDER BY table_schema = 'information_schema', table_catalog, table_schema, table_name";

fn is_ember(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    lower == "ember" || lower.starts_with("ember.")
}

fn parser_error(e: ParserError) -> DataFusionError {
    DataFusionError::SQL(Box::new(e), None)
}

/// `Some` when `text` is a `CREATE TABLE ... AS QUERY` without a column list.
fn parse_create_table_as(text: &str) -> Result<Option<CreateTableAs>, ParserError> {
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect).try_with_sql(text)?;
    if !parser.parse_keyword(Keyword::CREATE) {
        return Ok(None);
    }
    let or_replace = parser.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    if !parser.parse_keyword(Keyword::TABLE) {
        return Ok(None);
    }
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parser.parse_object_name(false)?;
    let (mut format, mut location, mut delta) = (None, None, false);
    loop {
        if parser.parse_keywords(&[Keyword::STORED, Keyword::AS]) {
            let word = parser.parse_identifier()?;
            if word.value.eq_ignore_ascii_case("delta") {
                delta = true;
                format = Some(WriteFormat::Parquet);
                continue;
            }
            format = Some(WriteFormat::from_extension(&word.value).ok_or_else(|| {
                ParserError::ParserError(format!(
                    "STORED AS {}: Ember writes PARQUET, CSV, JSON or DELTA",
                    word.value
                ))
            })?);
        } else if parser.parse_keyword(Keyword::LOCATION) {
            location = Some(parser.parse_literal_string()?);
        } else {
            break;
        }
    }
    if !parser.parse_keyword(Keyword::AS) {
        // A column list or other clauses: DataFusion's CREATE TABLE.
        return Ok(None);
    }
    let query = parser.parse_query()?;
    while parser.consume_token(&Token::SemiColon) {}
    let rest = parser.peek_token();
    if rest.token != Token::EOF {
        return Err(ParserError::ParserError(format!(
            "Expected: end of statement, found: {rest}"
        )));
    }
    Ok(Some(CreateTableAs {
        name: name.to_string(),
        format: format.unwrap_or(WriteFormat::Parquet),
        delta,
        location,
        or_replace,
        if_not_exists,
        query: query.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_show_of_ember_keys_are_ember_statements() {
        match parse("SET ember.output.mode = 'append'").expect("parses") {
            EmberStatement::SetEmber { key, value } => {
                assert_eq!(
                    (key.as_str(), value.as_str()),
                    ("ember.output.mode", "append")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse("SHOW ember.output.mode").expect("parses"),
            EmberStatement::ShowEmber { key } if key == "ember.output.mode"
        ));
        assert!(matches!(
            parse("SET datafusion.execution.batch_size = 10").expect("parses"),
            EmberStatement::DataFusion(_)
        ));
    }

    #[test]
    fn create_table_as_takes_format_and_location() {
        let got =
            parse("CREATE OR REPLACE TABLE t STORED AS csv LOCATION '/x/t/' AS SELECT 1 AS a")
                .expect("parses");
        let EmberStatement::CreateTableAs(ctas) = got else {
            panic!("{got:?}")
        };
        assert_eq!(ctas.name, "t");
        assert_eq!(ctas.format, WriteFormat::Csv);
        assert_eq!(ctas.location.as_deref(), Some("/x/t/"));
        assert!(ctas.or_replace && !ctas.if_not_exists);
        assert_eq!(ctas.query, "SELECT 1 AS a");
        let plain = parse("CREATE TABLE IF NOT EXISTS s AS SELECT 2").expect("parses");
        assert!(matches!(
            plain,
            EmberStatement::CreateTableAs(CreateTableAs {
                format: WriteFormat::Parquet,
                location: None,
                if_not_exists: true,
                ..
            })
        ));
    }

    #[test]
    fn other_create_statements_stay_datafusion_s() {
        for sql in [
            "CREATE TABLE t (a INT)",
            "CREATE VIEW v AS SELECT 1",
            "CREATE EXTERNAL TABLE e STORED AS CSV LOCATION 'x.csv'",
        ] {
            assert!(
                matches!(parse(sql).expect("parses"), EmberStatement::DataFusion(_)),
                "{sql}"
            );
        }
    }

    #[test]
    fn a_bad_format_or_trailing_text_is_an_error() {
        let EmberStatement::CreateTableAs(ctas) =
            parse("CREATE TABLE d STORED AS DELTA LOCATION '/x/d/' AS SELECT 1 AS a")
                .expect("parses")
        else {
            panic!("not a CREATE TABLE AS");
        };
        assert!(ctas.delta);
        assert_eq!(ctas.format, WriteFormat::Parquet);
        let e = parse("CREATE TABLE t STORED AS orc AS SELECT 1").expect_err("refused");
        assert!(e.to_string().contains("STORED AS orc"), "{e}");
        let e = parse("CREATE TABLE t AS SELECT 1 garbage here").expect_err("refused");
        assert!(e.to_string().contains("end of statement"), "{e}");
    }
}
