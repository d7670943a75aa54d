#!/usr/bin/env python3
"""Summarise the CloudWatch EMF lines of a local run into a table.

Usage: scripts/metrics.py [FILE ...]   (`-` = stdin; default: target/dev-logs/*.log,
the logs `make dev` writes). Every JSON line with an `_aws.CloudWatchMetrics` directive
is read; other lines (logs, cargo output) are skipped. One row per metric and dimension
set: sum, count of data points, min/max, unit.
"""
import glob
import json
import sys
from collections import defaultdict


def documents(stream):
    for line in stream:
        start = line.find('{"')
        if start < 0 or '"_aws"' not in line:
            continue
        try:
            doc = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("_aws"), dict):
            yield doc


def summarise(docs):
    rows = defaultdict(lambda: {"sum": 0.0, "count": 0, "min": None, "max": None, "unit": ""})
    for doc in docs:
        for directive in doc["_aws"].get("CloudWatchMetrics", []):
            namespace = directive.get("Namespace", "")
            for dims in directive.get("Dimensions", [[]]) or [[]]:
                key_dims = ",".join(f"{d}={doc.get(d, '?')}" for d in dims)
                for metric in directive.get("Metrics", []):
                    name = metric.get("Name")
                    value = doc.get(name)
                    values = value if isinstance(value, list) else [value]
                    for v in values:
                        if not isinstance(v, (int, float)):
                            continue
                        row = rows[(namespace, name, key_dims)]
                        row["sum"] += v
                        row["count"] += 1
                        row["min"] = v if row["min"] is None else min(row["min"], v)
                        row["max"] = v if row["max"] is None else max(row["max"], v)
                        row["unit"] = metric.get("Unit", "None")
    return rows


def fmt(v):
    return "" if v is None else (f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}")


def main(argv):
    paths = argv[1:] or sorted(glob.glob("target/dev-logs/*.log"))
    if not paths:
        print("no logs: run `make dev` (writes target/dev-logs/*.log) or pass a file / `-` for stdin", file=sys.stderr)
        return 1
    docs = []
    for path in paths:
        if path == "-":
            docs.extend(documents(sys.stdin))
        else:
            with open(path, encoding="utf-8", errors="replace") as f:
                docs.extend(documents(f))
    rows = summarise(docs)
    if not rows:
        print(f"no EMF metrics in {', '.join(paths)}")
        return 0
    header = ("metric", "dimensions", "sum", "count", "min", "max", "unit")
    table = [header] + [
        (name, dims or "-", fmt(r["sum"]), str(r["count"]), fmt(r["min"]), fmt(r["max"]), r["unit"])
        for (namespace, name, dims), r in sorted(rows.items())
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    namespaces = sorted({ns for ns, _, _ in rows})
    print(f"{len(docs)} EMF documents, namespace {', '.join(namespaces)}")
    for i, row in enumerate(table):
        print("  ".join(c.ljust(w) if j < 2 or j == 6 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
