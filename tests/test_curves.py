"""Learning-curve diagnosis: each rule on a history that shows it, none on a healthy one."""

from __future__ import annotations

import math

import pytest

from recipes.cli import main
from recipes.core.errors import RecipeError
from recipes.tuning.curves import diagnose, load_history
from tests.conftest import FAST, run_cli

N = 100  # logged steps, every 10 updates


def cosine(i: int, peak: float = 1e-3) -> float:
    return peak * 0.5 * (1 + math.cos(math.pi * i / N))


def steps(loss, lr=cosine) -> list[dict]:
    return [{"step": 10 * (i + 1), "epoch": i / 10, "lr": lr(i), "loss": loss(i)} for i in range(N)]


def epochs(train_acc, val_acc, val_loss=None, n: int = 10) -> list[dict]:
    """Epoch records; the losses follow the accuracies unless given."""
    out = []
    for e in range(1, n + 1):
        train, val = train_acc(e), val_acc(e)
        loss = val_loss(e) if val_loss else 2.3 * (1 - val) + 0.05
        record = {"epoch": e, "step": 100 * e, "lr": cosine(10 * e), "train_accuracy": train}
        record.update(train_loss=2.3 * (1 - train) + 0.02, val_loss=loss, val_accuracy=val)
        out.append(record)
    return out


def healthy_loss(i: int) -> float:
    return 2.3 * math.exp(-i / 15) + 0.05


def healthy_val(e: int) -> float:
    return 0.97 - 0.5 * math.exp(-e / 1.5)


HEALTHY = {
    "steps": steps(healthy_loss),
    "epochs": epochs(lambda e: healthy_val(e) + 0.02, healthy_val),
}

HISTORIES = {
    "diverged": {
        **HEALTHY,
        "steps": steps(lambda i: healthy_loss(i) if i < 60 else 0.1 * 1.1 ** (i - 60)),
    },
    "flat_start": {**HEALTHY, "steps": steps(lambda i: 2.3 if i < 30 else healthy_loss(i - 30))},
    "plateau": {
        **HEALTHY,
        "steps": steps(lambda i: 1.0 + 1.3 * math.exp(-i / 8), lr=lambda i: 1e-3),
    },
    "early_decay": {
        **HEALTHY,
        "steps": steps(
            lambda i: 2.3 * math.exp(-i / 40) + 0.1, lr=lambda i: 1e-2 if i < 30 else 1e-3
        ),
    },
    "overfitting": {
        **HEALTHY,
        "epochs": epochs(
            lambda e: min(1.0, 0.6 + 0.05 * e),
            lambda e: 0.7 - 0.01 * (e - 3) ** 2 / 3,
            val_loss=lambda e: 0.8 + 0.02 * (e - 3) ** 2,
        ),
    },
    "underfitting": {  # training accuracy measured without augmentation after the last epoch
        **HEALTHY,
        "epochs": [
            *epochs(lambda e: 0.6, lambda e: 0.61)[:-1],
            {**epochs(lambda e: 0.6, lambda e: 0.61)[-1], "train_eval_accuracy": 0.62},
        ],
    },  # fmt: skip
    "still_improving": {
        **HEALTHY,
        "epochs": epochs(lambda e: 0.53 + 0.04 * e, lambda e: 0.5 + 0.04 * e),
    },
}


def test_a_healthy_history_shows_nothing():
    assert diagnose(HEALTHY) == []


@pytest.mark.parametrize("rule", list(HISTORIES))
def test_each_rule_fires_on_the_history_that_shows_it(rule):
    findings = diagnose(HISTORIES[rule])
    assert rule in [f.rule for f in findings], [str(f) for f in findings]
    finding = next(f for f in findings if f.rule == rule)
    assert (
        finding.evidence
        and finding.advice
        and any(isinstance(v, float) for v in finding.evidence.values())
    )


def test_nan_is_reported_with_its_step():
    history = {
        **HEALTHY,
        "steps": [
            *HEALTHY["steps"][:50],
            {"step": 510, "epoch": 5.1, "lr": 1e-3, "loss": math.nan},
        ],
    }
    findings = diagnose(history)
    assert findings[0].rule == "diverged" and findings[0].evidence == {"step": 510}
    assert "loss became nan" in str(findings[0])


def test_a_flat_loss_that_never_drops_says_not_learning():
    finding = next(
        f for f in diagnose({**HEALTHY, "steps": steps(lambda i: 2.3)}) if f.rule == "flat_start"
    )
    assert "never dropped" in finding.finding


def test_empty_history_is_refused():
    with pytest.raises(RecipeError, match="empty history"):
        diagnose({"steps": [], "epochs": []})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real two-epoch run of a timm test model, trained through the command line."""
    out = tmp_path_factory.mktemp("curves") / "run"
    args = [*FAST, "--num_epochs", "2", "--max_train_samples", "128", "--logging_steps", "1"]
    proc = run_cli("train", *args, "--output_dir", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_train_prints_the_diagnosis(trained):
    out, stdout = trained
    assert "learning curves: " in stdout
    assert len(load_history(out)["epochs"]) == 2


def test_curves_command_plots_and_diagnoses_a_run(trained, tmp_path, capsys):
    out, _ = trained
    png = tmp_path / "curves.png"
    main(["curves", str(out), "--out", str(png)])
    printed = capsys.readouterr().out
    assert f"wrote {png}" in printed and "learning curves: " in printed
    assert png.stat().st_size > 10_000


@pytest.mark.parametrize("kind", ["not a run", "empty run", "no argument"])
def test_curves_command_bad_input_exits_2_with_one_line(kind, tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("model_name: test_convnext\n")
    argv = {
        "not a run": [str(tmp_path / "nothing")],
        "empty run": [str(tmp_path)],
        "no argument": [],
    }[kind]
    with pytest.raises(SystemExit) as exit_info:
        main(["curves", *argv])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.startswith("error: ") and "\n" not in err
    expected = {
        "not a run": "is not a run folder",
        "empty run": "empty history",
        "no argument": "run_dir",
    }[kind]
    assert expected in err
