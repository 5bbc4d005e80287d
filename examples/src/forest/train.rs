//! Growing a random forest level by level on the cluster, the way Spark MLlib does.
//!
//! The training rows are binned once (each feature a bin: a quantile bucket or a label
//! index) and cached on the executors. Then, for every level of every tree at once:
//!
//! ```text
//!  driver: the nodes to split (slots), their sampled features ─▶ broadcast `forest.level`
//!  cached rows ─▶ forest.level_stats: route each row down each tree (Poisson(1) weight per
//!                 tree), add its label to (slot, feature, bin) ─▶ one row per slot
//!              ─▶ shuffle by slot ─▶ forest.best_splits: sum the partitions' statistics,
//!                 pick each slot's best split ─▶ driver: grow the trees
//! ```
//!
//! A level whose statistics would not fit in [`PASS_MEMORY`] bytes per task is cut into
//! several passes. Regression splits minimize variance; classification splits minimize
//! Gini impurity. A categorical feature's labels are ordered by their mean label (for
//! classification, by their share of the node's most frequent class) and split like an
//! ordered feature.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{AsArray, Float64Array, ListArray, RecordBatch, StringArray, UInt32Array};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef, UInt32Type, UInt64Type};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::prelude::col;
use ember::planner::{FunctionOutput, FunctionRegistry, PartitionFn, UserFunction};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::fit::{mix, poisson_weight};
use super::transformers::{column, float_column};
use ember::Broadcast;
use ember::Dataset;
use ember::Session;
use ember::{EmberError, Result};

/// The function that sums label statistics per slot, feature and bin in a partition.
pub const LEVEL_STATS_FN: &str = "forest.level_stats";
/// The function that merges them per slot and picks the best splits.
pub const BEST_SPLITS_FN: &str = "forest.best_splits";
/// The broadcast variable holding the current [`LevelPlan`].
pub const LEVEL_BROADCAST: &str = "forest.level";
/// Bytes of statistics a task holds for one pass (MLlib's `maxMemoryInMB`, 256).
pub const PASS_MEMORY: usize = 256 << 20;

/// Regression or classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// A number per row; statistics are weight, sum and sum of squares.
    Regression,
    /// One of `classes` classes; statistics are the weight per class.
    Classification {
        /// Number of classes.
        classes: usize,
    },
}

impl Task {
    /// Numbers of statistics per bin.
    pub fn width(self) -> usize {
        match self {
            Self::Regression => 3,
            Self::Classification { classes } => classes.max(1),
        }
    }

    /// The weight of rows in `stats`.
    pub fn weight(self, stats: &[f64]) -> f64 {
        match self {
            Self::Regression => stats[0],
            Self::Classification { .. } => stats.iter().sum(),
        }
    }

    /// Variance (regression) or Gini impurity (classification) of `stats`.
    pub fn impurity(self, stats: &[f64]) -> f64 {
        let w = self.weight(stats);
        if w <= 0.0 {
            return 0.0;
        }
        match self {
            Self::Regression => {
                let mean = stats[1] / w;
                (stats[2] / w - mean * mean).max(0.0)
            }
            Self::Classification { .. } => {
                1.0 - stats.iter().map(|c| (c / w) * (c / w)).sum::<f64>()
            }
        }
    }
}

/// A split on bins, as the trees are grown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinSplit {
    /// Left when the feature's bin is at most `bin`.
    Numeric {
        /// Feature index.
        feature: u32,
        /// Last bin on the left.
        bin: u32,
    },
    /// Left when the feature's label index is in `left`.
    Categorical {
        /// Feature index.
        feature: u32,
        /// Label indices on the left, ascending.
        left: Vec<u32>,
    },
}

impl BinSplit {
    /// Whether a row with `bins` goes left.
    pub fn goes_left(&self, bins: &[f64]) -> bool {
        match self {
            Self::Numeric { feature, bin } => bins[*feature as usize] <= f64::from(*bin),
            Self::Categorical { feature, left } => {
                let b = bins[*feature as usize] as u32;
                left.binary_search(&b).is_ok()
            }
        }
    }
}

/// A node of a tree being grown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrowNode {
    /// Its split, once chosen.
    pub split: Option<BinSplit>,
    /// Left child (with a split).
    pub left: u32,
    /// Right child (with a split).
    pub right: u32,
    /// Depth (the root is 0).
    pub depth: u32,
    /// Label statistics of the rows that reach it (empty until known).
    pub stats: Vec<f64>,
}

/// A node to split in this pass, with the features it may split on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    /// Tree index.
    pub tree: u32,
    /// Node index in the tree.
    pub node: u32,
    /// Features sampled for it, ascending.
    pub features: Vec<u32>,
}

/// What the executors need for one pass.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LevelPlan {
    /// Every tree's splits so far (statistics left out).
    pub trees: Vec<Vec<RouteNode>>,
    /// The nodes to split.
    pub slots: Vec<Slot>,
    /// Bins per feature and whether it is categorical.
    pub features: Vec<(usize, bool)>,
    /// Regression or classification.
    pub task: Task,
    /// Seed of the bootstrap weights.
    pub seed: u64,
    /// Whether rows are weighted by Poisson(1) draws per tree.
    pub bootstrap: bool,
    /// Least weight on each side of a split.
    pub min_instances: f64,
    /// Least gain of a split.
    pub min_gain: f64,
}

/// The routing part of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteNode {
    /// Its split.
    pub split: Option<BinSplit>,
    /// Left child.
    pub left: u32,
    /// Right child.
    pub right: u32,
}

/// A [`LevelPlan`] with the lookups the executors compute once when they decode it.
#[derive(Debug)]
pub struct PreparedLevel {
    plan: LevelPlan,
    /// Per tree, per node: its slot (`u32::MAX` for none).
    slot_of: Vec<Vec<u32>>,
    /// Per slot: `(feature, offset)` of each sampled feature in the slot's statistics.
    layout: Vec<Vec<(usize, usize)>>,
    /// Per slot: where its statistics start, and the total.
    starts: Vec<usize>,
    total: usize,
}

impl<'de> Deserialize<'de> for PreparedLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(PreparedLevel::new(LevelPlan::deserialize(d)?))
    }
}

impl PreparedLevel {
    /// The lookups of `plan`.
    pub fn new(plan: LevelPlan) -> Self {
        let mut slot_of: Vec<Vec<u32>> = plan
            .trees
            .iter()
            .map(|nodes| vec![u32::MAX; nodes.len()])
            .collect();
        let width = plan.task.width();
        let mut layout = Vec::with_capacity(plan.slots.len());
        let mut starts = Vec::with_capacity(plan.slots.len());
        let mut total = 0;
        for (i, slot) in plan.slots.iter().enumerate() {
            if let Some(node) = slot_of
                .get_mut(slot.tree as usize)
                .and_then(|t| t.get_mut(slot.node as usize))
            {
                *node = i as u32;
            }
            starts.push(total);
            let mut features = Vec::with_capacity(slot.features.len());
            let mut offset = 0;
            for f in &slot.features {
                features.push((*f as usize, offset));
                offset += plan.features[*f as usize].0 * width;
            }
            total += offset;
            layout.push(features);
        }
        Self {
            plan,
            slot_of,
            layout,
            starts,
            total,
        }
    }

    /// Statistics of one slot.
    fn slot_len(&self, slot: usize) -> usize {
        let end = self.starts.get(slot + 1).copied().unwrap_or(self.total);
        end - self.starts[slot]
    }
}

/// Bytes of statistics a slot with `features` needs.
pub fn slot_bytes(features: &[u32], bins: &[(usize, bool)], task: Task) -> usize {
    features
        .iter()
        .map(|f| bins[*f as usize].0 * task.width() * 8)
        .sum()
}

/// The statistics of a partition, one row per slot at the end.
struct LevelStats {
    level: Arc<PreparedLevel>,
    stats: Vec<f64>,
    schema: SchemaRef,
}

impl PartitionFn for LevelStats {
    fn push(&mut self, batch: RecordBatch) -> DfResult<Option<RecordBatch>> {
        let level = Arc::clone(&self.level);
        let plan = &level.plan;
        if self.stats.is_empty() {
            self.stats = vec![0.0; level.total];
        }
        let bins_list = column(&batch, "bins")?.as_fixed_size_list();
        let width = bins_list.value_length() as usize;
        let bins = bins_list.values().as_primitive::<Float64Type>().values();
        let label = float_column(&batch, "label")?;
        let hashes = column(&batch, "row_hash")?.as_primitive::<UInt64Type>();
        let stat_width = plan.task.width();
        if width != plan.features.len() {
            return Err(DataFusionError::Execution(format!(
                "rows of {width} binned features, but the forest has {}",
                plan.features.len()
            )));
        }
        for row in 0..batch.num_rows() {
            let row_bins = &bins[row * width..(row + 1) * width];
            for (f, bin) in row_bins.iter().enumerate() {
                if !(0.0..plan.features[f].0 as f64).contains(bin) {
                    return Err(DataFusionError::Execution(format!(
                        "feature {f} has bin {bin}, outside 0..{}",
                        plan.features[f].0
                    )));
                }
            }
            let y = label.value(row);
            if let Task::Classification { classes } = plan.task
                && !(0.0..classes as f64).contains(&y)
            {
                return Err(DataFusionError::Execution(format!(
                    "a label of class {y}, outside 0..{classes}"
                )));
            }
            for (t, tree) in plan.trees.iter().enumerate() {
                let weight = if plan.bootstrap {
                    f64::from(poisson_weight(plan.seed, t as u64, hashes.value(row)))
                } else {
                    1.0
                };
                if weight == 0.0 {
                    continue;
                }
                let mut node = 0_usize;
                while let Some(split) = &tree[node].split {
                    node = if split.goes_left(row_bins) {
                        tree[node].left
                    } else {
                        tree[node].right
                    } as usize;
                }
                let slot = level.slot_of[t][node];
                if slot == u32::MAX {
                    continue;
                }
                let start = level.starts[slot as usize];
                for (f, offset) in &level.layout[slot as usize] {
                    let base = start + offset + row_bins[*f] as usize * stat_width;
                    match plan.task {
                        Task::Regression => {
                            self.stats[base] += weight;
                            self.stats[base + 1] += weight * y;
                            self.stats[base + 2] += weight * y * y;
                        }
                        Task::Classification { .. } => {
                            self.stats[base + y as usize] += weight;
                        }
                    }
                }
            }
        }
        Ok(None)
    }

    fn finish(&mut self) -> DfResult<Option<RecordBatch>> {
        if self.stats.is_empty() {
            return Ok(None);
        }
        let level = &self.level;
        let slots: Vec<u32> = (0..level.plan.slots.len() as u32).collect();
        let mut offsets = Vec::with_capacity(slots.len() + 1);
        offsets.push(0_i32);
        for slot in &slots {
            let end = level.starts[*slot as usize] + level.slot_len(*slot as usize);
            offsets.push(i32::try_from(end).map_err(|_| {
                DataFusionError::Execution("a pass with more than 2^31 statistics".into())
            })?);
        }
        let values = Float64Array::from(std::mem::take(&mut self.stats));
        let list = ListArray::try_new(
            Arc::new(Field::new("item", DataType::Float64, false)),
            OffsetBuffer::new(offsets.into()),
            Arc::new(values),
            None,
        )?;
        Ok(Some(RecordBatch::try_new(
            Arc::clone(&self.schema),
            vec![Arc::new(UInt32Array::from(slots)), Arc::new(list)],
        )?))
    }
}

/// The best split of one slot, and the statistics of the node and its would-be children.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitChoice {
    /// The slot.
    pub slot: u32,
    /// The split, when one gains more than the minimum.
    pub split: Option<BinSplit>,
    /// Its gain in impurity.
    pub gain: f64,
    /// Statistics of the node.
    pub node: Vec<f64>,
    /// Of the left child.
    pub left: Vec<f64>,
    /// Of the right child.
    pub right: Vec<f64>,
}

/// Statistics merged per slot; best splits picked at the end.
struct BestSplits {
    level: Arc<PreparedLevel>,
    merged: HashMap<u32, Vec<f64>>,
    schema: SchemaRef,
}

impl PartitionFn for BestSplits {
    fn push(&mut self, batch: RecordBatch) -> DfResult<Option<RecordBatch>> {
        let slots = batch.column(0).as_primitive::<UInt32Type>();
        let lists = batch.column(1).as_list::<i32>();
        for row in 0..batch.num_rows() {
            let values = lists.value(row);
            let values = values.as_primitive::<Float64Type>().values();
            match self.merged.get_mut(&slots.value(row)) {
                Some(sum) => {
                    for (s, v) in sum.iter_mut().zip(values.iter()) {
                        *s += v;
                    }
                }
                None => {
                    self.merged.insert(slots.value(row), values.to_vec());
                }
            }
        }
        Ok(None)
    }

    fn finish(&mut self) -> DfResult<Option<RecordBatch>> {
        let mut slots: Vec<u32> = self.merged.keys().copied().collect();
        slots.sort_unstable();
        let mut texts = Vec::with_capacity(slots.len());
        for slot in &slots {
            let choice = best_split(&self.level, *slot, &self.merged[slot]);
            texts.push(
                serde_json::to_string(&choice).map_err(|e| {
                    DataFusionError::Execution(format!("a split choice to JSON: {e}"))
                })?,
            );
        }
        Ok(Some(RecordBatch::try_new(
            Arc::clone(&self.schema),
            vec![
                Arc::new(UInt32Array::from(slots)),
                Arc::new(StringArray::from(texts)),
            ],
        )?))
    }
}

/// The best split of `slot` from its merged statistics.
fn best_split(level: &PreparedLevel, slot: u32, stats: &[f64]) -> SplitChoice {
    let plan = &level.plan;
    let task = plan.task;
    let width = task.width();
    let layout = &level.layout[slot as usize];
    let mut node = vec![0.0; width];
    if let Some((f, offset)) = layout.first() {
        for bin in 0..plan.features[*f].0 {
            let cell = &stats[offset + bin * width..offset + (bin + 1) * width];
            for (n, c) in node.iter_mut().zip(cell) {
                *n += c;
            }
        }
    }
    let total_weight = task.weight(&node);
    let parent = task.impurity(&node);
    let mut best = SplitChoice {
        slot,
        split: None,
        gain: plan.min_gain,
        node: node.clone(),
        left: Vec::new(),
        right: Vec::new(),
    };
    if total_weight <= 0.0 || parent <= 0.0 {
        return best;
    }
    for (f, offset) in layout {
        let (bins, categorical) = plan.features[*f];
        let cell = |b: usize| &stats[offset + b * width..offset + (b + 1) * width];
        // The order bins are swept in: ascending, or labels by their mean label.
        let order: Vec<usize> = if categorical {
            let mut present: Vec<(usize, f64)> = (0..bins)
                .filter(|b| task.weight(cell(*b)) > 0.0)
                .map(|b| {
                    let c = cell(b);
                    let key = match task {
                        Task::Regression => c[1] / c[0],
                        Task::Classification { .. } => {
                            let majority = node
                                .iter()
                                .enumerate()
                                .max_by(|a, b| a.1.total_cmp(b.1))
                                .map(|(i, _)| i)
                                .unwrap_or(0);
                            c[majority] / task.weight(c)
                        }
                    };
                    (b, key)
                })
                .collect();
            present.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            present.into_iter().map(|(b, _)| b).collect()
        } else {
            (0..bins).collect()
        };
        let mut left = vec![0.0; width];
        for (i, b) in order.iter().enumerate().take(order.len().saturating_sub(1)) {
            for (l, c) in left.iter_mut().zip(cell(*b)) {
                *l += c;
            }
            let right: Vec<f64> = node.iter().zip(&left).map(|(n, l)| n - l).collect();
            let (wl, wr) = (task.weight(&left), task.weight(&right));
            if wl < plan.min_instances || wr < plan.min_instances {
                continue;
            }
            let gain = parent
                - wl / total_weight * task.impurity(&left)
                - wr / total_weight * task.impurity(&right);
            if gain > best.gain {
                let split = if categorical {
                    let mut chosen: Vec<u32> = order[..=i].iter().map(|b| *b as u32).collect();
                    chosen.sort_unstable();
                    BinSplit::Categorical {
                        feature: *f as u32,
                        left: chosen,
                    }
                } else {
                    BinSplit::Numeric {
                        feature: *f as u32,
                        bin: *b as u32,
                    }
                };
                best.split = Some(split);
                best.gain = gain;
                best.left = left.clone();
                best.right = right;
            }
        }
    }
    best
}

fn level_of() -> DfResult<Arc<PreparedLevel>> {
    Broadcast::<PreparedLevel>::named(LEVEL_BROADCAST)
        .value()
        .map_err(|e| DataFusionError::Execution(e.to_string()))
}

/// Registers the training functions in `functions`.
pub fn register_train_functions(functions: &FunctionRegistry) {
    let stats_schema = Arc::new(Schema::new(vec![
        Field::new("slot", DataType::UInt32, false),
        Field::new(
            "stats",
            DataType::List(Arc::new(Field::new("item", DataType::Float64, false))),
            false,
        ),
    ]));
    let schema = Arc::clone(&stats_schema);
    functions.register(UserFunction::new(
        LEVEL_STATS_FN,
        FunctionOutput::Fixed(stats_schema),
        None,
        move |_| {
            Ok(Box::new(LevelStats {
                level: level_of()?,
                stats: Vec::new(),
                schema: Arc::clone(&schema),
            }) as Box<dyn PartitionFn>)
        },
    ));
    let choice_schema = Arc::new(Schema::new(vec![
        Field::new("slot", DataType::UInt32, false),
        Field::new("choice", DataType::Utf8, false),
    ]));
    let schema = Arc::clone(&choice_schema);
    functions.register(UserFunction::new(
        BEST_SPLITS_FN,
        FunctionOutput::Fixed(choice_schema),
        None,
        move |_| {
            Ok(Box::new(BestSplits {
                level: level_of()?,
                merged: HashMap::new(),
                schema: Arc::clone(&schema),
            }) as Box<dyn PartitionFn>)
        },
    ));
}

/// How many features each node may split on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FeatureSubset {
    /// Regression: all; classification: the square root (scikit-learn's defaults).
    Auto,
    /// Every feature.
    All,
    /// The square root of the number of features.
    Sqrt,
    /// Its base-2 logarithm.
    Log2,
    /// A third of them (MLlib's default for regression forests).
    OneThird,
    /// This share of them (0 to 1].
    Fraction(f64),
    /// This many.
    Count(usize),
}

impl std::str::FromStr for FeatureSubset {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "all" => Ok(Self::All),
            "sqrt" => Ok(Self::Sqrt),
            "log2" => Ok(Self::Log2),
            "onethird" => Ok(Self::OneThird),
            other => {
                if let Ok(n) = other.parse::<usize>()
                    && n >= 1
                {
                    return Ok(Self::Count(n));
                }
                match other.parse::<f64>() {
                    Ok(f) if f > 0.0 && f <= 1.0 => Ok(Self::Fraction(f)),
                    _ => Err(format!(
                        "expected auto, all, sqrt, log2, onethird, a fraction in (0, 1] or a \
                         count >= 1, not '{other}'"
                    )),
                }
            }
        }
    }
}

impl FeatureSubset {
    /// Features per node out of `n`.
    pub fn count(self, n: usize, task: Task) -> usize {
        let k = match self {
            Self::Auto => match task {
                Task::Regression => n,
                Task::Classification { .. } => (n as f64).sqrt().ceil() as usize,
            },
            Self::All => n,
            Self::Sqrt => (n as f64).sqrt().ceil() as usize,
            Self::Log2 => (n as f64).log2().ceil() as usize,
            Self::OneThird => (n as f64 / 3.0).ceil() as usize,
            Self::Fraction(f) => (n as f64 * f).ceil() as usize,
            Self::Count(c) => c,
        };
        k.clamp(1, n.max(1))
    }
}

/// How the forest is grown.
#[derive(Debug, Clone)]
pub struct GrowOptions {
    /// Trees.
    pub trees: usize,
    /// Deepest level (the root is 0).
    pub max_depth: usize,
    /// Seed of the bootstrap weights and the feature sampling.
    pub seed: u64,
    /// Features per node.
    pub feature_subset: FeatureSubset,
    /// Least weight on each side of a split.
    pub min_instances: f64,
    /// Least gain of a split.
    pub min_gain: f64,
    /// Whether each tree sees a Poisson(1) bootstrap sample (always with more than one
    /// tree).
    pub bootstrap: bool,
}

/// What growing reported.
#[derive(Debug, Clone, Default)]
pub struct GrowReport {
    /// Passes over the cached rows (jobs).
    pub passes: usize,
    /// Slots (node splits evaluated) in all passes.
    pub slots: usize,
}

/// The `features`' sample for `node` of `tree`: `k` of `n`, ascending, from a generator
/// seeded by the seed, the tree and the node.
fn sample_features(seed: u64, tree: u32, node: u32, n: usize, k: usize) -> Vec<u32> {
    let mut all: Vec<u32> = (0..n as u32).collect();
    if k < n {
        let mut rng =
            StdRng::seed_from_u64(mix(seed ^ mix((u64::from(tree) << 32) | u64::from(node))));
        for i in 0..k {
            let j = rng.random_range(i..n);
            all.swap(i, j);
        }
        all.truncate(k);
        all.sort_unstable();
    }
    all
}

/// Grows the forest on `rows` (cached binned rows: `bins`, `label`, `row_hash`).
pub async fn grow_forest(
    session: &Session,
    rows: &Dataset<'_>,
    features: &[(usize, bool)],
    task: Task,
    options: &GrowOptions,
) -> Result<(Vec<Vec<GrowNode>>, GrowReport)> {
    let mut trees: Vec<Vec<GrowNode>> = (0..options.trees)
        .map(|_| {
            vec![GrowNode {
                split: None,
                left: 0,
                right: 0,
                depth: 0,
                stats: Vec::new(),
            }]
        })
        .collect();
    let mut frontier: Vec<(u32, u32)> = (0..options.trees as u32).map(|t| (t, 0)).collect();
    let per_node = FeatureSubset::count(options.feature_subset, features.len(), task);
    let partitions = session.config().target_partitions();
    let mut report = GrowReport::default();
    while !frontier.is_empty() {
        let mut next = Vec::new();
        let mut queue = frontier.into_iter().peekable();
        while queue.peek().is_some() {
            // One pass: as many nodes as fit in the memory budget.
            let mut slots = Vec::new();
            let mut bytes = 0;
            while let Some((tree, node)) = queue.peek().copied() {
                let sampled = sample_features(options.seed, tree, node, features.len(), per_node);
                let size = slot_bytes(&sampled, features, task);
                if !slots.is_empty() && bytes + size > PASS_MEMORY {
                    break;
                }
                bytes += size;
                slots.push(Slot {
                    tree,
                    node,
                    features: sampled,
                });
                queue.next();
            }
            let plan = LevelPlan {
                trees: trees
                    .iter()
                    .map(|nodes| {
                        nodes
                            .iter()
                            .map(|n| RouteNode {
                                split: n.split.clone(),
                                left: n.left,
                                right: n.right,
                            })
                            .collect()
                    })
                    .collect(),
                slots: slots.clone(),
                features: features.to_vec(),
                task,
                seed: options.seed,
                bootstrap: options.bootstrap,
                min_instances: options.min_instances,
                min_gain: options.min_gain,
            };
            session.broadcast(LEVEL_BROADCAST, &plan)?;
            report.passes += 1;
            report.slots += slots.len();
            let tag = format!("pass {}", report.passes);
            let choices = rows
                .map_partitions(LEVEL_STATS_FN, &tag)?
                .repartition_by(vec![col("slot")], partitions)?
                .map_partitions(BEST_SPLITS_FN, &tag)?
                .collect()
                .await?;
            let mut parsed = Vec::with_capacity(slots.len());
            for batch in &choices.batches {
                let texts = batch.column(1).as_string::<i32>();
                for text in texts.iter().flatten() {
                    let choice: SplitChoice =
                        serde_json::from_str(text).map_err(|e| EmberError::Internal {
                            message: format!("a split choice: {e}"),
                        })?;
                    parsed.push(choice);
                }
            }
            // In slot order, whatever partition each came from: node numbers, and so the
            // features sampled for them, do not depend on the cluster's size.
            parsed.sort_by_key(|c| c.slot);
            for choice in parsed {
                let slot = &slots[choice.slot as usize];
                let (tree, node) = (slot.tree, slot.node);
                let nodes = &mut trees[tree as usize];
                grow(tree, nodes, node, choice, options, task, &mut next);
            }
        }
        frontier = next;
    }
    Ok((trees, report))
}

/// Applies `choice` to `node` of tree `tree_id`; its children that can still split go to
/// `next`.
fn grow(
    tree_id: u32,
    tree: &mut Vec<GrowNode>,
    node: u32,
    choice: SplitChoice,
    options: &GrowOptions,
    task: Task,
    next: &mut Vec<(u32, u32)>,
) {
    let index = node as usize;
    tree[index].stats = choice.node;
    let depth = tree[index].depth;
    let Some(split) = choice.split else {
        return;
    };
    if depth as usize >= options.max_depth {
        return;
    }
    let left = tree.len() as u32;
    for (i, stats) in [choice.left, choice.right].into_iter().enumerate() {
        let splittable = (depth as usize + 1) < options.max_depth
            && task.weight(&stats) >= 2.0 * options.min_instances
            && task.impurity(&stats) > 0.0;
        if splittable {
            next.push((tree_id, left + i as u32));
        }
        tree.push(GrowNode {
            split: None,
            left: 0,
            right: 0,
            depth: depth + 1,
            stats,
        });
    }
    tree[index].split = Some(split);
    tree[index].left = left;
    tree[index].right = left + 1;
}
