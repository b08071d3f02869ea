"""Time and peak memory against dataset size: `prepare` and a short sweep on folders of
1,000 to 50,000 photos (issue 21).

    python -m benchmarks.scale_data [--counts 1000 5000 20000 50000] [--sizes 160 224]
        [--source ../shared/data/flowers5] [--work /tmp/thaw_scale]

Folders are made from the flower photos, seeded: each image a random crop (40-100 % of
the area, aspect 3:4 to 4:3) of a random photo of its class, flipped half the time,
256 px on its short side, JPEG quality 90; five classes, equal counts. Each (count, size)
runs in a fresh workspace with the stages as `dvc repro` runs them (`prepare`,
`weights`, `backbone`, `sweep`), each under GNU time for its peak resident memory. The
sweep: the shipped MobileNet v1 0.25, head-only and one freeze depth (top 40 % of the
backbone trains), one trial each, 2 epochs, batch 64; 80 % of each class trains, 10 %
validates, 10 % tests; `sweep.cache.memory_mb` as shipped (1024), `disk_mb` 16384 so that
the freeze-depth cut of 45,000 images (5 GB at 224 px) is cached, not recomputed.

Prints per stage seconds, seconds per 1,000 images and peak RSS; targets: peak memory
<= 3 GB at 50,000 images at 224 px, and seconds per 1,000 images within 1.5x between
the smallest and largest count.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

from benchmarks.child_processes import peak_memory, python_module

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
STAGES = ("prepare", "weights", "backbone", "sweep")
GB = 1 << 30


def params(folder: Path, size: int) -> dict:
    """The shipped params.yaml with the benchmark's data, backbone and short sweep."""
    return merged(yaml.safe_load((ROOT / "params.yaml").read_text()), {
        "seed": 0,
        "data": {"dataset": "folder", "folder": str(folder), "image_size": size,
                 "train_per_class": 0.8, "val_per_class": 0.1},
        "backbones": {"mobilenet_025": {"arch": "mobilenet", "alpha": 0.25,
                                        "weights": str(WEIGHTS)}},
        "search": {"strategies": ["head_only", "freeze_depth"],
                   "freeze_depth": {"low": 0.5, "high": 0.8, "candidates": 1},
                   "head_units": [0], "epochs": 2, "head_only_epochs": 2, "batch_size": 64,
                   "patience": 0, "augmentation": ["none"]},
        "sweep": {"n_trials": 2, "min_trials_per_strategy": 1, "max_trials": 2,
                  "pruner": {"kind": "none"}, "cache": {"disk_mb": 16384}},
        "report": {"scratch": False},
    })  # fmt: skip


def merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        deep = isinstance(value, dict) and isinstance(base.get(key), dict) and key != "backbones"
        out[key] = merged(base[key], value) if deep else value
    return out


def _one(job: tuple[Path, Path, int, int, int]) -> None:
    """One generated photo: a random crop of a random source photo of its class."""
    from PIL import Image

    source, target, seed, side, quality = job
    rng = random.Random(seed)
    with Image.open(source) as photo:
        photo = photo.convert("RGB")
        w, h = photo.size
        area = rng.uniform(0.4, 1.0) * w * h
        aspect = rng.uniform(3 / 4, 4 / 3)
        cw, ch = min(w, round((area * aspect) ** 0.5)), min(h, round((area / aspect) ** 0.5))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        crop = photo.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        scale = side / min(crop.size)
        crop = crop.resize((round(crop.size[0] * scale), round(crop.size[1] * scale)))
        target.parent.mkdir(parents=True, exist_ok=True)
        crop.save(target, quality=quality)


def generate(source: Path, out: Path, count: int) -> Path:
    """`count` photos under out/<class>/, made once (a finished folder has a marker)."""
    done = out / ".complete"
    if done.is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    classes = sorted(p.name for p in source.iterdir() if p.is_dir())
    photos = {c: sorted((source / c).glob("*.jpg")) for c in classes}
    rng = random.Random(count)
    jobs = []
    for i in range(count):
        c = classes[i % len(classes)]
        jobs.append((rng.choice(photos[c]), out / c / f"{i:06d}.jpg", count * 7919 + i, 256, 90))
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_one, jobs, chunksize=256))
    done.touch()
    return out


def run_stage(stage: str, workspace: Path) -> tuple[float, float]:
    """(seconds, peak resident GB) of one stage, run as `dvc repro` runs it."""
    args = ["mobilenet_025"] if stage in ("backbone", "sweep") else []
    command = python_module(f"pipeline.stages.{stage}", *args)
    seconds, peak = peak_memory(command, workspace, workspace / f"{stage}.log", stage)
    return seconds, peak / GB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 5000, 20000, 50000])
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 224])
    parser.add_argument("--source", default=str(ROOT.parent / "shared/data/flowers5"))
    parser.add_argument("--work", default="/tmp/thaw_scale")
    parser.add_argument("--keep", action="store_true", help="keep each run's workspace")
    args = parser.parse_args()
    work = Path(args.work)
    print(f"{os.cpu_count()} cores; {platform()}", flush=True)
    print("| images | px | stage | s | s per 1k images | peak RSS GB |")
    print("|---:|---:|---|---:|---:|---:|", flush=True)
    for count in args.counts:
        start = time.perf_counter()
        folder = generate(Path(args.source), work / f"photos_{count}", count)
        print(f"<!-- {count} photos generated in {time.perf_counter() - start:.0f} s -->")
        for size in args.sizes:
            workspace = work / f"run_{count}_{size}"
            shutil.rmtree(workspace, ignore_errors=True)
            workspace.mkdir(parents=True)
            (workspace / "params.yaml").write_text(yaml.safe_dump(params(folder, size)))
            for stage in STAGES:
                seconds, peak = run_stage(stage, workspace)
                print(f"| {count} | {size} | {stage} | {seconds:.1f} | "
                      f"{seconds / count * 1000:.2f} | {peak:.2f} |", flush=True)  # fmt: skip
            if not args.keep:
                shutil.rmtree(workspace)


def platform() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
