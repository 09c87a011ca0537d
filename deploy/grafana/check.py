#!/usr/bin/env python3
"""Checks that cronbyte.json imports into Grafana and that every panel can show data.

    check.py [DASHBOARD] [--rules-out FILE]

Grafana accepts a dashboard with a panel that has no query, or a query against a data
source the import never asked for, and shows an empty box: those are what this checks
(JSON, the DS_PROMETHEUS input, the airbyte_instance and connection variables, each
panel's data source and queries, the layout). A panel that ignores the instance selector
shows every instance's series whatever is selected, and one that applies it to a series
without the label shows nothing once an instance is picked: each selector of a cronbyte_*
series is checked for the filter, which only the series in UNLABELLED go without.
--rules-out writes every query as a recording rule, with Grafana's variables replaced by
plain values, so that `promtool check rules FILE` parses the PromQL.

Exits 1 with one line per problem, 0 when all is well. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

DS_INPUT = "DS_PROMETHEUS"
DS_REF = "${" + DS_INPUT + "}"
INSTANCE_FILTER = 'airbyte_instance=~"$airbyte_instance"'
# The template variables, in the order Grafana must resolve them (the connection list is
# narrowed to the instances selected), with the query each one runs.
VARIABLES = {
    "airbyte_instance": "label_values(cronbyte_airbyte_up, airbyte_instance)",
    "connection": "label_values(cronbyte_syncs_total{" + INSTANCE_FILTER + "}, connection)",
}

# The cronbyte series without an airbyte_instance label, as registered (no _total,
# _bucket, ...): each covers every instance together, or none.
UNLABELLED = {
    "cronbyte_syncs_in_flight",
    "cronbyte_syncs_waiting",
    "cronbyte_sync_duration_seconds",
    "cronbyte_sync_attempts",
    "cronbyte_schedule_lag_seconds",
    "cronbyte_store_errors",
    "cronbyte_config_reloads",
    "cronbyte_build",
    "cronbyte_runs_pruned",
    "cronbyte_leader",
    "cronbyte_leader_changes",
    "cronbyte_replicas",
    "cronbyte_replica_settings_differ",
}

# A series selector: a cronbyte metric name and its {matchers}, if any.
SELECTOR = re.compile(r"\b(cronbyte_[a-z_]+)(\{[^}]*\})?")
SUFFIX = re.compile(r"_(bucket|sum|count|total|info)$")

# What Grafana substitutes before a query reaches Prometheus, with values that keep the
# PromQL valid for a syntax check.
SUBSTITUTIONS = [
    (re.compile(r"\$__(range|rate_interval|interval)\b"), "5m"),
] + [(re.compile(r"\$\{?" + name + r"\}?"), ".*") for name in VARIABLES]


def datasource_ok(ds) -> bool:
    return isinstance(ds, dict) and ds.get("type") == "prometheus" and ds.get("uid") == DS_REF


def panels_of(dashboard):
    """Every panel, including those inside collapsed rows."""
    for panel in dashboard.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []


def check(dashboard, problems: list[str]) -> list[tuple[str, str]]:
    """Appends problems; returns (panel title, expr) for every query."""
    queries: list[tuple[str, str]] = []
    if not isinstance(dashboard.get("schemaVersion"), int) or dashboard["schemaVersion"] < 36:
        problems.append(f"schemaVersion {dashboard.get('schemaVersion')!r}: expected 36 or later")
    if not dashboard.get("uid") or not dashboard.get("title"):
        problems.append("uid and title are required for a stable import")

    inputs = {i.get("name"): i for i in dashboard.get("__inputs") or []}
    ds_input = inputs.get(DS_INPUT)
    if (
        not ds_input
        or ds_input.get("type") != "datasource"
        or ds_input.get("pluginId") != "prometheus"
    ):
        problems.append(f"__inputs must declare {DS_INPUT} as a prometheus datasource")

    declared = dig_list(dashboard, "templating", "list")
    variables = {v.get("name"): v for v in declared}
    for name, expected in VARIABLES.items():
        var = variables.get(name)
        if var is None:
            problems.append(f"templating has no {name!r} variable")
            continue
        query = var.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        if query != expected:
            problems.append(f"variable {name!r} queries {query!r}, expected {expected!r}")
        if not (var.get("multi") and var.get("includeAll")):
            problems.append(f"variable {name!r} must allow several values and All")
        # All as a regex that matches everything, the empty value too: a connection
        # known only from the history has an empty airbyte_instance.
        if var.get("allValue") != ".*":
            problems.append(f"variable {name!r} must have allValue '.*'")
        if not datasource_ok(var.get("datasource")):
            problems.append(f"variable {name!r} must use the {DS_INPUT} datasource")
    order = [v.get("name") for v in declared if v.get("name") in VARIABLES]
    if len(order) == len(VARIABLES) and order != list(VARIABLES):
        problems.append("variable 'airbyte_instance' must come before 'connection', which uses it")

    ids: set[int] = set()
    occupied: dict[tuple[int, int], str] = {}
    for panel in panels_of(dashboard):
        title = panel.get("title") or f"panel {panel.get('id')}"
        pid = panel.get("id")
        if pid in ids:
            problems.append(f"{title}: id {pid} is used twice")
        ids.add(pid)

        grid = panel.get("gridPos") or {}
        try:
            x, y, w, h = (int(grid[k]) for k in ("x", "y", "w", "h"))
        except (KeyError, TypeError, ValueError):
            problems.append(f"{title}: gridPos needs x, y, w and h")
        else:
            if x < 0 or w < 1 or x + w > 24 or h < 1:
                problems.append(f"{title}: gridPos {grid} leaves the 24-column grid")
            for cell in ((cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)):
                if cell in occupied:
                    problems.append(f"{title}: overlaps {occupied[cell]!r}")
                    break
                occupied[cell] = title

        if panel.get("type") == "row":
            continue
        if not datasource_ok(panel.get("datasource")):
            problems.append(f"{title}: datasource must be the {DS_INPUT} input")
        targets = panel.get("targets") or []
        exprs = [t.get("expr", "").strip() for t in targets]
        if not any(exprs):
            problems.append(f"{title}: no target with a non-empty expr")
        for target, expr in zip(targets, exprs):
            if "datasource" in target and not datasource_ok(target["datasource"]):
                problems.append(f"{title}: target {target.get('refId')} has another datasource")
            if not expr:
                problems.append(f"{title}: target {target.get('refId')} has an empty expr")
                continue
            check_instance_filter(title, expr, problems)
            queries.append((title, expr))
    return queries


def check_instance_filter(title: str, expr: str, problems: list[str]) -> None:
    """Every selector of a series with an airbyte_instance label filters on the
    selector variable; no selector of a series without one does."""
    for match in SELECTOR.finditer(expr):
        name = SUFFIX.sub("", match.group(1))
        matchers = match.group(2) or ""
        if name in UNLABELLED:
            if "airbyte_instance" in matchers:
                problems.append(f"{title}: {name} has no airbyte_instance label to filter on")
        elif INSTANCE_FILTER not in matchers:
            problems.append(f"{title}: {match.group(0)} must filter on {INSTANCE_FILTER}")


def dig_list(obj, *path):
    for step in path:
        obj = obj.get(step) if isinstance(obj, dict) else None
    return obj if isinstance(obj, list) else []


def as_rules(queries: list[tuple[str, str]]) -> str:
    """A Prometheus rules file (JSON is valid YAML) recording every query once."""
    rules = []
    for i, (title, expr) in enumerate(queries):
        for pattern, value in SUBSTITUTIONS:
            expr = pattern.sub(value, expr)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr, "labels": {"panel": title}})
    return json.dumps({"groups": [{"name": "cronbyte-dashboard", "rules": rules}]}, indent=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "dashboard", nargs="?", default=str(Path(__file__).resolve().parent / "cronbyte.json")
    )
    parser.add_argument("--rules-out", type=Path)
    args = parser.parse_args()

    try:
        dashboard = json.loads(Path(args.dashboard).read_text())
    except (OSError, json.JSONDecodeError) as e:
        print(f"FAIL {args.dashboard}: {e}")
        return 1
    problems: list[str] = []
    queries = check(dashboard, problems)
    if problems:
        for p in problems:
            print(f"FAIL {args.dashboard}: {p}")
        return 1
    if args.rules_out is not None:
        args.rules_out.write_text(as_rules(queries))
    panels = sum(1 for p in panels_of(dashboard) if p.get("type") != "row")
    print(f"{args.dashboard}: {panels} panels, {len(queries)} queries, all with a datasource")
    return 0


if __name__ == "__main__":
    sys.exit(main())
