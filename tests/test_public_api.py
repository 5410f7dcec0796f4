"""Every name a README, a doc page or a notebook imports comes from a package's public API.

A user copies these lines; they must work with the installed packages and never reach a private name or a
module's internals.
"""

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = {f"steerdiff.{p}" for p in ("core", "policy", "timeseries", "music", "inverse")}


def _documents():
    yield from sorted(ROOT.glob("README.md"))
    yield from sorted(ROOT.glob("packages/*/README.md"))
    yield from sorted(ROOT.glob("docs/**/*.md"))
    yield from sorted(ROOT.glob("notebooks/*.ipynb"))


def _code(path: Path) -> str:
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return "\n".join(re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S))


def _imports(code: str):
    for line in code.splitlines():  # one statement at a time, so a doc's partial snippet still parses
        line = line.strip()
        if not line.startswith(("from steerdiff", "import steerdiff")):
            continue
        if "(" in line and ")" not in line:  # a parenthesised list: take it up to its closing parenthesis
            start = code.index(line)
            line = code[start : code.index(")", start) + 1]
        node = ast.parse(line).body[0]
        if isinstance(node, ast.ImportFrom):
            yield node.module, [a.name for a in node.names]
        else:
            for alias in node.names:
                yield alias.name, []


DOCS = [p for p in _documents() if "steerdiff" in _code(p)]


def test_documents_with_code_are_found():
    names = {p.name for p in DOCS}
    assert {"README.md", "policy.ipynb", "timeseries.ipynb", "music.ipynb", "inverse.ipynb"} <= names


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_use_the_public_api_only(doc):
    found = list(_imports(_code(doc)))
    for module, names in found:
        assert module in PUBLIC, f"{doc.name} imports {module}; import from one of {sorted(PUBLIC)}"
        mod = importlib.import_module(module)
        exported = set(mod.__all__)
        for name in names:
            assert not name.startswith("_"), f"{doc.name} imports the private name {name} from {module}"
            assert name in exported, f"{doc.name} imports {name} from {module}, which does not export it"
            assert hasattr(mod, name)


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_packages_declare_version_and_public_names(package):
    mod = importlib.import_module(package)
    assert isinstance(mod.__version__, str) and mod.__version__[0].isdigit()
    assert mod.__all__ and all(hasattr(mod, n) for n in mod.__all__)
    assert not [n for n in mod.__all__ if n.startswith("_") and n != "__version__"]
