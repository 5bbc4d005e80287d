//! The Flight SQL catalog calls, answered from the session's DataFusion catalog:
//! `GetCatalogs`, `GetDbSchemas`, `GetTables` (with each table's Arrow schema when asked),
//! `GetTableTypes`, and `GetSqlInfo` (what the server is and supports).

use std::sync::LazyLock;

use arrow::array::RecordBatch;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, SqlInfo, SqlSupportedTransaction,
};
use datafusion::datasource::TableType;
use datafusion::prelude::SessionContext;

use crate::error::{EmberError, Result};

/// The names a table type has in Flight SQL.
const TABLE_TYPES: [&str; 3] = ["TABLE", "VIEW", "LOCAL TEMPORARY"];

/// What `GetSqlInfo` reports.
pub(crate) static SQL_INFO: LazyLock<Result<SqlInfoData>> = LazyLock::new(|| {
    let mut builder = SqlInfoDataBuilder::new();
    builder.append(SqlInfo::FlightSqlServerName, "Ember");
    builder.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    builder.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    builder.append(SqlInfo::FlightSqlServerReadOnly, false);
    builder.append(SqlInfo::FlightSqlServerSql, true);
    builder.append(SqlInfo::FlightSqlServerSubstrait, false);
    builder.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    builder.append(SqlInfo::FlightSqlServerCancel, true);
    builder.append(SqlInfo::SqlDdlCatalog, false);
    builder.append(SqlInfo::SqlDdlSchema, false);
    builder.append(SqlInfo::SqlDdlTable, true);
    builder.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    builder.append(SqlInfo::SqlQuotedIdentifierCase, 3);
    builder.append(SqlInfo::SqlIdentifierCase, 2);
    builder.build().map_err(internal)
});

fn internal(e: impl std::fmt::Display) -> EmberError {
    EmberError::Internal {
        message: format!("building a Flight SQL catalog answer: {e}"),
    }
}

/// The answer to `GetSqlInfo`.
pub(crate) fn sql_info(query: CommandGetSqlInfo) -> Result<RecordBatch> {
    let info = SQL_INFO.as_ref().map_err(internal)?;
    query.into_builder(info).build().map_err(internal)
}

/// The answer to `GetCatalogs`.
pub(crate) fn catalogs(ctx: &SessionContext, query: CommandGetCatalogs) -> Result<RecordBatch> {
    let mut builder = query.into_builder();
    let mut names = ctx.catalog_names();
    names.sort();
    for name in names {
        builder.append(name);
    }
    builder.build().map_err(internal)
}

/// The answer to `GetDbSchemas` (the builder applies the request's filters).
pub(crate) fn db_schemas(ctx: &SessionContext, query: CommandGetDbSchemas) -> Result<RecordBatch> {
    let mut builder = query.into_builder();
    for (catalog_name, catalog) in catalogs_of(ctx) {
        for schema_name in sorted(catalog.schema_names()) {
            builder.append(&catalog_name, schema_name);
        }
    }
    builder.build().map_err(internal)
}

/// The answer to `GetTables`: every table and view, with its schema when the request
/// asks (the builder applies the request's filters).
pub(crate) async fn tables(ctx: &SessionContext, query: CommandGetTables) -> Result<RecordBatch> {
    let mut builder = query.into_builder();
    for (catalog_name, catalog) in catalogs_of(ctx) {
        for schema_name in sorted(catalog.schema_names()) {
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            for table_name in sorted(schema.table_names()) {
                let Some(table) = schema.table(&table_name).await? else {
                    continue;
                };
                let table_type = match table.table_type() {
                    TableType::Base => TABLE_TYPES[0],
                    TableType::View => TABLE_TYPES[1],
                    TableType::Temporary => TABLE_TYPES[2],
                };
                builder
                    .append(
                        &catalog_name,
                        &schema_name,
                        &table_name,
                        table_type,
                        table.schema().as_ref(),
                    )
                    .map_err(internal)?;
            }
        }
    }
    builder.build().map_err(internal)
}

/// The answer to `GetTableTypes`.
pub(crate) fn table_types(query: CommandGetTableTypes) -> Result<RecordBatch> {
    let mut builder = query.into_builder();
    for table_type in TABLE_TYPES {
        builder.append(table_type);
    }
    builder.build().map_err(internal)
}

/// The catalogs of `ctx` by name, in name order.
fn catalogs_of(
    ctx: &SessionContext,
) -> Vec<(
    String,
    std::sync::Arc<dyn datafusion::catalog::CatalogProvider>,
)> {
    sorted(ctx.catalog_names())
        .into_iter()
        .filter_map(|name| ctx.catalog(&name).map(|c| (name, c)))
        .collect()
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use datafusion::prelude::SessionConfig;

    use super::*;

    #[tokio::test]
    async fn get_tables_lists_tables_and_views_with_their_types() {
        let ctx = SessionContext::new_with_config(SessionConfig::new());
        ctx.sql("CREATE TABLE t AS VALUES (1, 'a')")
            .await
            .expect("planned")
            .collect()
            .await
            .expect("created");
        ctx.sql("CREATE VIEW v AS SELECT * FROM t")
            .await
            .expect("planned")
            .collect()
            .await
            .expect("created");
        let query = CommandGetTables {
            include_schema: true,
            ..CommandGetTables::default()
        };
        let batch = tables(&ctx, query).await.expect("answered");
        let names = batch
            .column_by_name("table_name")
            .expect("a name column")
            .as_string::<i32>();
        let types = batch
            .column_by_name("table_type")
            .expect("a type column")
            .as_string::<i32>();
        let listed: Vec<(&str, &str)> =
            names.iter().flatten().zip(types.iter().flatten()).collect();
        assert_eq!(listed, vec![("t", "TABLE"), ("v", "VIEW")]);
        assert!(batch.column_by_name("table_schema").is_some());
    }
}
