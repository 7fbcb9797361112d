"""Large-batch study: a small batch, then 8x and 32x larger by processes and accumulation.

Each large batch trains three ways: the small batch's LR, the linear scaling rule, and the
rule with gradual warmup (Goyal et al. 2017). Writes a table (study.md) and a figure
(study.png) of final validation accuracy and time per epoch.

    python scripts/largebatch_study.py --out runs/largebatch
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import free_port  # noqa: E402

from recipes.schedules import scale_learning_rate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "small LR": ["--scale_lr", "none"],
    "linear rule": ["--scale_lr", "linear"],
    "rule + warmup": ["--scale_lr", "linear"],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/largebatch")
    parser.add_argument("--model", default="test_convnext")
    parser.add_argument("--batch", type=int, default=8, help="the small batch")
    parser.add_argument("--multipliers", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--processes", type=int, default=2, help="processes of the large batches")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.02, help="SGD LR of the small batch")
    parser.add_argument("--warmup_epochs", type=float, default=2.0)
    parser.add_argument("--max_train_samples", type=int, default=0)
    return parser.parse_args(argv)


def train(out: Path, processes: int, args: list[str]) -> dict:
    """One `recipes train` run, here or launched on CPU processes; its results and history."""
    args = [*args, "--output_dir", str(out)]
    if processes == 1:
        from recipes.core.config import parse_config
        from recipes.training.route import run_recipe

        run_recipe(parse_config(None, args))
    else:
        config = ROOT / "accelerate_configs" / "cpu_2proc.yaml"
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
        command += ["--num_processes", str(processes), "--main_process_port", free_port()]
        log = out.parent / f"{out.name}.log"
        with log.open("w") as f:
            command += ["-m", "recipes", "train", *args]
            code = subprocess.run(command, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
        if code:
            raise SystemExit(f"run {out.name} failed (exit {code}); see {log}")
    results = json.loads((out / "results.json").read_text())
    epochs = [json.loads(line) for line in (out / "epochs.jsonl").read_text().splitlines()]
    return {**results, "seconds_per_epoch": epochs[-1]["seconds"] / len(epochs)}


def plan(opts: argparse.Namespace) -> list[dict]:
    """The runs: name, processes, accumulation, and the arguments that differ."""
    runs = [
        dict(
            name=f"batch {opts.batch}",
            multiplier=1,
            variant="small LR",
            processes=1,
            accumulation=1,
        )
    ]
    for m in opts.multipliers:
        processes = min(opts.processes, m)
        for variant in VARIANTS:
            runs.append(
                dict(name=f"batch {opts.batch * m}, {variant}", multiplier=m, variant=variant,
                     processes=processes, accumulation=m // processes)
            )  # fmt: skip
    return runs


def run_args(opts: argparse.Namespace, run: dict) -> list[str]:
    common = [
        "--report_to", "none", "--model_name", opts.model, "--num_epochs", str(opts.epochs),
        "--optimizer", "sgd", "--learning_rate", str(opts.lr), "--weight_decay", "5e-4",
        "--per_device_train_batch_size", str(opts.batch), "--base_batch_size", str(opts.batch),
        "--gradient_accumulation_steps", str(run["accumulation"]), "--max_grad_norm", "0",
        "--max_train_samples", str(opts.max_train_samples), "--logging_steps", "1",
    ]  # fmt: skip
    warmup = opts.warmup_epochs if run["variant"] == "rule + warmup" else 0.0
    return [*common, *VARIANTS[run["variant"]], "--warmup_epochs", str(warmup)]


def write_report(out: Path, rows: list[dict]) -> None:
    """study.md (a table), study.json and study.png (accuracy and time per epoch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["| run | processes x accumulation | peak LR | final val accuracy | s / epoch |"]
    lines.append("|---|---|---|---|---|")
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['processes']} x {r['accumulation']} | {r['lr']:.3g} | "
            f"{r['val_accuracy']:.3f} | {r['seconds_per_epoch']:.1f} |"
        )
    (out / "study.md").write_text("\n".join(lines) + "\n")
    (out / "study.json").write_text(json.dumps(rows, indent=2))
    fig, (acc_ax, time_ax) = plt.subplots(1, 2, figsize=(11, 4))
    names = [r["name"] for r in rows]
    acc_ax.barh(names, [r["val_accuracy"] for r in rows])
    acc_ax.set(xlabel="final validation accuracy", xlim=(0, 1))
    time_ax.barh(names, [r["seconds_per_epoch"] for r in rows])
    time_ax.set(xlabel="seconds per epoch")
    time_ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out / "study.png", dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    opts = parse_args(argv)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = []
    for i, run in enumerate(plan(opts)):
        results = train(out / f"run{i}", run["processes"], run_args(opts, run))
        rule = "none" if run["variant"] == "small LR" else "linear"
        run["lr"] = scale_learning_rate(opts.lr, opts.batch * run["multiplier"], opts.batch, rule)
        rows.append({**run, **{k: results[k] for k in ("val_accuracy", "seconds_per_epoch")}})
        print(f"{run['name']}: val accuracy {rows[-1]['val_accuracy']:.3f}", flush=True)
    write_report(out, rows)
    print((out / "study.md").read_text())
    return rows


if __name__ == "__main__":
    main()
