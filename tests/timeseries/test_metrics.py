import numpy as np
import pytest
import torch

from steerdiff.timeseries.metrics import QUANTILES, crps, evaluate_forecast, weighted_quantile_loss


def _crps_reference(samples, target):
    """Independent GluonTS-style computation with numpy and explicit loops."""
    samples, target = np.asarray(samples, float), np.asarray(target, float)
    losses = []
    for q in np.arange(1, 10) / 10:
        total = 0.0
        for n in range(target.shape[0]):
            pred = np.quantile(samples[n], q, axis=0)
            for t in range(target.shape[1]):
                y, f = target[n, t], pred[t]
                total += 2 * abs((f - y) * ((y <= f) - q))
        losses.append(total / np.abs(target).sum())
    return float(np.mean(losses))


def test_quantiles_are_gluonts_defaults():
    assert QUANTILES == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def test_crps_matches_independent_computation():
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(5, 37, 7, generator=g, dtype=torch.float64) * 2 + 3
    target = torch.randn(5, 7, generator=g, dtype=torch.float64) + 3
    assert crps(samples, target) == pytest.approx(_crps_reference(samples, target), rel=1e-10)


def test_crps_of_a_point_forecast_by_hand():
    # forecast 2 for truth (1, 2): QL_q = 2 (1 - q) at the first point, 0 at the second; sum |y| = 3
    samples = torch.full((1, 4, 2), 2.0)
    target = torch.tensor([[1.0, 2.0]])
    wql = weighted_quantile_loss(samples, target)
    expected = torch.tensor([2 * (1 - q) / 3 for q in QUANTILES], dtype=torch.float64)
    assert torch.allclose(wql, expected)
    m = evaluate_forecast(samples, target)
    assert m["crps"] == pytest.approx(1 / 3)
    assert m["nd"] == pytest.approx(1 / 3)
    assert m["nrmse"] == pytest.approx(np.sqrt(0.5) / 1.5)


def test_perfect_forecast_scores_zero():
    target = torch.rand(3, 5) + 1
    m = evaluate_forecast(target[:, None].repeat(1, 10, 1), target)
    assert m == {"crps": 0.0, "nd": 0.0, "nrmse": 0.0}


@pytest.mark.parametrize(
    "samples, target, match",
    [
        (torch.ones(2, 3, 4), torch.ones(2, 5), "samples must be"),
        (torch.ones(2, 3, 4), torch.full((2, 4), float("nan")), "finite"),
        (torch.ones(2, 3, 4), torch.zeros(2, 4), "all zero"),
    ],
)
def test_metric_errors(samples, target, match):
    with pytest.raises(ValueError, match=match):
        crps(samples, target)
