//! `ember-bench dsl`: the DSL's user functions against the same jobs in SQL.
//!
//! Two workloads, each run in one invocation on DataFusion alone (SQL, one process, N
//! target partitions) and on Ember's embedded cluster (N executors) in several forms:
//!
//! - word count over generated text (the 20 most frequent words): Ember SQL, the columnar
//!   DSL, a batch function that splits lines into words, and typed rows (`flat_map` plus
//!   `reduce_by_key`);
//! - a sum per key over generated (key, value) pairs: Ember SQL and typed
//!   `reduce_by_key`.
//!
//! Every form's answer is checked against DataFusion's before its time counts.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{CsvReadOptions, SessionConfig, SessionContext, col, lit};
use ember::{EmberConfig, FunctionRegistry, Session, TypedFunctions};
use ember_examples::{WORD_SEPARATORS, word_count};

/// The word-count SQL, with words defined as the example defines them.
fn word_count_sql() -> String {
    format!(
        "SELECT word, count(*) AS n FROM (
            SELECT unnest(string_to_array(regexp_replace(lower(value), '{WORD_SEPARATORS}', ' ', 'g'), ' ', '')) AS word
            FROM text) AS words
        WHERE word IS NOT NULL GROUP BY word ORDER BY n DESC, word LIMIT 20"
    )
}

const SUM_SQL: &str = "SELECT key, sum(value) AS total FROM pairs GROUP BY key";

/// What to run.
#[derive(clap::Args)]
pub struct DslBench {
    /// Folder for the generated inputs.
    #[arg(long, default_value = "data/bench-dsl")]
    pub data: PathBuf,
    /// Megabytes of text for word count.
    #[arg(long, default_value_t = 200)]
    pub text_mb: usize,
    /// (key, value) rows for the sum per key.
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: usize,
    /// Distinct keys among them.
    #[arg(long, default_value_t = 100_000)]
    pub keys: usize,
    /// Ember executors, and DataFusion target partitions.
    #[arg(long, default_value_t = 2)]
    pub executors: usize,
    /// Runs per form; the fastest counts.
    #[arg(long, default_value_t = 3)]
    pub iterations: usize,
}

/// The top words as (word, count), in order.
type Top = Vec<(String, i64)>;

pub async fn run(bench: &DslBench) -> anyhow::Result<()> {
    let text_dir = bench.data.join(format!("text-{}mb", bench.text_mb));
    let pairs_dir = bench
        .data
        .join(format!("pairs-{}-{}", bench.rows, bench.keys));
    make_text(&text_dir, bench.text_mb)?;
    make_pairs(&pairs_dir, bench.rows, bench.keys)?;

    let partitions = bench.executors;
    let datafusion =
        SessionContext::new_with_config(SessionConfig::new().with_target_partitions(partitions));
    let text_schema = Schema::new(vec![Field::new("value", DataType::Utf8, true)]);
    let text_path = format!("{}/", text_dir.display());
    datafusion
        .register_csv("text", &text_path, text_options(&text_schema))
        .await?;
    let pairs_path = format!("{}/", pairs_dir.display());
    datafusion
        .register_parquet("pairs", &pairs_path, Default::default())
        .await?;

    let ember = Session::new(EmberConfig {
        executors: bench.executors,
        slots: 1,
        ..EmberConfig::default()
    })?;
    register_functions(ember.functions())?;
    ember
        .register_table(&format!("pairs={pairs_path}:parquet").parse()?)
        .await?;
    ember
        .context()
        .register_csv("text", &text_path, text_options(&text_schema))
        .await?;

    println!(
        "DSL functions against SQL: {} MB of text, {} (key, value) rows over {} keys; Ember with \
         {} executors, DataFusion with {partitions} target partitions; best of {}",
        bench.text_mb, bench.rows, bench.keys, bench.executors, bench.iterations
    );
    println!();
    println!("| job | form | time (ms) | / DataFusion SQL |");
    println!("|---|---|---:|---:|");

    // Word count.
    let word_count_sql = word_count_sql();
    let word_count_sql = word_count_sql.as_str();
    let (df_time, expected) = best(bench.iterations, || async {
        let batches = datafusion.sql(word_count_sql).await?.collect().await?;
        Ok(top_of(&batches))
    })
    .await?;
    row("word count", "DataFusion SQL", df_time, df_time);
    let text_glob = text_path.clone();
    let forms: Vec<(&str, Form<'_>)> = vec![
        (
            "Ember SQL",
            Box::new(|| {
                Box::pin(async {
                    let result = ember.sql(word_count_sql).await?;
                    Ok(top_of(&result.batches))
                })
            }),
        ),
        (
            "Ember columnar DSL",
            Box::new(|| {
                Box::pin(async {
                    let top = word_count(&ember, std::slice::from_ref(&text_glob), 20).await?;
                    Ok(top.into_iter().map(|(w, n)| (w, n as i64)).collect())
                })
            }),
        ),
        (
            "Ember batch function",
            Box::new(|| {
                Box::pin(async {
                    let result = ember
                        .read_text(&text_glob)
                        .await?
                        .map_batches("bench.split_words")?
                        .group_by(vec![col("word")])
                        .agg(vec![count(lit(1)).alias("n")])?
                        .sort(vec![
                            col("n").sort(false, true),
                            col("word").sort(true, true),
                        ])?
                        .limit(0, Some(20))?
                        .collect()
                        .await?;
                    Ok(top_of(&result.batches))
                })
            }),
        ),
        (
            "Ember typed rows",
            Box::new(|| {
                Box::pin(async {
                    let counts = ember
                        .read_text(&text_glob)
                        .await?
                        .typed::<(Option<String>,)>()
                        .flat_map::<(String, i64)>("bench.words")?
                        .reduce_by_key("bench.add")?
                        .collect_rows()
                        .await?;
                    let mut counts = counts;
                    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                    counts.truncate(20);
                    Ok(counts)
                })
            }),
        ),
    ];
    for (name, form) in forms {
        let (time, top) = best(bench.iterations, form).await?;
        if top != expected {
            bail!("word count, {name}: {top:?} differs from DataFusion's {expected:?}");
        }
        row("word count", name, time, df_time);
    }

    // Sum per key.
    let (df_time, expected) = best(bench.iterations, || async {
        let batches = datafusion.sql(SUM_SQL).await?.collect().await?;
        Ok(sums_of(&batches))
    })
    .await?;
    row("sum per key", "DataFusion SQL", df_time, df_time);
    let (time, sums) = best(bench.iterations, || async {
        Ok(sums_of(&ember.sql(SUM_SQL).await?.batches))
    })
    .await?;
    check_sums("Ember SQL", &sums, &expected)?;
    row("sum per key", "Ember SQL", time, df_time);
    let (time, sums) = best(bench.iterations, || async {
        let rows = ember
            .read_parquet(&pairs_path)
            .await?
            .typed::<(i64, i64)>()
            .reduce_by_key("bench.sum")?
            .collect_rows()
            .await?;
        Ok(rows.into_iter().collect::<HashMap<i64, i64>>())
    })
    .await?;
    check_sums("Ember typed reduce_by_key", &sums, &expected)?;
    row("sum per key", "Ember typed reduce_by_key", time, df_time);
    Ok(())
}

type Form<'a> = Box<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<Top>> + 'a>> + 'a,
>;

/// Text read as `Session::read_text` reads it: whole lines as one column.
fn text_options(schema: &Schema) -> CsvReadOptions<'_> {
    CsvReadOptions::new()
        .has_header(false)
        .delimiter(0x1f)
        .quote(0)
        .schema(schema)
        .file_extension(".txt")
}

fn row(job: &str, form: &str, time: Duration, datafusion: Duration) {
    println!(
        "| {job} | {form} | {:.1} | {:.2} |",
        ms(time),
        ms(time) / ms(datafusion)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `job` `iterations` times; the fastest time and the last answer.
async fn best<T, F, Fut>(iterations: usize, job: F) -> anyhow::Result<(Duration, T)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut fastest = Duration::MAX;
    let mut answer = None;
    for _ in 0..iterations.max(1) {
        let started = Instant::now();
        let value = job().await?;
        fastest = fastest.min(started.elapsed());
        answer = Some(value);
    }
    answer.map(|a| (fastest, a)).context("no iteration ran")
}

fn top_of(batches: &[RecordBatch]) -> Top {
    let mut top = Vec::new();
    for batch in batches {
        let words = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)
            .expect("words cast to Utf8");
        let words = words.as_string::<i32>();
        let counts = batch.column(1).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            top.push((words.value(i).to_string(), counts.value(i)));
        }
    }
    top
}

fn sums_of(batches: &[RecordBatch]) -> HashMap<i64, i64> {
    let mut sums = HashMap::new();
    for batch in batches {
        let keys = batch.column(0).as_primitive::<Int64Type>();
        let totals = batch.column(1).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            sums.insert(keys.value(i), totals.value(i));
        }
    }
    sums
}

fn check_sums(
    form: &str,
    ours: &HashMap<i64, i64>,
    expected: &HashMap<i64, i64>,
) -> anyhow::Result<()> {
    if ours != expected {
        bail!(
            "sum per key, {form}: {} keys differ from DataFusion's {}",
            ours.len(),
            expected.len()
        );
    }
    Ok(())
}

/// Lowercased runs of letters and digits.
fn words(line: &str) -> impl Iterator<Item = String> + '_ {
    line.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

fn register_functions(functions: &FunctionRegistry) -> anyhow::Result<()> {
    functions.register_flat_map_fn("bench.words", |(line,): (Option<String>,)| {
        line.map(|l| words(&l).map(|w| (w, 1_i64)).collect::<Vec<_>>())
            .unwrap_or_default()
    })?;
    functions.register_reducer::<String, i64>("bench.add", |a, b| a + b)?;
    functions.register_reducer::<i64, i64>("bench.sum", |a, b| a + b)?;
    let schema = Arc::new(Schema::new(vec![Field::new("word", DataType::Utf8, false)]));
    let out = Arc::clone(&schema);
    functions.register_batch_fn("bench.split_words", schema, move |batch| {
        let lines = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        let lines = lines.as_string::<i32>();
        let mut builder = StringBuilder::new();
        for line in lines.iter().flatten() {
            for word in words(line) {
                builder.append_value(word);
            }
        }
        Ok(RecordBatch::try_new(
            Arc::clone(&out),
            vec![Arc::new(builder.finish()) as Arc<dyn Array>],
        )?)
    });
    Ok(())
}

/// Writes `mb` megabytes of text in 4 files: lines of 5 to 15 words drawn with a skewed
/// (Zipf-like) popularity from a vocabulary of 50,000 words, with punctuation and case.
fn make_text(dir: &Path, mb: usize) -> anyhow::Result<()> {
    if dir.join("_done").exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let vocabulary: Vec<String> = (0..50_000u64)
        .map(|i| {
            let mut word = String::new();
            let mut n = i + 1;
            while n > 0 {
                word.push(char::from(b'a' + (n % 26) as u8));
                n /= 26;
            }
            if i % 7 == 0 {
                word = word.to_uppercase();
            }
            word
        })
        .collect();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let per_file = mb * 1024 * 1024 / 4;
    for file in 0..4 {
        let path = dir.join(format!("part-{file}.txt"));
        let mut out = BufWriter::new(File::create(&path)?);
        let mut written = 0;
        while written < per_file {
            let words = 5 + next() % 11;
            let mut line = String::new();
            for w in 0..words {
                // Squaring a uniform number skews towards the first words.
                let u = (next() % 1_000_000) as f64 / 1_000_000.0;
                let index = (u * u * u * vocabulary.len() as f64) as usize;
                if w > 0 {
                    line.push_str(if next() % 10 == 0 { ", " } else { " " });
                }
                line.push_str(&vocabulary[index.min(vocabulary.len() - 1)]);
            }
            line.push_str(".\n");
            written += line.len();
            out.write_all(line.as_bytes())?;
        }
        out.flush()?;
    }
    File::create(dir.join("_done"))?;
    Ok(())
}

/// Writes `rows` (key, value) pairs as 4 Parquet files; keys are uniform over `keys`.
fn make_pairs(dir: &Path, rows: usize, keys: usize) -> anyhow::Result<()> {
    if dir.join("_done").exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Int64, false),
        Field::new("value", DataType::Int64, false),
    ]));
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let per_file = rows.div_ceil(4);
    for file in 0..4 {
        let path = dir.join(format!("part-{file}.parquet"));
        let mut writer = ArrowWriter::try_new(File::create(&path)?, Arc::clone(&schema), None)?;
        let mut left = per_file.min(rows - file * per_file.min(rows));
        while left > 0 {
            let n = left.min(65_536);
            let mut k = Vec::with_capacity(n);
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                k.push((state % keys as u64) as i64);
                v.push((state >> 40) as i64 % 1000);
            }
            writer.write(&RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from(k)), Arc::new(Int64Array::from(v))],
            )?)?;
            left -= n;
        }
        writer.close()?;
    }
    File::create(dir.join("_done"))?;
    Ok(())
}
