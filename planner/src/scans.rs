//! Balancing file scans across tasks.
//!
//! DataFusion splits a scan's files into one group per partition by byte ranges, and a
//! Parquet row group is read by the range it starts in. Files of one or two row groups
//! therefore split unevenly: four single-group files over two partitions give one task
//! three files and the other one. In one process DataFusion evens this out by letting
//! partitions steal each other's files; Ember runs each partition as its own task and
//! cannot. So where whole files divide evenly among the partitions, each task gets whole
//! files instead of ranges; otherwise DataFusion's ranges stay.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::ExecutionPlan;

use crate::error::Result;
use crate::rewrite::rewrite_up;

/// The largest group may hold this much more than an even share.
const TOLERANCE: f64 = 1.1;

/// `plan` with every unordered file scan whose files divide evenly into its partitions
/// regrouped into whole files.
pub(crate) fn balance_file_scans(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    Ok(rewrite_up(plan, &mut |node| {
        let Some(exec) = node.downcast_ref::<DataSourceExec>() else {
            return Ok(node);
        };
        let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>() else {
            return Ok(node);
        };
        if !config.output_ordering.is_empty()
            || config.preserve_order
            || config.output_partitioning.is_some()
        {
            return Ok(node);
        }
        let Some(groups) = whole_file_groups(&config.file_groups) else {
            return Ok(node);
        };
        let config = FileScanConfigBuilder::from(config.clone())
            .with_file_groups(groups)
            .build();
        let exec = exec.clone().with_data_source(Arc::new(config));
        Ok(Arc::new(exec) as Arc<dyn ExecutionPlan>)
    })?)
}

/// The files of `groups`, whole, in as many groups, when that spreads them evenly by size;
/// `None` when the scan already reads whole files or whole files cannot be spread evenly.
fn whole_file_groups(groups: &[FileGroup]) -> Option<Vec<FileGroup>> {
    let count = groups.len();
    if count < 2 {
        return None;
    }
    // Each file once, with the bytes its pieces cover: regrouping is only right when the
    // pieces of every file cover it exactly once.
    let mut files: Vec<PartitionedFile> = Vec::new();
    let mut covered: HashMap<String, (usize, u64)> = HashMap::new();
    let mut ranged = false;
    for file in groups.iter().flat_map(FileGroup::iter) {
        ranged |= file.range.is_some();
        let bytes = match &file.range {
            Some(range) => u64::try_from(range.end - range.start).unwrap_or(0),
            None => file.object_meta.size,
        };
        let path = file.object_meta.location.to_string();
        match covered.get_mut(&path) {
            Some((_, total)) => *total += bytes,
            None => {
                covered.insert(path, (files.len(), bytes));
                let mut whole = file.clone();
                whole.range = None;
                files.push(whole);
            }
        }
    }
    let exact = covered
        .values()
        .all(|&(index, bytes)| bytes == files[index].object_meta.size);
    if !ranged || !exact || files.len() < count {
        return None;
    }

    // Largest first, each to the lightest group; ties go to the lower group.
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(files[i].object_meta.size));
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); count];
    let mut sizes = vec![0u64; count];
    for i in order {
        let lightest = (0..count).min_by_key(|&g| (sizes[g], g)).unwrap_or(0);
        sizes[lightest] += files[i].object_meta.size;
        members[lightest].push(i);
    }
    let total: u64 = sizes.iter().sum();
    let largest = sizes.iter().copied().max().unwrap_or(0);
    if total == 0 || largest as f64 > TOLERANCE * total as f64 / count as f64 {
        return None;
    }
    Some(
        members
            .into_iter()
            .map(|mut indexes| {
                indexes.sort_unstable();
                FileGroup::new(indexes.into_iter().map(|i| files[i].clone()).collect())
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, size: u64, range: Option<(i64, i64)>) -> PartitionedFile {
        let mut file = PartitionedFile::new(name, size);
        if let Some((start, end)) = range {
            file = file.with_range(start, end);
        }
        file
    }

    fn names(groups: &[FileGroup]) -> Vec<Vec<String>> {
        groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|f| {
                        format!(
                            "{}{}",
                            f.object_meta.location,
                            if f.range.is_some() { "*" } else { "" }
                        )
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn four_equal_files_over_two_partitions_become_two_whole_files_each() {
        // DataFusion's split of four 100-byte files over two partitions.
        let two = vec![
            FileGroup::new(vec![
                file("a", 100, Some((0, 100))),
                file("b", 100, Some((0, 100))),
                file("c", 100, Some((0, 10))),
            ]),
            FileGroup::new(vec![
                file("c", 100, Some((10, 100))),
                file("d", 100, Some((0, 100))),
            ]),
        ];
        let balanced = whole_file_groups(&two).expect("balanced");
        assert_eq!(names(&balanced), vec![vec!["a", "c"], vec!["b", "d"]]);
        // Over three partitions whole files cannot be even: the ranges stay.
        let three = vec![
            FileGroup::new(vec![
                file("a", 100, Some((0, 100))),
                file("b", 100, Some((0, 34))),
            ]),
            FileGroup::new(vec![
                file("b", 100, Some((34, 100))),
                file("c", 100, Some((0, 68))),
            ]),
            FileGroup::new(vec![
                file("c", 100, Some((68, 100))),
                file("d", 100, Some((0, 100))),
            ]),
        ];
        assert!(whole_file_groups(&three).is_none());
    }

    #[test]
    fn uneven_files_keep_their_byte_ranges() {
        let groups = vec![
            FileGroup::new(vec![file("big", 300, Some((0, 200)))]),
            FileGroup::new(vec![
                file("big", 300, Some((200, 300))),
                file("small", 100, None),
            ]),
        ];
        assert!(
            whole_file_groups(&groups).is_none(),
            "300 + 100 cannot split evenly in two"
        );
    }

    #[test]
    fn scans_of_whole_files_or_one_partition_are_left_alone() {
        let whole = vec![
            FileGroup::new(vec![file("a", 100, None)]),
            FileGroup::new(vec![file("b", 100, None)]),
        ];
        assert!(whole_file_groups(&whole).is_none());
        let one = vec![FileGroup::new(vec![file("a", 100, Some((0, 100)))])];
        assert!(whole_file_groups(&one).is_none());
    }

    #[test]
    fn a_file_listed_twice_is_not_merged_into_one() {
        let groups = vec![
            FileGroup::new(vec![file("a", 100, Some((0, 100)))]),
            FileGroup::new(vec![file("a", 100, Some((0, 100)))]),
        ];
        assert!(whole_file_groups(&groups).is_none());
    }
}
