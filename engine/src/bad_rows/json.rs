//! Newline-delimited JSON under the bad-row policies: the schema from the first lines'
//! values, and each line as the record of text values that the checks of CSV rows read.

use std::io::BufRead;

use serde_json::Value;

use super::kinds::{INFER_RECORDS, decide, vote};

/// The kind of a JSON value (`None` for null): strings stay text, as in DataFusion's JSON
/// reader, however they look.
fn kind(value: &Value) -> Option<&'static str> {
    match value {
        Value::Null => None,
        Value::Bool(_) => Some("Boolean"),
        Value::Number(n) if n.is_i64() => Some("Int64"),
        Value::Number(_) => Some("Float64"),
        Value::String(_) | Value::Array(_) | Value::Object(_) => Some("Utf8"),
    }
}

/// The columns of newline-delimited JSON read from `source`: every key of the first
/// [`INFER_RECORDS`] objects, in order of first appearance (each object's keys in name
/// order), each with the most specific type
/// that 90 % of its non-null values fit.
pub(crate) fn infer_schema(source: impl BufRead) -> Result<Vec<(String, String)>, String> {
    let mut names: Vec<String> = Vec::new();
    let mut votes: Vec<[usize; 5]> = Vec::new();
    let mut objects = 0;
    for line in source.lines() {
        let line = line.map_err(|e| e.to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        for (key, value) in &map {
            let at = match names.iter().position(|n| n == key) {
                Some(at) => at,
                None => {
                    names.push(key.clone());
                    votes.push([0; 5]);
                    names.len() - 1
                }
            };
            if let Some(seen) = kind(value) {
                vote(&mut votes[at], seen);
            }
        }
        objects += 1;
        if objects == INFER_RECORDS {
            break;
        }
    }
    if names.is_empty() {
        return Err("no JSON object with fields in its first lines".into());
    }
    Ok(names
        .into_iter()
        .zip(votes)
        .map(|(name, votes)| (name, decide(votes).to_string()))
        .collect())
}

/// The values of `columns` in the JSON object on `line`, as text (null and missing keys
/// empty, nested values as JSON text), or why the line is not such an object.
pub(super) fn record(line: &str, columns: &[String]) -> Result<Vec<String>, String> {
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(map)) => Ok(columns
            .iter()
            .map(|column| match map.get(column) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(text)) => text.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                Some(nested) => nested.to_string(),
            })
            .collect()),
        Ok(other) => Err(format!("not a JSON object but {}", kind_name(&other))),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_most_values_and_lines_become_records() {
        let mut text = String::new();
        for i in 0..50 {
            text.push_str(&format!(
                "{{\"id\": {i}, \"price\": {}.5, \"ok\": true, \"name\": \"n{i}\"}}\n",
                i
            ));
        }
        text.push_str("{\"id\": \"oops\", \"price\": 1}\n\nnot json\n");
        let columns = infer_schema(text.as_bytes()).expect("objects");
        // Keys come in the order of first appearance, each object's in name order.
        assert_eq!(
            columns,
            [
                ("id".to_string(), "Int64".to_string()),
                ("name".to_string(), "Utf8".to_string()),
                ("ok".to_string(), "Boolean".to_string()),
                ("price".to_string(), "Float64".to_string()),
            ]
        );
        let names: Vec<String> = columns.into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            record("{\"id\": 3, \"ok\": null, \"name\": [1]}", &names).expect("object"),
            ["3", "[1]", "", ""]
        );
        assert!(
            record("not json", &names)
                .expect_err("bad")
                .starts_with("invalid JSON")
        );
        assert!(
            record("[1, 2]", &names)
                .expect_err("array")
                .contains("an array")
        );
        assert!(infer_schema("[1]\n".as_bytes()).is_err());
    }
}
