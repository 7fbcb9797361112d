"""A sweep file W&B's schema (wandb/sweeps `config/schema.json`) refuses is refused before any
trial, in one line naming the key, with exit code 2; one it accepts is accepted."""

from __future__ import annotations

import warnings

import pytest
import yaml

from recipes.cli import main
from recipes.core.errors import RecipeWarning

BASE = {
    "method": "random",
    "metric": {"name": "val_accuracy", "goal": "maximize"},
    "run_cap": 2,
    "parameters": {"learning_rate": {"values": [0.01, 0.1]}},
}
HYPERBAND = {"type": "hyperband", "min_iter": 1}


def params(**parameters) -> dict:
    return {"parameters": parameters}


ACCEPTED = {
    "plain random": {},
    "grid without a metric": {"method": "grid", "metric": None},
    "random without run_cap": {"run_cap": None},
    "every string key": {"name": "n", "description": "d", "project": "p", "entity": "e",
                         "program": "train.py", "apiVersion": "v1", "job": "j", "image_uri": "u"},
    "kind sweep, local controller": {"kind": "sweep", "controller": {"type": "local"}},
    "every metric key": {"metric": {"name": "val_loss", "goal": "minimize", "target": 0.1,
                                    "impute": "best", "impute_while_running": "latest"}},
    "nested dict": params(scheduler_kwargs={"parameters": {"num_cycles": {"values": [1, 2]}}},
                          lr_scheduler={"value": "cosine_with_restarts"}),
    "implied int_uniform": params(num_epochs={"min": 1, "max": 2}),
    "implied uniform, mixed types": params(label_smoothing={"min": 0, "max": 0.3}),
    "q_uniform": params(warmup_epochs={"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.5}),
    "log_uniform_values": params(
        learning_rate={"distribution": "log_uniform_values", "min": 1e-4, "max": 0.1}),
    "q_log_uniform_values, int q": params(per_device_train_batch_size={
        "distribution": "q_log_uniform_values", "min": 16, "max": 64, "q": 16}),
    "inv_log_uniform_values": params(
        weight_decay={"distribution": "inv_log_uniform_values", "min": 1e-4, "max": 0.1}),
    "normal": params(momentum={"distribution": "normal", "mu": 0.9, "sigma": 0.01}),
    "q_normal": params(momentum={"distribution": "q_normal", "mu": 0.9, "sigma": 0.01, "q": 0.01}),
    "log_normal, defaults": params(learning_rate={"distribution": "log_normal", "mu": -6}),
    "beta, defaults": params(hflip={"distribution": "beta"}),
    "q_beta": params(hflip={"distribution": "q_beta", "a": 2, "b": 5, "q": 0.1}),
    "categorical_w_probabilities": params(label_smoothing={
        "distribution": "categorical_w_probabilities", "values": [0, 0.1],
        "probabilities": [0.3, 0.7]}),
    "implied probabilities": params(label_smoothing={"values": [0, 0.1],
                                                     "probabilities": [0.5, 0.5]}),
    "explicit constant": params(num_epochs={"distribution": "constant", "value": 1}),
    "hyperband from max_iter and s": {"early_terminate": {"type": "hyperband", "max_iter": 9,
                                                          "s": 2, "eta": 3}},
    "hyperband non-strict": {"early_terminate": {**HYPERBAND, "eta": 2, "strict": False}},
    "args_no_equals": {"command": ["${env}", "${interpreter}", "-m", "recipes", "train",
                                   "${args_no_equals}"]},
    "envvar in the command": {"command": ["${env}", "${envvar:PYTHON}", "-m", "recipes", "train",
                                          "${args}"]},
}  # fmt: skip

REFUSED = {
    "no method": ({"method": None}, "method: required"),
    "unknown method": ({"method": "anneal"}, "method: unknown 'anneal'"),
    "unknown top key": ({"metrics_name": "x"}, "metrics_name: not a sweep key"),
    "run_cap 0": ({"run_cap": 0}, "run_cap: must be a positive integer"),
    "run_cap text": ({"run_cap": "5"}, "run_cap: must be a positive integer"),
    "run_cap boolean": ({"run_cap": True}, "run_cap: must be a positive integer"),
    "goal max": ({"metric": {"name": "val_loss", "goal": "max"}}, "metric.goal: unknown 'max'"),
    "metric key": ({"metric": {"name": "val_loss", "mode": "min"}}, "metric.mode: not a metric"),
    "metric impute": ({"metric": {"name": "val_loss", "impute": "mean"}}, "metric.impute:"),
    "metric target text": ({"metric": {"name": "val_loss", "target": "low"}}, "metric.target:"),
    "metric without name": ({"metric": {"goal": "minimize"}}, "metric: a mapping with name"),
    "name not a string": ({"name": 5}, "name: must be a string"),
    "kind job": ({"kind": "job"}, "kind: unknown 'job'"),
    "controller remote": ({"controller": {"type": "remote"}}, "controller.type: unknown"),
    "command as text": ({"command": "python train.py"}, "command: must be a list"),
    "no parameters": ({"parameters": None}, "parameters: required"),
    "empty parameters": ({"parameters": {}}, "parameters: a non-empty mapping"),
    "bad parameter name": (params(**{"1lr": {"values": [1]}}), "parameters.1lr: a name must"),
    "empty values": (params(learning_rate={"values": []}), "learning_rate.values: give a non"),
    "values and an extra key": (params(learning_rate={"values": [0.1], "default": 0.1}),
                                "learning_rate.default: categorical takes only values"),
    "float int_uniform": (params(num_epochs={"distribution": "int_uniform", "min": 1.0, "max": 3}),
                          "num_epochs.min: must be an integer"),
    "min equals max": (params(learning_rate={"min": 0.1, "max": 0.1}),
                       "learning_rate: min 0.1 is not less than max 0.1"),
    "log values from 0": (
        params(learning_rate={"distribution": "log_uniform_values", "min": 0, "max": 1}),
        "learning_rate.min: log_uniform_values"),
    "q of 0": (params(warmup_epochs={"distribution": "q_uniform", "min": 0, "max": 1, "q": 0}),
               "warmup_epochs.q: must be above 0"),
    "negative sigma": (params(momentum={"distribution": "normal", "sigma": -1}),
                       "momentum.sigma: must be at least 0"),
    "negative beta a": (params(hflip={"distribution": "beta", "a": -1}), "hflip.a: must be at"),
    "probabilities too short": (params(label_smoothing={"values": [0, 0.1],
                                                        "probabilities": [1.0]}),
                                "not the same length"),
    "probabilities not summing to 1": (params(label_smoothing={"values": [0, 0.1],
                                                               "probabilities": [0.5, 0.6]}),
                                       "label_smoothing.probabilities: [0.5, 0.6] do not sum"),
    "probabilities under categorical": (params(label_smoothing={
        "distribution": "categorical", "values": [0, 0.1], "probabilities": [0.5, 0.5]}),
        "label_smoothing.probabilities: categorical takes only values"),
    "q without a distribution": (params(num_epochs={"min": 1, "max": 4, "q": 2}),
                                 "num_epochs.q: int_uniform takes only min, max"),
    "log_uniform_values without max": (
        params(learning_rate={"distribution": "log_uniform_values", "min": 1e-3}),
        "learning_rate: log_uniform_values needs max"),
    "mu without a distribution": (params(momentum={"mu": 0.9, "sigma": 0.1}),
                                  "momentum.mu: uniform takes only min, max"),
    "nested dict with another key": (params(scheduler_kwargs={"parameters": {"a": {"value": 1}},
                                                              "value": 2}),
                                     "scheduler_kwargs: nested parameters take no other key"),
    "eta 1": ({"early_terminate": {**HYPERBAND, "eta": 1}}, "early_terminate.eta: must be"),
    "hyperband without bands": ({"early_terminate": {"type": "hyperband"}},
                                "early_terminate: hyperband needs min_iter"),
    "other early_terminate": ({"early_terminate": {"type": "envelope"}}, "early_terminate.type"),
    "custom method": ({"method": "custom"}, "method custom"),
    "bayes without a metric": ({"method": "bayes", "metric": None}, "metric: bayes needs"),
}  # fmt: skip


def write(tmp_path, change: dict):
    raw = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_the_table_holds_at_least_25_of_each():
    assert len(ACCEPTED) >= 25 and len(REFUSED) >= 25


@pytest.mark.parametrize("change", ACCEPTED.values(), ids=ACCEPTED)
def test_what_wandbs_schema_accepts_is_accepted(tmp_path, capsys, change):
    main(["sweep", str(write(tmp_path, change)), "--dry-run"])
    assert capsys.readouterr().out.startswith("sweep ")


@pytest.mark.parametrize(("change", "message"), REFUSED.values(), ids=REFUSED)
def test_what_wandbs_schema_refuses_is_refused_in_one_line(tmp_path, capsys, change, message):
    with pytest.raises(SystemExit) as stop:
        main(["sweep", str(write(tmp_path, change)), "--dry-run"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize("kind", ["log_uniform", "q_log_uniform", "inv_log_uniform"])
def test_natural_log_distributions_warn_that_they_are_deprecated(tmp_path, capsys, kind):
    quantum = {"q": 1e-5} if kind.startswith("q_") else {}
    space = params(learning_rate={"distribution": kind, "min": -9, "max": -3, **quantum})
    with warnings.catch_warnings():
        warnings.simplefilter("always", RecipeWarning)
        main(["sweep", str(write(tmp_path, space)), "--dry-run"])
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]
    assert line == (
        f"warning: parameters.learning_rate uses {kind}, where min/max specify base-e "
        f"exponents. Use {kind}_values to specify limit values."
    )
