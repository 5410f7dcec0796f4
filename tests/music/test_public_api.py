"""Every name the README and the notebook import comes from the public API; the demo command end to end."""

import ast
import json
import re
from pathlib import Path

import pytest

import steerdiff.music as music
from steerdiff.music.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _imported_names(source: str) -> set[tuple[str, str]]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("steerdiff"):
            names |= {(node.module, a.name) for a in node.names}
    return names


def test_readme_and_notebook_use_public_names_only():
    readme = (ROOT / "packages/music/README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    cells = json.loads((ROOT / "notebooks/music.ipynb").read_text())["cells"]
    code = blocks + ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    used = set().union(*(_imported_names(c) for c in code))
    assert used, "no steerdiff imports found"
    for module, name in used:
        assert module == "steerdiff.music" and name in music.__all__ and not name.startswith("_"), (
            module,
            name,
        )
    assert len(readme.splitlines()) < 150
    assert isinstance(music.__version__, str) and all(hasattr(music, n) for n in music.__all__)


def test_demo_trains_once_then_reuses_the_model(tmp_path, monkeypatch):
    pytest.importorskip("music21")
    monkeypatch.setenv("STEERDIFF_CACHE", str(tmp_path / "cache"))
    argv = [
        "demo",
        "--num-pieces",
        "4",
        "--train-steps",
        "2",
        "--num-samples",
        "2",
        "--steps",
        "3",
        "--candidates",
        "2",
        "--out",
        str(tmp_path / "demo"),
        "--quiet",
        "--threads",
        "1",
    ]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    run = Path(summary["run"])
    assert run.parent == tmp_path / "cache" / "music" and (run / "model" / "config.json").is_file()
    assert summary["scg"]["costs"]["nfe"] > summary["unguided"]["costs"]["nfe"] == 3
    assert (tmp_path / "demo" / "scg" / "sample_01.mid").is_file()
    stamp = (run / "model" / "model.safetensors").stat().st_mtime_ns
    assert main(argv) == 0  # the finished model is reused, not trained again
    assert (run / "model" / "model.safetensors").stat().st_mtime_ns == stamp
