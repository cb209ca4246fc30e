"""Score a trial's checkpoint on a split of its own experiment (test by default).

    python bench/score_checkpoint.py EXPERIMENT_DIR CHECKPOINT.pt [--split test]

Reads the experiment's saved config and splits, so the images are exactly those the search held out.
Prints mIoU (with the experiment's excluded classes left out), per-class IoU and pixel accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from search.experiment import load_experiment_data, open_experiment  # noqa: E402
from trainables import build_loss, load_model  # noqa: E402
from trainables.device import Compute  # noqa: E402
from trainables.loop import evaluate  # noqa: E402
from trainables.scale import reference_loader  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", type=Path)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    args = parser.parse_args()
    _, data, splits = load_experiment_data(open_experiment(args.experiment))
    model, trial_cfg = load_model(args.checkpoint)
    loader = reference_loader(data, splits[args.split], trial_cfg)  # at the trial's scale, scored at the labels' size
    scores = evaluate(model, loader, build_loss("cross_entropy", trial_cfg.ignore_index), trial_cfg,
                      Compute(torch.device("cpu")))
    print(json.dumps({"split": args.split, "images": len(splits[args.split]),
                      **{k.replace("val_", ""): round(v, 4) for k, v in scores.items()}}, indent=1))


if __name__ == "__main__":
    main()
