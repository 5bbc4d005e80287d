//! The options of a PostgreSQL table, as Spark's JDBC source names them: the table, and
//! for a partitioned read `partition_column`, `lower_bound`, `upper_bound` and
//! `num_partitions`; and the ranges they cut the column into.

use std::collections::HashMap;

use crate::error::{ConnectorError, Result};

/// How a PostgreSQL table is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// The table (`name` or `schema.name`).
    pub table: String,
    /// The column the read is cut by, with its bounds and the number of ranges.
    pub partitions: Option<Ranges>,
}

/// A partitioned read: `count` ranges of about equal width between `lower` and `upper`
/// (the bounds only set the widths: rows outside them go to the first and last range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranges {
    /// The column (an integer, date or timestamp column in practice).
    pub column: String,
    /// The lower bound.
    pub lower: i64,
    /// The upper bound.
    pub upper: i64,
    /// How many ranges (tasks).
    pub count: usize,
}

impl PostgresOptions {
    /// From table options (keys with or without a `format.` prefix).
    pub fn from_map(options: &HashMap<String, String>) -> Result<Self> {
        let get = |key: &str| {
            options
                .get(key)
                .or_else(|| options.get(&format!("format.{key}")))
                .map(|v| v.trim().to_string())
        };
        let table = get("table").ok_or_else(|| ConnectorError::Option {
            key: "table".into(),
            message: "a PostgreSQL table needs OPTIONS ('table' 'NAME')".into(),
        })?;
        let number = |key: &str| -> Result<Option<i64>> {
            get(key)
                .map(|v| {
                    v.parse::<i64>().map_err(|e| ConnectorError::Option {
                        key: key.into(),
                        message: format!("'{v}' is not a whole number: {e}"),
                    })
                })
                .transpose()
        };
        let partitions = match get("partition_column") {
            None => {
                if let Some(n) = number("num_partitions")?
                    && n > 1
                {
                    return Err(ConnectorError::Option {
                        key: "num_partitions".into(),
                        message: "needs partition_column, lower_bound and upper_bound".into(),
                    });
                }
                None
            }
            Some(column) => {
                let missing = |key: &str| ConnectorError::Option {
                    key: key.into(),
                    message: format!("partition_column {column} needs {key} too"),
                };
                let lower = number("lower_bound")?.ok_or_else(|| missing("lower_bound"))?;
                let upper = number("upper_bound")?.ok_or_else(|| missing("upper_bound"))?;
                let count = number("num_partitions")?.ok_or_else(|| missing("num_partitions"))?;
                if count < 1 {
                    return Err(ConnectorError::Option {
                        key: "num_partitions".into(),
                        message: format!("must be at least 1, got {count}"),
                    });
                }
                if lower >= upper {
                    return Err(ConnectorError::Option {
                        key: "lower_bound".into(),
                        message: format!("{lower} is not below upper_bound {upper}"),
                    });
                }
                Some(Ranges {
                    column,
                    lower,
                    upper,
                    count: usize::try_from(count).unwrap_or(1),
                })
            }
        };
        Ok(Self { table, partitions })
    }

    /// Options from the query part of a `postgres://...?table=T&partition_column=C...`
    /// URL, and the URL without them.
    pub fn from_url(url: &str) -> Result<(String, Self)> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut ours = HashMap::new();
        let mut theirs = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "table" | "partition_column" | "lower_bound" | "upper_bound" | "num_partitions" => {
                    ours.insert(key.to_string(), value.to_string());
                }
                _ => theirs.push(pair),
            }
        }
        let base = if theirs.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", theirs.join("&"))
        };
        Ok((base, Self::from_map(&ours)?))
    }
}

impl Ranges {
    /// The `WHERE` conditions of the ranges, one per task, as Spark's JDBC source cuts
    /// them: the first also takes the rows below `lower` and the NULLs, the last the
    /// rows from its start up.
    pub fn conditions(&self, quoted_column: &str) -> Vec<String> {
        let width =
            u64::try_from(i128::from(self.upper) - i128::from(self.lower)).unwrap_or(u64::MAX);
        let count = u64::try_from(self.count).unwrap_or(1).min(width.max(1));
        let stride = i128::from(width / count);
        let bound = |i: u64| i128::from(self.lower) + stride * i128::from(i);
        (0..count)
            .map(|i| {
                let (from, to) = (bound(i), bound(i + 1));
                match (i == 0, i + 1 == count) {
                    (true, true) => "TRUE".to_string(),
                    (true, false) => format!("{quoted_column} < {to} OR {quoted_column} IS NULL"),
                    (false, true) => format!("{quoted_column} >= {from}"),
                    (false, false) => {
                        format!("{quoted_column} >= {from} AND {quoted_column} < {to}")
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_every_value_once() {
        let ranges = Ranges {
            column: "k".into(),
            lower: 1,
            upper: 101,
            count: 4,
        };
        assert_eq!(
            ranges.conditions("\"k\""),
            vec![
                "\"k\" < 26 OR \"k\" IS NULL",
                "\"k\" >= 26 AND \"k\" < 51",
                "\"k\" >= 51 AND \"k\" < 76",
                "\"k\" >= 76",
            ]
        );
        let narrow = Ranges {
            column: "k".into(),
            lower: 0,
            upper: 2,
            count: 8,
        };
        assert_eq!(narrow.conditions("k").len(), 2);
    }

    #[test]
    fn options_name_what_is_missing() {
        let (base, options) = PostgresOptions::from_url(
            "postgres://u:p@h:1/db?table=orders&partition_column=o_orderkey&lower_bound=1&upper_bound=600&num_partitions=4&sslmode=disable",
        )
        .expect("valid");
        assert_eq!(base, "postgres://u:p@h:1/db?sslmode=disable");
        assert_eq!(options.table, "orders");
        assert_eq!(options.partitions.map(|r| r.count), Some(4));
        let e = PostgresOptions::from_url("postgres://h/db?table=t&partition_column=k")
            .expect_err("no bounds");
        assert!(e.to_string().contains("lower_bound"), "{e}");
        let e = PostgresOptions::from_url("postgres://h/db").expect_err("no table");
        assert!(e.to_string().contains("table"), "{e}");
    }
}
