//! The interactive shell of `ember sql` on a terminal: a line editor (rustyline) with
//! history in a file, statements over several lines ended by `;`, completion of SQL
//! keywords, table and column names, backslash commands (`\d`, `\d TABLE`, `\timing`,
//! `\q`, `\?`), and Ctrl-C that cancels the running job on the cluster, not the shell.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};

use super::sql::print_result;
use crate::output::OutputFormat;
use crate::session::Session;
use crate::sql::script::{self, ScriptStatement};
use crate::sync::lock;

/// Words the shell completes besides table and column names.
const KEYWORDS: &[&str] = &[
    "SELECT", "FROM", "WHERE", "GROUP", "BY", "ORDER", "HAVING", "LIMIT", "JOIN", "LEFT", "RIGHT",
    "INNER", "OUTER", "FULL", "ON", "AS", "AND", "OR", "NOT", "IN", "IS", "NULL", "DISTINCT",
    "COUNT", "SUM", "AVG", "MIN", "MAX", "CASE", "WHEN", "THEN", "ELSE", "END", "UNION", "ALL",
    "WITH", "CREATE", "EXTERNAL", "TABLE", "VIEW", "STORED", "LOCATION", "PARQUET", "CSV", "JSON",
    "INSERT", "INTO", "VALUES", "DROP", "SHOW", "TABLES", "COLUMNS", "DESCRIBE", "EXPLAIN", "SET",
    "COPY", "TO", "DESC", "ASC", "BETWEEN", "LIKE", "CAST",
];

/// Completes the word before the cursor from keywords and the session's names.
struct ShellHelper {
    /// Table and column names, refreshed before each prompt.
    names: Arc<Mutex<Vec<String>>>,
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |i| {
                i + before[i..].chars().next().map_or(1, char::len_utf8)
            });
        let word = &before[start..];
        if word.is_empty() {
            return Ok((start, Vec::new()));
        }
        let lower = word.to_ascii_lowercase();
        let names = lock(&self.names).clone();
        let mut candidates: Vec<Pair> = names
            .iter()
            .filter(|n| n.to_ascii_lowercase().starts_with(&lower))
            .map(|n| Pair {
                display: n.clone(),
                replacement: n.clone(),
            })
            .collect();
        // Keywords in the case the word was typed in.
        let upper = word.chars().next().is_some_and(char::is_uppercase);
        candidates.extend(
            KEYWORDS
                .iter()
                .filter(|k| k.to_ascii_lowercase().starts_with(&lower))
                .map(|k| {
                    let k = if upper {
                        k.to_string()
                    } else {
                        k.to_ascii_lowercase()
                    };
                    Pair {
                        display: k.clone(),
                        replacement: k,
                    }
                }),
        );
        candidates.dedup_by(|a, b| a.replacement == b.replacement);
        Ok((start, candidates))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(
        &'s self,
        prompt: &'p str,
        _default: bool,
    ) -> Cow<'b, str> {
        Cow::Borrowed(prompt)
    }
}

impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

/// The history file: `EMBER_HISTORY`, or `~/.ember_history`.
fn history_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("EMBER_HISTORY") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".ember_history"))
}

/// The session's table names and their columns.
async fn names(session: &Session) -> Vec<String> {
    let mut names = Vec::new();
    let ctx = session.context();
    for catalog_name in ctx.catalog_names() {
        let Some(catalog) = ctx.catalog(&catalog_name) else {
            continue;
        };
        for schema_name in catalog.schema_names() {
            if schema_name == "information_schema" {
                continue;
            }
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            for table in schema.table_names() {
                if let Ok(Some(provider)) = schema.table(&table).await {
                    names.extend(provider.schema().fields().iter().map(|f| f.name().clone()));
                }
                names.push(table);
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

const HELP: &str = "\
statements end with ';' and may span lines
  \\d          list tables and views
  \\d TABLE    a table's columns
  \\timing     print each statement's rows and time
  \\q          quit (or Ctrl-D)
  Ctrl-C      cancel the running statement (its job stops on the cluster)";

/// Runs the shell until `\q` or end of input.
pub(super) async fn run_shell(session: &Session, format: OutputFormat) -> anyhow::Result<()> {
    let names_cache = Arc::new(Mutex::new(Vec::new()));
    let mut editor: Editor<ShellHelper, FileHistory> = Editor::new()?;
    editor.set_helper(Some(ShellHelper {
        names: Arc::clone(&names_cache),
    }));
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    eprintln!("Ember SQL shell: statements end with ';', \\? for help, \\q to quit");
    let mut timing = false;
    let mut buffer = String::new();
    let mut number = 0;
    loop {
        if buffer.is_empty() {
            let _ = session.sync_catalog().await;
            *lock(&names_cache) = names(session).await;
        }
        let prompt = if buffer.is_empty() {
            "ember> "
        } else {
            "   ...> "
        };
        let line = tokio::task::block_in_place(|| editor.readline(prompt));
        match line {
            Ok(line) => {
                if !buffer.is_empty() {
                    buffer.push('\n');
                }
                buffer.push_str(&line);
            }
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
        if !script::is_complete(&buffer) {
            continue;
        }
        let text = std::mem::take(&mut buffer);
        let _ = editor.add_history_entry(text.trim());
        let trimmed = text.trim();
        if let Some(command) = trimmed.strip_prefix('\\') {
            let mut words = command.trim_end_matches(';').split_whitespace();
            let sql = match (words.next(), words.next()) {
                (Some("q"), _) => break,
                (Some("?"), _) => {
                    eprintln!("{HELP}");
                    continue;
                }
                (Some("timing"), _) => {
                    timing = !timing;
                    eprintln!("timing is {}", if timing { "on" } else { "off" });
                    continue;
                }
                (Some("d"), None) => {
                    "SELECT table_name, table_type FROM information_schema.tables \
                     WHERE table_schema <> 'information_schema' ORDER BY table_name"
                        .to_string()
                }
                (Some("d"), Some(table)) => format!("DESCRIBE {table}"),
                _ => {
                    eprintln!("error: unknown command \\{command} (\\? lists them)");
                    continue;
                }
            };
            run_one(session, &sql, 0, format, timing).await;
            continue;
        }
        for mut statement in script::split(&text) {
            number += 1;
            statement.number = number;
            if !run_one_statement(session, &statement, format, timing).await {
                break;
            }
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(())
}

async fn run_one(session: &Session, sql: &str, number: usize, format: OutputFormat, timing: bool) {
    let statement = ScriptStatement {
        number,
        line: 1,
        text: sql.to_string(),
    };
    run_one_statement(session, &statement, format, timing).await;
}

/// Runs one statement and prints its result, or its error; Ctrl-C drops it, which
/// cancels its job. Whether it succeeded.
async fn run_one_statement(
    session: &Session,
    statement: &ScriptStatement,
    format: OutputFormat,
    timing: bool,
) -> bool {
    let started = Instant::now();
    let run = async {
        let rows = session.execute(&statement.text).await?;
        print_result(rows, format, 0).await
    };
    tokio::select! {
        outcome = run => match outcome {
            Ok(rows) => {
                if timing {
                    eprintln!(
                        "{} row(s) in {:.3} s",
                        rows.unwrap_or(0),
                        started.elapsed().as_secs_f64()
                    );
                }
                true
            }
            Err(e) => {
                eprintln!("error: {}", crate::error::one_line(&e.to_string()));
                false
            }
        },
        _ = tokio::signal::ctrl_c() => {
            eprintln!("cancelled");
            false
        }
    }
}
