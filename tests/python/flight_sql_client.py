"""A Flight SQL client for Ember's integration tests: the ADBC Flight SQL driver from PyPI
(adbc-driver-flightsql, DB-API with pyarrow), driven by tests/integration/flight_sql.rs.

    flight_sql_client.py URI query SQL_FILE OUT.arrow [--direct]
        runs the query and writes its result as an Arrow IPC file; --direct sends it as a
        plain statement (CommandStatementQuery) instead of the DB-API's prepared statement
    flight_sql_client.py URI prepared SQL VALUE
        runs SQL with one ? parameter bound to the integer VALUE; prints the first value
    flight_sql_client.py URI tables TABLE
        prints JSON: the tables GetObjects lists, the columns of TABLE, and what GetSqlInfo
        says of the server
    flight_sql_client.py URI read-some SQL N
        reads N batches, says so on stdout, waits for stdin to close, then disconnects
    flight_sql_client.py URI run SQL
        runs SQL and reads its result to the end

The token, if any, comes from EMBER_FLIGHT_SQL_TOKEN and is sent as `authorization: Bearer
TOKEN`; the CA a grpc+tls:// server's certificate is checked against from
EMBER_FLIGHT_SQL_CA (a PEM file). Errors print one line, `error: TYPE: MESSAGE`, with exit status 1.
"""

import json
import os
import sys

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi
import pyarrow
import pyarrow.ipc


def connect(uri):
    db_kwargs = {}
    token = os.environ.get("EMBER_FLIGHT_SQL_TOKEN")
    if token:
        db_kwargs[adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value] = (
            f"Bearer {token}"
        )
    ca = os.environ.get("EMBER_FLIGHT_SQL_CA")
    if ca:
        with open(ca) as f:
            db_kwargs[adbc_driver_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value] = f.read()
    return adbc_driver_flightsql.dbapi.connect(uri, db_kwargs=db_kwargs)


def query(conn, sql_file, out, direct):
    with open(sql_file) as f:
        sql = f.read()
    with conn.cursor() as cur:
        if direct:
            cur.adbc_statement.set_sql_query(sql)
            handle, _ = cur.adbc_statement.execute_query()
            table = pyarrow.RecordBatchReader._import_from_c(handle.address).read_all()
        else:
            cur.execute(sql)
            table = cur.fetch_arrow_table()
    with pyarrow.ipc.new_file(out, table.schema) as writer:
        writer.write_table(table)
    print(f"{table.num_rows} rows", flush=True)


def prepared(conn, sql, value):
    with conn.cursor() as cur:
        cur.execute(sql, parameters=(int(value),))
        print(cur.fetchone()[0], flush=True)


def tables(conn, table):
    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    names = sorted(
        t["table_name"]
        for catalog in objects
        for schema in catalog["catalog_db_schemas"] or []
        for t in schema["db_schema_tables"] or []
    )
    schema = conn.adbc_get_table_schema(table)
    info = conn.adbc_get_info()
    server = {
        "name": info.get("vendor_name"),
        "version": info.get("vendor_version"),
        "read_only": info.get("vendor_read_only"),
    }
    print(
        json.dumps({"tables": names, "columns": schema.names, "server": server}),
        flush=True,
    )


def read_some(conn, sql, n):
    cur = conn.cursor()
    cur.execute(sql)
    reader = cur.fetch_record_batch()
    rows = 0
    for _ in range(int(n)):
        rows += reader.read_next_batch().num_rows
    print(f"read {n} batches, {rows} rows", flush=True)
    sys.stdin.read()
    reader.close()
    cur.close()
    conn.close()
    print("disconnected", flush=True)


def run(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        print(f"{cur.fetch_arrow_table().num_rows} rows", flush=True)


def main():
    uri, command, *args = sys.argv[1:]
    try:
        conn = connect(uri)
        if command == "query":
            query(conn, args[0], args[1], "--direct" in args[2:])
        elif command == "prepared":
            prepared(conn, *args)
        elif command == "tables":
            tables(conn, *args)
        elif command == "read-some":
            read_some(conn, *args)
        elif command == "run":
            run(conn, *args)
        else:
            raise ValueError(f"unknown command {command}")
    except Exception as e:  # noqa: BLE001 - the test reads the error line
        message = " ".join(str(e).split())
        print(f"error: {type(e).__name__}: {message}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
