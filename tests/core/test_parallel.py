"""Forward models on an executor: equal to one serial call, clear errors naming the rows, nothing lost."""

from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest
import torch

from steerdiff.core.parallel import ForwardModelError, map_rows


def simulator(x):
    """A row-wise nonlinear 'simulator' (module level, so a process pool can pickle it)."""
    return torch.stack([x.sin().sum(1), (x**2).mean(1)], dim=1)


def test_chunks_through_executors_equal_one_serial_call():
    x = torch.randn(37, 5, generator=torch.Generator().manual_seed(0))
    serial = simulator(x)
    assert torch.equal(map_rows(simulator, x), serial)
    assert torch.equal(map_rows(simulator, x, chunk_size=4), serial)
    with ThreadPoolExecutor(3) as pool:
        assert torch.equal(map_rows(simulator, x, executor=pool), serial)
    with ProcessPoolExecutor(2) as pool:
        assert torch.equal(map_rows(simulator, x, executor=pool, chunk_size=10), serial)


def test_a_failing_or_non_finite_member_is_named_and_finished_chunks_are_kept():
    def flaky(x):
        if (x[:, 0] > 100).any():
            raise RuntimeError("solver diverged")
        out = simulator(x)
        out[x[:, 1] < -100] = float("nan")
        return out

    x = torch.zeros(12, 3)
    x[7, 0] = 1e3
    with ThreadPoolExecutor(2) as pool, pytest.raises(ForwardModelError, match=r"rows 4\.\.7") as err:
        map_rows(flaky, x, executor=pool, chunk_size=4)
    assert err.value.rows == [4, 5, 6, 7]
    assert sorted(err.value.completed) == [0, 8]
    assert torch.equal(err.value.completed[8], simulator(x[8:]))
    x[7, 0], x[9, 1] = 0.0, -1e3
    with pytest.raises(ForwardModelError, match=r"NaN or inf for row\(s\) \[9\]") as err:
        map_rows(flaky, x, chunk_size=4)
    assert err.value.rows == [9]
    with pytest.raises(ForwardModelError, match="one output per input row"):
        map_rows(lambda z: z[:1], x, chunk_size=4)
    with pytest.raises(ValueError, match="empty batch"):
        map_rows(simulator, x[:0])
    with pytest.raises(ValueError, match="chunk_size"):
        map_rows(simulator, x, chunk_size=0)


@pytest.fixture(scope="module")
def client():
    """A real local Dask cluster: two worker processes (the [cluster] extra, part of the [test] extra)."""
    import distributed

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_a_local_dask_cluster_of_two_workers_equals_serial(client):
    x = torch.randn(20, 4, generator=torch.Generator().manual_seed(1))
    scale = 3.0
    out = map_rows(lambda z: simulator(z) * scale, x, executor=client)  # a closure travels by value
    assert torch.equal(out, simulator(x) * scale)
    with pytest.raises(ForwardModelError, match="raised on rows"):
        map_rows(lambda z: simulator(z[:, 10]), x, executor=client.get_executor(), chunk_size=5)


def _enkg_run(**executor):
    from steerdiff.core import EDM, EnsembleKalmanGuidance, gaussian, sample, sigma_grid

    prior = gaussian([0.0, 0.0, 0.0], 1.0)
    sigmas = sigma_grid(EDM(), 10)
    x = sigmas[0] * torch.randn(2 * 8, 3, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0.7, -0.2])
    guidance = EnsembleKalmanGuidance(lambda x0: simulator(x0), y, num_particles=8, noise_std=0.1, **executor)
    return sample(prior, x, sigmas, "euler", guidance=[guidance])


def test_enkg_on_a_local_dask_cluster_equals_serial_and_names_a_failing_member(client):
    from steerdiff.core import EDM, EnsembleKalmanGuidance, gaussian, sample, sigma_grid

    serial = _enkg_run()
    assert serial.costs.forward_evals > 0
    clustered = _enkg_run(executor=client, chunk_size=4)
    assert torch.equal(clustered.x, serial.x)
    assert clustered.costs.forward_evals == serial.costs.forward_evals  # the counters stay exact

    def diverging(x0):
        raise FloatingPointError("simulation diverged")

    g = EnsembleKalmanGuidance(
        diverging, torch.tensor([0.7, -0.2]), num_particles=8, executor=client, chunk_size=4
    )
    sigmas = sigma_grid(EDM(), 4)
    with pytest.raises(ForwardModelError, match=r"raised on rows 0\.\.3: FloatingPointError"):
        sample(gaussian([0.0, 0.0, 0.0], 1.0), sigmas[0] * torch.randn(16, 3), sigmas, "euler", guidance=[g])


def test_selection_rewards_in_chunks_equal_one_call():
    from steerdiff.core import EDM, StochasticControlGuidance, gaussian, sample, sigma_grid

    prior = gaussian([0.0, 0.0], 1.0)
    sigmas = sigma_grid(EDM(), 8)
    x = sigmas[0] * torch.randn(6, 2, generator=torch.Generator().manual_seed(3))

    def reward(x0):
        return -(x0 - 1).pow(2).sum(1)

    runs = []
    for options in ({}, {"chunk_size": 5}):
        g = StochasticControlGuidance(reward, 4, **options)
        runs.append(
            sample(prior, x, sigmas, "ddpm", guidance=[g], generator=torch.Generator().manual_seed(1))
        )
    assert torch.equal(runs[0].x, runs[1].x)
    assert runs[0].costs.reward_evals == runs[1].costs.reward_evals
