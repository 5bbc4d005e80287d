//! A product catalog and its sales, generated from a seed: the data of the product-price
//! pipeline. `ember datasets products --rows N --out DIR` writes
//!
//! ```text
//! DIR/products/part-0.parquet     product_id, name, category, brand, list_price
//! DIR/sales/part-<i>.parquet      sale_id, sale_date, product_id, category, brand,
//!                                 quantity, unit_price, region, customer_id
//!                                 (prices are Decimal128(12, 2): money in cents)
//! DIR/sales-csv/sales.csv         (with --dirty-fraction) the sales as CSV, that share of
//!                                 rows malformed; DIR/sales-csv/_DIRTY_ROWS holds the count
//! DIR/_SUCCESS                    written last
//! ```
//!
//! The shape follows real retail data: 16 categories whose popularity follows a Zipf law,
//! 40 brands per category (Zipf again), products within a category sold with Zipf-skewed
//! popularity, list prices log-normal with a scale per category, discounts on a minority
//! of sales, dates over 2023 and 2024, and some missing values (brand, unit price, region,
//! customer). Every part of the sales is generated from its own seed, so the output does
//! not depend on how many threads wrote it.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, Date32Builder, Decimal128Builder, Int32Builder, Int64Builder,
    StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Zipf};

use crate::DatasetError;
use crate::tpch::builders::BatchBuilder;
use crate::tpch::writer::write_part_file;

/// The categories, with the median list price and the spread (sigma of the log) of each.
const CATEGORIES: &[(&str, f64, f64)] = &[
    ("Electronics", 250.0, 0.8),
    ("Books", 15.0, 0.5),
    ("Grocery", 4.0, 0.6),
    ("Clothing", 35.0, 0.6),
    ("Home", 45.0, 0.8),
    ("Toys", 20.0, 0.7),
    ("Sports", 40.0, 0.8),
    ("Beauty", 18.0, 0.6),
    ("Garden", 30.0, 0.9),
    ("Automotive", 60.0, 1.0),
    ("Jewelry", 150.0, 1.1),
    ("Music", 12.0, 0.5),
    ("Office", 10.0, 0.7),
    ("Pets", 22.0, 0.6),
    ("Health", 16.0, 0.6),
    ("Furniture", 300.0, 0.7),
];

/// The type of every price: money to the cent, up to ten digits before the point.
pub const PRICE_TYPE: DataType = DataType::Decimal128(PRICE_PRECISION, PRICE_SCALE);
const PRICE_PRECISION: u8 = 12;
const PRICE_SCALE: i8 = 2;

/// Brands per category.
const BRANDS: usize = 40;

/// Sales regions.
const REGIONS: &[&str] = &["North", "South", "East", "West", "Online"];

/// 2023-01-01 as days since 1970-01-01; the sales cover 731 days from it.
const FIRST_DAY: i32 = 19_358;
const DAYS: i32 = 731;

/// Shares of rows with a missing value.
const MISSING_BRAND: f64 = 0.01;
const MISSING_PRICE: f64 = 0.005;
const MISSING_REGION: f64 = 0.005;
const GUEST_CUSTOMER: f64 = 0.02;

/// What to generate.
#[derive(Debug, Clone)]
pub struct ProductsOptions {
    /// Sales rows.
    pub rows: u64,
    /// Output folder.
    pub out_dir: PathBuf,
    /// Seed of every random choice.
    pub seed: u64,
    /// When set, a CSV copy of the sales is written with this share of rows malformed.
    pub dirty_fraction: Option<f64>,
    /// Parquet files of the sales.
    pub parts: usize,
}

impl ProductsOptions {
    /// `rows` sales under `out_dir`, seed 42, 4 files, no CSV copy.
    pub fn new(rows: u64, out_dir: impl Into<PathBuf>) -> Self {
        Self {
            rows,
            out_dir: out_dir.into(),
            seed: 42,
            dirty_fraction: None,
            parts: 4,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductsSummary {
    /// Products in the catalog.
    pub products: u64,
    /// Sales rows (in the Parquet files, and lines of the CSV copy).
    pub sales: u64,
    /// Malformed rows in the CSV copy.
    pub dirty_rows: u64,
}

/// One product of the catalog.
#[derive(Debug, Clone)]
struct Product {
    id: i64,
    category: usize,
    brand: Option<usize>,
    list_price: f64,
}

/// One sale.
#[derive(Debug, Clone)]
struct Sale {
    id: i64,
    day: i32,
    product: i64,
    category: usize,
    brand: Option<usize>,
    quantity: i32,
    unit_price: Option<f64>,
    region: Option<usize>,
    customer: Option<i64>,
}

fn brand_name(category: usize, brand: usize) -> String {
    let (name, _, _) = CATEGORIES[category];
    format!("{}-{:02}", &name[..3].to_ascii_uppercase(), brand + 1)
}

fn cents(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// A price rounded to the cent, as the integer number of cents that Decimal128(12, 2)
/// stores.
fn to_cents(value: f64) -> i128 {
    (value * 100.0).round() as i128
}

/// A builder of prices in [`PRICE_TYPE`].
fn price_builder() -> Decimal128Builder {
    Decimal128Builder::new().with_data_type(PRICE_TYPE)
}

fn invalid(option: &'static str, message: String) -> DatasetError {
    DatasetError::InvalidOption { option, message }
}

/// The catalog: products per category, in id order.
fn catalog(products: u64, seed: u64) -> Result<Vec<Product>, DatasetError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let categories = zipf(CATEGORIES.len(), 1.1)?;
    let brands = zipf(BRANDS, 1.2)?;
    let prices = CATEGORIES
        .iter()
        .map(|(_, median, sigma)| {
            LogNormal::new(median.ln(), *sigma).map_err(|e| invalid("price", e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((0..products)
        .map(|i| {
            let category = sample_index(&categories, &mut rng);
            let brand = (!rng.random_bool(MISSING_BRAND)).then(|| sample_index(&brands, &mut rng));
            Product {
                id: i as i64 + 1,
                category,
                brand,
                list_price: cents(prices[category].sample(&mut rng).max(0.5)),
            }
        })
        .collect())
}

fn zipf(n: usize, s: f64) -> Result<Zipf<f64>, DatasetError> {
    Zipf::new(n as f64, s).map_err(|e| invalid("zipf", e.to_string()))
}

/// A 0-based index drawn from a Zipf distribution over 1..=n.
fn sample_index(zipf: &Zipf<f64>, rng: &mut StdRng) -> usize {
    (zipf.sample(rng) as usize).saturating_sub(1)
}

/// Generates the sales of part `part`: rows `first..first + count`.
struct SalesGenerator<'a> {
    rng: StdRng,
    by_category: &'a [Vec<&'a Product>],
    categories: Zipf<f64>,
    within: Vec<Zipf<f64>>,
    customers: i64,
    next: i64,
    end: i64,
}

impl Iterator for SalesGenerator<'_> {
    type Item = Sale;

    fn next(&mut self) -> Option<Sale> {
        if self.next >= self.end {
            return None;
        }
        let id = self.next;
        self.next += 1;
        let rng = &mut self.rng;
        // A category by popularity, then a product of it (categories without products
        // fall back to the most popular one, which always has some).
        let mut category = sample_index(&self.categories, rng);
        if self.by_category[category].is_empty() {
            category = (0..self.by_category.len())
                .find(|c| !self.by_category[*c].is_empty())
                .unwrap_or(0);
        }
        let products = &self.by_category[category];
        let product = products[sample_index(&self.within[category], rng).min(products.len() - 1)];
        let discount = match rng.random_range(0..100) {
            0..70 => 0.0,
            70..82 => 0.05,
            82..92 => 0.1,
            92..97 => 0.2,
            _ => 0.3,
        };
        let quantity = 1 + (-(rng.random::<f64>().max(1e-12)).ln() * 1.5) as i32;
        Some(Sale {
            id,
            day: FIRST_DAY + rng.random_range(0..DAYS),
            product: product.id,
            category,
            brand: product.brand,
            quantity: quantity.min(50),
            unit_price: (!rng.random_bool(MISSING_PRICE))
                .then(|| cents(product.list_price * (1.0 - discount))),
            region: (!rng.random_bool(MISSING_REGION)).then(|| rng.random_range(0..REGIONS.len())),
            customer: (!rng.random_bool(GUEST_CUSTOMER))
                .then(|| rng.random_range(1..=self.customers)),
        })
    }
}

/// Writes the catalog and its sales as `options` says.
pub fn generate_products(options: &ProductsOptions) -> Result<ProductsSummary, DatasetError> {
    if options.rows == 0 {
        return Err(invalid("--rows", "must be at least 1".into()));
    }
    if options.parts == 0 {
        return Err(invalid("--parts", "must be at least 1".into()));
    }
    if let Some(f) = options.dirty_fraction
        && !(0.0..=1.0).contains(&f)
    {
        return Err(invalid(
            "--dirty-fraction",
            format!("{f} is not between 0 and 1"),
        ));
    }
    let out = &options.out_dir;
    let _ = fs::remove_file(out.join(crate::SUCCESS_MARKER));
    let products_dir = out.join("products");
    let sales_dir = out.join("sales");
    for dir in [&products_dir, &sales_dir] {
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(|e| DatasetError::io(dir, e))?;
        }
        fs::create_dir_all(dir).map_err(|e| DatasetError::io(dir, e))?;
    }

    let product_count = (options.rows / 50).clamp(100, 200_000);
    let catalog = catalog(product_count, options.seed)?;
    write_part_file(
        "products",
        catalog.iter().cloned(),
        ProductBatch::default(),
        &products_dir,
        0,
    )?;

    let mut by_category: Vec<Vec<&Product>> = vec![Vec::new(); CATEGORIES.len()];
    for product in &catalog {
        by_category[product.category].push(product);
    }
    let within = by_category
        .iter()
        .map(|p| zipf(p.len().max(1), 1.05))
        .collect::<Result<Vec<_>, _>>()?;
    let mut csv = match options.dirty_fraction {
        Some(fraction) => Some(DirtyCsv::create(
            &out.join("sales-csv"),
            fraction,
            options.seed,
        )?),
        None => None,
    };
    let per_part = options.rows.div_ceil(options.parts as u64);
    let mut written = 0;
    for part in 0..options.parts {
        let first = (part as u64 * per_part).min(options.rows);
        let end = (first + per_part).min(options.rows);
        let sales = SalesGenerator {
            rng: StdRng::seed_from_u64(
                options.seed ^ 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(part as u64 + 1),
            ),
            by_category: &by_category,
            categories: zipf(CATEGORIES.len(), 1.1)?,
            within: within.clone(),
            customers: (options.rows as i64 / 10).max(10),
            next: first as i64 + 1,
            end: end as i64 + 1,
        };
        let mut csv_error = None;
        let rows = sales.inspect(|sale| {
            if let Some(csv) = csv.as_mut()
                && csv_error.is_none()
                && let Err(e) = csv.write(sale)
            {
                csv_error = Some(e);
            }
        });
        written += write_part_file("sales", rows, SaleBatch::default(), &sales_dir, part)?;
        if let Some(e) = csv_error {
            return Err(e);
        }
    }
    let dirty_rows = match csv {
        Some(csv) => csv.finish()?,
        None => 0,
    };
    let marker = out.join(crate::SUCCESS_MARKER);
    fs::write(&marker, b"").map_err(|e| DatasetError::io(&marker, e))?;
    Ok(ProductsSummary {
        products: product_count,
        sales: written,
        dirty_rows,
    })
}

/// The CSV copy of the sales, with a share of rows broken on purpose.
struct DirtyCsv {
    dir: PathBuf,
    path: PathBuf,
    out: BufWriter<fs::File>,
    fraction: f64,
    rng: StdRng,
    dirty: u64,
}

impl DirtyCsv {
    fn create(dir: &Path, fraction: f64, seed: u64) -> Result<Self, DatasetError> {
        fs::create_dir_all(dir).map_err(|e| DatasetError::io(dir, e))?;
        let path = dir.join("sales.csv");
        let file = fs::File::create(&path).map_err(|e| DatasetError::io(&path, e))?;
        let mut out = BufWriter::new(file);
        writeln!(
            out,
            "sale_id,sale_date,product_id,category,brand,quantity,unit_price,region,customer_id"
        )
        .map_err(|e| DatasetError::io(&path, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            path,
            out,
            fraction,
            rng: StdRng::seed_from_u64(seed.rotate_left(17) ^ 0xD1B5_4A32_D192_ED03),
            dirty: 0,
        })
    }

    fn write(&mut self, sale: &Sale) -> Result<(), DatasetError> {
        let date = arrow::temporal_conversions::date32_to_datetime(sale.day)
            .map(|d| d.date().to_string())
            .unwrap_or_default();
        let mut fields = vec![
            sale.id.to_string(),
            date,
            sale.product.to_string(),
            CATEGORIES[sale.category].0.to_string(),
            sale.brand
                .map(|b| brand_name(sale.category, b))
                .unwrap_or_default(),
            sale.quantity.to_string(),
            sale.unit_price
                .map(|p| format!("{p:.2}"))
                .unwrap_or_default(),
            sale.region
                .map(|r| REGIONS[r].to_string())
                .unwrap_or_default(),
            sale.customer.map(|c| c.to_string()).unwrap_or_default(),
        ];
        if self.fraction > 0.0 && self.rng.random_bool(self.fraction) {
            self.dirty += 1;
            match self.rng.random_range(0..3) {
                0 => {
                    fields.pop();
                }
                1 => fields[6] = "12.5.0".into(),
                _ => fields[1] = "2024-13-45".into(),
            }
        }
        writeln!(self.out, "{}", fields.join(",")).map_err(|e| DatasetError::io(&self.path, e))
    }

    fn finish(mut self) -> Result<u64, DatasetError> {
        self.out
            .flush()
            .map_err(|e| DatasetError::io(&self.path, e))?;
        let count = self.dir.join("_DIRTY_ROWS");
        fs::write(&count, format!("{}\n", self.dirty)).map_err(|e| DatasetError::io(&count, e))?;
        Ok(self.dirty)
    }
}

/// The schema of `products`.
pub fn products_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("product_id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("brand", DataType::Utf8, true),
        Field::new("list_price", PRICE_TYPE, false),
    ]))
}

/// The schema of `sales`.
pub fn sales_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("sale_id", DataType::Int64, false),
        Field::new("sale_date", DataType::Date32, false),
        Field::new("product_id", DataType::Int64, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("brand", DataType::Utf8, true),
        Field::new("quantity", DataType::Int32, false),
        Field::new("unit_price", PRICE_TYPE, true),
        Field::new("region", DataType::Utf8, true),
        Field::new("customer_id", DataType::Int64, true),
    ]))
}

struct ProductBatch {
    id: Int64Builder,
    name: StringBuilder,
    category: StringBuilder,
    brand: StringBuilder,
    price: Decimal128Builder,
}

impl Default for ProductBatch {
    fn default() -> Self {
        Self {
            id: Int64Builder::new(),
            name: StringBuilder::new(),
            category: StringBuilder::new(),
            brand: StringBuilder::new(),
            price: price_builder(),
        }
    }
}

impl BatchBuilder<Product> for ProductBatch {
    fn schema(&self) -> SchemaRef {
        products_schema()
    }

    fn append(&mut self, p: Product) {
        let category = CATEGORIES[p.category].0;
        self.id.append_value(p.id);
        self.name.append_value(format!("{category} item {}", p.id));
        self.category.append_value(category);
        self.brand
            .append_option(p.brand.map(|b| brand_name(p.category, b)));
        self.price.append_value(to_cents(p.list_price));
    }

    fn len(&self) -> usize {
        self.id.len()
    }

    fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.category.finish()),
            Arc::new(self.brand.finish()),
            Arc::new(self.price.finish()),
        ];
        RecordBatch::try_new(products_schema(), columns)
    }
}

struct SaleBatch {
    id: Int64Builder,
    day: Date32Builder,
    product: Int64Builder,
    category: StringBuilder,
    brand: StringBuilder,
    quantity: Int32Builder,
    price: Decimal128Builder,
    region: StringBuilder,
    customer: Int64Builder,
}

impl Default for SaleBatch {
    fn default() -> Self {
        Self {
            id: Int64Builder::new(),
            day: Date32Builder::new(),
            product: Int64Builder::new(),
            category: StringBuilder::new(),
            brand: StringBuilder::new(),
            quantity: Int32Builder::new(),
            price: price_builder(),
            region: StringBuilder::new(),
            customer: Int64Builder::new(),
        }
    }
}

impl BatchBuilder<Sale> for SaleBatch {
    fn schema(&self) -> SchemaRef {
        sales_schema()
    }

    fn append(&mut self, s: Sale) {
        self.id.append_value(s.id);
        self.day.append_value(s.day);
        self.product.append_value(s.product);
        self.category.append_value(CATEGORIES[s.category].0);
        self.brand
            .append_option(s.brand.map(|b| brand_name(s.category, b)));
        self.quantity.append_value(s.quantity);
        self.price.append_option(s.unit_price.map(to_cents));
        self.region.append_option(s.region.map(|r| REGIONS[r]));
        self.customer.append_option(s.customer);
    }

    fn len(&self) -> usize {
        self.id.len()
    }

    fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.day.finish()),
            Arc::new(self.product.finish()),
            Arc::new(self.category.finish()),
            Arc::new(self.brand.finish()),
            Arc::new(self.quantity.finish()),
            Arc::new(self.price.finish()),
            Arc::new(self.region.finish()),
            Arc::new(self.customer.finish()),
        ];
        RecordBatch::try_new(sales_schema(), columns)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow::array::{Array, AsArray, Decimal128Array};
    use arrow::datatypes::Decimal128Type;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    fn read(dir: &Path) -> Vec<RecordBatch> {
        let mut batches = Vec::new();
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        files.sort();
        for file in files {
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(fs::File::open(file).expect("file"))
                    .expect("parquet")
                    .build()
                    .expect("reader");
            batches.extend(reader.map(|b| b.expect("batch")));
        }
        batches
    }

    #[test]
    fn sales_are_skewed_priced_per_category_dated_and_sometimes_missing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut options = ProductsOptions::new(40_000, dir.path());
        options.dirty_fraction = Some(0.01);
        let summary = generate_products(&options).expect("generates");
        assert_eq!(summary.sales, 40_000);
        assert_eq!(summary.products, 800);
        assert!(dir.path().join(crate::SUCCESS_MARKER).is_file());

        let sales = read(&dir.path().join("sales"));
        assert_eq!(
            sales.iter().map(RecordBatch::num_rows).sum::<usize>(),
            40_000
        );
        let mut per_category: HashMap<String, (usize, f64)> = HashMap::new();
        let (mut missing_price, mut missing_brand) = (0, 0);
        for batch in &sales {
            let days = batch
                .column(1)
                .as_primitive::<arrow::datatypes::Date32Type>();
            assert!(
                days.values()
                    .iter()
                    .all(|d| (FIRST_DAY..FIRST_DAY + DAYS).contains(d))
            );
            let categories = batch.column(3).as_string::<i32>();
            let prices: &Decimal128Array = batch.column(6).as_primitive::<Decimal128Type>();
            assert_eq!(prices.data_type(), &PRICE_TYPE);
            missing_price += prices.null_count();
            missing_brand += batch.column(4).null_count();
            for i in 0..batch.num_rows() {
                let entry = per_category
                    .entry(categories.value(i).to_string())
                    .or_default();
                entry.0 += 1;
                if prices.is_valid(i) {
                    entry.1 += prices.value(i) as f64 / 100.0;
                }
            }
        }
        // Zipf popularity: the top category sells far more than the median one.
        let mut counts: Vec<usize> = per_category.values().map(|(n, _)| *n).collect();
        counts.sort_unstable();
        assert!(
            counts[counts.len() - 1] > 4 * counts[counts.len() / 2],
            "{counts:?}"
        );
        // Prices per category: furniture and electronics cost more than groceries.
        let mean = |c: &str| {
            per_category
                .get(c)
                .map(|(n, s)| s / *n as f64)
                .unwrap_or(0.0)
        };
        assert!(mean("Electronics") > 10.0 * mean("Grocery"));
        assert!((100..400).contains(&missing_price), "{missing_price}");
        assert!(missing_brand > 0);

        // The dirty CSV: exactly the reported rows are malformed.
        let text = fs::read_to_string(dir.path().join("sales-csv/sales.csv")).expect("csv");
        let bad = text
            .lines()
            .skip(1)
            .filter(|l| {
                let f: Vec<&str> = l.split(',').collect();
                f.len() != 9 || f[6] == "12.5.0" || f[1] == "2024-13-45"
            })
            .count() as u64;
        assert_eq!(text.lines().count(), 40_001);
        assert_eq!(bad, summary.dirty_rows);
        assert!(
            (250..560).contains(&bad),
            "{bad} dirty rows for 1% of 40000"
        );
        let recorded = fs::read_to_string(dir.path().join("sales-csv/_DIRTY_ROWS")).expect("count");
        assert_eq!(recorded.trim(), bad.to_string());

        // The same seed gives the same data.
        let again = tempfile::tempdir().expect("temp dir");
        let mut same = options.clone();
        same.out_dir = again.path().to_path_buf();
        generate_products(&same).expect("generates");
        assert_eq!(
            fs::read_to_string(again.path().join("sales-csv/sales.csv")).expect("csv"),
            text
        );
    }

    #[test]
    fn bad_options_are_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut options = ProductsOptions::new(0, dir.path());
        assert!(
            generate_products(&options)
                .expect_err("refused")
                .to_string()
                .contains("--rows")
        );
        options.rows = 10;
        options.dirty_fraction = Some(1.5);
        assert!(
            generate_products(&options)
                .expect_err("refused")
                .to_string()
                .contains("--dirty-fraction")
        );
    }
}
