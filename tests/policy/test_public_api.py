"""The README, the notebook and the benchmark scripts use only public names of steerdiff.policy."""

import ast
import json
from pathlib import Path

import steerdiff.policy as policy
import steerdiff.policy.benchmark as benchmark

ROOT = Path(__file__).resolve().parents[2]


def _sources():
    readme = (ROOT / "packages/policy/README.md").read_text()
    yield "README", "\n".join(block.split("```")[0] for block in readme.split("```python\n")[1:])
    nb = json.loads((ROOT / "notebooks/policy.ipynb").read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    yield (
        "notebook",
        "\n".join(line for cell in code for line in cell.splitlines() if not line.startswith("%")),
    )
    for script in ("policy_pgd.py", "policy_curve.py"):
        yield script, (ROOT / "benchmarks" / script).read_text()


def test_only_public_names_are_imported():
    assert policy.__version__ and "__version__" in policy.__all__
    for name in policy.__all__:
        assert hasattr(policy, name), name
    for where, source in _sources():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("steerdiff.policy"):
                assert node.module in ("steerdiff.policy", "steerdiff.policy.benchmark"), (where, node.module)
                public = policy.__all__ if node.module == "steerdiff.policy" else benchmark.__all__
                for alias in node.names:
                    assert alias.name in public and not alias.name.startswith("_"), (where, alias.name)
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("steerdiff.policy.") for a in node.names), where
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("steerdiff.core"):
                import steerdiff.core as core

                assert all(a.name in core.__all__ for a in node.names) or node.module != "steerdiff.core", (
                    where
                )
