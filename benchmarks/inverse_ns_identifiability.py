"""How much of the initial vorticity can the Navier-Stokes measurements determine at all, per grid?

    python benchmarks/inverse_ns_identifiability.py            # 32x32 and 64x64, about 3 min on 1 busy core
    python benchmarks/inverse_ns_identifiability.py --sizes 32 --out identifiability.json

Prior-free facts about the EnKG task (GRFs evolved 5 time units at Re=200, final vorticity at T=1 observed at
every ``--downsample``-th point), to read next to ``inverse_ns.py``; the protocol is
``steerdiff.inverse.benchmark.identifiability_row``:

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

from steerdiff.core.benchmarking import environment, print_table, write_json
from steerdiff.core.runtime import set_threads
from steerdiff.inverse.benchmark import (
    FULL,
    IDENTIFIABILITY_HEADERS,
    identifiability_notes,
    identifiability_row,
)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64], help="grids to measure")
    ap.add_argument("--downsample", type=int, default=2, help="observation stride")
    ap.add_argument("--fields", type=int, default=2, help="test fields per grid")
    ap.add_argument("--iterations", type=int, default=300, help="Adam steps of the least-squares fit")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--out", default=None, help="also write the rows as JSON to this file")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    rows = [
        identifiability_row(s, args.downsample, FULL.dt * 32 / s, args.fields, args.iterations)
        for s in args.sizes
    ]
    print_table(
        "Navier-Stokes (Re=200, T=1): what the measurements determine without a prior",
        IDENTIFIABILITY_HEADERS,
        rows,
        notes=identifiability_notes(args.fields, args.iterations),
    )
    if args.out:
        write_json(
            args.out,
            {
                "headers": IDENTIFIABILITY_HEADERS,
                "rows": rows,
                "sizes": args.sizes,
                "downsample": args.downsample,
                "fields": args.fields,
                "iterations": args.iterations,
                "environment": environment(),
            },
        )


if __name__ == "__main__":
    main()
