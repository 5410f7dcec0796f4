"""Your own problem: fields, measurements, observation operators and forward models (a Python function or an
external program) from .npy files, through the library and the command line. Every file is written by the
test; every accepted layout is checked value by value, every malformed one gets one clear error."""

import json
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from steerdiff.core.parallel import ForwardModelError
from steerdiff.inverse import (
    InversePipeline,
    ProgramError,
    UserForwardModel,
    load_fields,
    load_measurements,
    load_operator,
    load_prior,
    program_function,
    python_function,
)
from steerdiff.inverse.cli import main

from .cli_cases import tiny_prior

SIM = """
import sys
import numpy as np

x = np.load(sys.argv[1])  # (B, 1, H, W)
{body}
"""
SQUARE = "np.save(sys.argv[2], x[:, 0, ::2, ::2] ** 2 + 1.0)"


def expected(x: np.ndarray) -> np.ndarray:
    return x[:, 0, ::2, ::2] ** 2 + 1.0


def program(tmp_path, body: str = SQUARE, name: str = "sim.py") -> str:
    path = tmp_path / name
    path.write_text(SIM.format(body=body))
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(path))}"


@pytest.fixture
def module(tmp_path, monkeypatch):
    """An importable module ``usersim`` with a working function and broken ones."""
    (tmp_path / "usersim.py").write_text(
        "import numpy as np\n"
        "def forward(x):\n"
        "    return x[:, 0, ::2, ::2] ** 2 + 1.0\n"
        "def nan_row(x):\n"
        "    y = x[:, 0, ::2, ::2] ** 2 + 1.0\n"
        "    y[1] = np.nan\n"
        "    return y\n"
        "def flat(x):\n"
        "    return (x[:, 0, ::2, ::2] ** 2 + 1.0).reshape(len(x), -1)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("usersim", None)
    return "usersim"


def fields(n=6, size=8, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, size, size)).astype(np.float32)


# ------------------------------------------------------------------------------------------------ forward


def test_program_and_function_give_the_simulators_values(tmp_path, module):
    x = fields()
    want = torch.from_numpy(expected(x))
    prog = UserForwardModel((1, 8, 8), (4, 4), program_function(program(tmp_path)))
    func = UserForwardModel((1, 8, 8), (4, 4), python_function(f"{module}:forward"))
    assert torch.equal(prog(torch.from_numpy(x)), want)
    assert torch.equal(func(torch.from_numpy(x)), want)
    assert not prog.differentiable and prog.counts() == {"forward_calls": 1, "forward_evals": 6, "blowups": 0}
    with ThreadPoolExecutor(3) as pool:  # chunks of 2 rows on 3 workers: the same values, in row order
        chunked = UserForwardModel(
            (1, 8, 8), (4, 4), program_function(program(tmp_path)), executor=pool, chunk_size=2
        )
        assert torch.equal(chunked(torch.from_numpy(x)), want)


def test_a_failing_program_names_its_exit_status_stderr_and_rows(tmp_path):
    body = "sys.stderr.write('mesh solver diverged at t=0.3\\n'); sys.exit(3)"
    fm = UserForwardModel((1, 8, 8), (4, 4), program_function(program(tmp_path, body)))
    with pytest.raises(
        ForwardModelError, match=r"rows 0\.\.5.*exited with status 3: mesh solver diverged"
    ) as err:
        fm(torch.from_numpy(fields()))
    assert err.value.rows == list(range(6))
    silent = UserForwardModel((1, 8, 8), (4, 4), program_function(program(tmp_path, "pass", "silent.py")))
    with pytest.raises(ForwardModelError, match=r"wrote no output.*numpy.save\(sys.argv\[2\], y\)"):
        silent(torch.from_numpy(fields()))
    with pytest.raises(ValueError, match="'no-such-simulator' was not found"):
        program_function("no-such-simulator --fast")
    assert issubclass(ProgramError, RuntimeError)


def test_non_finite_outputs_are_an_error_or_a_counted_penalty(tmp_path, module):
    body = "y = x[:, 0, ::2, ::2] ** 2 + 1.0; y[1, 0, 0] = np.inf; np.save(sys.argv[2], y)"
    x = fields()
    strict = UserForwardModel((1, 8, 8), (4, 4), program_function(program(tmp_path, body)))
    with pytest.raises(ForwardModelError, match=r"NaN or inf for row\(s\) \[1\].*--on-blowup penalty"):
        strict(torch.from_numpy(x))
    for fn in (program_function(program(tmp_path, body)), python_function(f"{module}:nan_row")):
        lenient = UserForwardModel((1, 8, 8), (4, 4), fn, on_blowup="penalty", penalty=500.0)
        out = lenient(torch.from_numpy(x))
        assert torch.equal(out[1], torch.full((4, 4), 500.0))
        keep = [0, 2, 3, 4, 5]
        assert torch.equal(out[keep], torch.from_numpy(expected(x))[keep])
        assert lenient.blowups == 1


def test_wrong_output_shapes_name_the_expected_shape(tmp_path, module):
    x = torch.from_numpy(fields())
    flat = UserForwardModel((1, 8, 8), (4, 4), python_function(f"{module}:flat"))
    with pytest.raises(
        ForwardModelError, match=r"rows of shape \(16,\), but the measurements are rows of shape \(4, 4\)"
    ):
        flat(x)
    short = program(tmp_path, "np.save(sys.argv[2], x[:2, 0])", "short.py")
    with pytest.raises(
        ForwardModelError, match=r"returned shape \(2, 8, 8\).*one output per input row \(6\)"
    ):
        UserForwardModel((1, 8, 8), (4, 4), program_function(short))(x)
    # the same flat output is right once an operator maps it to the measurements
    a = np.random.default_rng(1).standard_normal((5, 16)).astype(np.float32)
    mapped = UserForwardModel((1, 8, 8), (5,), python_function(f"{module}:flat"), torch.from_numpy(a))
    want = expected(fields()).reshape(6, 16) @ a.T
    assert torch.allclose(mapped(x), torch.from_numpy(want), atol=1e-5)


def test_module_function_specs(module):
    with pytest.raises(ValueError, match="not of the form module:function"):
        python_function("usersim.forward")
    with pytest.raises(ValueError, match="no module 'nosuchsim'"):
        python_function("nosuchsim:forward")
    with pytest.raises(ValueError, match="has no 'backward'"):
        python_function(f"{module}:backward")


# ------------------------------------------------------------------------------------------------ files


def test_fields_read_value_by_value_in_both_layouts(tmp_path):
    ints = np.arange(3 * 8 * 8).reshape(3, 8, 8) % 7  # integers are numbers too
    np.save(tmp_path / "nhw.npy", ints)
    np.save(tmp_path / "n1hw.npy", ints[:, None].astype(np.float64))
    for name in ("nhw.npy", "n1hw.npy"):
        got = load_fields(tmp_path / name)
        assert got.dtype == torch.float32 and got.shape == (3, 1, 8, 8)
        assert torch.equal(got[:, 0], torch.from_numpy(ints.astype(np.float32)))


@pytest.mark.parametrize(
    "array, fragment",
    [
        (np.zeros((3, 8, 8, 1)), "numpy.moveaxis(a, -1, 1)"),
        (np.zeros((3, 2, 8, 8)), "one channel"),
        (np.zeros((3, 8, 6)), "8x6 grids; give square grids"),
        (np.zeros((8, 8)), "one field; save a stack"),
        (np.zeros((3, 8, 8), dtype=bool), "booleans"),
        (np.zeros((3, 8, 8), dtype=complex), "real numbers"),
    ],
)
def test_malformed_fields_are_refused_with_the_fix(tmp_path, array, fragment):
    np.save(tmp_path / "f.npy", array)
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_fields(tmp_path / "f.npy")


def test_fields_with_nan_pickles_and_other_formats_are_refused(tmp_path):
    a = fields(5)[:, 0]
    a[3, 2, 2] = np.nan
    np.save(tmp_path / "nan.npy", a)
    with pytest.raises(ValueError, match=r"1 of the training fields .* NaN or inf \(index \[3\]\)"):
        load_fields(tmp_path / "nan.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="cannot be read as a numeric array"):
        load_fields(tmp_path / "obj.npy")
    (tmp_path / "fields.csv").write_text("1,2\n3,4\n")
    with pytest.raises(ValueError, match="not a .npy file; save the array with numpy.save"):
        load_fields(tmp_path / "fields.csv")
    np.save(tmp_path / "one.npy", fields(1)[:, 0])
    with pytest.raises(ValueError, match="at least 2 are needed"):
        load_fields(tmp_path / "one.npy", min_count=2)


def test_measurements_and_operators(tmp_path):
    y = np.arange(12, dtype=np.float64).reshape(3, 4)
    np.save(tmp_path / "y.npy", y)
    assert torch.equal(load_measurements(tmp_path / "y.npy"), torch.from_numpy(y.astype(np.float32)))
    np.save(tmp_path / "y1.npy", y[0])
    with pytest.raises(ValueError, match=r"one measurement vector y is saved as y\[None\]"):
        load_measurements(tmp_path / "y1.npy")
    y[2, 1] = np.nan
    np.save(tmp_path / "ynan.npy", y)
    with pytest.raises(ValueError, match=r"measurement rows \[2\] .* contain NaN or inf; drop those rows"):
        load_measurements(tmp_path / "ynan.npy")

    # a matrix on the flattened field: y = A x, exactly
    x = torch.from_numpy(fields(4))
    a = np.random.default_rng(2).standard_normal((10, 64)).astype(np.float32)
    np.save(tmp_path / "A.npy", a)
    linear = UserForwardModel((1, 8, 8), (10,), operator=load_operator(tmp_path / "A.npy"))
    assert linear.differentiable
    assert torch.allclose(linear(x), x.reshape(4, 64) @ torch.from_numpy(a).T, atol=1e-5)
    # a boolean mask: the observed grid points, row-major
    mask = np.zeros((8, 8), dtype=bool)
    mask[1, 2] = mask[5, 7] = mask[6, 0] = True
    np.save(tmp_path / "mask.npy", mask)
    points = UserForwardModel((1, 8, 8), (3,), operator=load_operator(tmp_path / "mask.npy"))
    assert torch.equal(points(x), torch.stack([x[:, 0, 1, 2], x[:, 0, 5, 7], x[:, 0, 6, 0]], 1))
    with pytest.raises(ValueError, match="gives 3 values per measurement, but a measurement row has 4"):
        UserForwardModel((1, 8, 8), (4,), operator=load_operator(tmp_path / "mask.npy"))
    with pytest.raises(ValueError, match="has 64 columns, but a field has 256 values"):
        UserForwardModel((1, 16, 16), (10,), operator=load_operator(tmp_path / "A.npy"))


# ------------------------------------------------------------------------------------------ command line


def test_own_fields_train_a_prior_that_solves_own_measurements(tmp_path, capsys):
    train = fields(16, seed=3)[:, 0] * 2.0  # (N, H, W)
    np.save(tmp_path / "fields.npy", train)
    prior_dir = tmp_path / "prior"
    argv = ["train-prior", "--fields", str(tmp_path / "fields.npy"), "--out", str(prior_dir)]
    assert (
        main(
            [
                *argv,
                "--train-steps",
                "3",
                "--channels",
                "8",
                "--batch-size",
                "8",
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    prior = load_prior(prior_dir)
    assert prior.field_shape == (1, 8, 8) and prior.problem_spec is None
    assert prior.info["training"]["num_fields"] == 16
    assert prior.scale == pytest.approx(float(torch.from_numpy(train).std()) / 0.5)

    truth = fields(2, seed=4)
    mask = np.zeros((8, 8), dtype=bool)
    mask[::2, ::2] = True
    np.save(tmp_path / "mask.npy", mask)
    np.save(tmp_path / "y.npy", truth[:, 0][:, mask])
    np.save(tmp_path / "truth.npy", truth)
    out = tmp_path / "solve"
    capsys.readouterr()
    code = main(
        [
            "solve", "--prior", str(prior_dir), "--measurements", str(tmp_path / "y.npy"),
            "--operator", str(tmp_path / "mask.npy"), "--truth", str(tmp_path / "truth.npy"), "--noise", "0.1",
            "--num-samples", "4", "--steps", "4", "--out", str(out), "--quiet", "--device", "cpu", "--json",
        ]
    )  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert np.load(out / "estimate.npy").shape == (2, 1, 8, 8)
    assert np.load(out / "ensemble.npy").shape == (2, 4, 1, 8, 8)
    assert summary["forward_evals"] > 0 and np.isfinite(summary["rel_l2"]) and (out / "fields.png").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["window"] == [0.05, 0.95]


def test_cli_program_with_workers_and_chunks_equals_one_process(tmp_path, module, capsys):
    prior = tiny_prior(tmp_path / "prior")
    truth = fields(2, seed=5)
    np.save(tmp_path / "y.npy", expected(truth))
    base = [
        "solve", "--prior", str(prior), "--measurements", str(tmp_path / "y.npy"), "--num-samples", "4",
        "--steps", "3", "--quiet", "--device", "cpu", "--seed", "1",
    ]  # fmt: skip
    runs = {
        "one": ["--forward-program", program(tmp_path)],
        "threads": ["--forward-program", program(tmp_path), "--workers", "2", "--rows-per-call", "3"],
        "processes": ["--forward", f"{module}:forward", "--workers", "2"],
    }
    for name, extra in runs.items():
        assert main([*base, *extra, "--out", str(tmp_path / name)]) == 0, capsys.readouterr().err
    one = np.load(tmp_path / "one" / "estimate.npy")
    for name in ("threads", "processes"):
        assert np.array_equal(np.load(tmp_path / name / "estimate.npy"), one), name
    calls = json.loads((tmp_path / "threads" / "summary.json").read_text())
    assert calls["forward_evals"] == calls["forward_calls"] * 8  # every call saw every particle row


def test_prior_trained_on_a_problem_solves_own_measurements_of_it(tmp_path):
    from steerdiff.inverse import LinearProblem

    problem = LinearProblem(size=8, stride=2, noise_std=0.1)
    pipe = InversePipeline(load_prior(tiny_prior(tmp_path / "p")), problem, "cpu")
    path = pipe.save_pretrained(tmp_path / "prior")
    truth = problem.grf.sample(2, torch.Generator().manual_seed(0))
    np.save(tmp_path / "y.npy", problem.forward(truth).numpy())
    argv = [
        "solve",
        "--prior",
        str(path),
        "--measurements",
        str(tmp_path / "y.npy"),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*argv, "--num-samples", "4", "--steps", "3", "--quiet", "--device", "cpu"]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["forward_evals"] > 0 and "rel_l2" not in summary


def test_eki_on_your_own_forward_model_starts_at_the_prior_fields_scale(tmp_path):
    pipe = InversePipeline.from_pretrained(tiny_prior(tmp_path / "prior"), device="cpu")  # scale 2: std 1
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, ::2, ::2] = True
    forward = UserForwardModel((1, 8, 8), (16,), operator=mask)
    problem = pipe._problem(forward)
    assert problem.ensemble_prior.std() == pytest.approx(pipe.prior.scale * 0.5)
    assert InversePipeline(None, None, "cpu")._problem(forward).ensemble_prior.size == 8


def test_integer_outputs_are_numbers_in_either_blowup_mode():
    x = torch.from_numpy(fields(3))
    for mode in ("raise", "penalty"):
        counts = UserForwardModel(
            (1, 8, 8), (2,), lambda t: torch.ones(len(t), 2, dtype=torch.int64), on_blowup=mode
        )
        assert torch.equal(counts(x), torch.ones(3, 2))
