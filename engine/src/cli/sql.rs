//! `ember sql` beyond one query: where the statements come from (a query, `-c`, `--file`,
//! standard input), running them in order in one session with each query's result
//! printed, `--timing`, and `--keep-going`. An error names where the statement came from,
//! its number and its line, on one line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use futures::StreamExt;

use crate::output::{OutputFormat, ResultWriter};
use crate::result_stream::ResultStream;
use crate::session::Session;
use crate::sql::script::{self, ScriptStatement};

/// A text of statements and where it came from.
pub(super) struct Source {
    /// `F.sql`, `stdin`, `-c 2`, or empty for the query on the command line.
    pub origin: String,
    /// The statements.
    pub sql: String,
}

/// Where `ember sql` reads its statements.
pub(super) enum Input {
    /// These texts, run in order.
    Script(Vec<Source>),
    /// The interactive shell (no statements given, and a terminal on standard input).
    Shell,
}

/// The statements from the command line's query, `-c`s or `--file`, or else standard
/// input, or else (on a terminal) the shell.
pub(super) fn input(
    query: Option<&str>,
    commands: &[String],
    file: Option<&PathBuf>,
) -> anyhow::Result<Input> {
    if let Some(query) = query {
        return Ok(Input::Script(vec![Source {
            origin: String::new(),
            sql: query.to_string(),
        }]));
    }
    if !commands.is_empty() {
        return Ok(Input::Script(
            commands
                .iter()
                .enumerate()
                .map(|(i, sql)| Source {
                    origin: if commands.len() == 1 {
                        "-c".into()
                    } else {
                        format!("-c #{}", i + 1)
                    },
                    sql: sql.clone(),
                })
                .collect(),
        ));
    }
    if let Some(file) = file {
        let sql = if file.as_os_str() == "-" {
            read_stdin()?
        } else {
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read SQL file {}", file.display()))?
        };
        return Ok(Input::Script(vec![Source {
            origin: file.display().to_string(),
            sql,
        }]));
    }
    if std::io::stdin().is_terminal() {
        return Ok(Input::Shell);
    }
    Ok(Input::Script(vec![Source {
        origin: "stdin".into(),
        sql: read_stdin()?,
    }]))
}

fn read_stdin() -> anyhow::Result<String> {
    std::io::read_to_string(std::io::stdin()).context("cannot read SQL from standard input")
}

/// How a script runs.
#[derive(Clone, Copy)]
pub(super) struct ScriptOptions {
    pub format: OutputFormat,
    pub timing: bool,
    pub keep_going: bool,
}

/// Runs every statement of `sources` in order, printing each result that has columns.
/// Stops at the first error unless `keep_going` (the exit status is non-zero either way).
pub(super) async fn run_script(
    session: &Session,
    sources: &[Source],
    options: ScriptOptions,
) -> anyhow::Result<()> {
    let statements: Vec<(&Source, ScriptStatement)> = sources
        .iter()
        .flat_map(|source| {
            script::split(&source.sql)
                .into_iter()
                .map(move |s| (source, s))
        })
        .collect();
    if statements.is_empty() {
        anyhow::bail!("no SQL statement given (a query, -c SQL, --file F.sql, or standard input)");
    }
    // A single query on the command line reports errors as it always did.
    let named = statements.len() > 1 || statements.iter().any(|(s, _)| !s.origin.is_empty());
    let mut failed = 0;
    let mut printed = 0;
    for (number, (source, mut statement)) in statements.into_iter().enumerate() {
        statement.number = number + 1;
        let started = Instant::now();
        let outcome = match session.execute_statement(&statement, named).await {
            Ok(rows) => print_result(rows, options.format, printed).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(rows) => {
                printed += usize::from(rows.is_some());
                if options.timing {
                    eprintln!(
                        "statement {}: {} row(s) in {:.3} s",
                        statement.number,
                        rows.unwrap_or(0),
                        started.elapsed().as_secs_f64()
                    );
                }
            }
            Err(e) => {
                let message = crate::sql::run::in_statement(e, &statement, named).to_string();
                let message = if source.origin.is_empty() {
                    message
                } else {
                    format!("{}: {message}", source.origin)
                };
                if !options.keep_going {
                    anyhow::bail!(message);
                }
                eprintln!("error: {}", crate::error::one_line(&message));
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} statement(s) failed");
    }
    Ok(())
}

/// Prints a statement's rows when it has columns (a `CREATE` has none); how many rows it
/// printed, `None` when it printed nothing. Results after the first are set apart by a
/// blank line.
pub(super) async fn print_result(
    mut result: ResultStream,
    format: OutputFormat,
    printed_before: usize,
) -> crate::Result<Option<usize>> {
    let schema = result.schema();
    if schema.fields().is_empty() {
        while let Some(batch) = result.next().await {
            batch?;
        }
        return Ok(None);
    }
    let mut stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
    if printed_before > 0 {
        use std::io::Write;
        writeln!(stdout).map_err(|source| crate::EmberError::Io {
            action: "writing",
            path: "standard output".into(),
            source,
        })?;
    }
    let mut writer = ResultWriter::new(&mut stdout, &schema, format);
    let mut rows = 0;
    while let Some(batch) = result.next().await {
        let written = batch.map_err(crate::EmberError::from).and_then(|batch| {
            rows += batch.num_rows();
            writer.write(&batch)
        });
        if let Err(e) = written {
            result.close().await;
            return Err(e);
        }
    }
    writer.finish()?;
    Ok(Some(rows))
}
