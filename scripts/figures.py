"""Regenerate the lecture's figures from short real trainings on the embedded digits.

    python scripts/figures.py --out docs/figures            # every figure
    python scripts/figures.py --out docs/figures --only lr  # one of: lr schedules grid transfer
                                                            #   ensemble largebatch

Each figure comes from the package's own commands; the folders they write go to --work.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model_name", "test_convnext", "--report_to", "none", "--max_train_samples", "512"]
LOSS_LRS = {"very high": 3.0, "high": 0.5, "low": 1e-4, "good": 0.05}


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def recipes(*args: str, check: bool = True) -> None:
    subprocess.run([sys.executable, "-m", "recipes", *args], check=check, cwd=ROOT)


def script(name: str, *args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], check=True, cwd=ROOT)


def lr_losses(out: Path, work: Path) -> None:
    """Loss against updates for a very high, high, low and good LR (the lecture's sketch)."""
    from recipes.core import runs

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, lr in LOSS_LRS.items():
        run = work / f"lr-{lr:g}"
        recipes("train", *TINY, "--num_epochs", "5", "--optimizer", "sgd", "--max_grad_norm", "0",
                "--max_train_samples", "0",
                "--learning_rate", str(lr), "--lr_scheduler", "constant", "--logging_steps", "1",
                "--output_dir", str(run), check=False)  # fmt: skip
        steps = runs.read_jsonl(run / runs.STEPS_FILE)
        losses = [min(r["loss"], 10.0) for r in steps]
        stopped = "" if (run / runs.RESULTS_FILE).is_file() else ", stopped: loss not finite"
        ax.plot([r["step"] for r in steps], losses, label=f"{name} LR ({lr:g}{stopped})")
    ax.set(xlabel="update step", ylabel="training loss (clipped at 10)", yscale="log",
           title="Loss curves for four learning rates (SGD, digits)")  # fmt: skip
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "lr_losses.png", dpi=100)
    plt.close(fig)


def schedules(out: Path, work: Path) -> None:
    from recipes.schedules.plots import plot_schedules

    paths = plot_schedules(work / "schedules")
    shutil.copy(next(p for p in paths if p.name == "lr_families.png"), out / "lr_families.png")


def grid(out: Path, work: Path) -> None:
    script("grid_vs_random.py", "--out", str(out / "grid_vs_random.png"))


def transfer(out: Path, work: Path) -> None:
    recipes("transfer", "study", "--out", str(work / "transfer"), "--source_epochs", "5",
            "--updates", "40")  # fmt: skip
    shutil.copy(work / "transfer" / "study.png", out / "transfer_study.png")


def ensemble(out: Path, work: Path) -> None:
    """Each member's and the ensemble's test accuracy and NLL (few labels, so members differ)."""
    folder = work / "ensemble"
    members = ["--members", "5", "--output_dir", str(work / "ensemble-run"), "--out", str(folder)]
    recipes("ensemble", *TINY, "--max_train_samples", "200", "--num_epochs", "8", *members)
    rows = json.loads((folder / "results.json").read_text())["test"]
    names = [n for n in rows if not n.startswith("best member")]
    plt = pyplot()
    fig, (acc, nll) = plt.subplots(1, 2, figsize=(9, 3.5))
    colors = ["tab:orange" if n.startswith("ensemble") else "tab:blue" for n in names]
    acc.bar(names, [rows[n]["accuracy"] for n in names], color=colors)
    nll.bar(names, [rows[n]["nll"] for n in names], color=colors)
    acc.set(title="test accuracy", ylim=(min(rows[n]["accuracy"] for n in names) - 0.05, 1))
    nll.set(title="test NLL (lower is better)")
    for ax in (acc, nll):
        ax.tick_params(axis="x", rotation=45)
    fig.suptitle("Five independently trained members and their ensemble")
    fig.tight_layout()
    fig.savefig(out / "ensemble_gain.png", dpi=100)
    plt.close(fig)


def largebatch(out: Path, work: Path) -> None:
    script("largebatch_study.py", "--out", str(work / "largebatch"), "--max_train_samples", "512",
           "--epochs", "4")  # fmt: skip
    shutil.copy(work / "largebatch" / "study.png", out / "largebatch_study.png")


FIGURES = {
    "lr": lr_losses,
    "schedules": schedules,
    "grid": grid,
    "transfer": transfer,
    "ensemble": ensemble,
    "largebatch": largebatch,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/figures")
    parser.add_argument("--work", default="runs/figures", help="run folders behind the figures")
    parser.add_argument("--only", nargs="+", choices=sorted(FIGURES), default=sorted(FIGURES))
    args = parser.parse_args()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    for name in args.only:
        print(f"figure: {name}", flush=True)
        FIGURES[name](out, work)
    print(f"figures in {out}")


if __name__ == "__main__":
    main()
