"""Ember's peers for the benchmarks: DuckDB, Polars and Spark (local mode).

`ember-bench` starts one of these per engine and talks to it over stdin/stdout, one JSON
object per line. It serves two kinds of request:

- Queries (TPC-H, TPC-DS): every engine runs the same query texts over the same Parquet
  folders, query by query, alternating with Ember and DataFusion. The tables are the
  sub-folders of the `--data` folder given at start-up that hold Parquet files (none
  without it).
- Pipelines: the engine runs its own implementation of one of Ember's example pipelines
  over the Parquet folder named in the request. Each run's time covers everything:
  reading the Parquet, every query, and materializing every table in Python.
  `product-prices` is the report of `examples/src/product_prices.rs` (its SQL form) over a
  folder made by `ember datasets products`; tables `summary`, `bands`, `top_products`
  and `monthly`.

    -> {"ready": true, "engine": "spark", "version": "4.0.1", "startup_ms": 7712.4}
    <- {"query": "q01", "sql": "SELECT ...", "runs": 4}
    -> {"query": "q01", "times_ms": [..4 runs..], "rows": [["A", "F", "37734107.00", ...], ...]}
       or {"query": "q01", "error": "..."}
    <- {"pipeline": "product-prices", "data": "data/products-10m", "runs": 2}
    -> {"pipeline": "product-prices", "times_ms": [..2 runs..], "tables": {"summary":
        [["brand", "AUT-01", "1020", ...], ...], "bands": [...], "top_products": [...],
        "monthly": [...]}}
       or {"pipeline": "product-prices", "error": "..."}
    <- {"peak_rss": true}
    -> {"peak_rss_mb": 812.3}     (this process and its children, such as Spark's JVM)

Values come back as text (None as "", decimals and floats as Python prints them, dates
ISO); rows of a pipeline come from its last run. The harness compares them with Ember's
or DataFusion's rows, numbers with a relative tolerance.
"""

import argparse
import json
import os
import resource
import sys
import time

def tables(data):
    """The tables of a data folder: its sub-folders that hold Parquet files, by name."""
    if not data:
        return []
    return sorted(
        name
        for name in os.listdir(data)
        if os.path.isdir(os.path.join(data, name))
        and any(f.endswith(".parquet") for f in os.listdir(os.path.join(data, name)))
    )

# The product-price report's constants, as in examples/src/product_prices.rs.
DIMENSIONS = ["category", "brand"]
FIXED_EDGES = [10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0]
BAND_QUANTILES = [0.2, 0.4, 0.6, 0.8]
SUMMARY_QUANTILES = {
    "p25_price": 0.25,
    "median_price": 0.5,
    "p75_price": 0.75,
    "p90_price": 0.9,
    "p99_price": 0.99,
}
TOP_PRODUCTS = 10


def text(value):
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def distinct_edges(values):
    """The non-null quantile values with consecutive equal ones kept once."""
    edges = []
    for value in values:
        if value is not None and (not edges or edges[-1] != value):
            edges.append(value)
    return edges


def band_bounds(edges):
    """`(band, low, high)` of every band for `edges`: band 0 has no low, the last no high."""
    lows = [None] + list(edges)
    highs = list(edges) + [None]
    return list(zip(range(len(edges) + 1), lows, highs))


class PriceSql:
    """The product-price report in SQL, for an engine whose dialect differs from DuckDB's
    only in how it names Parquet files, its approximate percentiles and its string type.
    The joined sales, `price_sales`, are a temporary `relation`: a TABLE (computed once)
    or a VIEW (computed by every query)."""

    def __init__(self, relation, parquet, percentiles, first, string):
        self.relation = relation
        self.parquet = parquet  # folder -> a table expression
        self.percentiles = percentiles  # quantiles -> one aggregate: an array of prices
        self.first = first  # the index of an array's first item
        self.string = string  # the name of the string type

    def price_sales(self, data):
        sales = self.parquet(os.path.join(data, "sales"))
        products = self.parquet(os.path.join(data, "products"))
        return (
            "SELECT p.name AS product, s.category, s.brand, "
            "CAST(s.quantity AS DOUBLE) AS quantity, s.unit_price, "
            "s.unit_price * CAST(s.quantity AS DOUBLE) AS revenue, s.sale_date "
            f"FROM {sales} s JOIN {products} p ON s.product_id = p.product_id"
        )

    def quantile_edges(self):
        return f"SELECT {self.percentiles(BAND_QUANTILES)} FROM price_sales"

    def summary(self):
        quantiles = "".join(
            f", prices[{self.first + i}] AS {name}" for i, name in enumerate(SUMMARY_QUANTILES)
        )
        per_dim = [
            f"SELECT '{d}' AS dimension, CAST({d} AS {self.string}) AS key, count(*) AS sales, "
            "sum(revenue) AS revenue, min(unit_price) AS min_price, "
            "max(unit_price) AS max_price, avg(unit_price) AS mean_price, "
            "stddev_samp(unit_price) AS stddev_price, "
            f"{self.percentiles(SUMMARY_QUANTILES.values())} AS prices "
            f"FROM price_sales GROUP BY {d}"
            for d in DIMENSIONS
        ]
        return (
            "SELECT dimension, key, sales, revenue, min_price, max_price, mean_price, "
            f"stddev_price{quantiles} FROM ({' UNION ALL '.join(per_dim)}) "
            "ORDER BY dimension, key NULLS LAST"
        )

    def bands(self, quantile_edges):
        schemes = " UNION ALL ".join(
            self.scheme(name, edges)
            for name, edges in [("fixed", FIXED_EDGES), ("quantile", quantile_edges)]
        )
        return f"SELECT * FROM ({schemes}) ORDER BY scheme, category NULLS LAST, band"

    def scheme(self, name, edges):
        case = "".join(f" WHEN unit_price < {double(e)} THEN {i}" for i, e in enumerate(edges))
        band = f"CASE{case} ELSE {len(edges)} END" if edges else "0"
        bounds = band_bounds(edges)
        return (
            f"SELECT '{name}' AS scheme, category, band, {edge_case(bounds, 1)} AS low, "
            f"{edge_case(bounds, 2)} AS high, sales, revenue "
            f"FROM (SELECT {DIMENSIONS[0]} AS category, {band} AS band, count(*) AS sales, "
            "sum(revenue) AS revenue FROM price_sales WHERE unit_price IS NOT NULL "
            "GROUP BY 1, 2)"
        )

    def top_products(self):
        return (
            "SELECT category, rank, product, revenue, units FROM ("
            "SELECT category, product, revenue, units, row_number() OVER (PARTITION BY "
            "category ORDER BY revenue DESC NULLS LAST, product NULLS LAST) AS rank "
            f"FROM (SELECT {DIMENSIONS[0]} AS category, product, sum(revenue) AS revenue, "
            "sum(quantity) AS units FROM price_sales GROUP BY 1, 2)) "
            f"WHERE rank <= {TOP_PRODUCTS} ORDER BY category NULLS LAST, rank"
        )

    def monthly(self):
        return (
            "SELECT category, month, revenue, previous_revenue, "
            "(revenue - previous_revenue) / previous_revenue AS change FROM ("
            "SELECT category, month, revenue, lag(revenue) OVER (PARTITION BY category "
            "ORDER BY month) AS previous_revenue "
            f"FROM (SELECT {DIMENSIONS[0]} AS category, "
            "CAST(date_trunc('month', sale_date) AS DATE) AS month, "
            "sum(revenue) AS revenue FROM price_sales WHERE sale_date IS NOT NULL "
            "GROUP BY 1, 2)) "
            "ORDER BY category NULLS LAST, month"
        )

    def report(self, data, run):
        """The report's tables, `run` taking SQL to a list of rows."""
        run(
            f"CREATE OR REPLACE TEMPORARY {self.relation} price_sales AS "
            f"{self.price_sales(data)}"
        )
        edges = distinct_edges(run(self.quantile_edges())[0][0] or [])
        tables = {
            "summary": run(self.summary()),
            "bands": run(self.bands(edges)),
            "top_products": run(self.top_products()),
            "monthly": run(self.monthly()),
        }
        run(f"DROP {self.relation} price_sales")
        return tables


def double(value):
    """A SQL literal of type DOUBLE (a bare `10.0` is a decimal in DuckDB and Spark); the
    edges may come back from an engine as `Decimal`s, whose repr is not SQL."""
    return f"CAST({float(value)!r} AS DOUBLE)"


def edge_case(bounds, side):
    """`CASE` over the band giving its low (side 1) or high (side 2) edge."""
    arms = "".join(f" WHEN {b[0]} THEN {double(b[side])}" for b in bounds if b[side] is not None)
    return f"CASE band{arms} END" if arms else "CAST(NULL AS DOUBLE)"


class DuckDb:
    """Queries through views over the Parquet; the product-price report in SQL over a
    temporary table of the joined sales."""

    def __init__(self, data, threads):
        import duckdb

        self.version = duckdb.__version__
        self.con = duckdb.connect()
        self.con.execute(f"SET threads = {threads}")
        for table in tables(data):
            path = os.path.join(data, table, "*.parquet")
            self.con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{path}')"
            )
        self.prices = PriceSql(
            relation="TABLE",
            parquet=lambda folder: f"read_parquet('{os.path.join(folder, '*.parquet')}')",
            percentiles=lambda qs: f"approx_quantile(unit_price, {list(qs)})",
            first=1,
            string="VARCHAR",
        )

    def run(self, sql):
        return self.con.execute(sql).fetchall()

    def product_prices(self, data):
        return self.prices.report(data, self.run)


class Polars:
    """Queries through the SQL context over lazy scans; the product-price report with the
    lazy API over the joined sales, collected once, its four tables collected together."""

    def __init__(self, data, threads):
        os.environ["POLARS_MAX_THREADS"] = str(threads)
        import polars as pl

        self.pl = pl
        self.version = pl.__version__
        frames = {
            table: pl.scan_parquet(os.path.join(data, table, "*.parquet"))
            for table in tables(data)
        }
        self.ctx = pl.SQLContext(frames=frames, eager=False)

    def run(self, sql):
        frame = self.ctx.execute(sql).collect()
        return frame.rows()

    def product_prices(self, data):
        pl = self.pl
        price_sales = self.price_sales(data)
        edges = price_sales.select(
            pl.col("unit_price").approx_quantile(BAND_QUANTILES)
        ).collect().item()
        tables = {
            "summary": self.summary(price_sales),
            "bands": self.bands(price_sales, distinct_edges(edges)),
            "top_products": self.top_products(price_sales),
            "monthly": self.monthly(price_sales),
        }
        frames = pl.collect_all(list(tables.values()))
        return {name: frame.rows() for name, frame in zip(tables, frames)}

    def price_sales(self, data):
        """The sales joined with the catalog, collected once: every table reads them."""
        pl = self.pl
        sales = pl.scan_parquet(os.path.join(data, "sales", "*.parquet"))
        products = pl.scan_parquet(os.path.join(data, "products", "*.parquet"))
        quantity = pl.col("quantity").cast(pl.Float64)
        return sales.join(
            products.select("product_id", product=pl.col("name")), on="product_id"
        ).select(
            "product", "category", "brand",
            quantity=quantity,
            unit_price="unit_price",
            revenue=pl.col("unit_price") * quantity,
            sale_date="sale_date",
        ).collect().lazy()

    def sql_sum(self, column):
        """SQL's sum: null over no values (Polars' own gives 0)."""
        pl = self.pl
        return pl.when(pl.col(column).count() > 0).then(pl.col(column).sum())

    def summary(self, price_sales):
        pl = self.pl
        price = pl.col("unit_price")
        per_dim = [
            price_sales.group_by(d).agg(
                sales=pl.len(),
                revenue=self.sql_sum("revenue"),
                min_price=price.min(),
                max_price=price.max(),
                mean_price=price.mean(),
                stddev_price=price.std(),
                prices=price.approx_quantile(list(SUMMARY_QUANTILES.values())),
            ).select(
                pl.lit(d).alias("dimension"),
                pl.col(d).cast(pl.String).alias("key"),
                pl.exclude(d, "prices"),
                *(pl.col("prices").list.get(i).alias(q) for i, q in enumerate(SUMMARY_QUANTILES)),
            )
            for d in DIMENSIONS
        ]
        return pl.concat(per_dim).sort("dimension", "key", nulls_last=True)

    def bands(self, price_sales, quantile_edges):
        pl = self.pl
        priced = price_sales.filter(pl.col("unit_price").is_not_null())
        schemes = []
        for name, edges in [("fixed", FIXED_EDGES), ("quantile", quantile_edges)]:
            band = pl.lit(pl.Series(edges, dtype=pl.Float64)).search_sorted(
                pl.col("unit_price"), side="right"
            ).cast(pl.Int64)
            bounds = pl.LazyFrame(
                band_bounds(edges), orient="row",
                schema={"band": pl.Int64, "low": pl.Float64, "high": pl.Float64},
            )
            schemes.append(
                priced.group_by(category=DIMENSIONS[0], band=band)
                .agg(sales=pl.len(), revenue=self.sql_sum("revenue"))
                .join(bounds, on="band", how="left")
                .select(
                    pl.lit(name).alias("scheme"),
                    "category", "band", "low", "high", "sales", "revenue",
                )
            )
        return pl.concat(schemes).sort("scheme", "category", "band", nulls_last=True)

    def top_products(self, price_sales):
        pl = self.pl
        return (
            price_sales.group_by(category=DIMENSIONS[0], product="product")
            .agg(revenue=self.sql_sum("revenue"), units=self.sql_sum("quantity"))
            .sort(
                "category", "revenue", "product",
                descending=[False, True, False], nulls_last=True,
            )
            .select(
                "category",
                rank=pl.int_range(1, pl.len() + 1).over("category"),
                product="product", revenue="revenue", units="units",
            )
            .filter(pl.col("rank") <= TOP_PRODUCTS)
        )

    def monthly(self, price_sales):
        pl = self.pl
        revenue = pl.col("revenue")
        previous = revenue.shift(1).over("category")
        return (
            price_sales.filter(pl.col("sale_date").is_not_null())
            .group_by(category=DIMENSIONS[0], month=pl.col("sale_date").dt.truncate("1mo"))
            .agg(revenue=self.sql_sum("revenue"))
            .sort("category", "month", nulls_last=True)
            .select(
                "category", "month", "revenue",
                previous_revenue=previous,
                change=(revenue - previous) / previous,
            )
        )


class Spark:
    """Queries through temporary views; the product-price report in Spark SQL over a view
    of the joined sales."""

    def __init__(self, data, threads):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        import pyspark
        from pyspark.sql import SparkSession

        self.version = pyspark.__version__
        self.spark = (
            SparkSession.builder.master(f"local[{threads}]")
            .appName("ember-bench-peers")
            .config("spark.driver.memory", "4g")
            .config("spark.sql.shuffle.partitions", str(threads * 2))
            .config("spark.ui.enabled", "false")
            .config("spark.sql.adaptive.enabled", "true")
            # percentile_approx over a few hundred groups (product-prices) stays hashed
            # instead of falling back to sorting every row.
            .config("spark.sql.objectHashAggregate.sortBased.fallbackThreshold", "4096")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
        self.spark.sparkContext.setLogLevel("ERROR")
        for table in tables(data):
            self.spark.read.parquet(os.path.join(data, table)).createOrReplaceTempView(table)
        self.prices = PriceSql(
            relation="VIEW",
            parquet=lambda folder: f"parquet.`{folder}`",
            percentiles=lambda qs: (
                f"percentile_approx(unit_price, array({', '.join(map(str, qs))}))"
            ),
            first=0,
            string="STRING",
        )

    def run(self, sql):
        return [tuple(row) for row in self.spark.sql(sql).collect()]

    def product_prices(self, data):
        return self.prices.report(data, self.run)


ENGINES = {"duckdb": DuckDb, "polars": Polars, "spark": Spark}
PIPELINES = {"product-prices": "product_prices"}


def peak_rss_mb():
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # Spark's JVM is a live child: its resident memory is read from /proc.
    live = 0
    try:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid():
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            live = max(live, int(line.split()[1]))
    except OSError:
        pass
    return (own + max(children, live)) / 1024.0


def timed(runs, work):
    """The milliseconds of each of `runs` calls of `work`, and the last call's result."""
    times, result = [], None
    for _ in range(runs):
        begun = time.perf_counter()
        result = work()
        times.append((time.perf_counter() - begun) * 1000.0)
    return times, result


def rows_text(rows):
    return [[text(v) for v in row] for row in rows]


def serve_query(engine, request):
    sql = request["sql"].strip().rstrip(";")
    times, rows = timed(request["runs"], lambda: engine.run(sql))
    return {"times_ms": times, "rows": rows_text(rows)}


def serve_pipeline(engine, request):
    name = request["pipeline"]
    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline '{name}' (known: {', '.join(PIPELINES)})")
    pipeline = getattr(engine, PIPELINES[name])
    times, tables = timed(request["runs"], lambda: pipeline(request["data"]))
    return {"times_ms": times,
            "tables": {table: rows_text(rows) for table, rows in tables.items()}}


def reply_to(engine, request):
    if request.get("peak_rss"):
        return {"peak_rss_mb": peak_rss_mb()}
    kind, serve = ("pipeline", serve_pipeline) if "pipeline" in request else ("query", serve_query)
    reply = {kind: request[kind]}
    try:
        reply.update(serve(engine, request))
    except Exception as e:  # the harness reports the engine's own error
        reply["error"] = f"{type(e).__name__}: {e}".splitlines()[0]
    return reply


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", choices=sorted(ENGINES), required=True)
    parser.add_argument("--data", help="a folder of tables, one sub-folder of Parquet files each")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    started = time.perf_counter()
    engine = ENGINES[args.engine](args.data, args.threads)
    startup_ms = (time.perf_counter() - started) * 1000.0
    out = sys.stdout
    print(json.dumps({"ready": True, "engine": args.engine, "version": engine.version,
                      "startup_ms": startup_ms}), file=out, flush=True)
    for line in sys.stdin:
        print(json.dumps(reply_to(engine, json.loads(line))), file=out, flush=True)


if __name__ == "__main__":
    main()
