"""``flatnet-xp export``: a model file as an ONNX model (its stored preprocessing included)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from flatnet_xp.cli._common import CliError, check_input, check_output, have_module, int_at_least, refuse_same_file

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="write a model file as an ONNX model (served by onnxruntime without Python or flatnet_xp)",
        description="Write a model file as ONNX: input X (raw feature columns, standardized in the graph when the "
        "model stores a standardization), outputs `output` (the network's raw outputs) and, as flatnet-xp predict "
        "writes them, `prediction` (regression, in the target's units) or `label` (class names) and "
        "`probabilities` (one column per class). Feature, target and class names go into the model's metadata. "
        "A stored preprocessing step that ONNX cannot express is refused by name.",
    )
    p.add_argument("--model", required=True, help="model file written by flatnet-xp train (or FlatMLP.save)")
    p.add_argument("--out", required=True, help="ONNX file to write (.onnx)")
    p.add_argument("--dtype", default=None, choices=("float32", "float64"), help="default: the model's")
    p.add_argument("--opset", default=None, type=int_at_least(1), help="ONNX opset (default: flatnet_xp's, 17)")
    p.add_argument("--no-preprocessing", action="store_true", help="export the bare network (X already prepared)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``flatnet-xp export``; raises CliError (status 2) for every mistake before writing."""
    import flatnet_xp as fx

    if Path(args.out).suffix.lower() != ".onnx":
        raise CliError(f"--out {args.out}: expected a .onnx file name, got {Path(args.out).suffix or 'no extension'!r}")
    out = check_output("--out", args.out)
    model = check_input("--model", args.model)
    refuse_same_file(("--model", model), ("--out", out))
    if not have_module("onnx"):
        raise CliError("export needs the onnx package: pip install 'flatnet_xp[onnx]'")
    from flatnet_xp.export import check_opset

    try:
        check_opset(args.opset)
    except ValueError as exc:
        raise CliError(f"--opset {args.opset}: {str(exc).removeprefix('opset: ')}") from None
    try:
        net = fx.FlatMLP.load(model)
    except fx.ModelFileError as exc:
        raise CliError(f"--model {exc}") from None
    except OSError as exc:
        raise CliError(f"--model {model}: {exc.strerror or exc}") from None
    try:
        net.to_onnx(out, dtype=args.dtype, opset=args.opset, preprocessing=not args.no_preprocessing)
    except ValueError as exc:
        raise CliError(f"--model {model}: {exc}") from None
    except OSError as exc:
        raise CliError(f"--out {out}: could not write the model ({exc.strerror or exc})", status=1) from None
    print(f"{model} exported to {out}")
    return 0
