#!/usr/bin/env python3
"""Compares Ember's TPC-H results (CSV with a header, one file per query) with the official
answers (`|`-separated with a header). Numbers match when they differ by at most 0.01, or by
at most 1e-7 relatively (the answer files round some values coarser); text matches exactly
after trimming. Rows are compared in order. Prints one line per query and a closing
'N passed, N failed' line; exits non-zero when a query failed."""

import argparse
import csv
import os
import sys


def read_answer(path):
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    return [[cell.strip() for cell in line.split("|")] for line in lines[1:]]


def read_result(path):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    return [[cell.strip() for cell in row] for row in rows[1:]]


def cells_match(expected, got):
    if expected == got:
        return True
    try:
        x, y = float(expected), float(got)
    except ValueError:
        return False
    return abs(x - y) <= 0.01 + 1e-9 or abs(x - y) <= 1e-7 * max(abs(x), abs(y))


def compare(expected, got):
    if len(expected) != len(got):
        return f"{len(got)} rows, expected {len(expected)}"
    for i, (e, g) in enumerate(zip(expected, got)):
        if len(e) != len(g):
            return f"row {i + 1}: {len(g)} columns, expected {len(e)}"
        for j, (a, b) in enumerate(zip(e, g)):
            if not cells_match(a, b):
                return f"row {i + 1}, column {j + 1}: got {b!r}, expected {a!r}"
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--answers", required=True)
    parser.add_argument("--results", required=True)
    args = parser.parse_args()
    passed = failed = 0
    total_seconds = 0.0
    for n in range(1, 23):
        name = f"q{n:02d}"
        result = os.path.join(args.results, name + ".csv")
        seconds_file = os.path.join(args.results, name + ".seconds")
        seconds = ""
        if os.path.exists(seconds_file):
            value = float(open(seconds_file).read().strip())
            total_seconds += value
            seconds = f" ({value:.2f} s)"
        expected = read_answer(os.path.join(args.answers, name + ".csv"))
        try:
            got = read_result(result)
        except (OSError, csv.Error) as e:
            print(f"{name}: FAIL: {e}")
            failed += 1
            continue
        problem = compare(expected, got) if got or expected else None
        if problem is None:
            print(f"{name}: ok, {len(got)} rows{seconds}")
            passed += 1
        else:
            print(f"{name}: FAIL: {problem}{seconds}")
            failed += 1
    if total_seconds:
        print(f"total time {total_seconds:.2f} s (each query one `ember sql` process)")
    print(f"tpch: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
