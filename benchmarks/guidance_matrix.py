#!/usr/bin/env python
"""The guidance matrix: every guidance family on every guided task, at two budgets, in one table.

    python benchmarks/guidance_matrix.py [--quick] [--domains core,music,...] [--json out.json] [--seed N]
    python benchmarks/guidance_matrix.py --merge a.json b.json [--json all.json]   # one table from several runs

Tasks: the core's exact-posterior tasks (a correlated Gaussian in d = 16 with 4 linear measurements, and eight
Gaussians on a ring with the first coordinate observed), plus every task a domain package provides through
``steerdiff.<domain>.guided_tasks(quick)``. Protocol (``steerdiff.core.matrix``): budgets of network evaluations
per sample B and 4 B; each family's strength chosen on validation instances by ``steerdiff.core.tune``; test
instances scored once with the same seeds for every family; cells give the test metric relative to unguided
(lower is better for every task here), the winner of each row marked with *, and "n/a" with the reason where
a family does not apply. A second table says, for each task whose seed paper proposes a family, whether that
family wins its row at each budget and, if not, which family does and by how much.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import sys
import time
from pathlib import Path

import torch

from steerdiff.core.benchmarking import environment, print_table, write_json
from steerdiff.core.matrix import FAMILIES, linear_gaussian_task, ring_mixture_task, run_matrix

DOMAINS = ("timeseries", "music", "inverse", "policy")
SETTINGS = {
    "quick": {
        "steps": 8,
        "budgets": (32, 128),
        "num_samples": 16,
        "validation": 2,
        "test": 4,
        "tune_budget": 4,
    },
    "full": {
        "steps": 16,
        "budgets": (64, 256),
        "num_samples": 64,
        "validation": 4,
        "test": 16,
        "tune_budget": 8,
    },
}


def domain_tasks(names, quick: bool) -> tuple[list, list[str]]:
    tasks, missing = [], []
    for name in names:
        try:
            module = importlib.import_module(f"steerdiff.{name}")
        except ImportError:
            missing.append(f"{name} (not installed)")
            continue
        provider = getattr(module, "guided_tasks", None)
        if provider is None:
            missing.append(f"{name} (provides no guided tasks)")
            continue
        tasks.extend(provider(quick))
    return tasks, missing


def task_info(task) -> dict:
    return {
        "name": task.name,
        "metric": task.metric,
        "lower_is_better": task.lower_is_better,
        "paper_family": task.paper_family,
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in task.settings.items()},
    }


def winner(row: dict, lower_is_better: bool):
    """The guided family with the best relative metric in a row (None when none was scored)."""
    scored = [c for c in row.values() if c["relative"] is not None and c["family"] != "unguided"]
    if not scored:
        return None
    sign = 1.0 if lower_is_better else -1.0
    return min(scored, key=lambda c: sign * c["relative"])


def decided(a: dict, b: dict) -> str:
    """Whether two cells' means differ by more than twice the standard error of their paired difference.

    Every family of a row is scored on the same test instances with the same seeds, so the difference is
    taken instance by instance (a hard instance is hard for every family).
    """
    diff = [x - y for x, y in zip(a["scores"], b["scores"], strict=True)]
    n = len(diff)
    if n < 2:
        return "n/a (one test instance)"
    mean = sum(diff) / n
    se = math.sqrt(sum((d - mean) ** 2 for d in diff) / max(n - 1, 1) / n)
    return "yes" if abs(mean) > 2 * se else "no (within 2 se)"


def verdict(name, budget, paper, row, best, lower_is_better) -> list:
    """One line of the seed-paper table: does ``paper`` win the row, against whom, by how much."""
    own = row.get(paper)
    if own is None or own["not_applicable"] or own.get("error"):
        return [
            name,
            budget,
            paper,
            "failed" if own and own.get("error") else "not run",
            best["family"],
            "-",
            "-",
        ]
    if own["family"] == best["family"]:
        runner = winner({k: v for k, v in row.items() if k != paper}, lower_is_better)
        if runner is None:
            return [name, budget, paper, "yes", paper, "-", "-"]
        margin = f"{runner['relative'] / own['relative']:.2f}x over {runner['family']}"
        return [name, budget, paper, "yes", paper, margin, decided(own, runner)]
    margin = f"{own['relative'] / best['relative']:.2f}x"
    return [name, budget, paper, "no", best["family"], margin, decided(own, best)]


def report(cells: list[dict], tasks: list[dict], missing: list[str]) -> None:
    """Print the matrix and the seed papers' verdicts from cells (dicts of ``Cell``) and task infos."""
    rows, verdicts = [], []
    for task in tasks:
        mine = [c for c in cells if c["task"] == task["name"]]
        for budget in sorted({c["budget"] for c in mine}):
            row = {c["family"]: c for c in mine if c["budget"] == budget}
            best = winner(row, task["lower_is_better"])
            line = [task["name"], budget]
            for f in FAMILIES:
                c = row.get(f)
                if c is None:
                    line.append("-")
                elif c["not_applicable"]:
                    line.append("n/a")
                elif c.get("error"):
                    line.append("failed")
                else:
                    mark = "*" if best is not None and f == best["family"] else ""
                    line.append(f"{c['relative']:.2f}{mark}")
            rows.append(line)
            own = row.get("paper")
            paper = "paper" if own is not None and not own["not_applicable"] else task["paper_family"]
            if paper and best is not None:
                verdicts.append(verdict(task["name"], budget, paper, row, best, task["lower_is_better"]))
    notes = [
        "Each cell: the test metric relative to unguided at the same budget; * the row's winner.",
        "Budgets are network evaluations per sample; strengths tuned on validation instances (steerdiff.core.tune).",
    ]
    if missing:
        notes.append("Domains without tasks in this run: " + ", ".join(missing) + ".")
    for task in tasks:
        direction = "lower" if task["lower_is_better"] else "higher"
        notes.append(f"{task['name']}: {task['metric']} ({direction} is better).")
    print_table("Guidance matrix", ["task", "budget", *FAMILIES], rows, notes=notes)
    if verdicts:
        print_table(
            "Does the seed paper's family win its row?",
            ["task", "budget", "paper's family", "wins", "winner", "margin", "beyond noise"],
            verdicts,
            notes=[
                "paper's family: the paper column (the seed paper's own method as the domain implements it) where "
                "the task has one, else the family the paper proposes.",
                "margin: when the paper's family wins, the runner-up's relative metric over the winner's; when it "
                "loses, the paper family's relative metric over the winner's.",
                "beyond noise: whether the two means differ by more than twice the standard error of their paired "
                "difference (same test instances and seeds).",
            ],
        )
    details = [
        [
            c["task"],
            c["budget"],
            c["family"],
            f"{c['mean']:.4g} ± {c['se']:.2g}",
            f"{c['nfe']:.0f}",
            f"{c['forward_evals']:.0f}",
            f"{c['reward_evals']:.0f}",
            f"{c['seconds']:.1f}",
            " ".join(f"{k}={v:.3g}" for k, v in c["params"].items()),
            " ".join(f"{k}={v:.4g}" for k, v in c.get("extras", {}).items()),
        ]
        for c in cells
        if not c["not_applicable"] and not c.get("error")
    ]
    print_table(
        "Every measured cell",
        [
            "task",
            "budget",
            "family",
            "metric ± se",
            "NFE",
            "forward",
            "reward",
            "seconds",
            "tuned",
            "other metrics",
        ],
        details,
        notes=[
            "NFE, forward-model and reward evaluations per output sample, as the core's cost counter measured them."
        ],
    )
    failed = [c for c in cells if c.get("error")]
    if failed:
        print(
            "\nFailed: "
            + "; ".join(f"{c['task']} {c['family']} at {c['budget']}: {c['error']}" for c in failed)
        )
    na = sorted({(c["family"], c["not_applicable"]) for c in cells if c["not_applicable"]})
    if na:
        print("\nNot applicable: " + "; ".join(f"{f}: {why}" for f, why in na))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings, under a minute")
    parser.add_argument(
        "--domains",
        default="core," + ",".join(DOMAINS),
        help="comma-separated: core (the exact-posterior tasks) and any of " + ", ".join(DOMAINS),
    )
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated families to run")
    parser.add_argument("--json", help="write every cell, the settings and the machine to this file")
    parser.add_argument(
        "--merge", nargs="+", metavar="JSON", help="print one matrix from these runs' JSON files"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every run")
    args = parser.parse_args(argv)
    if args.merge:
        runs = [json.loads(Path(p).read_text()) for p in args.merge]
        cells = [c for r in runs for c in r["cells"]]
        tasks = [t for r in runs for t in r["tasks"]]
        missing = sorted(
            {m for r in runs for m in r["missing_domains"]} - {t["name"].split()[0] for t in tasks}
        )
        report(cells, tasks, [])
        if args.json:
            write_json(
                args.json, {"runs": args.merge, "cells": cells, "tasks": tasks, "environment": environment()}
            )
            print(f"Wrote {args.json}")
        return 0
    domains = [d.strip() for d in args.domains.split(",") if d.strip()]
    unknown = sorted(set(domains) - {"core", *DOMAINS})
    if unknown:
        parser.error(f"unknown domains {unknown}; choose from core, {', '.join(DOMAINS)}")
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    bad = sorted(set(families) - set(FAMILIES))
    if bad or "unguided" not in families:
        parser.error(
            f"families must include unguided and come from {', '.join(FAMILIES)}; got {bad or families}"
        )
    torch.set_num_threads(1)
    setting = SETTINGS["quick" if args.quick else "full"]
    tasks = []
    if "core" in domains:
        tasks += [
            linear_gaussian_task(16, 4, steps=setting["steps"]),
            ring_mixture_task(steps=setting["steps"]),
        ]
    extra, missing = domain_tasks([d for d in domains if d != "core"], args.quick)
    tasks += extra
    t0 = time.perf_counter()
    cells = run_matrix(
        tasks,
        setting["budgets"],
        families,
        num_samples=setting["num_samples"],
        validation=setting["validation"],
        test=setting["test"],
        tune_budget=setting["tune_budget"],
        seed=args.seed,
    )
    seconds = time.perf_counter() - t0
    cell_dicts = [dataclasses.asdict(c) for c in cells]
    infos = [task_info(t) for t in tasks]
    report(cell_dicts, infos, missing)
    print(f"\nTotal time: {seconds:.1f} s")
    if args.json:
        write_json(
            args.json,
            {
                "setting": setting,
                "domains": domains,
                "seconds": seconds,
                "tasks": infos,
                "cells": cell_dicts,
                "missing_domains": missing,
                "environment": environment(),
            },
        )
        print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
