//! The parallel driver: splits generation into one task per output file
//! and runs the tasks on a bounded pool of scoped threads.

use std::any::Any;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};

use super::builders::{
    CustomerBatch, LineItemBatch, NationBatch, OrdersBatch, PartBatch, PartSuppBatch, RegionBatch,
    SupplierBatch,
};
use super::table::TpchTable;
use super::writer::write_part_file;
use crate::DatasetError;

/// One file to generate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Task {
    pub(crate) table: TpchTable,
    /// 0-based file index, the `<i>` of `part-<i>.parquet`.
    index: usize,
    /// 1-based part number as `tpchgen` takes it.
    part: i32,
    /// Number of parts the table is split into.
    part_count: i32,
}

/// Lists the files to generate, biggest tables first so the long tasks
/// start early.
pub(crate) fn plan_tasks(part_count: i32) -> Vec<Task> {
    let mut tasks = Vec::new();
    for table in TpchTable::ALL.into_iter().rev() {
        let count = if table.is_scaled() { part_count } else { 1 };
        for part in 1..=count {
            tasks.push(Task {
                table,
                // `part` is in 1..=i32::MAX, so this never truncates.
                index: (part - 1) as usize,
                part,
                part_count: count,
            });
        }
    }
    tasks
}

/// Runs `tasks` on a bounded pool of scoped threads and returns the rows
/// written per task, or the first error.
pub(crate) fn run_tasks(
    tasks: &[Task],
    scale_factor: f64,
    out_dir: &Path,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<u64>, DatasetError> {
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let workers = thread::available_parallelism()
        .map(NonZeroUsize::get)
        .unwrap_or(1)
        .clamp(1, tasks.len().max(1));

    let outcomes: Vec<Result<Vec<(usize, u64)>, DatasetError>> = thread::scope(|scope| {
        let shared = Shared {
            next: &next,
            finished: &finished,
            failed: &failed,
            progress,
        };
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            handles.push(scope.spawn(move || run_worker(tasks, scale_factor, out_dir, shared)));
        }
        handles
            .into_iter()
            .map(|handle| {
                handle.join().unwrap_or_else(|payload| {
                    Err(DatasetError::WorkerPanicked {
                        message: panic_message(payload),
                    })
                })
            })
            .collect()
    });

    let mut rows = vec![0; tasks.len()];
    for outcome in outcomes {
        for (index, count) in outcome? {
            rows[index] = count;
        }
    }
    Ok(rows)
}

/// What the workers share: the next task, the count of finished ones, the failure flag,
/// and where progress goes.
#[derive(Clone, Copy)]
struct Shared<'a> {
    next: &'a AtomicUsize,
    finished: &'a AtomicUsize,
    failed: &'a AtomicBool,
    progress: &'a (dyn Fn(usize, usize) + Sync),
}

/// Takes tasks off the shared counter until none are left or one failed.
fn run_worker(
    tasks: &[Task],
    scale_factor: f64,
    out_dir: &Path,
    shared: Shared<'_>,
) -> Result<Vec<(usize, u64)>, DatasetError> {
    let mut done = Vec::new();
    while !shared.failed.load(Ordering::Relaxed) {
        let index = shared.next.fetch_add(1, Ordering::Relaxed);
        let Some(task) = tasks.get(index) else {
            break;
        };
        match write_task(task, scale_factor, out_dir) {
            Ok(rows) => {
                done.push((index, rows));
                let finished = shared.finished.fetch_add(1, Ordering::Relaxed) + 1;
                (shared.progress)(finished, tasks.len());
            }
            Err(error) => {
                shared.failed.store(true, Ordering::Relaxed);
                return Err(error);
            }
        }
    }
    Ok(done)
}

/// Generates one file and returns its row count.
fn write_task(task: &Task, sf: f64, out_dir: &Path) -> Result<u64, DatasetError> {
    let Task {
        table,
        index,
        part,
        part_count: n,
    } = *task;
    let name = table.name();
    let dir = out_dir.join(name);
    match table {
        TpchTable::Region => write_part_file(
            name,
            RegionGenerator::new(sf, part, n),
            RegionBatch::new(),
            &dir,
            index,
        ),
        TpchTable::Nation => write_part_file(
            name,
            NationGenerator::new(sf, part, n),
            NationBatch::new(),
            &dir,
            index,
        ),
        TpchTable::Part => write_part_file(
            name,
            PartGenerator::new(sf, part, n),
            PartBatch::new(),
            &dir,
            index,
        ),
        TpchTable::Supplier => write_part_file(
            name,
            SupplierGenerator::new(sf, part, n),
            SupplierBatch::new(),
            &dir,
            index,
        ),
        TpchTable::PartSupp => write_part_file(
            name,
            PartSuppGenerator::new(sf, part, n),
            PartSuppBatch::new(),
            &dir,
            index,
        ),
        TpchTable::Customer => write_part_file(
            name,
            CustomerGenerator::new(sf, part, n),
            CustomerBatch::new(),
            &dir,
            index,
        ),
        TpchTable::Orders => write_part_file(
            name,
            OrderGenerator::new(sf, part, n),
            OrdersBatch::new(),
            &dir,
            index,
        ),
        TpchTable::LineItem => write_part_file(
            name,
            LineItemGenerator::new(sf, part, n),
            LineItemBatch::new(),
            &dir,
            index,
        ),
    }
}

/// The text of a panic payload, when it has one.
fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic payload is not a string".to_string()
    }
}
