"""Grid sweeps mean here what they mean on W&B's controller (wandb/sweeps grid_search.py):
which distributions a grid takes and how it enumerates them, and the order of its points."""

from __future__ import annotations

import pytest

from recipes.cli import main
from recipes.core.errors import RecipeError
from recipes.search.engine import SweepOptions, open_study
from recipes.search.spec import build_spec, grid_points

METRIC = {"name": "val_accuracy", "goal": "maximize"}
NESTED = {
    "weight_decay": {"values": [0.0, 0.1]},
    "lr_scheduler": {"value": "cosine_with_restarts"},
    "scheduler_kwargs": {"parameters": {"num_cycles": {"values": [1, 2]}}},
    "learning_rate": {"values": [1e-3, 1e-2]},
    "warmup_epochs": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.5},
    "model_name": {"value": "test_convnext"},
}


def spec_of(parameters: dict, name: str = "g"):
    return build_spec({"method": "grid", "metric": METRIC, "parameters": parameters}, name)


def test_points_come_in_wandbs_order():
    """Names sorted at every level, nested ones where their parent sorts; the last fastest;
    constants outside the product; q_uniform as numpy.arange(min, max, q), max left out."""
    points = [tuple(p.values()) for p in grid_points(spec_of(NESTED))]
    names = list(grid_points(spec_of(NESTED))[0])
    assert names == [
        "learning_rate",
        "scheduler_kwargs.num_cycles",
        "warmup_epochs",
        "weight_decay",
    ]
    expected = [(lr, c, w, wd) for lr in (1e-3, 1e-2) for c in (1, 2) for w in (0.0, 0.5)
                for wd in (0.0, 0.1)]  # fmt: skip
    assert points == expected


def test_the_queue_and_the_dry_run_follow_that_order(tmp_path, capsys):
    spec = spec_of(NESTED, "order")
    study = open_study(spec, tmp_path, f"sqlite:///{tmp_path / 'o.db'}", SweepOptions(), 16)
    queued = [t.system_attrs["fixed_params"] for t in sorted(study.trials, key=lambda t: t.number)]
    assert queued == grid_points(spec)
    path = tmp_path / "order.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"method": "grid", "metric": METRIC, "parameters": NESTED}))
    main(["sweep", str(path), "--dry-run"])
    listed = [ln.split(". ", 1)[1] for ln in capsys.readouterr().out.splitlines() if ". " in ln]
    assert listed[:2] == [
        "learning_rate=0.001 scheduler_kwargs.num_cycles=1 warmup_epochs=0.0 weight_decay=0.0",
        "learning_rate=0.001 scheduler_kwargs.num_cycles=1 warmup_epochs=0.0 weight_decay=0.1",
    ]


@pytest.mark.parametrize(
    ("name", "cfg", "values"),
    [
        ("num_epochs", {"distribution": "int_uniform", "min": 1, "max": 3}, [1, 2, 3]),
        ("num_epochs", {"distribution": "q_uniform", "min": 5, "max": 15, "q": 5}, [5, 10]),
        ("hflip", {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.25},
         [0.0, 0.25, 0.5, 0.75]),
        ("num_epochs", {"values": [3, 1, 2]}, [3, 1, 2]),  # listed order kept
    ],
)  # fmt: skip
def test_grid_enumerates_as_wandb(name, cfg, values):
    """int_uniform includes max (range(min, max + 1)); q_uniform leaves it out (arange)."""
    assert [p[name] for p in grid_points(spec_of({name: cfg}))] == values


@pytest.mark.parametrize(
    "cfg",
    [
        {"distribution": "uniform", "min": 0.0, "max": 1.0},
        {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
        {"distribution": "normal", "mu": 0.0, "sigma": 1.0},
        {"values": [0.1, 0.2], "probabilities": [0.5, 0.5]},
    ],
)
def test_a_grid_refuses_what_wandbs_grid_refuses_naming_the_parameter(cfg):
    with pytest.raises(RecipeError, match="parameters.label_smoothing"):
        spec_of({"label_smoothing": cfg})
