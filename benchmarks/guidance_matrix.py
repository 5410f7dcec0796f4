#!/usr/bin/env python
"""The guidance matrix: every guidance family on every guided task, at two budgets, in one table.

    python benchmarks/guidance_matrix.py [--quick] [--json out.json] [--seed N]

Tasks: the core's exact-posterior tasks (a correlated Gaussian in d = 16 with 4 linear measurements, and eight
Gaussians on a ring with the first coordinate observed), plus every task a domain package provides through
``steerdiff.<domain>.guided_tasks(quick)``. Protocol (``steerdiff.core.matrix``): budgets of network evaluations
per sample B and 4 B; each family's strength chosen on validation instances by ``steerdiff.core.tune``; test
instances scored once with the same seeds for every family; cells give the test metric relative to unguided
(lower is better for every task here), the winner of each row marked with *, and "n/a" with the reason where
a family does not apply.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import time

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


def domain_tasks(quick: bool) -> tuple[list, list[str]]:
    tasks, missing = [], []
    for name in DOMAINS:
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings, under a minute")
    parser.add_argument("--json", help="write every cell, the settings and the machine to this file")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    setting = SETTINGS["quick" if args.quick else "full"]
    tasks = [linear_gaussian_task(16, 4, steps=setting["steps"]), ring_mixture_task(steps=setting["steps"])]
    extra, missing = domain_tasks(args.quick)
    tasks += extra
    t0 = time.perf_counter()
    cells = run_matrix(
        tasks,
        setting["budgets"],
        num_samples=setting["num_samples"],
        validation=setting["validation"],
        test=setting["test"],
        tune_budget=setting["tune_budget"],
        seed=args.seed,
    )
    rows = []
    for task in tasks:
        for budget in setting["budgets"]:
            row = {c.family: c for c in cells if c.task == task.name and c.budget == budget}
            scored = [c for c in row.values() if c.relative is not None and c.family != "unguided"]
            best = min(scored, key=lambda c: c.relative).family if scored else None
            line = [task.name, budget]
            for f in FAMILIES:
                c = row[f]
                if c.not_applicable:
                    line.append("n/a")
                else:
                    line.append(f"{c.relative:.2f}{'*' if f == best else ''}")
            rows.append(line)
    notes = [
        "Each cell: the test metric relative to unguided at the same budget (lower is better); * the row's winner.",
        "Budgets are network evaluations per sample; strengths tuned on validation instances (steerdiff.core.tune).",
    ]
    if missing:
        notes.append("Domains without tasks in this run: " + ", ".join(missing) + ".")
    for task in tasks:
        notes.append(f"{task.name}: metric {task.metric}.")
    print_table("Guidance matrix", ["task", "budget", *FAMILIES], rows, notes=notes)
    na = sorted({(c.family, c.not_applicable) for c in cells if c.not_applicable})
    if na:
        print("\nNot applicable: " + "; ".join(f"{f}: {why}" for f, why in na))
    seconds = time.perf_counter() - t0
    print(f"\nTotal time: {seconds:.1f} s")
    if args.json:
        write_json(
            args.json,
            {
                "setting": setting,
                "seconds": seconds,
                "cells": [dataclasses.asdict(c) for c in cells],
                "missing_domains": missing,
                "environment": environment(),
            },
        )
        print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
