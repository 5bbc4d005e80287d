//! [`StagedWriteExec`]: the task side of Ember's output commit protocol. Each task attempt
//! writes its partition's rows, with DataFusion's file sinks (Parquet, CSV or JSON), into a
//! folder of its own under the job's staging URL, and reports that folder. Nothing is
//! visible at the destination until the driver commits the winning attempts' folders
//! (see `ember::commit`).

use std::fmt;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::config::{CsvOptions, JsonOptions, TableParquetOptions};
use datafusion::common::file_options::csv_writer::CsvWriterOptions;
use datafusion::common::file_options::json_writer::JsonWriterOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::file_format::csv::CsvSink;
use datafusion::datasource::file_format::json::JsonSink;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::datasource::physical_plan::parquet::ParquetSink;
use datafusion::datasource::physical_plan::{FileGroup, FileOutputMode, FileSinkConfig};
use datafusion::datasource::sink::DataSink;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    Partitioning, PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};
use futures::stream;

/// The file format of an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFormat {
    /// Apache Parquet.
    Parquet,
    /// CSV with a header line.
    Csv,
    /// Newline-delimited JSON.
    Json,
}

impl WriteFormat {
    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Csv => "csv",
            Self::Json => "json",
        }
    }

    /// The format whose extension is `ext` (`parquet`, `csv`, `json`, any case).
    pub fn from_extension(ext: &str) -> Option<Self> {
        match ext.to_ascii_lowercase().as_str() {
            "parquet" => Some(Self::Parquet),
            "csv" => Some(Self::Csv),
            "json" | "ndjson" => Some(Self::Json),
            _ => None,
        }
    }
}

/// The rows a [`StagedWriteExec`] yields: one per task, the folder it wrote and its rows.
pub fn staged_write_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("partition", DataType::UInt32, false),
        Field::new("folder", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
    ]))
}

/// Writes partition `i` of its input into a fresh folder under `staging` (a URL ending
/// with `/`) and yields one [`staged_write_schema`] row naming it.
#[derive(Debug)]
pub struct StagedWriteExec {
    input: Arc<dyn ExecutionPlan>,
    staging: String,
    format: WriteFormat,
    /// Each task writes exactly one file, `data.EXT` (a single-file destination).
    single_file: bool,
    properties: Arc<PlanProperties>,
}

impl StagedWriteExec {
    /// A writer of `input` under `staging` in `format`.
    pub fn new(input: Arc<dyn ExecutionPlan>, staging: String, format: WriteFormat) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(staged_write_schema()),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            input,
            staging,
            format,
            single_file: false,
            properties: Arc::new(properties),
        }
    }

    /// Whether each task writes exactly one file (even for no rows, or many).
    pub fn with_single_file(mut self, single_file: bool) -> Self {
        self.single_file = single_file;
        self
    }

    /// Whether each task writes exactly one file.
    pub fn single_file(&self) -> bool {
        self.single_file
    }

    /// The staging URL the task folders go under.
    pub fn staging(&self) -> &str {
        &self.staging
    }

    /// The file format.
    pub fn format(&self) -> WriteFormat {
        self.format
    }

    /// The plan whose rows are written.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }

    /// The sink that writes one task attempt's folder.
    fn sink(&self, folder: &str) -> Result<Arc<dyn DataSink>> {
        let (target, mode) = if self.single_file {
            let file = format!("{folder}data.{}", self.format.extension());
            (file, FileOutputMode::SingleFile)
        } else {
            (folder.to_string(), FileOutputMode::Directory)
        };
        let table_path = ListingTableUrl::parse(&target)?;
        let config = FileSinkConfig {
            original_url: folder.to_string(),
            object_store_url: table_path.object_store(),
            file_group: FileGroup::default(),
            table_paths: vec![table_path],
            output_schema: self.input.schema(),
            table_partition_cols: vec![],
            insert_op: InsertOp::Append,
            keep_partition_by_columns: false,
            file_extension: self.format.extension().to_string(),
            file_output_mode: mode,
        };
        Ok(match self.format {
            WriteFormat::Parquet => {
                Arc::new(ParquetSink::new(config, TableParquetOptions::default()))
            }
            WriteFormat::Csv => Arc::new(CsvSink::new(
                config,
                CsvWriterOptions::try_from(&CsvOptions::default().with_has_header(true))?,
            )),
            WriteFormat::Json => Arc::new(JsonSink::new(
                config,
                JsonWriterOptions::try_from(&JsonOptions::default())?,
            )),
        })
    }
}

impl DisplayAs for StagedWriteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "StagedWriteExec: format={}, staging={}",
            self.format.extension(),
            self.staging
        )
    }
}

impl ExecutionPlan for StagedWriteExec {
    fn name(&self) -> &str {
        "StagedWriteExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input]: [Arc<dyn ExecutionPlan>; 1] = children.try_into().map_err(|_| {
            DataFusionError::Internal("StagedWriteExec takes exactly one child".into())
        })?;
        Ok(Arc::new(
            Self::new(input, self.staging.clone(), self.format).with_single_file(self.single_file),
        ))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        // A folder per attempt: a retried or lost attempt never mixes its files with the
        // attempt whose folder the driver commits.
        let attempt: u64 = rand::random();
        let folder = format!("{}part-{partition:05}-{attempt:016x}/", self.staging);
        let sink = self.sink(&folder)?;
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let partition = u32::try_from(partition)
            .map_err(|_| DataFusionError::Internal("partition number overflow".into()))?;
        let write = async move {
            let rows = sink.write_all(input, &context).await?;
            let batch = RecordBatch::try_new(
                staged_write_schema(),
                vec![
                    Arc::new(UInt32Array::from(vec![partition])),
                    Arc::new(StringArray::from(vec![folder])),
                    Arc::new(UInt64Array::from(vec![rows])),
                ],
            )?;
            Ok(batch)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            staged_write_schema(),
            stream::once(write),
        )))
    }
}
