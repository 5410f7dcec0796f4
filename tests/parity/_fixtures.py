"""Loading the parity fixtures: numbers produced by the seed papers' official code (see docs/parity.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures"


def load_npz(name: str) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays of ``fixtures/<name>`` and its provenance note (source repository@commit, function, command)."""
    with np.load(FIXTURES / name) as data:
        arrays = {k: data[k] for k in data.files if k != "meta"}
        meta = json.loads(str(data["meta"]))
    return arrays, meta


def load_json(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def rel(a, b) -> float:
    """Relative L2 difference ||a - b|| / ||b||."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))
