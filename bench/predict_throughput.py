"""Predict throughput of a built ensemble: eager PyTorch vs TorchScript vs ONNX Runtime, same images, one run.

    python bench/predict_throughput.py EXPERIMENT_DIR [--split test] [--batch-size 4]

Runs `segtune predict`'s tiled inference (ensembles.predict.predict_image) over the experiment's
images of one split with each runtime in turn (one warm-up image first), and prints images per
second, the ratio to eager PyTorch, and the largest probability difference from eager.
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

from ensembles.build import eager_ensemble  # noqa: E402
from ensembles.bundle import Bundle, load_bundle  # noqa: E402
from ensembles.predict import predict_image  # noqa: E402
from search.experiment import load_experiment_data, open_experiment  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", type=Path)
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    paths = open_experiment(args.experiment)
    _, data, splits = load_experiment_data(paths)
    index = data.index_of()
    images = [data.images[index[i]] for i in splits[args.split]]
    folder = paths.ensemble.bundle
    module = eager_ensemble(paths)

    @torch.no_grad()
    def eager_forward(batch: np.ndarray) -> np.ndarray:
        return module(torch.from_numpy(batch)).numpy()

    runtimes = {"eager": Bundle(folder, load_bundle(folder).manifest, "eager", "cpu", eager_forward),
                "torchscript": load_bundle(folder, "torchscript"), "onnx": load_bundle(folder, "onnx")}
    outputs, speed = {}, {}
    for name, bundle in runtimes.items():
        predict_image(bundle, images[0], args.batch_size)  # warm-up (graph optimisation, allocator)
        started = time.perf_counter()
        outputs[name] = [predict_image(bundle, image, args.batch_size) for image in images]
        speed[name] = len(images) / (time.perf_counter() - started)
    report = {"images": len(images), "size": list(images[0].shape), "tile": runtimes["onnx"].manifest["tile"],
              "members": len(module.members), "torch_threads": torch.get_num_threads()}
    for name in runtimes:
        diff = max(float(np.abs(a - b).max()) for a, b in zip(outputs[name], outputs["eager"]))
        report[name] = {"images_per_s": round(speed[name], 2), "vs_eager": round(speed[name] / speed["eager"], 2),
                        "max_prob_diff_vs_eager": diff}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
