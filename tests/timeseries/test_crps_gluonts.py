"""steerdiff's forecast metrics against GluonTS's own ``Evaluator`` on fixed sample paths.

The fixture ``fixtures/gluonts_crps.json`` holds sample paths, targets and what GluonTS's ``Evaluator`` reported
for them (its version and the command are in ``meta``). Refresh it, in an environment with GluonTS
(``pip install "packages/timeseries[peers]"``), with

    python tests/timeseries/test_crps_gluonts.py --write

One definition differs, and the tests pin it: GluonTS's ``SampleForecast.quantile(q)`` is the sorted sample at
index round((S - 1) q) (no interpolation), while steerdiff's ``crps`` takes numpy's linearly interpolated
quantile of the paths. With that one rule swapped in (``_nearest_rank_crps`` below), steerdiff's formula gives
GluonTS's ``mean_wQuantileLoss`` to float rounding; the interpolated value differs from it by less than the
spacing of neighbouring sample paths (in the fixture 0.13 % relative at 100 paths, 0.63 % at 16, 2.1 % at 9).
ND takes the median by each side's rule, so it agrees when S is odd (both take the middle path); NRMSE (the mean)
always agrees.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from steerdiff.timeseries.metrics import QUANTILES, crps, evaluate_forecast

FIXTURE = Path(__file__).parent / "fixtures" / "gluonts_crps.json"
COMMAND = "python tests/timeseries/test_crps_gluonts.py --write"
# float64 here, float32 in GluonTS's forecast objects: agreement to 1e-5 relative
RTOL = 1e-5


def _cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(samples (N, S, H), target (N, H)) per case: positive levels, a spread of widths and sample counts.

    Rounded to 3 decimals so that the fixture stays small."""
    rng = np.random.default_rng(0)
    out = {}
    for name, n, s, h in [("s100", 4, 100, 12), ("s16", 5, 16, 24), ("s9", 4, 9, 7)]:
        level = rng.uniform(5, 50, size=(n, 1, 1))
        shape = np.sin(np.arange(h) / 3.0)[None, None]
        samples = level * (1 + 0.2 * shape) + rng.normal(0, 0.15, size=(n, s, h)) * level
        target = level[:, 0] * (1 + 0.2 * shape[0]) + rng.normal(0, 0.15, size=(n, h)) * level[:, 0]
        out[name] = (np.round(samples, 3), np.round(np.abs(target), 3))  # 3 decimals: a short fixture
    return out


def gluonts_metrics(samples: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """What GluonTS's Evaluator reports for these paths (needs gluonts and pandas)."""
    import pandas as pd
    from gluonts.evaluation import Evaluator
    from gluonts.model.forecast import SampleForecast

    start = pd.Period("2020-01-01 00:00", freq="h")
    h = target.shape[1]
    history = 4  # a short observed past before the forecast start (GluonTS cuts the target to the horizon)
    series, forecasts = [], []
    for i in range(len(target)):
        values = np.concatenate([np.ones(history), target[i]])
        index = pd.period_range(start, periods=history + h, freq="h")
        series.append(pd.DataFrame(values, index=index))
        forecasts.append(SampleForecast(samples[i], start_date=start + history, item_id=str(i)))
    agg, _ = Evaluator(quantiles=QUANTILES, num_workers=0)(
        iter(series), iter(forecasts), num_series=len(target)
    )
    keys = ["mean_wQuantileLoss", "ND", "NRMSE", "MSE", "abs_target_sum"]
    keys += [f"wQuantileLoss[{q}]" for q in QUANTILES]
    return {k: float(agg[k]) for k in keys}


def _nearest_rank_crps(samples: torch.Tensor, target: torch.Tensor) -> float:
    """steerdiff's mean weighted quantile loss with GluonTS's quantile rule (sorted sample round((S-1) q))."""
    samples, target = (
        torch.as_tensor(samples, dtype=torch.float64),
        torch.as_tensor(target, dtype=torch.float64),
    )
    ordered = samples.sort(1).values
    s = samples.shape[1]
    losses = []
    for q in QUANTILES:
        pred = ordered[:, int(np.round((s - 1) * q))]
        losses.append(
            2 * ((pred - target) * ((target <= pred).double() - q)).abs().sum() / target.abs().sum()
        )
    return float(torch.stack(losses).mean())


def _load():
    data = json.loads(FIXTURE.read_text())
    for case in data["cases"].values():
        case["samples"] = torch.tensor(case["samples"], dtype=torch.float64)
        case["target"] = torch.tensor(case["target"], dtype=torch.float64)
    return data


def test_fixture_records_its_gluonts_version_and_command():
    meta = _load()["meta"]
    assert meta["gluonts"] and meta["command"] == COMMAND
    assert set(_load()["cases"]) == set(_cases())


@pytest.mark.parametrize("name", sorted(_cases()))
def test_crps_matches_gluonts_up_to_its_quantile_rule(name):
    case = _load()["cases"][name]
    samples, target, want = case["samples"], case["target"], case["gluonts"]
    # the fixture holds exactly the paths this module generates
    ref_samples, ref_target = _cases()[name]
    assert np.array_equal(samples.numpy(), ref_samples) and np.array_equal(target.numpy(), ref_target)
    # the same formula with GluonTS's quantile rule reproduces GluonTS's CRPS
    assert _nearest_rank_crps(samples, target) == pytest.approx(want["mean_wQuantileLoss"], rel=RTOL)
    # steerdiff's CRPS (interpolated quantiles) differs by less than the spacing of the paths, pinned here
    ours = crps(samples, target)
    assert ours == pytest.approx(case["steerdiff_crps"], rel=1e-9)
    gap = abs(ours - want["mean_wQuantileLoss"]) / want["mean_wQuantileLoss"]
    assert gap < {"s100": 0.005, "s16": 0.02, "s9": 0.05}[name]  # measured: 0.13 %, 0.63 %, 2.1 %
    m = evaluate_forecast(samples, target)
    assert m["nrmse"] == pytest.approx(want["NRMSE"], rel=RTOL)
    if samples.shape[1] % 2:  # an odd number of paths: both rules take the middle path as the median
        assert m["nd"] == pytest.approx(want["ND"], rel=RTOL)


def test_crps_recomputed_live_with_gluonts():
    pytest.importorskip(
        "gluonts", reason="GluonTS is an optional extra: pip install 'packages/timeseries[peers]'"
    )
    for name, (samples, target) in _cases().items():
        got = gluonts_metrics(samples, target)
        s, t = torch.from_numpy(samples), torch.from_numpy(target)  # float64
        assert _nearest_rank_crps(s, t) == pytest.approx(got["mean_wQuantileLoss"], rel=RTOL), name
        assert evaluate_forecast(s, t)["nrmse"] == pytest.approx(got["NRMSE"], rel=RTOL), name


def _write() -> None:
    import gluonts
    import pandas

    cases = {}
    for name, (samples, target) in _cases().items():
        cases[name] = {
            "samples": samples.tolist(),
            "target": target.tolist(),
            "gluonts": gluonts_metrics(samples, target),
            "steerdiff_crps": crps(torch.from_numpy(samples), torch.from_numpy(target)),
        }
    meta = {
        "gluonts": gluonts.__version__,
        "pandas": pandas.__version__,
        "numpy": np.__version__,
        "command": COMMAND,
        "what": "GluonTS Evaluator(quantiles=0.1..0.9, num_workers=0) aggregate metrics of SampleForecast paths",
    }
    FIXTURE.write_text(json.dumps({"meta": meta, "cases": cases}) + "\n")
    print(f"wrote {FIXTURE}")


if __name__ == "__main__":
    if "--write" not in sys.argv[1:]:
        sys.exit(f"usage: {COMMAND}")
    _write()
