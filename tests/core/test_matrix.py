"""The guidance-matrix protocol: a tiny task passes through every family at two budgets."""

import math

import pytest
import torch

from steerdiff.core.matrix import FAMILIES, PosteriorTask, Target, linear_gaussian_task, run_cell, run_matrix


def test_a_tiny_task_passes_through_the_whole_matrix():
    task = linear_gaussian_task(d=4, m=2, steps=8)
    cells = run_matrix([task], [16, 64], num_samples=16, validation=2, test=3, tune_budget=4)
    assert {(c.family, c.budget) for c in cells} == {(f, b) for f in FAMILIES for b in (16, 64)}
    for c in cells:
        if c.not_applicable:
            assert c.mean is None
            continue
        assert math.isfinite(c.mean) and c.se >= 0 and c.seconds > 0
        assert c.nfe <= c.budget or c.family == "unguided", (c.family, c.budget, c.nfe)
        if c.family in ("dps", "smc", "tree", "enkg"):
            assert "scale" in c.params and len(c.tuning) <= 4  # chosen on validation by the core's search
    by = {(c.family, c.budget): c for c in cells}
    assert by["inpainting", 64].not_applicable == "no observed entries"
    assert "below four samples" in by["tree", 16].not_applicable
    assert by["unguided", 64].relative == 1.0
    for family in ("dps", "scg", "tree", "smc", "enkg", "best_of_n"):  # each guided family beats unguided
        assert by[family, 64].relative < 1.0, family
    assert by["scg", 64].reward_evals > by["scg", 16].reward_evals  # four times the candidates


class KnownEntries(PosteriorTask):
    """The first coordinate observed exactly: inpainting applies."""

    def instances(self, split, count):
        out = []
        for target, mean in super().instances(split, count):
            mask = torch.tensor([True, False])
            values = torch.stack([target.observation[0].float(), torch.tensor(0.0)])
            out.append((Target(known=(mask, values), loss=target.loss), mean))
        return out


def test_inpainting_runs_where_entries_are_observed_and_families_without_targets_do_not():
    base = linear_gaussian_task(d=2, m=1, steps=6)
    task = KnownEntries(base._prior, torch.tensor([[1.0, 0.0]], dtype=torch.float64), 0.3, 6, name="known")
    cell = run_cell(task, "inpainting", 24, num_samples=8, validation=1, test=2)
    assert cell.not_applicable is None and math.isfinite(cell.mean)
    assert run_cell(task, "enkg", 48, num_samples=8, validation=1, test=2).not_applicable == (
        "no forward model and observation"
    )


def test_unknown_families_are_refused():
    with pytest.raises(ValueError, match="unknown families"):
        run_matrix([linear_gaussian_task(d=2, m=1)], [8], families=["dps", "magic"])


def test_the_matrix_benchmark_writes_its_cells_and_merges_runs(tmp_path, capsys):
    """benchmarks/guidance_matrix.py: a run writes every cell; --merge prints the seed-paper verdicts."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "guidance_matrix.py"
    spec = importlib.util.spec_from_file_location("guidance_matrix", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "core.json"
    args = ["--quick", "--domains", "core", "--families", "unguided,scg,smc", "--json", str(out)]
    assert bench.main(args) == 0
    run = json.loads(out.read_text())
    assert {(c["task"], c["family"]) for c in run["cells"]} == {
        (t, f) for t in ("linear-Gaussian d=16", "2-D ring mixture") for f in ("unguided", "scg", "smc")
    }
    assert all(len(c["scores"]) == 4 for c in run["cells"])  # one score per test instance, paired across rows
    run["tasks"][0]["paper_family"] = "smc"
    (tmp_path / "paper.json").write_text(json.dumps(run))
    capsys.readouterr()
    assert bench.main(["--merge", str(tmp_path / "paper.json")]) == 0
    printed = capsys.readouterr().out
    assert "Does the seed paper's family win its row?" in printed
    assert printed.count("| linear-Gaussian d=16 |") == 2 * 2 + 2 * 3  # matrix, verdicts, cells
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--domains", "core,images"])


class ExactPaper(PosteriorTask):
    """A task whose 'paper method' draws exact posterior samples at a tempered noise level (scale)."""

    from steerdiff.core.tuning import LogRange

    paper_strength = LogRange(0.5, 2.0)

    def paper(self, target, budget, params, num_samples, generator):
        from steerdiff.core.sampling import Costs

        post = self._prior.posterior(self.A, target.observation, self.noise_std * params["scale"])
        return post.sample(num_samples, generator), Costs(network_evals=budget * num_samples)


def test_a_task_may_bring_its_seed_papers_own_method_as_the_paper_column():
    base = linear_gaussian_task(d=4, m=2, steps=6)
    plain = run_cell(base, "paper", 24, num_samples=8, validation=1, test=2)
    assert plain.not_applicable.startswith("no seed paper's method of its own")
    task = ExactPaper(base._prior, base.A, base.noise_std, 6, name="exact")
    cells = run_matrix(
        [task], [24], ["unguided", "paper"], num_samples=64, validation=2, test=4, tune_budget=3
    )
    paper = next(c for c in cells if c.family == "paper")
    assert paper.not_applicable is None and paper.nfe == 24  # costs as the task reports them
    assert "scale" in paper.params and 0.5 <= paper.params["scale"] <= 2.0 and len(paper.tuning) <= 3
    assert paper.relative < 0.5  # exact posterior samples: far closer to the posterior mean than the prior


def test_enkg_returns_the_ensemble_mean_or_one_member_as_the_task_asks():
    task = linear_gaussian_task(d=4, m=2, steps=6)
    target, _ = task.instances("test", 1)[0]
    from steerdiff.core.matrix import _draw

    mean, _ = _draw("enkg", task, target, 48, {"scale": 0.5}, 3, seed=1)
    task.ensemble_output = "member"
    member, _ = _draw("enkg", task, target, 48, {"scale": 0.5}, 3, seed=1)
    assert mean.shape == member.shape == (3, 4)
    assert not torch.allclose(mean, member)  # a member is not the mean of its ensemble
    task.ensemble_output = "median"
    with pytest.raises(ValueError, match="ensemble_output must be"):
        _draw("enkg", task, target, 48, {"scale": 0.5}, 3, seed=1)


class FailsOnTest(PosteriorTask):
    """A reward that is finite on validation instances and NaN on test instances."""

    def instances(self, split, count):
        out = super().instances(split, count)
        if split == "test":
            for target, _ in out:
                target.reward = lambda x0: torch.full((x0.shape[0],), float("nan"), dtype=x0.dtype)
                target.loss = None
        return out


def test_a_cell_whose_test_scoring_fails_records_why_and_the_matrix_goes_on():
    base = linear_gaussian_task(d=2, m=1, steps=4)
    task = FailsOnTest(base._prior, base.A, base.noise_std, 4, name="fails")
    cells = run_matrix([task], [16], ["unguided", "scg"], num_samples=4, validation=1, test=2, tune_budget=2)
    scg = next(c for c in cells if c.family == "scg")
    assert scg.mean is None and "NaN or inf" in scg.error
    assert next(c for c in cells if c.family == "unguided").mean is not None
