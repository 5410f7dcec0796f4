"""scripts/gpu_check.sh: a dry run of the core check on the CPU writes the check's JSON and a summary."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and coreutils timeout"
)


def run(*args, timeout=120):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )


def test_dry_run_core(tmp_path):
    out = tmp_path / "check"
    r = run("--dry-run", "--venv", sys.prefix, "--only", "core", "--out", str(out))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "finished" and summary["dry_run"] is True
    assert [c["check"] for c in summary["done"]] == ["core"]
    assert summary["failed"] == []
    skipped = {c["check"]: c["reason"] for c in summary["skipped"]}
    assert set(skipped) == {"inverse", "timeseries", "music", "policy", "posterior", "matrix"}
    assert all(reason == "not in --only" for reason in skipped.values())
    assert summary["done"][0]["json"] == ["core/core.json"] and summary["done"][0]["verifies"]
    assert summary["machine"]["device_requested"] == "cpu"

    core = json.loads((out / "core" / "core.json").read_text())
    assert core["ok"] is True and core["device"] == "cpu"
    mlp = core["nets"]["mlp"]
    assert set(mlp["train"]) == set(mlp["sample"]) == {"fp32", "bf16", "bf16+compile"}
    for mode, timing in mlp["train"].items():
        assert timing["step_ms"] > 0 and timing["final_loss"] == timing["final_loss"], mode  # finite
    for mode, timing in mlp["sample"].items():
        assert timing["finite"] and timing["steady_s"] > 0, mode
    # bf16 changes the samples only within the documented tolerance (relative error around 1e-2)
    assert 0 < mlp["sample"]["bf16"]["rel_l2_vs_fp32"] < 0.1
    assert mlp["sample"]["bf16+compile"]["rel_l2_vs_fp32"] < 0.1


def test_bad_options(tmp_path):
    r = run("--only", "nosuch", "--out", str(tmp_path), timeout=30)
    assert r.returncode == 2 and "unknown check 'nosuch'" in r.stderr
    r = run("--limit", "soon", timeout=30)
    assert r.returncode == 2 and "--limit" in r.stderr
    r = run("--list", timeout=30)
    assert r.returncode == 0 and "core" in r.stdout and "inverse" in r.stdout


def test_domain_checks_take_their_sizes_from_the_cli_presets():
    text = SCRIPT.read_text()
    blocks = re.findall(r"run_cli (\w+) <<'EOF'\n(.*?)\nEOF", text, flags=re.S)
    assert sorted(domain for domain, _ in blocks) == ["inverse", "music", "policy", "timeseries"]
    for domain, lines in blocks:
        presets = importlib.import_module(f"steerdiff.{domain}.presets").PRESETS
        commands = [line.split()[0] for line in lines.splitlines()]
        assert set(presets) <= set(commands), f"{domain}: a command with presets is not checked"
        for command in commands:
            assert command in presets or command == "evaluate", f"steerdiff-{domain} {command} has no presets"
            assert command not in presets or {"gpu-check", "smoke"} <= set(presets[command])
        assert not re.search(r"--[\w-]+ \d", lines), f"{domain}: a size is hard-coded in its check"
    assert 'argv += ["--preset", preset] if argv[0] in presets' in text
    assert "PRESET=gpu-check" in text and '[ "$DRY" = 1 ] && PRESET=smoke' in text
