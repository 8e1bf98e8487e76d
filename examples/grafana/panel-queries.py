#!/usr/bin/env python3
"""Prints the PromQL of every panel of a Grafana dashboard, its variables substituted, so a test can
evaluate each one against a real Prometheus (Python standard library only).

  panel-queries.py [DASHBOARD] [--set NAME=VALUE]... [--rules]

One line per query: the panel's title, a tab, the query. Defaults: $job=sql-signal-exporter, every
multi-value variable (All) =.+, $__rate_interval=1m, $__interval=15s, $__range=1h. --rules prints a
Prometheus rules file instead (one recording rule per query), for `promtool check rules` to check
the syntax without a server. panel-queries.txt is this script's output for the shipped dashboard.
"""

import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULTS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}


def variables(dash, overrides):
    values = dict(DEFAULTS)
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "datasource":
            continue
        if v.get("includeAll"):
            values[v["name"]] = v.get("allValue", ".+")
        else:
            values[v["name"]] = v.get("current", {}).get("value", "")
    values.update(overrides)
    return values


def substitute(expr, values):
    def repl(m):
        name = m.group(1) or m.group(2)
        if name not in values:
            sys.exit(f"query uses undefined variable ${name}: {expr}")
        return values[name]

    # Longest names first is implicit: a name is the longest run of word characters.
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)


def queries(dash, values):
    def walk(panels):
        for p in panels:
            yield from walk(p.get("panels", []))
            for t in p.get("targets", []):
                if t.get("expr"):
                    yield p["title"], substitute(t["expr"], values)

    return list(walk(dash["panels"]))


def main(argv):
    path = os.path.join(HERE, "dashboards", "sql-signal-exporter.json")
    overrides, rules = {}, False
    args = iter(argv)
    for a in args:
        if a == "--set":
            name, _, value = next(args, "").partition("=")
            overrides[name] = value
        elif a == "--rules":
            rules = True
        elif a.startswith("-"):
            sys.exit(__doc__)
        else:
            path = a
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    found = queries(dash, variables(dash, overrides))
    if not found:
        sys.exit(f"{path}: no queries")
    if rules:
        print("groups:\n  - name: dashboard_queries\n    rules:")
        for i, (_, q) in enumerate(found):
            print(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(q)}")
    else:
        for title, q in found:
            print(f"{title}\t{q}")


if __name__ == "__main__":
    main(sys.argv[1:])
