"""Score an exported bundle the way users run it: `segtune predict` on full-size images of a split.

    python bench/score_bundle.py EXPERIMENT_DIR [--bundle BUNDLE] [--split test] [--without-input-scale]

Reads the experiment's saved config and splits, decodes the split's images at their own size (no
`resize`), runs `ensembles.predict.predict_image` on each and scores the masks against the
full-size labels (mIoU with the experiment's `exclude_from_mean` classes left out, per-class IoU).
`--without-input-scale` runs the networks at the images' own size, as bundles before format 2 did,
to show what the manifest's input_scale changes. Prints one JSON object, with seconds per image.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ensembles.bundle import load_bundle  # noqa: E402
from ensembles.predict import predict_image  # noqa: E402
from search.experiment import open_experiment  # noqa: E402
from search.config import load_config  # noqa: E402
from segtune.data import load_dataset  # noqa: E402
from segtune.metrics import confusion_matrix, iou_per_class, mean_iou  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", type=Path)
    parser.add_argument("--bundle", type=Path, help="default: the experiment's segtune/ensemble/bundle")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--without-input-scale", action="store_true",
                        help="ignore the manifest's input_scale (the behaviour of format-1 bundles)")
    args = parser.parse_args()
    paths = open_experiment(args.experiment)
    cfg = load_config(str(paths.config))
    ids = json.loads(paths.splits.read_text())[args.split]
    data = load_dataset(cfg.data, classes=cfg.classes, colour_map=cfg.colour_map, ignore_index=cfg.ignore_index)
    bundle = load_bundle(args.bundle or paths.ensemble.bundle)
    if args.without_input_scale:
        bundle.manifest["input_scale"] = None
    classes = len(data.classes)
    matrix = torch.zeros(classes, classes, dtype=torch.long)
    started = time.perf_counter()
    for image_id in ids:
        index = data.names.index(image_id)
        probs = predict_image(bundle, data.images[index])
        matrix += confusion_matrix(torch.from_numpy(data.masks[index]), torch.from_numpy(probs.argmax(0)),
                                   classes, data.ignore_index)
    seconds = (time.perf_counter() - started) / len(ids)
    exclude = tuple(data.classes.index(name) for name in cfg.exclude_from_mean)
    print(json.dumps({"split": args.split, "images": len(ids), "size": list(data.images[0].shape[:2]),
                      "input_scale": bundle.manifest["input_scale"], "miou": round(mean_iou(matrix.numpy(), exclude), 4),
                      "iou": dict(zip(data.classes, np.round(iou_per_class(matrix.numpy()), 4).tolist())),
                      "seconds_per_image": round(seconds, 2)}, indent=1))


if __name__ == "__main__":
    main()
