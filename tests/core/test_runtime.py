"""The runtime helper: devices, threads, seeds and the cache folder."""

import pytest
import torch

from steerdiff.core import cache_dir, configure, resolve_device, seed_everything, set_threads


def test_devices_resolve_or_fail_with_the_choices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None, torch.nn.Linear(2, 2)) == torch.device("cpu")
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_threads_and_seeds(monkeypatch):
    before = torch.get_num_threads()
    set_threads(0)
    assert torch.get_num_threads() == before
    set_threads(1)
    assert torch.get_num_threads() == 1
    set_threads(before)
    with pytest.raises(ValueError, match="positive"):
        set_threads(-2)
    g = seed_everything(3)
    a, b = torch.rand(2), torch.rand(2, generator=g)
    g = seed_everything(3)
    assert torch.equal(a, torch.rand(2)) and torch.equal(b, torch.rand(2, generator=g))
    assert configure("cpu", None, 1) == torch.device("cpu")


def test_one_environment_variable_moves_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STEERDIFF_CACHE", str(tmp_path / "c"))
    assert cache_dir("music", "rolls") == tmp_path / "c" / "music" / "rolls"
    assert (tmp_path / "c" / "music" / "rolls").is_dir()
    monkeypatch.delenv("STEERDIFF_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir(create=False) == tmp_path / "home" / ".cache" / "steerdiff"
