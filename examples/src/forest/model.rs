//! A trained random forest: its trees on the features' own values (thresholds, label
//! sets), the fitted transformers that make those features from raw rows, saving and
//! loading as JSON, and prediction as a distributed map (`forest.predict`).

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use datafusion::error::{DataFusionError, Result as DfResult};
use ember::planner::{FunctionOutput, FunctionRegistry, PartitionFn, UserFunction};
use serde::{Deserialize, Serialize};

use super::train::{BinSplit, GrowNode, Task};
use super::transformers::{FeaturePipeline, column};
use ember::Broadcast;
use ember::Dataset;
use ember::{EmberError, Result};

/// The function that adds predictions to rows.
pub const PREDICT_FN: &str = "forest.predict";
/// The column of the model's features, made by its pipeline.
pub const TREE_FEATURES: &str = "tree_features";
/// The format version of saved models.
pub const MODEL_VERSION: u32 = 1;

/// A feature as the trees see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureInfo {
    /// The input column.
    pub name: String,
    /// Whether it is a string column (split on sets of labels).
    pub categorical: bool,
    /// Its labels (categorical), most frequent first.
    pub labels: Vec<String>,
    /// Its split candidates (numeric): the quantile edges.
    pub edges: Vec<f64>,
}

impl FeatureInfo {
    /// Bins of the feature in training: labels plus one for unseen ones, or buckets.
    pub fn bins(&self) -> usize {
        if self.categorical {
            self.labels.len() + 1
        } else {
            self.edges.len() + 1
        }
    }
}

/// A split on a feature's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Left when the value is below `threshold`.
    Numeric {
        /// Feature index.
        feature: u32,
        /// The threshold.
        threshold: f64,
    },
    /// Left when the label's index is in `left`.
    Categorical {
        /// Feature index.
        feature: u32,
        /// Label indices on the left, ascending.
        left: Vec<u32>,
    },
}

/// A node of a trained tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The split of an inner node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    /// Left child of an inner node.
    #[serde(default)]
    pub left: u32,
    /// Right child of an inner node.
    #[serde(default)]
    pub right: u32,
    /// The prediction of a leaf: the mean label, or the class probabilities.
    pub prediction: Vec<f64>,
    /// Weight of the training rows that reached it.
    pub weight: f64,
    /// What its split gained: its weighted impurity less its children's (0 on a leaf;
    /// absent from models saved before it was kept).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gain: f64,
}

fn is_zero(value: &f64) -> bool {
    *value == 0.0
}

/// One tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// Its nodes; the root first.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// The leaf `features` reach.
    pub fn leaf(&self, features: &[f64]) -> &Node {
        let mut node = &self.nodes[0];
        while let Some(split) = &node.split {
            let left = match split {
                Split::Numeric { feature, threshold } => features[*feature as usize] < *threshold,
                Split::Categorical { feature, left } => {
                    let label = features[*feature as usize] as u32;
                    left.binary_search(&label).is_ok()
                }
            };
            node = &self.nodes[if left { node.left } else { node.right } as usize];
        }
        node
    }

    /// Its depth (a lone root is 0).
    pub fn depth(&self) -> usize {
        fn depth(nodes: &[Node], i: usize) -> usize {
            match &nodes[i].split {
                None => 0,
                Some(_) => {
                    1 + depth(nodes, nodes[i].left as usize)
                        .max(depth(nodes, nodes[i].right as usize))
                }
            }
        }
        depth(&self.nodes, 0)
    }
}

/// How the forest was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainParams {
    /// Trees.
    pub trees: usize,
    /// Deepest level.
    pub max_depth: usize,
    /// Bins per numeric feature at most.
    pub max_bins: usize,
    /// Features per node (as given).
    pub feature_subset: String,
    /// Seed.
    pub seed: u64,
    /// Share of rows held out.
    pub test_fraction: f64,
}

/// A trained forest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForestModel {
    /// Format version.
    pub version: u32,
    /// Regression or classification.
    pub task: Task,
    /// The label column.
    pub label: String,
    /// Class names, by class index (classification).
    pub classes: Vec<String>,
    /// The features, by index.
    pub features: Vec<FeatureInfo>,
    /// Makes [`TREE_FEATURES`] from raw rows: indexers, imputers and an assembler.
    pub pipeline: FeaturePipeline,
    /// The trees.
    pub trees: Vec<Tree>,
    /// How it was trained.
    pub params: TrainParams,
}

impl ForestModel {
    /// Trees grown on bins turned into trees on feature values.
    pub fn from_grown(
        grown: &[Vec<GrowNode>],
        task: Task,
        label: &str,
        classes: Vec<String>,
        features: Vec<FeatureInfo>,
        pipeline: FeaturePipeline,
        params: TrainParams,
    ) -> Self {
        let trees = grown
            .iter()
            .map(|nodes| Tree {
                nodes: nodes
                    .iter()
                    .map(|n| {
                        let weighted = |node: &GrowNode| {
                            if node.stats.is_empty() {
                                0.0
                            } else {
                                task.weight(&node.stats) * task.impurity(&node.stats)
                            }
                        };
                        let child = |i: u32| nodes.get(i as usize).map_or(0.0, weighted);
                        let gain = match n.split {
                            Some(_) => (weighted(n) - child(n.left) - child(n.right)).max(0.0),
                            None => 0.0,
                        };
                        let split = n.split.as_ref().map(|s| match s {
                            BinSplit::Numeric { feature, bin } => Split::Numeric {
                                feature: *feature,
                                threshold: features[*feature as usize].edges[*bin as usize],
                            },
                            BinSplit::Categorical { feature, left } => Split::Categorical {
                                feature: *feature,
                                left: left.clone(),
                            },
                        });
                        Node {
                            prediction: if split.is_some() {
                                Vec::new()
                            } else {
                                leaf_prediction(task, &n.stats)
                            },
                            weight: task_weight(task, &n.stats),
                            gain,
                            split,
                            left: n.left,
                            right: n.right,
                        }
                    })
                    .collect(),
            })
            .collect();
        Self {
            version: MODEL_VERSION,
            task,
            label: label.to_string(),
            classes,
            features,
            pipeline,
            trees,
            params,
        }
    }

    /// How much each feature's splits reduced impurity, as Spark's `featureImportances`:
    /// per tree the gains of each feature's splits over the tree's total, averaged over
    /// the trees, normalized to sum to 1 (all zeros for a forest without splits).
    pub fn feature_importances(&self) -> Vec<f64> {
        let mut total = vec![0.0; self.features.len()];
        for tree in &self.trees {
            let mut per_feature = vec![0.0; self.features.len()];
            for node in &tree.nodes {
                let feature = match &node.split {
                    Some(Split::Numeric { feature, .. } | Split::Categorical { feature, .. }) => {
                        *feature as usize
                    }
                    None => continue,
                };
                if let Some(slot) = per_feature.get_mut(feature) {
                    *slot += node.gain;
                }
            }
            let sum: f64 = per_feature.iter().sum();
            if sum > 0.0 {
                for (t, f) in total.iter_mut().zip(&per_feature) {
                    *t += f / sum;
                }
            }
        }
        let sum: f64 = total.iter().sum();
        if sum > 0.0 {
            for t in &mut total {
                *t /= sum;
            }
        }
        total
    }

    /// The model as JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| EmberError::Internal {
            message: format!("a forest model to JSON: {e}"),
        })
    }

    /// Saves the model as JSON at `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_json()?).map_err(|e| EmberError::Io {
            action: "writing the model",
            path: path.to_path_buf(),
            source: e,
        })
    }

    /// A model saved by [`Self::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| EmberError::Io {
            action: "reading the model",
            path: path.to_path_buf(),
            source: e,
        })?;
        let model: Self = serde_json::from_str(&text).map_err(|e| EmberError::Config {
            key: "--model".into(),
            message: format!("{} is not a saved forest model: {e}", path.display()),
        })?;
        if model.version != MODEL_VERSION {
            return Err(EmberError::Config {
                key: "--model".into(),
                message: format!(
                    "{} is a model of format version {}; this build reads version \
                     {MODEL_VERSION}",
                    path.display(),
                    model.version
                ),
            });
        }
        Ok(model)
    }

    /// The prediction for one row's features: the mean of the trees' predictions
    /// (regression), or the class with the highest mean probability.
    pub fn predict_features(&self, features: &[f64]) -> f64 {
        match self.task {
            Task::Regression => {
                let total: f64 = self
                    .trees
                    .iter()
                    .map(|t| t.leaf(features).prediction.first().copied().unwrap_or(0.0))
                    .sum();
                total / self.trees.len().max(1) as f64
            }
            Task::Classification { classes } => {
                let mut votes = vec![0.0; classes];
                for tree in &self.trees {
                    for (v, p) in votes.iter_mut().zip(&tree.leaf(features).prediction) {
                        *v += p;
                    }
                }
                let mut best = 0;
                for (i, v) in votes.iter().enumerate() {
                    if *v > votes[best] {
                        best = i;
                    }
                }
                best as f64
            }
        }
    }

    /// `batch` with the column `prediction` (and `predicted_label` for classification).
    pub fn predict_batch(&self, batch: &RecordBatch) -> DfResult<RecordBatch> {
        let prepared = self.pipeline.apply(batch)?;
        if prepared.num_rows() != batch.num_rows() {
            return Err(DataFusionError::Execution(
                "the model's pipeline dropped rows; its indexers must keep unseen labels".into(),
            ));
        }
        let list = column(&prepared, TREE_FEATURES)?.as_fixed_size_list();
        let width = list.value_length() as usize;
        let values = list.values().as_primitive::<Float64Type>().values();
        let predictions: Vec<f64> = (0..batch.num_rows())
            .map(|row| self.predict_features(&values[row * width..(row + 1) * width]))
            .collect();
        let mut columns = batch.columns().to_vec();
        if let Task::Classification { .. } = self.task {
            let names: StringArray = predictions
                .iter()
                .map(|p| self.classes.get(*p as usize).map(String::as_str))
                .collect();
            columns.push(Arc::new(Float64Array::from(predictions)) as ArrayRef);
            columns.push(Arc::new(names));
        } else {
            columns.push(Arc::new(Float64Array::from(predictions)));
        }
        Ok(RecordBatch::try_new(
            predict_schema(&batch.schema(), self.task),
            columns,
        )?)
    }
}

fn task_weight(task: Task, stats: &[f64]) -> f64 {
    if stats.is_empty() {
        0.0
    } else {
        task.weight(stats)
    }
}

/// The prediction of a leaf with `stats`.
fn leaf_prediction(task: Task, stats: &[f64]) -> Vec<f64> {
    let w = task_weight(task, stats);
    match task {
        Task::Regression => vec![if w > 0.0 { stats[1] / w } else { 0.0 }],
        Task::Classification { classes } => {
            if w > 0.0 {
                stats.iter().map(|c| c / w).collect()
            } else {
                vec![0.0; classes]
            }
        }
    }
}

/// Input columns plus `prediction` (and `predicted_label`).
pub fn predict_schema(input: &SchemaRef, task: Task) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = input.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new("prediction", DataType::Float64, false)));
    if let Task::Classification { .. } = task {
        fields.push(Arc::new(Field::new(
            "predicted_label",
            DataType::Utf8,
            true,
        )));
    }
    Arc::new(Schema::new(fields))
}

/// Arguments of [`PREDICT_FN`]: where the model is, and its task (for the schema).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PredictArgs {
    /// The broadcast variable holding the model.
    pub broadcast: String,
    /// Its task.
    pub task: Task,
}

struct Predict {
    model: Arc<ForestModel>,
}

impl PartitionFn for Predict {
    fn push(&mut self, batch: RecordBatch) -> DfResult<Option<RecordBatch>> {
        self.model.predict_batch(&batch).map(Some)
    }
}

/// Registers [`PREDICT_FN`] in `functions`.
pub fn register_model_functions(functions: &FunctionRegistry) {
    functions.register(UserFunction::new(
        PREDICT_FN,
        FunctionOutput::FromArgs(Arc::new(|args: &str, input: &SchemaRef| {
            let args: PredictArgs = serde_json::from_str(args).map_err(|e| {
                DataFusionError::Execution(format!("bad {PREDICT_FN} arguments: {e}"))
            })?;
            Ok(predict_schema(input, args.task))
        })),
        None,
        |call| {
            let args: PredictArgs = serde_json::from_str(call.args).map_err(|e| {
                DataFusionError::Execution(format!("bad {PREDICT_FN} arguments: {e}"))
            })?;
            let model = Broadcast::<ForestModel>::named(&args.broadcast)
                .value()
                .map_err(|e| DataFusionError::Execution(e.to_string()))?;
            Ok(Box::new(Predict { model }) as Box<dyn PartitionFn>)
        },
    ));
}

/// `rows` with predictions of `model`, shipped to the executors as the broadcast
/// variable `name`.
pub fn predict<'s>(rows: &Dataset<'s>, model: &ForestModel, name: &str) -> Result<Dataset<'s>> {
    rows.session().broadcast(name, model)?;
    let args = serde_json::to_string(&PredictArgs {
        broadcast: name.to_string(),
        task: model.task,
    })
    .map_err(|e| EmberError::Internal {
        message: format!("predict arguments: {e}"),
    })?;
    rows.map_partitions(PREDICT_FN, &args)
}

/// How well predictions match labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Rows evaluated.
    pub rows: u64,
    /// Root mean squared error (regression).
    pub rmse: Option<f64>,
    /// Coefficient of determination (regression).
    pub r2: Option<f64>,
    /// Share of rows with the right class (classification).
    pub accuracy: Option<f64>,
}

/// Evaluates `predicted` (rows with the label and `prediction`) on the cluster.
pub async fn evaluate(predicted: &Dataset<'_>, model: &ForestModel) -> Result<Evaluation> {
    use datafusion::functions_aggregate::expr_fn::{avg, count, sum, var_pop};
    use datafusion::logical_expr::ident;
    use datafusion::prelude::{cast, col, lit, when};
    let label = ident(model.label.as_str());
    let aggregates = match model.task {
        Task::Regression => {
            let y = cast(label, DataType::Float64);
            let error = col("prediction") - y.clone();
            vec![
                count(lit(1)).alias("rows"),
                sum(error.clone() * error).alias("sse"),
                var_pop(y).alias("variance"),
            ]
        }
        Task::Classification { .. } => vec![
            count(lit(1)).alias("rows"),
            avg(when(
                col("predicted_label").eq(cast(label, DataType::Utf8)),
                lit(1.0),
            )
            .otherwise(lit(0.0))?)
            .alias("accuracy"),
        ],
    };
    let result = predicted
        .group_by(vec![])
        .agg(aggregates)?
        .collect()
        .await?;
    let batch = result.batches.first().ok_or_else(|| EmberError::Internal {
        message: "the evaluation came back empty".into(),
    })?;
    let rows = batch
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>();
    let rows = if rows.is_empty() {
        0
    } else {
        rows.value(0).max(0) as u64
    };
    let number = |i: usize| {
        let c = batch.column(i).as_primitive::<Float64Type>();
        (!c.is_empty() && c.is_valid(0)).then(|| c.value(0))
    };
    Ok(match model.task {
        Task::Regression => {
            let sse = number(1);
            let variance = number(2);
            let n = rows as f64;
            Evaluation {
                rows,
                rmse: sse.map(|s| (s / n).sqrt()),
                // Constant labels leave R² undefined.
                r2: sse
                    .zip(variance.filter(|v| *v > 0.0))
                    .map(|(s, v)| 1.0 - s / (v * n)),
                accuracy: None,
            }
        }
        Task::Classification { .. } => Evaluation {
            rows,
            rmse: None,
            r2: None,
            accuracy: number(1),
        },
    })
}
