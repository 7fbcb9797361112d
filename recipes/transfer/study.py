"""The transfer study (methods against labels per class) and the backbone comparison."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from recipes.core import runs
from recipes.core.config import RecipeConfig, parse_config
from recipes.core.data import load_image_data
from recipes.core.errors import RecipeError
from recipes.ensembles.ensemble import score_saved
from recipes.training.route import run_recipe

METHODS = ("scratch", "linear_probe", "finetune", "probe_finetune")
PROBE_EPOCHS = 10


def test_accuracy(config: RecipeConfig, model_dir: Path) -> float:
    """Top-1 accuracy of a saved model folder on the recipe's test split (loaded like any model)."""
    return score_saved({"model": model_dir}, config.data)["model"]["accuracy"]


def run_overrides(overrides: list[str]) -> tuple[RecipeConfig, dict]:
    """One run through the same route as `recipes train`."""
    config = parse_config(None, overrides)
    return config, run_recipe(config)


def method_overrides(
    method: str, checkpoint: str, updates: int, num_train: int, batch: int
) -> list[str]:
    """Each method as recipe overrides; engine runs get about `updates` optimizer steps."""
    epochs = str(max(1, math.ceil(updates / math.ceil(num_train / batch))))
    if method == "scratch":
        return ["--mode", "scratch", "--num_epochs", epochs]
    if method == "linear_probe":
        return [
            "--mode",
            "linear_probe",
            "--checkpoint",
            checkpoint,
            "--num_epochs",
            str(PROBE_EPOCHS),
        ]
    tuned = [
        "--mode",
        "finetune",
        "--checkpoint",
        checkpoint,
        "--num_epochs",
        epochs,
        "--backbone_lr_scale",
        "0.1",
    ]
    return tuned + (["--probe_epochs", str(PROBE_EPOCHS)] if method == "probe_finetune" else [])


@dataclass(frozen=True)
class StudyOptions:
    """The transfer study: a backbone pretrained on the source classes, then each method on the
    target classes with each number of labels per class."""

    model_name: str = "test_convnext"
    image_size: int = 32
    checkpoint: str | None = None  # source weights; None: pretrain on `source`
    source: tuple[str, ...] = ("0", "1", "2", "3", "4")
    target: tuple[str, ...] = ("5", "6", "7", "8", "9")
    shots: tuple[str, ...] = ("5", "10", "20", "all")
    source_epochs: int = 20
    updates: int = 100  # optimizer steps per engine run
    out: str = "runs/transfer-study"

    def __post_init__(self) -> None:
        bad = [s for s in self.shots if s != "all" and not s.isdigit()]
        if bad:
            raise RecipeError(f"--shots: {', '.join(bad)} is not a count; use numbers and/or 'all'")


def run_study(args: StudyOptions) -> list[dict]:
    """Pretrain on the source classes, then learn the target ones with each method and shots."""
    out = Path(args.out)
    base = [
        "--report_to",
        "none",
        "--model_name",
        args.model_name,
        "--image_size",
        str(args.image_size),
        "--feature_cache_dir",
        str(out / "features"),
        "--overwrite_output_dir",
        "true",
    ]
    checkpoint = args.checkpoint
    if checkpoint is None:
        source = [
            *base,
            "--classes",
            *args.source,
            "--num_epochs",
            str(args.source_epochs),
            "--output_dir",
            str(out / "source"),
        ]
        _, results = run_overrides(source)
        checkpoint = str(out / "source" / "best_model")
        print(
            f"source model: val accuracy {results['best_val_accuracy']:.3f}, classes {args.source}"
        )
    rows = []
    for shots in args.shots:
        subset = [] if shots == "all" else ["--train_per_class", shots]
        target = [*base, "--classes", *args.target, *subset]
        num_train = len(load_image_data(parse_config(None, target).data).splits["train"])
        for method in METHODS:
            folder = out / f"{method}-{shots}"
            overrides = [
                *target,
                *method_overrides(method, checkpoint, args.updates, num_train, 64),
                "--output_dir",
                str(folder),
            ]
            config, results = run_overrides(overrides)
            row = {
                "shots": shots,
                "method": method,
                "val_accuracy": results["best_val_accuracy"],
                "test_accuracy": test_accuracy(config, folder / "best_model"),
            }
            print(f"{shots:>4} labels/class  {method:15} test accuracy {row['test_accuracy']:.3f}")
            rows.append(row)
    return rows


def study_table(rows: list[dict]) -> str:
    """Markdown: one row per labels-per-class count, one column per method (test accuracy)."""
    shots = list(dict.fromkeys(r["shots"] for r in rows))
    lines = [
        "| labels per class | " + " | ".join(METHODS) + " |",
        "|---" * (len(METHODS) + 1) + "|",
    ]
    for n in shots:
        acc = {r["method"]: r["test_accuracy"] for r in rows if r["shots"] == n}
        lines.append(f"| {n} | " + " | ".join(f"{acc[m]:.3f}" for m in METHODS) + " |")
    return "\n".join(lines)


def plot_study(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shots = list(dict.fromkeys(r["shots"] for r in rows))
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in METHODS:
        acc = {r["shots"]: r["test_accuracy"] for r in rows if r["method"] == method}
        ax.plot(range(len(shots)), [acc[n] for n in shots], "o-", label=method)
    ax.set_xticks(range(len(shots)), shots)
    ax.set(
        xlabel="labels per class (target task)",
        ylabel="test accuracy",
        title="Transfer: source -> target",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_study(rows: list[dict], options: StudyOptions) -> str:
    """study.json, study.md and study.png in the study folder; the table as text."""
    out = Path(options.out)
    runs.write_json(out / "study.json", {"rows": rows, "args": dataclasses.asdict(options)})
    (out / "study.md").write_text(study_table(rows) + "\n")
    plot_study(rows, out / "study.png")
    return study_table(rows) + f"\ntable {out / 'study.md'}, plot {out / 'study.png'}"


def parse_backbone(spec: str) -> tuple[str, str | None, float | None]:
    """NAME[=CHECKPOINT][@PRETRAIN_ACCURACY]; without @ the accuracy is read from the run folder."""
    spec, _, accuracy = spec.partition("@")
    name, _, checkpoint = spec.partition("=")
    try:
        value = float(accuracy) if accuracy else None
    except ValueError:
        raise RecipeError(
            f"--backbone {spec}@{accuracy}: {accuracy!r} is not an accuracy"
        ) from None
    if value is None and checkpoint:
        results = Path(checkpoint).parent / runs.RESULTS_FILE
        value = json.loads(results.read_text())["best_val_accuracy"] if results.is_file() else None
    return name, checkpoint or None, value


def compare_backbones(
    recipe: str | None, overrides: list[str], specs: list[str], out: Path
) -> list[dict]:
    """Linear-probe every backbone on the recipe's data; pair it with its pretraining accuracy."""
    rows = []
    for index, spec in enumerate(specs):
        name, checkpoint, pretrain = parse_backbone(spec)
        weights = ["--checkpoint", checkpoint] if checkpoint else ["--pretrained", "true"]
        folder = out / f"{index}-{name}"
        extra = [
            "--model_name",
            name,
            *weights,
            "--mode",
            "linear_probe",
            "--output_dir",
            str(folder),
            "--overwrite_output_dir",
            "true",
            "--strategy",
            "manual",
        ]
        config = parse_config(recipe, [*overrides, *extra])
        results = run_recipe(config)
        rows.append(
            {
                "backbone": spec.partition("@")[0],
                "pretrain_accuracy": pretrain,
                "probe_val_accuracy": results["best_val_accuracy"],
                "probe_test_accuracy": test_accuracy(config, folder / "best_model"),
            }
        )
    runs.write_json(out / "compare.json", {"rows": rows})
    plot_compare(rows, out / "compare.png")
    return rows


def plot_compare(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for row in rows:
        if row["pretrain_accuracy"] is not None:
            ax.scatter(row["pretrain_accuracy"], row["probe_test_accuracy"])
            ax.annotate(
                row["backbone"], (row["pretrain_accuracy"], row["probe_test_accuracy"]), fontsize=7
            )
    ax.set(
        xlabel="accuracy on the pretraining task",
        ylabel="linear-probe test accuracy",
        title="Better pretrained models transfer better?",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
