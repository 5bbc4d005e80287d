//! [`TpchTable`]: the eight TPC-H tables, their names and schemas. A leaf of `tpch`: the
//! generator's plan and writers name tables without depending on the module that runs them.

use arrow::datatypes::SchemaRef;

use super::schema;

/// Table names, in [`TpchTable::ALL`] order.
pub(super) static TABLE_NAMES: [&str; 8] = [
    "region", "nation", "part", "supplier", "partsupp", "customer", "orders", "lineitem",
];

/// One of the eight TPC-H tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TpchTable {
    /// `region`: 5 rows at every scale factor.
    Region,
    /// `nation`: 25 rows at every scale factor.
    Nation,
    /// `part`: 200,000 rows per unit of scale factor.
    Part,
    /// `supplier`: 10,000 rows per unit of scale factor.
    Supplier,
    /// `partsupp`: 800,000 rows per unit of scale factor.
    PartSupp,
    /// `customer`: 150,000 rows per unit of scale factor.
    Customer,
    /// `orders`: 1,500,000 rows per unit of scale factor.
    Orders,
    /// `lineitem`: about 6,000,000 rows per unit of scale factor.
    LineItem,
}

impl TpchTable {
    /// All tables, smallest dimension tables first.
    pub const ALL: [TpchTable; 8] = [
        TpchTable::Region,
        TpchTable::Nation,
        TpchTable::Part,
        TpchTable::Supplier,
        TpchTable::PartSupp,
        TpchTable::Customer,
        TpchTable::Orders,
        TpchTable::LineItem,
    ];

    /// The table's lower-case name, which is also its folder name.
    pub fn name(self) -> &'static str {
        TABLE_NAMES[self as usize]
    }

    /// The table named `name` (lower-case), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|table| table.name() == name)
    }

    /// The Arrow schema of the table's Parquet files.
    pub fn schema(self) -> SchemaRef {
        match self {
            TpchTable::Region => schema::region(),
            TpchTable::Nation => schema::nation(),
            TpchTable::Part => schema::part(),
            TpchTable::Supplier => schema::supplier(),
            TpchTable::PartSupp => schema::partsupp(),
            TpchTable::Customer => schema::customer(),
            TpchTable::Orders => schema::orders(),
            TpchTable::LineItem => schema::lineitem(),
        }
    }

    /// Whether the table grows with the scale factor (and so is split into
    /// `TpchOptions::parts` files); `region` and `nation` are not.
    pub(crate) fn is_scaled(self) -> bool {
        !matches!(self, TpchTable::Region | TpchTable::Nation)
    }
}
