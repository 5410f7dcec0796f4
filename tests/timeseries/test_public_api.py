"""The public API: every name the README, the notebook and the benchmark script import is public."""

import ast
import json
import re
from pathlib import Path

import steerdiff.timeseries as ts

ROOT = Path(__file__).resolve().parents[2]


def _imports(source: str) -> list[tuple[str, str]]:
    """(module, name) of every ``from steerdiff... import name`` in ``source``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("steerdiff"):
            out += [(node.module, alias.name) for alias in node.names]
    return out


def _readme_code() -> str:
    text = (ROOT / "packages" / "timeseries" / "README.md").read_text()
    return "\n".join(re.findall(r"```python\n(.*?)```", text, flags=re.S))


def _notebook_code() -> str:
    cells = json.loads((ROOT / "notebooks" / "timeseries.ipynb").read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def test_version_and_all():
    assert isinstance(ts.__version__, str) and ts.__version__
    assert len(set(ts.__all__)) == len(ts.__all__)
    for name in ts.__all__:
        assert hasattr(ts, name), name
        assert not name.startswith("_") or name == "__version__"


def test_readme_notebook_and_benchmark_import_public_names_only():
    script = (ROOT / "benchmarks" / "timeseries_tsdiff.py").read_text()
    used = _imports(_readme_code()) + _imports(_notebook_code()) + _imports(script)
    assert used
    for module, name in used:
        assert not name.startswith("_") and "cli" not in module, (module, name)
        mod = __import__(module, fromlist=[name])
        assert name in getattr(mod, "__all__", ()), (module, name)
    assert "sys.path" not in script


def test_readme_quickstart_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(_readme_code(), "README.md", "exec"), {})
    assert (tmp_path / "tsdiff-model" / "config.json").exists()
    assert "crps" in capsys.readouterr().out
