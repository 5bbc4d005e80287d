"""TPC-DS data, queries and answers for `ember-bench tpcds`, made by DuckDB's `tpcds` extension.

Needs `duckdb` and `duckdb-ext-tpcds` of the same version (PyPI); the extension's file is
loaded from the `duckdb_ext` package that `duckdb-ext-tpcds` installs, so nothing is
downloaded at run time.

    python bench/python/tpcds.py --sf 1 --out data/tpcds-sf1

writes, under OUT:

- `TABLE/part-0.parquet` for each of the 24 tables (dsdgen's data, DuckDB's types);
- `queries/qNN.sql` (NN = 01..99), the extension's query texts;
- `answers/qNN.json`, DuckDB's rows for each query over those tables, values as text
  (None as "", dates ISO), or `{"error": "..."}` where DuckDB failed;
- `_SUCCESS` last, so a folder without it is made again.
"""

import argparse
import glob
import json
import os
import shutil
import sys
import time

import duckdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import text  # noqa: E402  (values as text, as the peers send them)


def extension_path():
    """The tpcds extension file shipped by the `duckdb-ext-tpcds` wheel."""
    import duckdb_ext  # namespace package of duckdb-ext-tpcds

    version = "v" + duckdb.__version__
    for root in duckdb_ext.__path__:
        found = glob.glob(os.path.join(root, "extensions", version, "*", "tpcds.duckdb_extension"))
        if found:
            return found[0]
    sys.exit(
        f"no tpcds extension for duckdb {duckdb.__version__}: "
        f"pip install duckdb-ext-tpcds=={duckdb.__version__}.*"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sf", type=float, default=1.0, help="scale factor")
    parser.add_argument("--out", required=True, help="folder to write")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    out = args.out
    if os.path.exists(os.path.join(out, "_SUCCESS")):
        return
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)

    con = duckdb.connect()
    con.execute(f"SET threads = {args.threads}")
    con.execute(f"LOAD '{extension_path()}'")
    started = time.time()
    con.execute(f"CALL dsdgen(sf = {args.sf})")
    print(f"dsdgen sf {args.sf}: {time.time() - started:.1f} s", file=sys.stderr)

    tables = [row[0] for row in con.execute("SHOW TABLES").fetchall()]
    for table in tables:
        folder = os.path.join(out, table)
        os.makedirs(folder)
        target = os.path.join(folder, "part-0.parquet")
        con.execute(f"COPY {table} TO '{target}' (FORMAT parquet)")

    os.makedirs(os.path.join(out, "queries"))
    os.makedirs(os.path.join(out, "answers"))
    queries = con.execute("SELECT query_nr, query FROM tpcds_queries() ORDER BY query_nr").fetchall()
    for number, sql in queries:
        name = f"q{number:02d}"
        with open(os.path.join(out, "queries", f"{name}.sql"), "w") as f:
            f.write(sql.strip() + "\n")
        try:
            rows = [[text(v) for v in row] for row in con.execute(sql).fetchall()]
            answer = {"rows": rows}
        except duckdb.Error as e:
            answer = {"error": str(e).splitlines()[0]}
        with open(os.path.join(out, "answers", f"{name}.json"), "w") as f:
            json.dump(answer, f)
    print(
        f"{len(tables)} tables, {len(queries)} queries and answers in {out} "
        f"({time.time() - started:.1f} s)",
        file=sys.stderr,
    )
    open(os.path.join(out, "_SUCCESS"), "w").close()


if __name__ == "__main__":
    main()
