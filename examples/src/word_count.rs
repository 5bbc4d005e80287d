//! `ember run word-count INPUT...`: classic MapReduce word count over text files.
//!
//! Words are lowercased runs of letters and digits. Each task splits its lines into words
//! and counts them (the map side of the aggregate), the counts are shuffled by word and
//! summed, and the 20 most frequent words come back, most frequent first, ties by word.

use datafusion::functions::expr_fn::{lower, regexp_replace};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::functions_nested::expr_fn::string_to_array;
use datafusion::prelude::{col, lit};

use ember::Session;
use ember::{EmberError, Result};

/// What separates words: every run of characters that are not letters or digits.
pub const WORD_SEPARATORS: &str = r"[^\p{L}\p{N}]+";

/// The `limit` most frequent words of the text files `inputs` and their counts.
pub async fn word_count(
    session: &Session,
    inputs: &[String],
    limit: usize,
) -> Result<Vec<(String, u64)>> {
    let Some((first, rest)) = inputs.split_first() else {
        return Err(EmberError::Config {
            key: "word-count".into(),
            message: "give at least one INPUT file, folder or glob".into(),
        });
    };
    let mut lines = session.read_text(first).await?;
    for input in rest {
        lines = lines.union(&session.read_text(input).await?)?;
    }
    let separators = regexp_replace(
        lower(col("value")),
        lit(WORD_SEPARATORS),
        lit(" "),
        Some(lit("g")),
    );
    let counts = lines
        .select(vec![
            string_to_array(separators, lit(" "), lit("")).alias("word"),
        ])?
        .explode("word")?
        .filter(col("word").is_not_null())?
        .group_by(vec![col("word")])
        .agg(vec![count(lit(1)).alias("n")])?
        .sort(vec![
            col("n").sort(false, true),
            col("word").sort(true, true),
        ])?
        .limit(0, Some(limit))?;
    let result = counts.collect().await?;
    let mut top = Vec::with_capacity(limit);
    for batch in &result.batches {
        let words = batch.column(0);
        let words = arrow::compute::cast(words, &arrow::datatypes::DataType::Utf8)
            .map_err(datafusion::error::DataFusionError::from)?;
        let words = arrow::array::AsArray::as_string::<i32>(&words);
        let counts =
            arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(batch.column(1));
        for i in 0..batch.num_rows() {
            top.push((
                words.value(i).to_string(),
                u64::try_from(counts.value(i)).unwrap_or(0),
            ));
        }
    }
    Ok(top)
}
