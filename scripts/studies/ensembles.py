"""The lecture's model ensembles on Fashion-MNIST: members, snapshots, EMA and soups.

Every model is a resnet10t at 32 px (bf16, channels_last, AdamW at LR 3e-3 with a cosine
schedule, batch 64) trained on a fixed subset of the 55,000 training images; every score is on
the full 10,000 test images, every choice (best member, greedy soup) on the 5,000 validation ones.

- Members: 2 disjoint groups of 5 runs from independent seeds (0-4 and 5-9), 4 epochs on
  8,000 images; each group's probability-averaged ensemble against its best member (by
  validation accuracy) and its mean member, so the ensemble rows are repeated over 2 groups.
- EMA: every member also keeps an EMA of its weights (horizon a fifth of its 500 updates:
  decay 0.99); EMA weights against the same run's last weights, paired over the 10 members.
- Snapshot ensemble: 3 runs (seeds 0-2) of the members' recipe and cost but with
  cosine_with_restarts in 4 cycles, a snapshot at the end of each; the 4 snapshots' ensemble
  against the last snapshot and against the plain member of the same seed (one run, same cost).
- Soups: 2 starting points (a resnet10t pretrained for 3 epochs on 4,000 images, seeds 100 and
  101), each fine-tuned 4 times (`mode: finetune`, 2 epochs on 8,000 images, LRs 5e-4 to 4e-3,
  one seed each); uniform and greedy soups (`recipes soup`: greedy on validation) against the
  best fine-tuned member, the mean one and their ensemble, repeated over the 2 starts.

The full run takes about 12 minutes on 2 CPU cores; quick=True runs it all in tiny (512 images,
1 epoch, 2 groups of 2 members, one snapshot run, one start of 2 fine-tunes) to smoke-test the
pipeline. Tables give mean ± std over the repeats (n), and paired differences within repeats.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studies import common

MODEL = ["--model_name", "resnet10t", "--mixed_precision", "bf16", "--channels_last", "true"]
BATCH = 64
METRICS = ("accuracy", "nll", "ece")
EMA_HORIZON = 0.2  # the EMA averages over about this share of a run's updates
Row = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """How many runs of what size: the full study or its quick smoke test."""

    images: int  # training images of a member and of a fine-tuning run
    epochs: int
    groups: int  # disjoint groups of members: the repeats of the ensemble
    members: int
    snapshot_runs: int
    cycles: int
    starts: int  # pretrained starting points: the repeats of the soups
    pretrain_images: int
    pretrain_epochs: int
    finetune_epochs: int
    finetune_lrs: tuple[float, ...]


FULL = Plan(8000, 4, 2, 5, 3, 4, 2, 4000, 3, 2, (5e-4, 1e-3, 2e-3, 4e-3))
QUICK = Plan(512, 1, 2, 2, 1, 2, 1, 256, 1, 1, (1e-3, 3e-3))


def recipe(images: int, epochs: int, seed: int) -> list[str]:
    """The shared recipe on a subset of the training images."""
    return [*common.FASHION, *MODEL, "--max_train_samples", str(images),
            "--num_epochs", str(epochs), "--seed", str(seed),
            "--per_device_train_batch_size", str(BATCH)]  # fmt: skip


def ema_decay(plan: Plan) -> float:
    """The EMA decay whose horizon (1 / (1 - decay) updates) is EMA_HORIZON of a member's run."""
    updates = math.ceil(plan.images / BATCH) * plan.epochs
    return round(1 - 1 / (EMA_HORIZON * updates), 4)


def scores(folder: Path, models: dict[str, Path]) -> dict[str, dict[str, float]]:
    """Test accuracy, NLL and ECE of saved models and their ensemble (resumable)."""
    from recipes.core.config import parse_config
    from recipes.ensembles.ensemble import score_saved

    def run() -> dict[str, dict[str, float]]:
        found = score_saved(models, parse_config(None, common.FASHION).data)
        return {name: {m: values[m] for m in METRICS} for name, values in found.items()}

    return common.resumable(folder, run)


def row(section: str, name: str, pair: Any, metrics: dict, seconds: float, models: int) -> Row:
    """One scored model: test metrics, costs, and `pair`, the repeat it is compared within."""
    return {"section": section, "row": name, "pair": pair, "train_seconds": seconds,
            "models": models, **{m: metrics[m] for m in METRICS}}  # fmt: skip


def members(work: Path, plan: Plan) -> tuple[list[Row], dict[int, Row]]:
    """Groups of members from independent seeds, each with EMA weights, and their ensembles."""
    rows, plain = [], {}
    for group in range(plan.groups):
        seeds = [group * plan.members + i for i in range(plan.members)]
        names = {s: f"seed_{s}" for s in seeds}
        runs = {s: work / "members" / names[s] for s in seeds}
        overrides = ["--ema_decay", str(ema_decay(plan))]
        results = {s: common.train(runs[s], [*recipe(plan.images, plan.epochs, s), *overrides],
                                   test=False) for s in seeds}  # fmt: skip
        scored = work / "scores"
        last = scores(scored / f"group_{group}", {names[s]: runs[s] / "model" for s in seeds})
        ema = scores(scored / f"group_{group}-ema",
                     {names[s]: runs[s] / "ema_model" for s in seeds})  # fmt: skip
        seconds = {s: results[s]["seconds"] for s in seeds}
        for s in seeds:
            test, cost = last[names[s]], seconds[s]
            plain[s] = row("snapshot", "one run (cosine)", s, test, cost, 1)
            rows += [{**row("members", "single member", group, test, cost, 1), "seed": s},
                     row("ema", "last weights", s, test, cost, 1),
                     row("ema", "EMA weights", s, ema[names[s]], cost, 1)]  # fmt: skip
        best = max(seeds, key=lambda s: results[s]["val_accuracy"])
        total = sum(seconds.values())
        rows += [row("members", "best member (by validation)", group, last[names[best]],
                     seconds[best], 1),
                 row("members", f"ensemble of {plan.members}", group, last["ensemble"], total,
                     plan.members),
                 row("ema", f"ensemble of {plan.members} EMA", group, ema["ensemble"], total,
                     plan.members)]  # fmt: skip
    return rows, plain


def snapshots(work: Path, plan: Plan, plain: dict[int, Row]) -> list[Row]:
    """Runs whose cosine restarts leave one snapshot per cycle, against one plain run each."""
    from recipes.ensembles.members import snapshot_members

    restarts = ["--lr_scheduler", "cosine_with_restarts", "--snapshot_ensemble", "true",
                "--scheduler_kwargs", json.dumps({"num_cycles": plan.cycles})]  # fmt: skip
    rows = []
    for seed in range(plan.snapshot_runs):
        folder = work / "snapshots" / f"seed_{seed}"
        overrides = [*recipe(plan.images, plan.epochs, seed), *restarts]
        result = common.train(folder, overrides, test=False)
        dirs = {d.name: d for d in snapshot_members(folder)}
        found = scores(work / "scores" / f"snapshots_{seed}", dirs)
        seconds = result["seconds"]
        rows += [plain[seed],
                 row("snapshot", "last snapshot", seed, found[list(dirs)[-1]], seconds, 1),
                 row("snapshot", f"snapshot ensemble of {plan.cycles}", seed, found["ensemble"],
                     seconds, plan.cycles)]  # fmt: skip
    return rows


def soups(work: Path, plan: Plan) -> list[Row]:
    """Members fine-tuned from one pretrained start, their uniform and greedy soups, per start."""
    rows = []
    for start in range(plan.starts):
        folder = work / "soups" / f"start_{start}"
        pretrained = common.train(
            folder / "pretrain", recipe(plan.pretrain_images, plan.pretrain_epochs, 100 + start)
        )
        checkpoint = ["--mode", "finetune", "--checkpoint", str(folder / "pretrain" / "best_model")]
        runs, seconds = {}, {}
        for i, lr in enumerate(plan.finetune_lrs):
            seed = 200 + start * len(plan.finetune_lrs) + i
            runs[f"ft_{i}"] = folder / f"ft_{i}"
            overrides = [*recipe(plan.images, plan.finetune_epochs, seed), *checkpoint,
                         "--learning_rate", str(lr)]  # fmt: skip
            seconds[f"ft_{i}"] = common.train(runs[f"ft_{i}"], overrides, test=False)["seconds"]
        found = soup(folder / "soup", [d / "model" for d in runs.values()])
        rows += soup_rows(start, found, pretrained, seconds)
    return rows


def soup(folder: Path, dirs: list[Path]) -> dict[str, Any]:
    """`recipes soup` on fine-tuned models: test metrics of each row and the greedy choice."""
    from recipes.ensembles.soup import soup as make_soups

    def run() -> dict[str, Any]:
        make_soups(dirs, folder)
        report = json.loads((folder / "results.json").read_text())
        test = {name: {m: v[m] for m in METRICS} for name, v in report["test"].items()}
        return {"test": test, "greedy": report["greedy_soup"]}

    return common.resumable(folder, run)


def soup_rows(start: int, found: dict, pretrained: dict, seconds: dict[str, float]) -> list[Row]:
    """The soup section's rows of one start; the soups' cost includes the pretraining."""
    test, count = found["test"], len(seconds)
    best = next(name for name in test if name.startswith("best member ("))
    greedy = next(name for name in test if name.startswith("soup (greedy"))
    base, total = pretrained["seconds"], pretrained["seconds"] + sum(seconds.values())
    rows = [row("soup", "pretrained start", start, pretrained["test"], base, 1)]
    rows += [{**row("soup", "fine-tuned member", start, test[n], base + s, 1), "member": n}
             for n, s in seconds.items()]  # fmt: skip
    best_seconds = base + seconds[best[len("best member (") : -1]]
    rows += [row("soup", "best fine-tuned (by validation)", start, test[best], best_seconds, 1),
             row("soup", "uniform soup", start, test["soup (uniform)"], total, 1),
             {**row("soup", "greedy soup", start, test[greedy], total, 1),
              "greedy": found["greedy"]},
             row("soup", f"ensemble of {count} fine-tuned", start, test["ensemble"], total,
                 count)]  # fmt: skip
    return rows


# Each section: its title, and the comparisons (row, baseline) shown as paired differences.
SECTIONS = {
    "members": ("Independent members and their ensemble", [
        ("ensemble of", "best member (by validation)"), ("ensemble of", "single member")]),
    "snapshot": ("A snapshot ensemble at the cost of one run", [
        ("snapshot ensemble", "one run (cosine)"), ("snapshot ensemble", "last snapshot")]),
    "ema": ("EMA of the weights", [("EMA weights", "last weights")]),
    "soup": ("Soups of members fine-tuned from one start", [
        ("uniform soup", "best fine-tuned (by validation)"),
        ("greedy soup", "best fine-tuned (by validation)"),
        ("ensemble of", "best fine-tuned (by validation)")]),
}  # fmt: skip


def named(rows: list[Row], section: str, prefix: str) -> list[Row]:
    """A section's rows whose name starts with `prefix`."""
    return [r for r in rows if r["section"] == section and r["row"].startswith(prefix)]


def differences(rows: list[Row], section: str, prefix: str, baseline: str) -> list[dict]:
    """Metric differences row − baseline within each repeat (against the mean of several)."""
    base: dict[Any, list[Row]] = {}
    for r in named(rows, section, baseline):
        base.setdefault(r["pair"], []).append(r)
    return [{m: r[m] - statistics.mean(b[m] for b in base[r["pair"]]) for m in METRICS}
            for r in named(rows, section, prefix)]  # fmt: skip


def summary(rows: list[Row], plan: Plan) -> str:
    """The study's Markdown: one table per section, and how many members the greedy soups kept."""
    intro = (
        f"Ensembles on Fashion-MNIST (resnet10t, {plan.images} training images, "
        f"{plan.epochs} epoch(s) each); test metrics, mean ± std over repeats (n).\n"
    )
    kept = ", ".join(str(len(r["greedy"])) for r in rows if r["row"] == "greedy soup")
    greedy = f"Greedy soups kept {kept} of {len(plan.finetune_lrs)} fine-tuned members.\n"
    return "\n".join([intro, *(section_table(rows, s) for s in SECTIONS), greedy])


def section_table(rows: list[Row], section: str) -> str:
    """One section's rows with their spread, its paired differences, and a verdict on each."""
    title, comparisons = SECTIONS[section]
    mine = [r for r in rows if r["section"] == section]
    header = ["model", "test accuracy", "test NLL", "test ECE", "train s", "models at test"]
    lines, verdicts = [], []
    for name in dict.fromkeys(r["row"] for r in mine):
        same = [r for r in mine if r["row"] == name]
        cost = statistics.mean(r["train_seconds"] for r in same)
        lines.append([name, *(common.spread(r[m] for r in same) for m in METRICS),
                      f"{cost:.0f}", same[0]["models"]])  # fmt: skip
    for prefix, baseline in comparisons:
        paired = differences(rows, section, prefix, baseline)
        label = f"{named(rows, section, prefix)[0]['row']} − {baseline}{mean_of(mine, baseline)}"
        lines.append([label, *(common.spread(p[m] for p in paired) for m in METRICS), "", ""])
        verdicts.append(verdict(label, paired))
    return f"## {title}\n\n{common.table(header, lines)}\n" + "\n".join(verdicts) + "\n"


def mean_of(rows: list[Row], baseline: str) -> str:
    """' (its mean)' where a repeat holds several baseline rows (the members of a group)."""
    pairs = [r["pair"] for r in rows if r["row"] == baseline]
    return " (its mean)" if len(pairs) > len(set(pairs)) else ""


def verdict(label: str, paired: list[dict]) -> str:
    """One line on a paired difference: the mean change, and in how many repeats it helped."""
    accuracy, nll = (statistics.mean(p[m] for p in paired) for m in ("accuracy", "nll"))
    better = sum(p["accuracy"] > 0 for p in paired), sum(p["nll"] < 0 for p in paired)
    return (f"- {label}: accuracy {accuracy:+.4f} (higher in {better[0]} of {len(paired)}), "
            f"NLL {nll:+.4f} (lower in {better[1]} of {len(paired)}).")  # fmt: skip


def draw(rows: list[Row], path: Path) -> None:
    """Test accuracy and NLL per section: mean ± std and each repeat, the methods in orange."""
    plt = common.pyplot()
    fig, axes = plt.subplots(2, len(SECTIONS), figsize=(4 * len(SECTIONS), 7), squeeze=False)
    for column, (section, (title, comparisons)) in enumerate(SECTIONS.items()):
        names = list(dict.fromkeys(r["row"] for r in rows if r["section"] == section))
        methods = tuple(prefix for prefix, _ in comparisons)
        colors = ["tab:orange" if n.startswith(methods) else "tab:blue" for n in names]
        for ax, metric in zip(axes[:, column], ("accuracy", "nll"), strict=True):
            values = [[r[metric] for r in rows if r["section"] == section and r["row"] == n]
                      for n in names]  # fmt: skip
            spread = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
            ax.bar(range(len(names)), [statistics.mean(v) for v in values], yerr=spread,
                   color=colors, alpha=0.6, capsize=3)  # fmt: skip
            for x, v in enumerate(values):
                ax.plot([x] * len(v), v, "k.", markersize=4)
            low = min(min(v) for v in values)
            high = max(max(v) for v in values)
            ax.set_ylim(low - 0.5 * (high - low) - 1e-3, high + 0.2 * (high - low) + 1e-3)
            ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
            label = "test accuracy" if metric == "accuracy" else "test NLL (lower is better)"
            ax.set_title(f"{title}\n{label}" if metric == "accuracy" else label, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(out: Path, work: Path, quick: bool = False) -> None:
    """Train (or reuse) every run, score members, snapshots, EMA and soups; figure and table."""
    plan = QUICK if quick else FULL
    work = work / "quick" if quick else work
    rows, plain = members(work, plan)
    rows += snapshots(work, plan, plain) + soups(work, plan)
    out.mkdir(parents=True, exist_ok=True)
    draw(rows, out / "ensemble.png")
    common.write(out, "ensemble", summary(rows, plan), rows)
