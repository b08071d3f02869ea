"""docs/zoo.md's tables: every architecture of pipeline/models/zoo.py built once.

    python -m benchmarks.zoo_table > /tmp/zoo.md        # a few minutes on 2 cores
    python -m benchmarks.zoo_table --fingerprints      # and zoo.py's fingerprints after them

Each backbone is built as Thaw builds it (backbones.build: random weights, no download) at
224 px, its parameters counted without top, its cut points found (freezing.py) and the
freeze depths a study would search listed: `candidates` at search.freeze_depth low 0.5,
high 1.0, candidates 3, and every distinct depth from 0 to 100 %. Every published width
(MobileNet's alpha) is built too, for its parameter count and its weights' fingerprint.
Nothing here runs in the tests: the largest (ConvNeXtXLarge, 350 M parameters) take
seconds and gigabytes each.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

SIZE = 224
LOW, HIGH, CANDIDATES = 0.5, 1.0, 3  # the search.freeze_depth a study of the zoo would use
ALL = 10_000  # candidates: every distinct depth, unthinned (search.freeze_depth takes up to 64)


def measure(arch: str, alpha: float) -> dict:
    """One build of `arch` at width `alpha`: what the tables show."""
    import keras

    from pipeline.config import BackboneParams
    from pipeline.models import backbones, freezing, weights_file

    started = time.perf_counter()
    model = backbones.build(arch, SIZE, None, BackboneParams(alpha=alpha))
    row = {
        "params": model.count_params(),
        "fingerprint": weights_file.fingerprint(model.weights),
        "layers": len(model.layers),
        "cuts": len(freezing.cut_points(model)),
        "depths": len(freezing.candidate_plans(model, 0.0, 1.0, ALL)),
        "searched": [
            (p.last_frozen_layer, p.frozen_fraction)
            for p in freezing.candidate_plans(model, LOW, HIGH, CANDIDATES)
        ],
        "seconds": time.perf_counter() - started,
    }
    del model
    keras.backend.clear_session()
    gc.collect()
    return row


def millions(n: int) -> str:
    return f"{n / 1e6:.2f} M"


def main_table(rows: dict[str, dict]) -> list[str]:
    from pipeline.models import zoo

    lines = [
        "| arch | Keras constructor | parameters (no top) | `weights: imagenet` downloads | "
        "preprocessing | min size | cut points | distinct depths | searched at 0.5-1.0, 3 |",
        "|---|---|---:|---|---|---:|---:|---:|---|",
    ]
    for arch, member in zoo.ZOO.items():
        row = rows[(arch, 1.0)]
        searched = ", ".join(f"{name} ({frac:.0%})" for name, frac in row["searched"])
        url = zoo.imagenet_url(member, 1.0, SIZE)
        lines.append(
            f"| `{arch}` | `{member.constructor}` | {millions(row['params'])} | "
            f"[{url.rsplit('/', 1)[1]}]({url}) | {member.preprocess} "
            f"(`{member.module}.preprocess_input`) | {member.min_size} | {row['cuts']} | "
            f"{row['depths']} | {len(row['searched'])}: {searched} |"
        )
    return lines


def width_table(rows: dict[str, dict]) -> list[str]:
    from pipeline.models import zoo

    lines = ["| arch | alpha | parameters (no top) | file at 224 px |", "|---|---:|---:|---|"]
    for arch, member in zoo.ZOO.items():
        for alpha in member.widths if member.has_width else ():
            url = zoo.imagenet_url(member, alpha, SIZE)
            params = millions(rows[(arch, alpha)]["params"])
            lines.append(f"| `{arch}` | {alpha} | {params} | {url.rsplit('/', 1)[1]} |")
    return lines


def measure_all() -> dict:
    from pipeline.models import zoo

    rows = {}
    for arch, member in zoo.ZOO.items():
        for alpha in member.widths:
            rows[(arch, alpha)] = measure(arch, alpha)
            print(f"{arch} {alpha}: {rows[(arch, alpha)]['seconds']:.1f} s", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fingerprints", action="store_true", help="zoo.py's numbers too")
    args = parser.parse_args(argv)
    from pipeline import quiet_tf

    quiet_tf.load()  # TensorFlow's start-up lines off
    rows = measure_all()
    print("\n".join(main_table(rows)))
    print()
    print("\n".join(width_table(rows)))
    if args.fingerprints:  # after the tables: (arch, alpha, values in its weights' tensors)
        print()
        for (arch, alpha), row in rows.items():
            print(f"{arch} {alpha} {row['fingerprint']}")


if __name__ == "__main__":
    main()
