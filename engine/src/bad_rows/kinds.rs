//! Column types by vote, shared by the CSV and JSON readers of `bad_rows`: each sampled
//! value votes for every kind it fits, and a column takes the most specific kind that 90 %
//! of its values fit. A leaf: it depends on nothing else in the crate.

/// Records whose values decide the column types.
pub(super) const INFER_RECORDS: usize = 1000;

/// Whether a value of kind `seen` fits a column of kind `column`.
fn fits(seen: &str, column: &str) -> bool {
    seen == column || (seen == "Int64" && column == "Float64") || column == "Utf8"
}

/// The kinds a column may have, most specific first.
const KINDS: [&str; 5] = ["Int64", "Float64", "Date32", "Boolean", "Utf8"];

/// Counts a value of kind `seen` for every kind it fits.
pub(super) fn vote(votes: &mut [usize; 5], seen: &str) {
    for (k, kind) in KINDS.iter().enumerate() {
        if fits(seen, kind) {
            votes[k] += 1;
        }
    }
}

/// A column's kind from its votes. Text fits every value: its votes are the non-empty
/// values sampled. The column's type is the most specific one that 90 % of them fit, so a
/// few bad values (the rows this module is about) do not make a number column text.
pub(super) fn decide(votes: [usize; 5]) -> &'static str {
    let values = votes[4];
    KINDS
        .iter()
        .zip(votes)
        .find(|(_, v)| values > 0 && *v * 10 >= values * 9)
        .map_or("Utf8", |(k, _)| *k)
}
