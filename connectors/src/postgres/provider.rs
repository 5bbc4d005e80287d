//! [`PostgresTable`]: a PostgreSQL table as a DataFusion table. Its schema is read from
//! the catalog when it is opened; a scan becomes a [`PostgresScanExec`] with one query
//! per range of the partition column, each selecting only the scan's columns and
//! carrying the filters PostgreSQL can run (DataFusion applies them again).
//! [`PostgresTableFactory`] makes one for `CREATE EXTERNAL TABLE ... STORED AS POSTGRES`.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::common::Column;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{CreateExternalTable, Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::sql::unparser::Unparser;
use datafusion::sql::unparser::dialect::PostgreSqlDialect;

use super::connect::quote_name;
use super::types::arrow_column;
use super::{Connection, PostgresOptions, PostgresScanExec};
use crate::error::{ConnectorError, Result};

/// A PostgreSQL table.
#[derive(Debug)]
pub struct PostgresTable {
    connection: Connection,
    options: PostgresOptions,
    schema: SchemaRef,
    /// Per column, what to select for it.
    selects: Vec<String>,
}

impl PostgresTable {
    /// Opens `options.table` on the server of `url`, reading its columns.
    pub async fn open(url: &str, options: PostgresOptions) -> Result<Self> {
        let connection = Connection::parse(url)?;
        let client = connection.connect().await?;
        let rows = client
            .query(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) \
                 FROM pg_attribute a \
                 WHERE a.attrelid = to_regclass($1::text) AND a.attnum > 0 \
                 AND NOT a.attisdropped ORDER BY a.attnum",
                &[&quote_name(&options.table)],
            )
            .await
            .map_err(|e| connection.error(&options.table, Connection::explain(&e)))?;
        if rows.is_empty() {
            return Err(connection.error(&options.table, "no such table"));
        }
        let mut fields = Vec::new();
        let mut selects = Vec::new();
        for row in rows {
            let name: String = row.get(0);
            let pg_type: String = row.get(1);
            let (data_type, select) = arrow_column(&pg_type, &quote_name(&name));
            fields.push(Field::new(name, data_type, true));
            selects.push(select);
        }
        if let Some(ranges) = &options.partitions
            && !fields.iter().any(|f| *f.name() == ranges.column)
        {
            return Err(connection.error(
                &options.table,
                format!("has no column {} (partition_column)", ranges.column),
            ));
        }
        Ok(Self {
            connection,
            options,
            schema: Arc::new(Schema::new(fields)),
            selects,
        })
    }

    /// The server.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The table's name on the server.
    pub fn table(&self) -> &str {
        &self.options.table
    }

    /// The `WHERE` condition of `filter` in PostgreSQL's SQL, if it has one.
    fn condition(filter: &Expr) -> Option<String> {
        // The scan's columns are the table's own: no qualifier.
        let unqualified = filter
            .clone()
            .transform(|e| {
                Ok(match e {
                    Expr::Column(c) if c.relation.is_some() => {
                        Transformed::yes(Expr::Column(Column::new_unqualified(c.name)))
                    }
                    other => Transformed::no(other),
                })
            })
            .ok()?
            .data;
        let dialect = PostgreSqlDialect {};
        Unparser::new(&dialect)
            .expr_to_sql(&unqualified)
            .ok()
            .map(|sql| sql.to_string())
    }
}

#[async_trait]
impl TableProvider for PostgresTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let columns: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        // No column wanted (a count): one constant column, projected away after.
        let (select, schema) = if columns.is_empty() {
            (
                "1".to_string(),
                Arc::new(Schema::new(vec![Field::new("one", DataType::Int32, true)])),
            )
        } else {
            (
                columns
                    .iter()
                    .map(|&i| self.selects[i].clone())
                    .collect::<Vec<_>>()
                    .join(", "),
                Arc::new(self.schema.project(&columns)?),
            )
        };
        let mut conditions: Vec<String> = filters.iter().filter_map(Self::condition).collect();
        let ranges = match &self.options.partitions {
            Some(ranges) => ranges.conditions(&quote_name(&ranges.column)),
            None => vec!["TRUE".to_string()],
        };
        conditions.insert(0, String::new());
        let queries = ranges
            .into_iter()
            .map(|range| {
                conditions[0] = range;
                let mut query = format!(
                    "SELECT {select} FROM {} WHERE ({})",
                    quote_name(&self.options.table),
                    conditions.join(") AND (")
                );
                if let Some(limit) = limit {
                    query.push_str(&format!(" LIMIT {limit}"));
                }
                query
            })
            .collect();
        let scan: Arc<dyn ExecutionPlan> = Arc::new(PostgresScanExec::new(
            self.connection.clone(),
            self.options.table.clone(),
            schema,
            queries,
        ));
        if columns.is_empty() {
            let none: Vec<(Arc<dyn datafusion::physical_expr::PhysicalExpr>, String)> = Vec::new();
            return Ok(Arc::new(ProjectionExec::try_new(none, scan)?));
        }
        Ok(scan)
    }
}

/// Makes [`PostgresTable`]s for `STORED AS POSTGRES`: the location is the server's URL,
/// the options name the table and the partitioning.
#[derive(Debug, Default)]
pub struct PostgresTableFactory;

#[async_trait]
impl TableProviderFactory for PostgresTableFactory {
    async fn create(
        &self,
        _state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let [url] = cmd.locations.as_slice() else {
            return Err(ConnectorError::Option {
                key: "LOCATION".into(),
                message: "a PostgreSQL table has one location: the server's URL".into(),
            }
            .into());
        };
        let options: std::collections::HashMap<String, String> = cmd
            .options
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let (url, from_url) = PostgresOptions::from_url(url)
            .or_else(|_| PostgresOptions::from_map(&options).map(|o| (url.clone(), o)))?;
        let options = if options.keys().any(|k| k.ends_with("table")) {
            PostgresOptions::from_map(&options)?
        } else {
            from_url
        };
        Ok(Arc::new(PostgresTable::open(&url, options).await?))
    }
}
