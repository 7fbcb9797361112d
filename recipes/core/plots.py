"""Figures of a run: its learning curves and the curve of each tuning check."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """matplotlib's pyplot on the Agg backend: figures are written to files, never shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(steps: list[dict], epochs: list[dict], out: str | Path) -> Path:
    """Train/validation loss, train/validation accuracy and LR, side by side, to one PNG."""
    plt = pyplot()
    fig, (loss_ax, acc_ax, lr_ax) = plt.subplots(1, 3, figsize=(13, 3.6))
    if steps:
        loss_ax.plot(
            [r["step"] for r in steps], [r["loss"] for r in steps], alpha=0.4, label="train (steps)"
        )
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


def plot_check(result, out: Path) -> Path:
    """The curve of one tuning check: LR sweep, overfitting run, or short LR trials."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    curve, v = result.curve, result.values
    if result.name == "lr_range":
        ax.plot(curve["lr"], curve["loss"], alpha=0.3, label="loss")
        ax.plot(curve["lr"], curve["smoothed"], label="smoothed")
        for key, color in (("lr_steepest", "g"), ("suggested_lr", "r"), ("lr", "k")):
            if v.get(key):
                ax.axvline(v[key], color=color, linestyle="--", label=f"{key} {v[key]:.2g}")
        ax.set(xscale="log", xlabel="learning rate", ylabel="training loss")
    elif result.name == "overfit":
        ax.plot(curve["step"], curve["loss"], "o-", label="loss")
        ax.plot(curve["step"], curve["accuracy"], "s-", label="accuracy")
        ax.set(xlabel="update step", yscale="log")
    else:
        for lr, losses in zip(curve["lr"], curve["losses"], strict=True):
            ax.plot(losses, label=f"lr {lr:.0e}")
        ax.set(xlabel="update step", ylabel="training loss")
    ax.set_title(f"{result.name}: {'pass' if result.passed else 'FAIL'}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
