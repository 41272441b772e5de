"""E networks trained together (FlatEnsemble) against a loop of FlatMLP.fit, jax.vmap and torch.func.

``python benchmarks/ensemble.py [--repeats 3] [--json out.json] [--skip jax torch]``; the same as
``flatnet-xp bench --ensembles``. What is timed: :mod:`flatnet_xp.bench.ensembles`.
"""

from __future__ import annotations

import argparse
import json

from flatnet_xp.bench.ensembles import format_row, run_ensemble_benchmarks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip", nargs="*", default=[], choices=["jax", "torch"])
    args = parser.parse_args()
    results = run_ensemble_benchmarks(args.repeats, tuple(args.skip), args.quick)
    for name, row in results.items():
        print(format_row(name, row), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
