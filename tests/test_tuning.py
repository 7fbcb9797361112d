"""The tuning checks find the bugs they exist for: a zoo of broken set-ups, a healthy one, timm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset, TensorDataset

from recipes.cli import main
from recipes.core.config import parse_config
from recipes.core.data import build_transforms, make_loader
from recipes.core.errors import RecipeError
from recipes.training.setup import build_setup
from recipes.tuning.checks import run_checks

ZOO = dict(batch_size=16, lr=3e-3)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; restore the setting for other modules."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pixels() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits as raw 0-255 pixels and labels."""
    digits = load_digits()
    return torch.tensor(digits.images * 255 / 16, dtype=torch.float32)[:, None], torch.tensor(
        digits.target
    )


@pytest.fixture(scope="module")
def digits(pixels) -> TensorDataset:
    images, labels = pixels
    return TensorDataset((images - images.mean()) / images.std(), labels)


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


class RandomLabels(Dataset):
    """A label list shuffled apart from the images at every read: labels not tied to images."""

    def __init__(self, data: TensorDataset):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        return self.data[index][0], self.data[torch.randint(len(self.data), ()).item()][1]


class DetachedBody(nn.Module):
    """Features cached with .detach() and left in: only the head learns, through a bottleneck."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 4), nn.ReLU())
        self.head = nn.Linear(4, 10)

    def forward(self, x):
        return self.head(self.body(x).detach())


class Bounded(nn.Module):
    """Logits squashed into [-2, 2]: the loss cannot fall below a floor however long it trains."""

    def forward(self, x):
        return 2 * torch.tanh(x)


def normal_init() -> nn.Sequential:
    model = mlp()
    for param in model.parameters():
        nn.init.normal_(param, std=1.0)
    return model


def frozen() -> nn.Sequential:
    return mlp().requires_grad_(False)


# bug -> (model factory, data ("digits", "pixels" or "random_labels"), run_checks keywords,
#         the check that must fail, a word its finding or action must contain)
BUGS = {
    "unnormalised inputs": (mlp, "pixels", {}, "initial_loss", "normalise"),
    "bad initialisation": (normal_init, "digits", {}, "initial_loss", "initialisation"),
    "softmax applied twice": (
        lambda: nn.Sequential(mlp(), nn.Softmax(-1)),
        "digits",
        {},
        "initial_loss",
        "softmax",
    ),
    "nll_loss on raw logits": (mlp, "digits", {"loss_fn": F.nll_loss}, "initial_loss", "nll_loss"),
    "frozen network": (frozen, "digits", {}, "overfit", "frozen"),
    "outputs bounded by a tanh": (
        lambda: nn.Sequential(mlp(), Bounded()),
        "digits",
        {},
        "overfit",
        "bounded",
    ),
    "gradient cut by detach": (DetachedBody, "digits", {}, "overfit", "detach"),
    "labels not tied to images": (mlp, "random_labels", {}, "overfit", "labels"),
    "learning rate too low": (mlp, "digits", {"lr": 1e-7}, "lr_range", "too low"),
    "learning rate too high": (mlp, "digits", {"lr": 3.0}, "lr_range", "too high"),
}


def zoo_data(kind: str, digits, pixels):
    return {
        "digits": digits,
        "pixels": TensorDataset(*pixels),
        "random_labels": RandomLabels(digits),
    }[kind]


def test_healthy_setup_passes_every_check(digits, tmp_path):
    report = run_checks(
        mlp(),
        digits,
        10,
        trial_lrs=(1e-1, 1e-2, 1e-3, 1e-4),
        trial_steps=40,
        out_dir=tmp_path,
        **ZOO,
    )
    assert report.passed, report.table()
    assert [r.name for r in report.results] == ["initial_loss", "overfit", "lr_range", "lr_trials"]
    sweep = report["lr_range"].values
    assert sweep["steps"] <= 100
    assert (
        1e-4 < sweep["lr_steepest"] <= sweep["lr_at_min"]
        and sweep["suggested_lr"] == sweep["lr_at_min"] / 10
    )
    assert report["lr_trials"].values["suggested_lr"] in (1e-1, 1e-2)
    assert report.suggested_lr == sweep["suggested_lr"]
    assert {p.name for p in tmp_path.glob("*.png")} == {
        "overfit.png",
        "lr_range.png",
        "lr_trials.png",
    }


@pytest.mark.parametrize("bug", list(BUGS))
def test_each_bug_is_flagged_by_its_check(bug, digits, pixels):
    factory, data, kwargs, check, word = BUGS[bug]
    report = run_checks(factory(), zoo_data(data, digits, pixels), 10, **{**ZOO, **kwargs})
    result = report[check]
    assert not result.passed and not report.passed, report.table()
    assert word in f"{result.finding} {result.action}", report.table()


@pytest.mark.parametrize("lr", [1e-4, 3e-4])
def test_a_low_recipe_lr_is_not_taken_for_a_bug(lr, digits):
    """The sample is not memorised at the recipe's LR, but is at the range test's: the overfit
    check passes and names the LR, so the procedure goes on to search around the found one."""
    report = run_checks(mlp(), digits, 10, **{**ZOO, "lr": lr})
    overfit, found = report["overfit"], report["lr_range"].values["suggested_lr"]
    assert overfit.passed, report.table()
    assert overfit.values["recipe_lr"] == lr < overfit.values["lr"] == found
    assert overfit.values["recipe_lr_loss"] > 0.05 >= overfit.values["loss"]
    assert "too low" in overfit.action


def test_weights_and_mode_are_restored(digits):
    model = mlp().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run_checks(model, digits, 10, overfit_steps=20, sweep_steps=20, **ZOO)
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_bad_input_is_refused_before_training(digits):
    with pytest.raises(RecipeError, match="outputs of shape .*for 7 classes"):
        run_checks(mlp(), digits, 7, **ZOO)
    with pytest.raises(RecipeError, match="unknown check setting.* overfit_step;"):
        run_checks(mlp(), digits, 10, overfit_step=10)
    small = torch.utils.data.Subset(digits, range(50))
    with pytest.raises(RecipeError, match="has 50 examples but the overfit sample needs 5 batches"):
        run_checks(mlp(), small, 10, **ZOO)


@pytest.mark.parametrize("name", ["test_convnext", "test_resnet"])
def test_timm_models_on_digits_pass_and_write_the_report(name, tmp_path):
    config = parse_config(None, ["--model_name", name, "--report_to", "none"])
    setup = build_setup(config)
    transform = build_transforms(config.data, setup.data_config, augment=False)[0]
    loader = make_loader(setup.data, "train", transform, 32, True)
    before = {k: v.clone() for k, v in setup.model.state_dict().items()}
    report = run_checks(setup.model, loader, 10, lr=3e-3, overfit_batches=2, out_dir=tmp_path)
    assert report.passed, report.table()
    assert all(torch.equal(before[k], v) for k, v in setup.model.state_dict().items())
    saved = json.loads((tmp_path / "checks.json").read_text())
    assert saved["passed"] and [c["name"] for c in saved["checks"]] == [
        "initial_loss",
        "overfit",
        "lr_range",
    ]
    assert (tmp_path / "lr_range.png").stat().st_size > 0 and (tmp_path / "overfit.png").is_file()


def test_check_command_writes_report_and_recipe_copy(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model_name: test_convnext\nlearning_rate: 1.0e-6\nreport_to: none\n")
    out, copy = tmp_path / "run", tmp_path / "tuned.yaml"
    args = ["--output_dir", str(out), "--max_train_samples", "256", "--overfit_steps", "10"]
    args += ["--per_device_train_batch_size", "32"]
    with pytest.raises(SystemExit) as exit_info:  # 1: the LR of 1e-6 is too low
        main(["check", str(recipe), *args, "--write_recipe", str(copy)])
    assert exit_info.value.code == 1
    assert "lr_range     FAIL   lr 1e-06 is too low" in capsys.readouterr().out
    saved = json.loads((out / "checks.json").read_text())
    suggested = next(c for c in saved["checks"] if c["name"] == "lr_range")["values"][
        "suggested_lr"
    ]
    tuned = yaml.safe_load(copy.read_text())
    assert tuned["learning_rate"] == float(f"{suggested:.2g}")
    assert tuned["model_name"] == "test_convnext" and tuned["max_train_samples"] == 256
    retry = parse_config(copy, [])
    assert retry.training.learning_rate == tuned["learning_rate"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--max_train_samples", "50"],
            "has 50 examples but the overfit sample needs 5 batches x 64",
        ),
        (["--trial_lrs", "fast"], "--trial_lrs 'fast': give numbers"),
        (["--overfit_steps", "many"], "argument --overfit_steps: 'many' is not a whole number"),
    ],
)
def test_check_command_bad_input_exits_2_with_one_line(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["check", "--model_name", "test_convnext", "--output_dir", str(tmp_path), *argv])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and message in err and "\n" not in err


def test_check_and_tune_suggest_the_same_lr_for_the_same_recipe(tmp_path):
    """`recipes check` and steps 1-3 of `recipes tune` share one input builder."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "model_name: test_convnext\nreport_to: none\nweight_decay: 0.01\nseed: 3\n"
        f"output_dir: {tmp_path / 'run'}\n"
    )
    try:
        main(["check", str(recipe)])
    except SystemExit as exit_info:
        assert exit_info.code == 1  # a failed check is an answer, not an error
    from recipes.tuning.procedure import checks_step

    tuned = checks_step(parse_config(recipe), tmp_path / "tune")
    saved = json.loads((tmp_path / "run" / "checks.json").read_text())
    by_check = {c["name"]: c for c in saved["checks"]}
    assert by_check["lr_range"]["values"]["suggested_lr"] is not None
    assert tuned["lr_range"]["values"] == by_check["lr_range"]["values"]


def test_a_report_in_a_relative_folder_links_plots_given_absolute_paths(tmp_path, monkeypatch):
    """`recipes tune` with its default folder (runs/..., relative) and trial plots stored with
    absolute paths: the report links them relative to itself."""
    from recipes.core.plots import pyplot
    from recipes.core.report import Section, write_report

    monkeypatch.chdir(tmp_path)
    folder, plot = Path("runs") / "tune", tmp_path / "runs" / "tune" / "coarse" / "curves.png"
    plot.parent.mkdir(parents=True)
    plt = pyplot()
    plt.plot([0, 1]), plt.savefig(plot), plt.close()
    md, _ = write_report(folder, "recipes tune", [Section("Step 4", ["text"], [], [plot])])
    assert "![curves](coarse/curves.png)" in md.read_text()
