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

from torch.utils.data import DataLoader  # noqa: E402

from search.config import load_config  # noqa: E402
from segtune.data import WholeImageDataset, load_dataset  # noqa: E402
from segtune.paths import ExperimentPaths  # noqa: E402
from trainables import build_loss, load_model  # noqa: E402
from trainables.loop import evaluate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", type=Path)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    args = parser.parse_args()
    paths = ExperimentPaths(args.experiment.resolve())
    cfg = load_config(str(paths.config))
    splits = json.loads(paths.splits.read_text())
    data = load_dataset(cfg.data, classes=cfg.classes, colour_map=cfg.colour_map, ignore_index=cfg.ignore_index,
                        resize=cfg.resize)
    model, trial_cfg = load_model(args.checkpoint)
    loader = DataLoader(WholeImageDataset(data, splits[args.split], trial_cfg.mean, trial_cfg.std), batch_size=1)
    scores = evaluate(model, loader, build_loss("cross_entropy", trial_cfg.ignore_index), trial_cfg, "cpu")
    print(json.dumps({"split": args.split, "images": len(splits[args.split]),
                      **{k.replace("val_", ""): round(v, 4) for k, v in scores.items()}}, indent=1))


if __name__ == "__main__":
    main()
