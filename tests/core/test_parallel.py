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


def test_a_local_dask_cluster_of_two_workers_equals_serial():
    import distributed  # the [cluster] extra, part of the [test] extra
    x = torch.randn(20, 4, generator=torch.Generator().manual_seed(1))
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        scale = 3.0
        out = map_rows(lambda z: simulator(z) * scale, x, executor=client)  # a closure travels by value
        assert torch.equal(out, simulator(x) * scale)
        with pytest.raises(ForwardModelError, match="raised on rows"):
            map_rows(lambda z: simulator(z[:, 10]), x, executor=client.get_executor(), chunk_size=5)
