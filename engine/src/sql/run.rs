//! What a [`Session`] does for the statements that are more than a query: `CREATE TABLE
//! … AS` and `INSERT INTO` written through the commit protocol, the catalog kept in step
//! (definitions made elsewhere loaded, the ones made here recorded), and the results of
//! `SET`/`SHOW ember.…`.

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::sql::sqlparser::ast::{self};

use crate::error::{EmberError, Result, one_line};
use crate::result_stream::QueryResult;
use crate::sql::script::{ScriptStatement, script_position};

/// `error` as one line naming `statement` and its line (when `named`), with a parser's
/// positions moved to the script's lines.
pub(crate) fn in_statement(
    error: EmberError,
    statement: &ScriptStatement,
    named: bool,
) -> EmberError {
    if !named || matches!(error, EmberError::Statement { .. }) {
        return error;
    }
    let message = one_line(&script_position(&error.to_string(), statement.line));
    EmberError::Statement {
        number: statement.number,
        line: statement.line,
        message,
    }
}

impl QueryResult {
    /// No rows, no columns: what a statement that changes something returns.
    pub fn empty() -> Self {
        Self {
            schema: Arc::new(Schema::empty()),
            batches: Vec::new(),
            metrics: None,
        }
    }

    /// `(name, value)` rows of settings.
    pub(crate) fn settings(rows: Vec<(String, String)>) -> Result<Self> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("value", DataType::Utf8, false),
        ]));
        let (names, values): (Vec<String>, Vec<String>) = rows.into_iter().unzip();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(names)),
                Arc::new(StringArray::from(values)),
            ],
        )
        .map_err(datafusion::error::DataFusionError::from)?;
        Ok(Self {
            schema,
            batches: vec![batch],
            metrics: None,
        })
    }
}

/// A local path made absolute (a definition must mean the same from any folder); URLs
/// are kept.
pub(crate) fn absolute_location(location: &str) -> Result<String> {
    if location.contains("://") {
        return Ok(location.to_string());
    }
    let trailing = location.ends_with('/');
    let path = std::path::absolute(location).map_err(|e| EmberError::Config {
        key: "LOCATION".into(),
        message: format!("'{location}': {e}"),
    })?;
    let mut text = path.to_string_lossy().into_owned();
    if trailing && !text.ends_with('/') {
        text.push('/');
    }
    Ok(text)
}

/// `'text'` as a SQL string literal.
pub(crate) fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The name a catalog keys `name` by: its last part, lower case.
pub(crate) fn catalog_key(name: &ast::ObjectName) -> String {
    name.0
        .last()
        .map(|part| part.to_string())
        .unwrap_or_default()
        .trim_matches('"')
        .to_ascii_lowercase()
}
