//! The example pipelines against the same computation in plain Rust.

use std::collections::HashMap;

use ember::{EmberConfig, Session};
use ember_examples::{distributed_sum, word_count};

/// The `limit` most frequent words of `texts` as `word_count` defines words.
fn plain_word_count(texts: &[String], limit: usize) -> Vec<(String, u64)> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for text in texts {
        for word in text
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            *counts.entry(word.to_string()).or_default() += 1;
        }
    }
    let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts.truncate(limit);
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn word_count_over_several_files_agrees_with_a_plain_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vocabulary = [
        "Ember",
        "spark",
        "SHUFFLE",
        "stage",
        "task",
        "émigré",
        "naïve",
        "x86",
        "42",
        "don't",
        "co-operate",
        "data_flow",
    ];
    let mut texts = Vec::new();
    let mut inputs = Vec::new();
    for file in 0..3u64 {
        let mut text = String::new();
        let mut state = 12345 + file;
        // About 1 MB per file, 3 MB in all.
        for line in 0..40_000u64 {
            let words = (line * 7 + file) % 9;
            for _ in 0..words {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let word = vocabulary[(state >> 33) as usize % vocabulary.len()];
                text.push_str(word);
                text.push_str(if state % 5 == 0 { ", " } else { " " });
            }
            text.push('\n');
        }
        let path = dir.path().join(format!("part-{file}.txt"));
        std::fs::write(&path, &text).expect("writes");
        texts.push(text);
        inputs.push(path.display().to_string());
    }
    let total: usize = texts.iter().map(String::len).sum();
    assert!(total > 2_500_000, "{total} bytes of text");
    let session = Session::local(2).expect("cluster");
    let expected = plain_word_count(&texts, 20);
    // Files one by one, and the folder as a whole.
    assert_eq!(
        word_count(&session, &inputs, 20).await.expect("runs"),
        expected
    );
    let folder = vec![dir.path().display().to_string()];
    assert_eq!(
        word_count(&session, &folder, 20).await.expect("runs"),
        expected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_sum_is_n_times_n_plus_one_over_two() {
    let session = Session::local(3).expect("cluster");
    for n in [1u64, 10, 1_000_003] {
        let expected = i128::from(n) * (i128::from(n) + 1) / 2;
        assert_eq!(distributed_sum(&session, n).await.expect("runs"), expected);
    }
    let err = distributed_sum(&session, 0).await.expect_err("zero");
    assert!(err.to_string().contains("--n"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_multiply_agrees_with_the_single_threaded_product() {
    let session = Session::new(EmberConfig {
        executors: 3,
        ..EmberConfig::default()
    })
    .expect("cluster");
    // A block size that does not divide N: the last blocks are 12 wide.
    let product = ember_examples::matrix_multiply(&session, 100, 22, 7)
        .await
        .expect("runs");
    assert_eq!(product.blocks, 25);
    let (norm, worst) = product.reference.expect("checked for N <= 512");
    assert!(
        (product.frobenius - norm).abs() < 1e-9 * norm,
        "{product:?}"
    );
    assert!(worst < 1e-9, "{product:?}");
    let other_seed = ember_examples::matrix_multiply(&session, 100, 22, 8)
        .await
        .expect("runs");
    assert!((other_seed.frobenius - product.frobenius).abs() > 1e-6);
}
