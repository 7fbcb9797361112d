"""The procedure against what a user would do instead, on the same wall-clock budget.

Four arms, each a real command, scored on the test split:
  tune      `recipes tune RECIPE --budget B` (checks, measured plan, coarse, refine, final)
  defaults  the recipe as it stands, one run of as many updates as B affords
  random    plain random search, `--trials` runs of the updates B / trials affords
  tpe       the same with Optuna TPE (`method: bayes`)
Every run is held to its time by max_seconds, as the tune's final model is, so that no arm
trains longer than its budget when the machine runs slower than timed.
The plain searches cover learning rate (1e-4 to 0.1) and weight decay (1e-5 to 0.1), both
log-uniform, and report their best trial by validation accuracy, as a user would. How many
updates fit (whole epochs, then part of one, by the rule of the tune's final model) is timed
once, before the arms, on the same threads (not counted in their budget), or given as
`--epoch_seconds`, an epoch's measured seconds in the arms' conditions.
`--parallel 2` runs two arms at a time on half the cores each. Finished arms are read back.
`--recipe_seed N` runs every arm from a copy of the recipe with seed N (its own folder and
tables), to measure how far one seed's test accuracy is from another's; `--set KEY=VALUE`
from a copy with other values, a user's own starting point (learning_rate=1e-4).
Usage: python scripts/bench_tune.py [RECIPE] [--budget 30m] [--parallel 2] [--out docs/figures]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import optuna
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from machine import cpu_name  # noqa: E402

from recipes.core.config import parse_config, read_recipe  # noqa: E402
from recipes.ensembles.ensemble import score_saved  # noqa: E402
from recipes.search.refine import LIMITS  # noqa: E402
from recipes.tuning.budget import Budget  # noqa: E402
from recipes.tuning.coarse import command, short_warmup  # noqa: E402
from recipes.tuning.plan import final_length, make_plan, time_limit, time_run  # noqa: E402

ARMS = ("tune", "defaults", "random", "tpe")
METHODS = {"random": "random", "tpe": "bayes"}  # a plain-search arm -> its sweep method
SPACE = {
    "learning_rate": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
    "weight_decay": {"distribution": "log_uniform_values", "min": 1e-5, "max": 0.1},
}
GRACE = 1.25  # an arm still running at this many budgets is stopped (Ctrl-C; trials are kept)


def affordable_length(
    args: argparse.Namespace, seconds: float, work: Path
) -> tuple[int, int, float]:
    """Epochs, updates (max_steps) and max_seconds of a run of the recipe in `seconds`, by the
    rule the tune's final model follows: at `--epoch_seconds` (an epoch with its evaluation,
    measured in the arms' conditions), else from one timed run (kept in `work`); max_seconds
    holds the run to `seconds` when the machine runs slower than timed, as it holds the tune's."""
    saved = work / "timing.json"
    config = parse_config(args.recipe, ["--report_to=none"])
    if not saved.is_file():
        saved.write_text(json.dumps(time_run(args.recipe, config, work / "timing")))
    plan = make_plan(seconds, json.loads(saved.read_text()))
    if args.epoch_seconds:
        plan = replace(plan, epoch_seconds=args.epoch_seconds - plan.eval_seconds)
    return (*final_length(plan, seconds, config.training, 1), round(time_limit(plan, seconds), 1))


def sweep_file(
    recipe: str | None, method: str, trials: int, length: tuple[int, int, float], path: Path
) -> Path:
    """A plain W&B sweep over the space, each trial `length` (epochs, updates, max_seconds)
    long (with the tune's short warmup when the recipe's own would not fit in a trial)."""
    training = parse_config(recipe, ["--report_to=none"]).training
    epochs, steps, limit = length
    fixed = {"num_epochs": {"value": epochs}, "max_steps": {"value": steps},
             "max_seconds": {"value": limit}, "report_to": {"value": "none"}}  # fmt: skip
    if training.warmup_epochs >= epochs:
        fixed.update(short_warmup(training))
    raw = {
        "name": f"plain-{method}",
        "method": method,
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "run_cap": trials,
        "parameters": {**SPACE, **fixed},
        "command": command(recipe),
    }
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def arm_command(arm: str, recipe: str | None, args: argparse.Namespace, work: Path) -> list[str]:
    """The command a user would type for this arm."""
    own = [recipe] if recipe else []
    base, folder = [sys.executable, "-m", "recipes"], work / arm
    if arm == "tune":
        return [*base, "tune", *own, "--budget", args.budget, f"--output_dir={folder}"]
    seconds = Budget.parse(args.budget).seconds
    if arm == "defaults":
        epochs, steps, limit = affordable_length(args, seconds, work)
        length = [f"--num_epochs={epochs}", f"--max_steps={steps}", f"--max_seconds={limit}"]
        return [*base, "train", *own, *length, f"--output_dir={folder}",
                "--overwrite_output_dir=True", "--report_to=none"]  # fmt: skip
    length = affordable_length(args, seconds / args.trials, work)
    path = sweep_file(recipe, METHODS[arm], args.trials, length, work / f"{arm}.yaml")
    return [*base, "sweep", str(path), f"--output_dir={folder}", f"--seed={args.seed}"]


def interruptible() -> None:
    """Ctrl-C at its default in the arm, even when this script runs as a background job."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_arm(command: list[str], seconds: float | None, threads: int, log: Path) -> float:
    """Run one arm in its own session with `threads` threads; a sweep is stopped past GRACE
    budgets (`seconds`), one run (held by the tune's clock, the defaults' max_seconds) is left
    to end."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "WANDB_MODE": "offline",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}  # fmt: skip
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, preexec_fn=interruptible)  # fmt: skip
        try:
            proc.wait(timeout=GRACE * seconds if seconds else None)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait()
    return time.perf_counter() - started


def best_trial_model(folder: Path, name: str) -> Path:
    """The model of a sweep's best finished trial by validation accuracy."""
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'optuna.db'}")
    return Path(study.best_trial.user_attrs["run_dir"]) / "model"


def arm_model(arm: str, work: Path) -> Path:
    if arm == "tune":
        return work / "tune" / "final" / "model"
    if arm == "defaults":
        return work / "defaults" / "model"
    return best_trial_model(work / arm, f"plain-{METHODS[arm]}")


def out_of_limits(tune: Path) -> list[str]:
    """Every tune trial's value outside the refine stage's stated hard limits."""
    bad = []
    for table in tune.rglob("trials.csv"):
        for row in csv.DictReader(table.open()):
            for name, (low, high) in LIMITS.items():
                if row.get(name) and not low <= float(row[name]) <= high:
                    bad.append(f"{table.parent.name} trial {row['trial']}: {name}={row[name]}")
    return bad


def tune_steps(tune: Path) -> list[dict]:
    """The tune's planned against spent seconds per step."""
    spent = json.loads((tune / "timings.json").read_text())
    plan = tune / "plan.json"
    planned = json.loads(plan.read_text())["planned"] if plan.is_file() else {}
    return [{"step": k, "planned_s": round(planned[k]) if k in planned else None,
             "spent_s": round(v)} for k, v in spent.items()]  # fmt: skip


def one_arm(arm: str, recipe: str | None, args: argparse.Namespace, work: Path) -> dict:
    """Run (or read back) one arm and score its model on the test split."""
    result = work / f"{arm}.json"
    if result.is_file():
        return json.loads(result.read_text())
    command = arm_command(arm, recipe, args, work)
    seconds = Budget.parse(args.budget).seconds
    limit = seconds if arm in ("random", "tpe") else None
    wall = run_arm(command, limit, args.threads, work / f"{arm}.log")
    config = parse_config(recipe, ["--report_to=none"])
    score = score_saved({arm: arm_model(arm, work)}, config.data)[arm]
    row = {"arm": arm, "test_accuracy": round(score["accuracy"], 4),
           "test_nll": round(score["nll"], 4), "wall_s": round(wall),
           "budget_s": round(seconds), "command": " ".join(command[1:])}  # fmt: skip
    result.write_text(json.dumps(row, indent=2))
    return row


def markdown(rows: list[dict], steps: list[dict], bad: list[str], header: str) -> str:
    lines = [header, "", "| arm | test accuracy | test NLL | wall s | budget s |", "|---" * 5 + "|"]
    lines += [f"| {r['arm']} | {r['test_accuracy']:.4f} | {r['test_nll']:.4f} | {r['wall_s']} "
              f"| {r['budget_s']} |" for r in rows]  # fmt: skip
    lines += ["", "| tune step | planned s | spent s |", "|---|---|---|"]
    lines += [f"| {s['step']} | {s['planned_s'] or '-'} | {s['spent_s']} |" for s in steps]
    lines += ["", f"Tune trials outside the stated limits: {len(bad)}", *bad]
    return "\n".join(lines) + "\n"


def recipe_copy(recipe: str | None, values: dict[str, str], work: Path) -> str:
    """A copy of the recipe (the embedded one when None) with some values changed."""
    path = work / "recipe.yaml"
    path.write_text(yaml.safe_dump({**(read_recipe(recipe) if recipe else {}), **values}))
    parse_config(str(path), [])  # a misspelt key or a bad value stops here, before any arm
    return str(path)


def changes(args: argparse.Namespace) -> dict[str, str]:
    """The values the arms' copy of the recipe changes: --recipe_seed, then --set KEY=VALUE."""
    values = {} if args.recipe_seed is None else {"seed": str(args.recipe_seed)}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item}: use KEY=VALUE, e.g. learning_rate=1e-4")
        values[key] = value
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", help="recipe YAML (default: embedded digits)")
    parser.add_argument("--budget", default="5m", help="wall clock per arm (5m, 30m)")
    parser.add_argument("--trials", type=int, default=6, help="trials of the plain searches")
    parser.add_argument("--parallel", type=int, default=1, help="arms at once")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--seed", type=int, default=0, help="the plain searches' sampler")
    parser.add_argument("--recipe_seed", type=int, help="every arm's training seed")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="every arm from a copy of the recipe with these values")  # fmt: skip
    parser.add_argument(
        "--epoch_seconds", type=float, help="an epoch's seconds as the arms run (default: timed)"
    )
    parser.add_argument("--work", default="runs/bench_tune")
    parser.add_argument("--out", default="docs/figures")
    args = parser.parse_args()
    args.threads = max(1, (os.cpu_count() or 1) // args.parallel)
    torch.set_num_threads(args.threads)
    name = parse_config(args.recipe, []).data.dataset
    values = changes(args)
    label = name + "".join(f"-seed{v}" if k == "seed" else f"-{k}={v}" for k, v in values.items())
    work = Path(args.work) / f"{label}-{args.budget}"
    work.mkdir(parents=True, exist_ok=True)
    if values:
        args.recipe = recipe_copy(args.recipe, values, work)
    affordable_length(args, 60.0, work)  # time it before the arms start
    with ThreadPoolExecutor(args.parallel) as pool:
        rows = list(pool.map(lambda arm: one_arm(arm, args.recipe, args, work), args.arms))
    tune = work / "tune"
    steps, bad = (tune_steps(tune), out_of_limits(tune)) if "tune" in args.arms else ([], [])
    header = (f"{label}, --budget {args.budget}, {args.parallel} arm(s) at a time on "
              f"{args.threads} thread(s) each; {cpu_name()}")  # fmt: skip
    if args.epoch_seconds:
        header += f"; an epoch taken as {args.epoch_seconds:g} s (--epoch_seconds)"
    text = markdown(rows, steps, bad, header)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"tune_{label}.md").write_text(text)
    record = {"arms": rows, "steps": steps, "out_of_limits": bad}
    (out / f"tune_{label}.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
