"""The lecture's LR-decay figures: one PNG per family and the five decay families together."""

from __future__ import annotations

from pathlib import Path

from recipes.core.plots import pyplot
from recipes.schedules.registry import FAMILIES, LECTURE_FAMILIES, epochs_to_steps, lr_curve


def example_curve(name: str, total_steps: int, warmup_steps: int) -> list[float]:
    """A family's LR over a plot of `total_steps` updates, its example kwargs as one epoch."""
    kwargs = epochs_to_steps(name, FAMILIES[name].example, total_steps)
    return lr_curve(name, total_steps, warmup_steps, **kwargs)


def plot_schedules(
    out_dir: str | Path, total_steps: int = 1000, warmup_steps: int = 50
) -> list[Path]:
    """One PNG per family, like the lecture's LR-decay figures, plus one with the five together."""
    plt = pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    curves = {name: example_curve(name, total_steps, warmup_steps) for name in FAMILIES}
    paths = []
    for name, values in curves.items():
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot(values)
        ax.set(
            title=f"{name} (warmup {warmup_steps})", xlabel="optimizer step", ylabel="LR / peak LR"
        )
        fig.tight_layout()
        paths.append(out / f"lr_{name}.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in LECTURE_FAMILIES:
        ax.plot(curves[name], label=name)
    ax.set(title="Learning-rate decay families", xlabel="optimizer step", ylabel="LR / peak LR")
    ax.legend()
    fig.tight_layout()
    paths.append(out / "lr_families.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths
