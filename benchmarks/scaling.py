"""Data-parallel scaling: train-step images/s on 1, 2, 4 devices for one global batch.

    python -m benchmarks.scaling [--devices 1 2 4] [--size 128] [--width 8] [--batch 8]

On a CPU machine the devices are XLA host devices that share the same cores, so this checks
that the sharded step runs and what splitting costs; on a GPU host pass the real device counts
(with fewer devices than available, the first N are used). Prints a table and writes
benchmarks/results/scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys

RESULTS = pathlib.Path(__file__).parent / "results"

def measure(devices: int, size: int, width: int, batch: int, steps: int) -> dict:
    """One `benchmarks.scaling_worker` process per device count (fixed when JAX starts)."""
    env = dict(os.environ)
    if env.get("JAX_PLATFORMS", "cpu") == "cpu":
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                            f" --xla_force_host_platform_device_count={devices}").strip()
    result = subprocess.run([sys.executable, "-m", "benchmarks.scaling_worker", str(devices),
                             str(size), str(width), str(batch), str(steps)], env=env,
                            capture_output=True, text=True, check=False,
                            cwd=pathlib.Path(__file__).parents[1])
    if result.returncode:
        raise RuntimeError(f"{devices} devices failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS / "scaling.json")
    args = parser.parse_args()

    rows = [measure(n, args.size, args.width, args.batch, args.steps) for n in args.devices]
    base = rows[0]["images_per_s"] / rows[0]["devices"]
    for row in rows:
        row["efficiency"] = row["images_per_s"] / (base * row["devices"])
    print(f"MultiResUNet width {args.width}, {args.size}x{args.size}, global batch {args.batch}, "
          f"{rows[0]['platform']} ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores)")
    print("| devices | images/s | step (s) | compile (s) | efficiency |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['devices']} | {row['images_per_s']:.2f} | {row['step_s_median']:.3f} | "
              f"{row['compile_s']:.1f} | {row['efficiency']:.0%} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"config": vars(args) | {"output": str(args.output)},
                                       "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
