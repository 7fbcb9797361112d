"""The command `wandb agent` runs: every macro as the agent builds it, `recipes train` reading
what `${args}`, `${args_no_equals}` and `${args_no_boolean_flags}` pass, the other macros refused
at --dry-run, and a real run from the wandb package's own builder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import pytest
import yaml

from recipes.cli import main
from recipes.core.config import parse_config
from recipes.search.agent import agent_command
from recipes.search.spec import load_sweep
from recipes.search.trial import suggest
from tests.conftest import PYTHON, run_cli
from tests.test_search import SWEEPS, sweep_file

VALUES = {
    "augment": False,
    "channels_last": True,
    "learning_rate": 1e-05,
    "classes": ["5", "6"],
    "checkpoint": None,
    "scheduler_kwargs.num_cycles": 2,
}
ARGS = ["--augment=False", "--channels_last=True", "--learning_rate=1e-05", "--classes=['5', '6']",
        "--checkpoint=None", "--scheduler_kwargs={'num_cycles': 2}"]  # fmt: skip


def macro_command(*tokens: str) -> list[str]:
    return ["${env}", "${interpreter}", "-m", "recipes", "train", *tokens]


def test_every_macro_is_built_as_wandb_agent_builds_it(monkeypatch):
    """Python's True/False/None, 1e-05, lists and dicts as Python literals, as the agent writes."""
    monkeypatch.setenv("RECIPES_DATA", "/data")
    every = ["${env}", "${interpreter}", "${program}", "--dir=${envvar:RECIPES_DATA}/x",
             "${envvar:NOT_SET_HERE}", "${args}", "${args_no_hyphens}", "${args_no_boolean_flags}",
             "${args_no_equals}", "${args_json}", "${args_json_file}", "${unknown}"]  # fmt: skip
    raw = {"program": "train.py", "command": every}
    command = agent_command(raw, VALUES, json_file="wandb/sweep-s/config-r.json")
    as_json = {**{k: v for k, v in VALUES.items() if "." not in k}, "scheduler_kwargs": {
        "num_cycles": 2}}  # fmt: skip
    assert command == [
        "/usr/bin/env", "python", "train.py", "--dir=/data/x", "NOT_SET_HERE",
        *ARGS,
        *(a[2:] for a in ARGS),
        "--channels_last", *(a for a in ARGS if "=True" not in a and "=False" not in a),
        *(part for a in ARGS for part in a.split("=", 1)),
        json.dumps(as_json),
        "wandb/sweep-s/config-r.json",
    ]  # fmt: skip


@pytest.mark.parametrize("macro", ["args", "args_no_equals", "args_no_boolean_flags"])
def test_train_reads_what_the_macro_passes(macro):
    values = {**VALUES, "augment": True}  # a false boolean is dropped by args_no_boolean_flags
    command = agent_command({"command": macro_command(f"${{{macro}}}")}, values)
    config = parse_config(None, command[command.index("train") + 1 :]).to_dict()
    assert {k: config[k] for k in ("augment", "channels_last", "learning_rate", "classes")} == {
        "augment": True, "channels_last": True, "learning_rate": 1e-05, "classes": ["5", "6"]
    }  # fmt: skip
    assert config["checkpoint"] is None and config["scheduler_kwargs"] == {"num_cycles": 2}


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (["${args_no_hyphens}"], "recipes train cannot read what ${args_no_hyphens} passes"),
        (["${args_json}"], "cannot read what ${args_json} passes; use ${args}"),
        (["${args_json_file}"], "cannot read what ${args_json_file} passes"),
        (["${args_append_hydra}"], "cannot read what ${args_append_hydra} passes"),
        (["${args_override_hydra}"], "cannot read what ${args_override_hydra} passes"),
        (["${arg}"], "${arg} is not a macro wandb agent knows"),
        ([], "passes no values to recipes train; use ${args}"),
        (["${args}", "${args_no_equals}"], "passes the values twice"),
    ],
)
def test_a_macro_train_cannot_read_is_refused_at_dry_run(tmp_path, capsys, tokens, message):
    path = sweep_file(tmp_path, "macro", method="grid", parameters={"learning_rate": {
        "values": [0.01]}}, command=macro_command(*tokens))  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        main(["sweep", str(path), "--dry-run"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and message in err, err


def test_a_false_boolean_that_no_boolean_flags_would_drop_is_refused(tmp_path, capsys):
    """augment defaults to true: `${args_no_boolean_flags}` omits augment=False, so the run
    would augment; say so before any trial."""
    path = sweep_file(tmp_path, "flags", method="grid", parameters={"augment": {
        "values": [True, False]}}, command=macro_command("${args_no_boolean_flags}"))  # fmt: skip
    with pytest.raises(SystemExit):
        main(["sweep", str(path), "--dry-run"])
    err = capsys.readouterr().err
    assert "${args_no_boolean_flags} brings augment=False to recipes train as True" in err


def sampled_runs(path: Path, count: int) -> list[dict]:
    """Runs of a sweep file as a random sweep samples them, nested values as W&B nests them."""
    spec = load_sweep(path)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    runs = []
    while len(runs) < count:
        trial = study.ask()
        values = {p.name: suggest(trial, p) for p in spec.params}
        study.tell(trial, 0.0)
        if values["augment"] != len(runs) % 2:  # both values of the boolean
            runs.append({**spec.fixed, **values})
    return runs


def wandb_command(command: list, values: dict) -> list[str]:
    """What `wandb agent` runs (`Agent._command_run`), from the wandb package's own builders."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

    nested: dict = {}
    for name, value in values.items():
        top, _, inner = name.partition(".")
        nested[top] = {**nested.get(top, {}), inner: value} if inner else value
    found = create_sweep_command_args({"args": {k: {"value": v} for k, v in nested.items()}})
    found.update(env=["/usr/bin/env"], interpreter=["python"])
    out: list[str] = []
    for token in map(str, create_sweep_command(list(command))):
        out += found.get(token[2:-1]) or [] if token.startswith("${") else [token]
    return out


@pytest.mark.parametrize("macro", ["args", "args_no_equals"])
def test_a_run_from_wandbs_own_builder_trains_with_exactly_its_values(tmp_path, monkeypatch, macro):
    """Sampled runs of the bayes example (a nested parameter and a boolean) run as the agent runs
    them; each trains with its values, read back from the run folder's config.yaml."""
    spec = load_sweep(SWEEPS / "bayes.yaml")
    command = [t.replace("${args}", f"${{{macro}}}") for t in spec.raw["command"]]
    monkeypatch.setenv("PATH", f"{Path(PYTHON).parent}:{os.environ['PATH']}")
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc123")
    for number, values in enumerate(sampled_runs(SWEEPS / "bayes.yaml", 2)):
        values = {**values, "num_epochs": 1, "max_train_samples": 128}
        monkeypatch.setenv("WANDB_RUN_ID", f"run{number}")
        argv = wandb_command(command, values)
        assert argv == agent_command({"command": command}, values)
        proc = run_cli(*argv[4:], launcher=argv[:2], cwd=tmp_path)  # /usr/bin/env python -m ...
        assert proc.returncode == 0, proc.stderr[-2000:]
        run = tmp_path / "runs" / "sweep-abc123" / f"run{number}"
        saved = yaml.safe_load((run / "config.yaml").read_text())
        for name, value in values.items():
            top, _, inner = name.partition(".")
            assert (saved[top][inner] if inner else saved[top]) == value, name
        assert list((run / "wandb").glob(f"offline-run-*-run{number}"))  # the agent's run id
        assert spec.metric in json.loads((run / "results.json").read_text())
