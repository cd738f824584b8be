"""`python -m pipeline.predict`: load a saved model folder and predict for a file of digits.

Inputs are read by `pipeline.data.inputs` (.npz, IDX, PNG/JPEG). When labels are known, the
accuracy is printed too.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np

from ..core.errors import PipelineError
from ..data.inputs import read_inputs
from .common import check_output_file, command_parser


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("predict", __doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a saved model folder, e.g. outputs/<run>/best_model")
    parser.add_argument("--input", required=True, nargs="+", help=".npz, IDX images file, or PNG/JPEG images")
    parser.add_argument("--labels", help="IDX labels file for an IDX images input (to report accuracy)")
    parser.add_argument("--limit", type=int, help="predict only the first N inputs")
    parser.add_argument("--out", help="write label and class probabilities per input to this CSV")
    parser.add_argument("--native", action="store_true", help="load model.keras instead of model.json + weights")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import pandas as pd

    from ..training.persistence import load_model
    from ..core.files import write_csv_atomic

    args = build_parser().parse_args(argv)
    if args.limit is not None and args.limit <= 0:
        raise PipelineError(f"--limit {args.limit}: give a positive number of inputs")
    check_output_file(args.out)
    model = load_model(args.model, native=args.native)
    names, images, labels = read_inputs(args.input, args.labels, model.metadata["preprocessing"])
    if args.limit:
        names, images = names[: args.limit], images[: args.limit]
        labels = labels[: args.limit] if labels is not None else None
    probabilities = model.predict_proba(images)
    if model.already_scaled(np.asarray(images)):
        print("note: the inputs are floats in [0, 1]: read as pixels already scaled", file=sys.stderr)
    predicted = model.classes[np.argmax(probabilities, axis=1)]
    table = pd.DataFrame({"input": names, "label": predicted, "probability": probabilities.max(axis=1).round(4)})
    if labels is not None:
        table.insert(2, "true", labels)
    print(table.to_string(index=False, max_rows=40))
    if labels is not None:
        print(f"accuracy: {np.mean(predicted == labels):.4f} on {len(labels)} inputs")
    if args.out:
        frame = table.drop(columns="probability")
        for index, label in enumerate(model.classes):
            frame[f"prob_{label}"] = probabilities[:, index]
        write_csv_atomic(frame, args.out)
        print(f"wrote {args.out}")
    return 0

