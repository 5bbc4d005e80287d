//! Adaptive execution: how a stage's tasks are cut once the sizes of its inputs are known,
//! decided with no I/O when the stage starts (its inputs are all done).
//!
//! The stage plans stay as they were planned; what changes is what each task reads. A
//! task runs one partition of the plan (its `plan_partition`) and reads exactly the
//! shuffle pieces it is given, so the rules only choose pieces:
//!
//! | rule (setting)                               | tasks                                                    |
//! |----------------------------------------------|----------------------------------------------------------|
//! | coalescing (`ember.adaptive.coalesce`)       | one per run of adjacent small partitions, about `target_partition_bytes` each |
//! | skew splitting (`ember.adaptive.skew_join`)  | a partition of a splittable input larger than `skew_factor` x the median and than `skew_min_bytes` becomes one task per slice of that input's map outputs, each with the whole partition of the other inputs |
//! | broadcast switch (`ember.adaptive.broadcast`)| a partitioned join whose one side holds at most `broadcast_threshold` bytes: one task per map output of the other side, read where it lies, each with the whole small side (a broadcast hash join) |
//! | empty-side pruning (`ember.adaptive.prune_empty`) | a task that would read no row of an input that leaves its output empty (an inner join's side) does not run |
//!
//! What a stage allows comes from the planner ([`StageFacts`]); the sizes come from the
//! finished map tasks' shuffle pieces (rows and bytes per output partition).

use std::fmt;
use std::time::Duration;

use ember_planner::StageFacts;
use ember_proto::ids::StageId;

/// The adaptive rules and speculation settings a job runs with.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AdaptiveConfig {
    /// Merge adjacent small reduce partitions (`ember.adaptive.coalesce`).
    pub coalesce: bool,
    /// Turn partitioned joins with a small side into broadcast joins
    /// (`ember.adaptive.broadcast`).
    pub broadcast: bool,
    /// Split skewed join partitions (`ember.adaptive.skew_join`).
    pub skew_join: bool,
    /// Skip tasks whose output is empty because an input is (`ember.adaptive.prune_empty`).
    pub prune_empty: bool,
    /// A join side of at most this many bytes is broadcast.
    pub broadcast_threshold: u64,
    /// The size coalesced tasks aim at.
    pub target_partition_bytes: u64,
    /// Coalesced tasks are at least this large, even when that leaves fewer tasks than
    /// `parallelism`.
    pub min_partition_bytes: u64,
    /// Task slots of the cluster when the job was planned: coalescing keeps about this
    /// many tasks for an input smaller than `parallelism x target_partition_bytes`.
    pub parallelism: usize,
    /// A partition is skewed above this many times the median partition...
    pub skew_factor: f64,
    /// ...and above this many bytes.
    pub skew_min_bytes: u64,
    /// Speculative copies of slow tasks.
    pub speculation: Speculation,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            coalesce: true,
            broadcast: true,
            skew_join: true,
            prune_empty: true,
            broadcast_threshold: 10 << 20,
            target_partition_bytes: 64 << 20,
            min_partition_bytes: 1 << 20,
            parallelism: 1,
            skew_factor: 5.0,
            skew_min_bytes: 64 << 20,
            speculation: Speculation::default(),
        }
    }
}

impl AdaptiveConfig {
    /// Every rule and speculation off: tasks are cut as planned.
    pub fn off() -> Self {
        Self {
            coalesce: false,
            broadcast: false,
            skew_join: false,
            prune_empty: false,
            ..Self::default()
        }
    }
}

/// When a running task gets a speculative copy on another executor.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Speculation {
    /// Whether copies are launched (`ember.speculation.enabled`).
    pub enabled: bool,
    /// The share of a stage's tasks that must be done first (`ember.speculation.quantile`).
    pub quantile: f64,
    /// A task running longer than this many times the median of its finished siblings gets
    /// a copy (`ember.speculation.multiplier`).
    pub multiplier: f64,
    /// ...and longer than this (`ember.speculation.min_runtime`).
    #[serde(with = "crate::state::millis")]
    pub min_runtime: Duration,
    /// How often running tasks are looked at.
    #[serde(with = "crate::state::millis")]
    pub interval: Duration,
}

impl Default for Speculation {
    fn default() -> Self {
        Self {
            enabled: false,
            quantile: 0.75,
            multiplier: 1.5,
            min_runtime: Duration::from_millis(500),
            interval: Duration::from_millis(250),
        }
    }
}

/// The size of one shuffle piece of a finished map task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceSize {
    /// The map task that wrote it.
    pub map_partition: usize,
    /// The reduce partition it belongs to.
    pub output_partition: usize,
    /// Rows in it.
    pub rows: u64,
    /// Bytes in it.
    pub bytes: u64,
}

/// The finished output of one input stage.
#[derive(Debug, Clone, Default)]
pub struct InputSizes {
    /// The input stage.
    pub stage: StageId,
    /// Its number of map tasks.
    pub maps: usize,
    /// Its pieces.
    pub pieces: Vec<PieceSize>,
}

impl InputSizes {
    fn bytes_by_partition(&self, partitions: usize) -> Vec<u64> {
        let mut out = vec![0; partitions];
        for piece in &self.pieces {
            if let Some(b) = out.get_mut(piece.output_partition) {
                *b += piece.bytes;
            }
        }
        out
    }

    fn total_bytes(&self) -> u64 {
        self.pieces.iter().map(|p| p.bytes).sum()
    }
}

/// A run of map outputs and reduce partitions of one partitioned input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputRead {
    /// The input stage.
    pub stage: StageId,
    /// Reduce partitions `[start, end)`.
    pub partitions: (usize, usize),
    /// Map tasks `[start, end)`; all when `None`.
    pub maps: Option<(usize, usize)>,
}

impl InputRead {
    fn holds(&self, map_partition: usize, output_partition: usize) -> bool {
        let (start, end) = self.partitions;
        (start..end).contains(&output_partition)
            && self
                .maps
                .is_none_or(|(from, to)| (from..to).contains(&map_partition))
    }
}

/// What one task of an adapted stage runs and reads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskRead {
    /// The partition of the stage plan it runs.
    pub plan_partition: usize,
    /// What it reads of each partitioned input; every other input is read whole.
    pub reads: Vec<InputRead>,
}

impl TaskRead {
    /// Whether the task reads the piece of `stage` that map task `map_partition` wrote
    /// for `output_partition`.
    pub fn reads_piece(
        &self,
        stage: StageId,
        map_partition: usize,
        output_partition: usize,
    ) -> bool {
        match self.reads.iter().find(|r| r.stage == stage) {
            Some(read) => read.holds(map_partition, output_partition),
            None => true,
        }
    }

    fn rows_of(&self, input: &InputSizes) -> u64 {
        input
            .pieces
            .iter()
            .filter(|p| self.reads_piece(input.stage, p.map_partition, p.output_partition))
            .map(|p| p.rows)
            .sum()
    }
}

/// One adaptive decision, with the sizes behind it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Decision {
    /// Adjacent small partitions were read together.
    Coalesced {
        /// Planned partitions.
        partitions: usize,
        /// Tasks they became.
        tasks: usize,
        /// Bytes of the partitioned inputs.
        bytes: u64,
        /// The size the tasks aimed at.
        target_bytes: u64,
    },
    /// A skewed partition was split over several tasks.
    SkewSplit {
        /// The partition.
        partition: usize,
        /// The input split into slices of its map outputs.
        input: StageId,
        /// Its bytes in that input.
        bytes: u64,
        /// The median partition of that input.
        median_bytes: u64,
        /// Tasks it became.
        tasks: usize,
    },
    /// A partitioned join became a broadcast join.
    Broadcast {
        /// The small side, read whole by every task.
        small: StageId,
        /// Its bytes.
        small_bytes: u64,
        /// The threshold it was under.
        threshold: u64,
        /// The other side, read one map output per task where it lies.
        large: StageId,
        /// Its bytes.
        large_bytes: u64,
        /// Tasks: one per map output of the large side.
        tasks: usize,
    },
    /// Tasks that would have read no row of an input were not run.
    Pruned {
        /// The tasks left out.
        tasks: usize,
        /// Of this many.
        of: usize,
        /// The input they read empty.
        input: StageId,
    },
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Coalesced {
                partitions,
                tasks,
                bytes,
                target_bytes,
            } => write!(
                f,
                "coalesced {partitions} partitions into {tasks} tasks ({} read, target {} per task)",
                size(*bytes),
                size(*target_bytes)
            ),
            Self::SkewSplit {
                partition,
                input,
                bytes,
                median_bytes,
                tasks,
            } => write!(
                f,
                "split skewed partition {partition} into {tasks} tasks (stage {input} holds {} there, median {})",
                size(*bytes),
                size(*median_bytes)
            ),
            Self::Broadcast {
                small,
                small_bytes,
                threshold,
                large,
                large_bytes,
                tasks,
            } => write!(
                f,
                "broadcast join: stage {small} is {} (threshold {}), stage {large} ({}) read where it lies by {tasks} tasks",
                size(*small_bytes),
                size(*threshold),
                size(*large_bytes)
            ),
            Self::Pruned { tasks, of, input } => write!(
                f,
                "pruned {tasks} of {of} tasks: they read no row of stage {input}"
            ),
        }
    }
}

impl Decision {
    /// A few words for a stage box of the graph: `coalesced 8→2`, `skew split p3→4`,
    /// `broadcast join`, `pruned 7/8`.
    pub fn short(&self) -> String {
        match self {
            Self::Coalesced {
                partitions, tasks, ..
            } => format!("coalesced {partitions}→{tasks}"),
            Self::SkewSplit {
                partition, tasks, ..
            } => format!("skew split p{partition}→{tasks}"),
            Self::Broadcast { .. } => "broadcast join".to_string(),
            Self::Pruned { tasks, of, .. } => format!("pruned {tasks}/{of}"),
        }
    }
}

/// `bytes` for people: `812 B`, `1.5 KiB`, `64.0 MiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// How an adapted stage runs: its tasks and the decisions that made them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StagePlan {
    /// One entry per task.
    pub tasks: Vec<TaskRead>,
    /// Why the tasks differ from the planned ones.
    pub decisions: Vec<Decision>,
}

/// The tasks of a stage of `partitions` planned partitions with `facts`, given the sizes
/// of its finished `inputs`; `None` when every task runs as planned.
pub fn plan_stage(
    facts: &StageFacts,
    partitions: usize,
    config: &AdaptiveConfig,
    inputs: &[InputSizes],
) -> Option<StagePlan> {
    let input = |stage: StageId| inputs.iter().find(|i| i.stage == stage);
    let mut decisions = Vec::new();
    let mut tasks = broadcast_tasks(facts, partitions, config, inputs, &mut decisions)
        .unwrap_or_else(|| partition_tasks(facts, partitions, config, inputs, &mut decisions));
    if config.prune_empty && !facts.empty_if.is_empty() {
        let of = tasks.len();
        let mut pruned_by: Option<StageId> = None;
        tasks.retain(|task| {
            let empty = facts
                .empty_if
                .iter()
                .filter_map(|&s| input(StageId(s)))
                .find(|i| task.rows_of(i) == 0);
            if let Some(empty) = empty {
                pruned_by.get_or_insert(empty.stage);
                false
            } else {
                true
            }
        });
        if let Some(input) = pruned_by {
            decisions.push(Decision::Pruned {
                tasks: of - tasks.len(),
                of,
                input,
            });
        }
    }
    (!decisions.is_empty()).then_some(StagePlan { tasks, decisions })
}

/// The broadcast switch, where it applies.
fn broadcast_tasks(
    facts: &StageFacts,
    partitions: usize,
    config: &AdaptiveConfig,
    inputs: &[InputSizes],
    decisions: &mut Vec<Decision>,
) -> Option<Vec<TaskRead>> {
    // Every task runs plan partition 0: only where every leaf is a shuffle read.
    if !config.broadcast || facts.writes || !facts.coalescable || facts.partitioned.len() != 2 {
        return None;
    }
    let input = |stage: usize| inputs.iter().find(|i| i.stage.0 == stage);
    let mut best: Option<(&InputSizes, &InputSizes)> = None;
    for &[a, b] in &facts.joins {
        let (Some(a), Some(b)) = (input(a), input(b)) else {
            continue;
        };
        for (small, large) in [(a, b), (b, a)] {
            let fits = small.total_bytes() <= config.broadcast_threshold
                && large.total_bytes() >= small.total_bytes()
                && large.maps > 0
                && facts.splittable.contains(&large.stage.0);
            if fits && best.is_none_or(|(s, _)| small.total_bytes() < s.total_bytes()) {
                best = Some((small, large));
            }
        }
    }
    let (small, large) = best?;
    let tasks: Vec<TaskRead> = (0..large.maps)
        .map(|map| TaskRead {
            plan_partition: 0,
            reads: vec![
                InputRead {
                    stage: small.stage,
                    partitions: (0, partitions),
                    maps: None,
                },
                InputRead {
                    stage: large.stage,
                    partitions: (0, partitions),
                    maps: Some((map, map + 1)),
                },
            ],
        })
        .collect();
    decisions.push(Decision::Broadcast {
        small: small.stage,
        small_bytes: small.total_bytes(),
        threshold: config.broadcast_threshold,
        large: large.stage,
        large_bytes: large.total_bytes(),
        tasks: tasks.len(),
    });
    Some(tasks)
}

/// The median of `values` (0 for none).
fn median(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}

/// Tasks by reduce partition: skewed ones split, small adjacent ones coalesced.
fn partition_tasks(
    facts: &StageFacts,
    partitions: usize,
    config: &AdaptiveConfig,
    inputs: &[InputSizes],
    decisions: &mut Vec<Decision>,
) -> Vec<TaskRead> {
    let partitioned: Vec<&InputSizes> = facts
        .partitioned
        .iter()
        .filter_map(|&s| inputs.iter().find(|i| i.stage.0 == s))
        .collect();
    let whole = |start: usize, end: usize| -> Vec<InputRead> {
        partitioned
            .iter()
            .map(|i| InputRead {
                stage: i.stage,
                partitions: (start, end),
                maps: None,
            })
            .collect()
    };
    let sizes: Vec<u64> = (0..partitions)
        .map(|p| {
            partitioned
                .iter()
                .map(|i| {
                    i.pieces
                        .iter()
                        .filter(|piece| piece.output_partition == p)
                        .map(|piece| piece.bytes)
                        .sum::<u64>()
                })
                .sum()
        })
        .collect();
    let total: u64 = sizes.iter().sum();
    let coalesce = config.coalesce && facts.coalescable && partitions > 1;
    let target = (total / config.parallelism.max(1) as u64)
        .max(config.min_partition_bytes)
        .min(config.target_partition_bytes)
        .max(1);
    // Skewed partitions: the splittable input holding the most bytes there is sliced,
    // into runs of about its median partition (or of the coalescing target, when the
    // other tasks are coalesced up to it).
    let mut splits: Vec<Option<Vec<TaskRead>>> = vec![None; partitions];
    if config.skew_join && !facts.writes {
        let mut worst: Vec<Option<(u64, &InputSizes, u64)>> = vec![None; partitions];
        for input in partitioned
            .iter()
            .filter(|i| facts.splittable.contains(&i.stage.0))
        {
            let sizes = input.bytes_by_partition(partitions);
            let median = median(&sizes).max(1);
            for (p, &bytes) in sizes.iter().enumerate() {
                let skewed = bytes as f64 > config.skew_factor * median as f64
                    && bytes > config.skew_min_bytes;
                if skewed && worst[p].is_none_or(|(b, _, _)| bytes > b) {
                    worst[p] = Some((bytes, input, median));
                }
            }
        }
        for (p, worst) in worst.into_iter().enumerate() {
            let Some((bytes, input, median)) = worst else {
                continue;
            };
            let slices = slice_maps(input, p, if coalesce { median.max(target) } else { median });
            if slices.len() < 2 {
                continue;
            }
            decisions.push(Decision::SkewSplit {
                partition: p,
                input: input.stage,
                bytes,
                median_bytes: median,
                tasks: slices.len(),
            });
            splits[p] = Some(
                slices
                    .into_iter()
                    .map(|maps| TaskRead {
                        plan_partition: p,
                        reads: whole(p, p + 1)
                            .into_iter()
                            .map(|mut read| {
                                if read.stage == input.stage {
                                    read.maps = Some(maps);
                                }
                                read
                            })
                            .collect(),
                    })
                    .collect(),
            );
        }
    }
    let mut tasks = Vec::new();
    let mut group: Option<(usize, u64)> = None;
    let close = |group: &mut Option<(usize, u64)>, end: usize, tasks: &mut Vec<TaskRead>| {
        if let Some((start, _)) = group.take() {
            tasks.push(TaskRead {
                plan_partition: start,
                reads: whole(start, end),
            });
        }
    };
    for p in 0..partitions {
        if let Some(split) = splits[p].take() {
            close(&mut group, p, &mut tasks);
            tasks.extend(split);
            continue;
        }
        match group {
            Some((_, bytes)) if coalesce && bytes + sizes[p] <= target => {
                if let Some(g) = group.as_mut() {
                    g.1 += sizes[p];
                }
            }
            _ => {
                close(&mut group, p, &mut tasks);
                group = Some((p, sizes[p]));
            }
        }
    }
    close(&mut group, partitions, &mut tasks);
    let planned_tasks = partitions
        + decisions
            .iter()
            .map(|d| match d {
                Decision::SkewSplit { tasks, .. } => tasks - 1,
                _ => 0,
            })
            .sum::<usize>();
    if coalesce && tasks.len() < planned_tasks {
        decisions.push(Decision::Coalesced {
            partitions,
            tasks: tasks.len(),
            bytes: total,
            target_bytes: target,
        });
    }
    tasks
}

/// The map outputs of `input` for partition `partition`, in runs of about `target` bytes.
fn slice_maps(input: &InputSizes, partition: usize, target: u64) -> Vec<(usize, usize)> {
    let mut bytes = vec![0u64; input.maps];
    for piece in &input.pieces {
        if piece.output_partition == partition
            && let Some(b) = bytes.get_mut(piece.map_partition)
        {
            *b += piece.bytes;
        }
    }
    let mut slices = Vec::new();
    let (mut start, mut held) = (0, 0u64);
    for (map, &b) in bytes.iter().enumerate() {
        if held > 0 && held + b > target {
            slices.push((start, map));
            start = map;
            held = 0;
        }
        held += b;
    }
    if start < input.maps {
        slices.push((start, input.maps));
    }
    slices
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An input of `maps` map tasks whose map `m` wrote `bytes[p]` (and as many rows) to
    /// partition `p`.
    fn input(stage: usize, maps: usize, bytes: &[u64]) -> InputSizes {
        let pieces = (0..maps)
            .flat_map(|m| {
                bytes.iter().enumerate().map(move |(p, &b)| PieceSize {
                    map_partition: m,
                    output_partition: p,
                    rows: b,
                    bytes: b,
                })
            })
            .collect();
        InputSizes {
            stage: StageId(stage),
            maps,
            pieces,
        }
    }

    fn join_facts() -> StageFacts {
        StageFacts {
            partitioned: vec![0, 1],
            coalescable: true,
            splittable: vec![0, 1],
            joins: vec![[0, 1]],
            empty_if: vec![0, 1],
            writes: false,
        }
    }

    fn only(rule: &str) -> AdaptiveConfig {
        AdaptiveConfig {
            coalesce: rule == "coalesce",
            broadcast: rule == "broadcast",
            skew_join: rule == "skew",
            prune_empty: rule == "prune",
            min_partition_bytes: 0,
            skew_min_bytes: 0,
            parallelism: 1,
            ..AdaptiveConfig::default()
        }
    }

    #[test]
    fn small_adjacent_partitions_are_read_together_up_to_the_target() {
        let config = AdaptiveConfig {
            target_partition_bytes: 100,
            ..only("coalesce")
        };
        let inputs = [input(0, 2, &[10, 10, 60, 5, 5, 5]), input(1, 1, &[0; 6])];
        let plan = plan_stage(&join_facts(), 6, &config, &inputs).expect("coalesced");
        // Per partition 20, 20, 120, 10, 10, 10 bytes: [0, 2) = 40, [2] = 120, [3, 6) = 30.
        let runs: Vec<(usize, (usize, usize))> = plan
            .tasks
            .iter()
            .map(|t| (t.plan_partition, t.reads[0].partitions))
            .collect();
        assert_eq!(runs, vec![(0, (0, 2)), (2, (2, 3)), (3, (3, 6))]);
        assert!(matches!(
            plan.decisions[..],
            [Decision::Coalesced {
                partitions: 6,
                tasks: 3,
                ..
            }]
        ));
        // Both sides of the join read the same runs.
        assert!(
            plan.tasks
                .iter()
                .all(|t| t.reads[0].partitions == t.reads[1].partitions)
        );
        // Nothing to merge: the plan stays.
        let even = [input(0, 1, &[200, 200]), input(1, 1, &[200, 200])];
        assert_eq!(plan_stage(&join_facts(), 2, &config, &even), None);
    }

    #[test]
    fn a_skewed_partition_is_split_by_map_outputs_and_the_other_side_read_whole() {
        let config = AdaptiveConfig {
            skew_factor: 3.0,
            ..only("skew")
        };
        // Partition 1 of stage 0 holds 8 x 100 bytes; the others 8 x 10.
        let inputs = [input(0, 8, &[10, 100, 10, 10]), input(1, 2, &[5, 5, 5, 5])];
        let plan = plan_stage(&join_facts(), 4, &config, &inputs).expect("split");
        let Decision::SkewSplit {
            partition,
            input: split,
            tasks,
            ..
        } = plan.decisions[0]
        else {
            panic!("{:?}", plan.decisions);
        };
        assert_eq!((partition, split), (1, StageId(0)));
        assert_eq!(plan.tasks.len(), 3 + tasks);
        let slices: Vec<_> = plan
            .tasks
            .iter()
            .filter(|t| t.plan_partition == 1)
            .collect();
        assert_eq!(slices.len(), tasks);
        // The slices cover every map output once; the other side is read whole each time.
        let mut maps: Vec<usize> = slices
            .iter()
            .flat_map(|t| {
                let (from, to) = t.reads[0].maps.expect("a slice");
                from..to
            })
            .collect();
        maps.sort_unstable();
        assert_eq!(maps, (0..8).collect::<Vec<_>>());
        assert!(slices.iter().all(|t| t.reads[1].maps.is_none()));
        // An input that is not splittable (a full outer join's side) stays whole.
        let facts = StageFacts {
            splittable: vec![],
            ..join_facts()
        };
        assert_eq!(plan_stage(&facts, 4, &config, &inputs), None);
    }

    #[test]
    fn a_small_join_side_is_broadcast_to_one_task_per_map_output_of_the_other() {
        let config = AdaptiveConfig {
            broadcast_threshold: 100,
            ..only("broadcast")
        };
        let inputs = [input(0, 3, &[500, 500]), input(1, 2, &[20, 20])];
        let plan = plan_stage(&join_facts(), 2, &config, &inputs).expect("broadcast");
        assert_eq!(plan.tasks.len(), 3);
        for (map, task) in plan.tasks.iter().enumerate() {
            let small = task
                .reads
                .iter()
                .find(|r| r.stage == StageId(1))
                .expect("small");
            let large = task
                .reads
                .iter()
                .find(|r| r.stage == StageId(0))
                .expect("large");
            assert_eq!((small.partitions, small.maps), ((0, 2), None));
            assert_eq!(
                (large.partitions, large.maps),
                ((0, 2), Some((map, map + 1)))
            );
        }
        // Over the threshold: no switch.
        let big = [input(0, 3, &[500, 500]), input(1, 2, &[200, 200])];
        assert_eq!(plan_stage(&join_facts(), 2, &config, &big), None);
        // A stage that writes files keeps its tasks.
        let writes = StageFacts {
            writes: true,
            ..join_facts()
        };
        assert_eq!(plan_stage(&writes, 2, &config, &inputs), None);
    }

    #[test]
    fn tasks_that_read_an_empty_join_side_are_pruned() {
        let config = only("prune");
        let inputs = [input(0, 2, &[10, 0, 10, 10]), input(1, 2, &[5, 5, 0, 5])];
        let plan = plan_stage(&join_facts(), 4, &config, &inputs).expect("pruned");
        let kept: Vec<usize> = plan.tasks.iter().map(|t| t.plan_partition).collect();
        assert_eq!(kept, vec![0, 3]);
        assert!(matches!(
            plan.decisions[..],
            [Decision::Pruned {
                tasks: 2,
                of: 4,
                ..
            }]
        ));
        // An outer join's optional side prunes nothing.
        let outer = StageFacts {
            empty_if: vec![0],
            ..join_facts()
        };
        let kept = plan_stage(&outer, 4, &config, &inputs).expect("pruned");
        assert_eq!(kept.tasks.len(), 3);
    }
}
