"""Learning curves of a run: loss, accuracy and learning rate against updates and epochs."""

from __future__ import annotations

from pathlib import Path

from recipes import runs


def plot_curves(run_dir: str | Path, out: str | Path) -> Path:
    """Train/validation loss, train/validation accuracy and LR, side by side, to one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    steps = runs.read_jsonl(run_dir / runs.STEPS_FILE)
    epochs = runs.read_jsonl(run_dir / runs.EPOCHS_FILE)
    fig, (loss_ax, acc_ax, lr_ax) = plt.subplots(1, 3, figsize=(13, 3.6))
    if steps:
        loss_ax.plot([r["step"] for r in steps], [r["loss"] for r in steps], alpha=0.4, label="train (steps)")
        lr_ax.plot([r["step"] for r in steps], [r["lr"] for r in steps])
    at = [r["step"] for r in epochs]
    for key, style in (("train", "o-"), ("val", "s-")):
        loss_ax.plot(at, [r[f"{key}_loss"] for r in epochs], style, label=f"{key} (epochs)")
        acc_ax.plot(at, [r[f"{key}_accuracy"] for r in epochs], style, label=key)
    loss_ax.set(title="loss", xlabel="update step", yscale="log")
    acc_ax.set(title="accuracy", xlabel="update step")
    lr_ax.set(title="learning rate", xlabel="update step")
    loss_ax.legend()
    acc_ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)
