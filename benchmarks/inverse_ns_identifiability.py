"""How much of the initial vorticity can the Navier-Stokes measurements determine at all, per grid?

    python benchmarks/inverse_ns_identifiability.py            # 32x32 and 64x64, about 3 min on 1 busy core
    python benchmarks/inverse_ns_identifiability.py --sizes 32

Prior-free facts about the EnKG task (GRFs evolved 5 time units at Re=200, final vorticity at T=1 observed at
every ``--downsample``-th point), to read next to ``inverse_ns.py``:

* ``energy >= Nyquist``: the share of the fields' energy at wavenumbers the observation grid cannot resolve
  (|k|_inf >= size / (2 downsample)); no method recovers it from the measurements alone;
* ``interp T=0``: relative L2 of the band-limited (Fourier) interpolation of the subsampled *initial* field,
  i.e. the error of the best prior-free guess even when there is no dynamics to invert;
* ``least squares``: Adam on ||G(x) - y||^2 from x = 0 with autograd through the solver (no prior): the final
  measurement misfit and relative L2. A misfit near 0 with a relative L2 near 1 means many fields fit the
  data equally well, so the prior alone decides the answer.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from steerdiff.core.benchmarking import print_table
from steerdiff.inverse.benchmark import FULL
from steerdiff.inverse.fields import wavenumbers
from steerdiff.inverse.metrics import relative_l2


def band_limited(y: torch.Tensor, size: int) -> torch.Tensor:
    """Fourier interpolation of (B, 1, m, m) samples to (B, 1, size, size)."""
    m = y.shape[-1]
    h = m // 2
    yh = torch.fft.rfft2(y[:, 0], norm="forward")
    full = torch.zeros(y.shape[0], size, size // 2 + 1, dtype=yh.dtype)
    full[:, :h, :h + 1], full[:, -h:, :h + 1] = yh[:, :h, :h + 1], yh[:, -h:, :h + 1]
    return torch.fft.irfft2(full, s=(size, size), norm="forward")[:, None]


def row(size: int, downsample: int, dt: float, num_fields: int, iterations: int) -> list:
    problem = dataclasses.replace(FULL, size=size, dt=dt, downsample=downsample).problem(0.0)
    g = torch.Generator().manual_seed(10_000)
    truth = problem.sample_fields(num_fields, g)
    ky, kx = wavenumbers(size, size)
    energy = torch.fft.rfft2(truth[:, 0], norm="ortho").abs().pow(2).mean(0)
    energy[:, 1:(size + 1) // 2] *= 2  # rfft2 stores half the kx modes
    nyquist = size // (2 * downsample)
    beyond = float(energy[(kx.abs() >= nyquist) | (ky.abs() >= nyquist)].sum() / energy.sum())
    interp = float(relative_l2(band_limited(truth[..., ::downsample, ::downsample], size), truth).mean())
    y = problem.forward.measure(truth, g)
    x = torch.zeros_like(truth, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.1)
    t0 = time.perf_counter()
    for _ in range(iterations):
        loss = (problem.forward.simulate(x) - y).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        misfit = float(((problem.forward.simulate(x) - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)).mean())
        rel = float(relative_l2(x, truth).mean())
    return [f"{size}x{size}", f"every {downsample}", beyond, interp, misfit, rel, time.perf_counter() - t0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--downsample", type=int, default=2)
    ap.add_argument("--fields", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [row(s, args.downsample, FULL.dt * 32 / s, args.fields, args.iterations) for s in args.sizes]
    print_table("Navier-Stokes (Re=200, T=1): what the measurements determine without a prior",
                ["grid", "observed", "energy >= Nyquist", "interp T=0 rel L2", "lsq misfit", "lsq rel L2",
                 "lsq s"], rows,
                notes=[(f"{args.fields} test fields (seed 10000), dt = {FULL.dt:g} x 32 / grid, noise 0; least squares: "
                       f"{args.iterations} Adam steps (lr 0.1) from 0 through the differentiable solver")])


if __name__ == "__main__":
    main()
