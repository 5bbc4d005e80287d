"""Ember's peers for the TPC-H benchmark: DuckDB, Polars and Spark (local mode).

`ember-bench tpch --peers duckdb,polars,spark` starts one of these per engine and talks to it
over stdin/stdout, one JSON object per line, so that every engine runs the same query files
over the same Parquet folders, query by query, alternating with Ember and DataFusion:

    -> {"ready": true, "engine": "spark", "version": "4.0.1", "startup_ms": 7712.4}
    <- {"query": "q01", "sql": "SELECT ...", "runs": 4}
    -> {"query": "q01", "times_ms": [..4 runs..], "rows": [["A", "F", "37734107.00", ...], ...]}
       or {"query": "q01", "error": "..."}
    <- {"peak_rss": true}
    -> {"peak_rss_mb": 812.3}     (this process and its children, such as Spark's JVM)

Values come back as text (decimals and floats as Python prints them, dates ISO); the
harness compares them with DataFusion's rows, numbers with a relative tolerance.
"""

import argparse
import json
import os
import resource
import sys
import time


def text(value):
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


class DuckDb:
    def __init__(self, data, threads):
        import duckdb

        self.version = duckdb.__version__
        self.con = duckdb.connect()
        self.con.execute(f"SET threads = {threads}")
        for table in TABLES:
            path = os.path.join(data, table, "*.parquet")
            self.con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{path}')"
            )

    def run(self, sql):
        return self.con.execute(sql).fetchall()


class Polars:
    def __init__(self, data, threads):
        os.environ["POLARS_MAX_THREADS"] = str(threads)
        import polars as pl

        self.pl = pl
        self.version = pl.__version__
        frames = {
            table: pl.scan_parquet(os.path.join(data, table, "*.parquet"))
            for table in TABLES
        }
        self.ctx = pl.SQLContext(frames=frames, eager=False)

    def run(self, sql):
        frame = self.ctx.execute(sql).collect()
        return frame.rows()


class Spark:
    def __init__(self, data, threads):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        import pyspark
        from pyspark.sql import SparkSession

        self.version = pyspark.__version__
        self.spark = (
            SparkSession.builder.master(f"local[{threads}]")
            .appName("ember-bench-tpch")
            .config("spark.driver.memory", "4g")
            .config("spark.sql.shuffle.partitions", str(threads * 2))
            .config("spark.ui.enabled", "false")
            .config("spark.sql.adaptive.enabled", "true")
            .getOrCreate()
        )
        self.spark.sparkContext.setLogLevel("ERROR")
        for table in TABLES:
            self.spark.read.parquet(os.path.join(data, table)).createOrReplaceTempView(table)

    def run(self, sql):
        return [tuple(row) for row in self.spark.sql(sql).collect()]


TABLES = ["customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"]
ENGINES = {"duckdb": DuckDb, "polars": Polars, "spark": Spark}


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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", choices=sorted(ENGINES), required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    started = time.perf_counter()
    engine = ENGINES[args.engine](args.data, args.threads)
    startup_ms = (time.perf_counter() - started) * 1000.0
    out = sys.stdout
    print(json.dumps({"ready": True, "engine": args.engine, "version": engine.version,
                      "startup_ms": startup_ms}), file=out, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("peak_rss"):
            print(json.dumps({"peak_rss_mb": peak_rss_mb()}), file=out, flush=True)
            continue
        query = request["query"]
        sql = request["sql"].strip().rstrip(";")
        try:
            times, rows = [], []
            for _ in range(request["runs"]):
                begun = time.perf_counter()
                rows = engine.run(sql)
                times.append((time.perf_counter() - begun) * 1000.0)
            reply = {"query": query, "times_ms": times,
                     "rows": [[text(v) for v in row] for row in rows]}
        except Exception as e:  # the harness reports the engine's own error
            reply = {"query": query, "error": f"{type(e).__name__}: {e}".splitlines()[0]}
        print(json.dumps(reply), file=out, flush=True)


if __name__ == "__main__":
    main()
