"""Transfer learning on real timm test models: cached probes, freezing, LP-FT, advice, study."""

from __future__ import annotations

import json
from collections import Counter
from functools import partial
from pathlib import Path

import pytest
import timm
import torch

from recipes.cli import main
from recipes.core.config import parse_config
from recipes.core.data import load_image_data
from recipes.core.errors import RecipeError
from recipes.core.models import freeze_stages, load_model, save_model, stage_names, train_mode
from recipes.training.route import run_recipe
from recipes.training.setup import build_setup
from recipes.transfer.advise import advise
from recipes.transfer.features import layer_outputs, load_features
from recipes.transfer.study import test_accuracy as accuracy_on_test

SOURCE = ["--classes", "0", "1", "2", "3", "4"]
TARGET = ["--classes", "5", "6", "7", "8", "9"]
FAST = ["--report_to", "none", "--model_name", "test_convnext"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("transfer")


@pytest.fixture(scope="module")
def source(work: Path) -> Path:
    """A backbone pretrained by the engine on digits 0-4: the 'pretrained weights' offline."""
    config = parse_config(
        None, [*FAST, *SOURCE, "--num_epochs", "2", "--output_dir", str(work / "src")]
    )
    run_recipe(config)
    return work / "src" / "best_model"


def target_args(work: Path, source: Path, name: str, *extra: str) -> list[str]:
    return [
        *FAST,
        *TARGET,
        "--checkpoint",
        str(source),
        "--feature_cache_dir",
        str(work / "cache"),
        "--output_dir",
        str(work / name),
        *extra,
    ]


@pytest.fixture(scope="module")
def probe(work: Path, source: Path) -> tuple:
    """`mode: linear_probe` through the same route as `recipes train` (the cached fast path)."""
    config = parse_config(
        None, target_args(work, source, "probe", "--mode", "linear_probe", "--num_epochs", "4")
    )
    return config, run_recipe(config)


def test_max_steps_on_the_probe_fast_path_is_refused(tmp_path: Path, source: Path):
    """The fast path fits the head epoch by epoch on cached features: updates are not its unit."""
    args = target_args(tmp_path, source, "probe", "--mode", "linear_probe", "--max_steps", "5")
    with pytest.raises(RecipeError, match="max_steps: 5 counts updates.*set num_epochs instead"):
        run_recipe(parse_config(None, args))


def test_classes_are_kept_relabelled_and_subsampled_per_class():
    data = load_image_data(parse_config(None, [*TARGET, "--train_per_class", "5"]).data)
    assert data.label_names == ["5", "6", "7", "8", "9"]
    assert Counter(data.splits["train"]["label"]) == {0: 5, 1: 5, 2: 5, 3: 5, 4: 5}
    assert set(data.splits["test"]["label"]) == {0, 1, 2, 3, 4}
    with pytest.raises(RecipeError, match="classes x not in the data"):
        load_image_data(parse_config(None, ["--classes", "x"]).data)


@pytest.mark.parametrize("name", ["test_resnet", "test_convnext", "test_vit", "test_efficientnet"])
def test_freeze_stages_freezes_the_stem_and_first_stages(name: str):
    model = timm.create_model(name, num_classes=3)
    stages = stage_names(model)
    freeze_stages(model, 2)
    train_mode(model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert all(not n.startswith(stages[2] + ".") for n in frozen)
    assert any(n.startswith(stages[1] + ".") or n.startswith(stages[0]) for n in frozen)
    assert any(n.startswith(stages[2] + ".") for n in trainable)
    assert all(p.requires_grad for p in model.get_classifier().parameters())
    norms = [m for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(not m.training for m in norms if not any(p.requires_grad for p in m.parameters()))
    with pytest.raises(RecipeError, match=f"has {len(stages)} feature stages"):
        freeze_stages(model, len(stages) + 1)


def test_linear_probe_fast_path_writes_the_engine_run_folder(probe, source: Path):
    config, results = probe
    run_dir = Path(results["run_dir"])
    for name in (
        "config.yaml",
        "epochs.jsonl",
        "results.json",
        "curves.png",
        "model",
        "best_model",
    ):
        assert (run_dir / name).exists(), name
    epochs = [json.loads(line) for line in (run_dir / "epochs.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in epochs] == [1, 2, 3, 4]
    assert results["feature_cache"] == {"train": "built", "validation": "built"}
    assert results["solver"] == "lbfgs" and str(results["l2"]) in results["l2_search"]
    assert results["best_val_accuracy"] > 0.8
    model = load_model(run_dir / "best_model")
    backbone = {
        k: v for k, v in load_model(source).state_dict().items() if not k.startswith("head.fc")
    }
    assert all(torch.equal(model.state_dict()[k], v) for k, v in backbone.items())
    setup = build_setup(config)
    features = load_features(
        setup.model,
        "test_convnext",
        setup.data,
        "validation",
        setup.data_config,
        config.data,
        cache_dir=config.model.feature_cache_dir,
    )
    assert features.status == "reused"
    with torch.no_grad():
        logits = model.get_classifier()(features.layers["pooled"])
    accuracy = (logits.argmax(-1) == features.labels).float().mean().item()
    assert accuracy == pytest.approx(results["best_val_accuracy"], abs=0.01)
    assert accuracy_on_test(config, run_dir / "best_model") > 0.7


def test_feature_cache_is_rebuilt_for_other_weights_or_data(probe, work: Path, capsys):
    config, _ = probe
    setup = build_setup(config)
    args = ("test_convnext", setup.data, "train", setup.data_config, config.data)
    kwargs = {"cache_dir": config.model.feature_cache_dir}
    assert load_features(setup.model, *args, **kwargs).status == "reused"
    torch.nn.init.normal_(next(setup.model.parameters()))
    assert load_features(setup.model, *args, **kwargs).status == "rebuilt (weights differ)"
    assert "was made for another setup" in capsys.readouterr().out
    few = build_setup(
        parse_config(
            None,
            [
                *target_args(work, work / "src" / "best_model", "x"),
                "--mode",
                "linear_probe",
                "--train_per_class",
                "3",
            ],
        )
    )
    status = load_features(
        few.model, "test_convnext", few.data, "train", few.data_config, config.data, **kwargs
    )
    assert "data" in status.status and len(status.labels) == 15


def test_intermediate_stages_and_unpooled_backbones():
    model = timm.create_model("test_resnet", num_classes=3).eval()
    images = torch.randn(2, 3, 32, 32)
    out = layer_outputs(model, images, [1, None])
    assert out["stage_1"].shape == (2, model.feature_info[1]["num_chs"])
    assert out["pooled"].shape == (2, model.num_features)
    unpooled = timm.create_model("test_resnet", num_classes=3, global_pool="").eval()
    with pytest.raises(RecipeError, match="unpooled features"):
        layer_outputs(unpooled, images, [None])


def test_bad_stage_and_other_architecture_are_refused(work: Path, source: Path):
    config = parse_config(None, target_args(work, source, "y", "--mode", "linear_probe"))
    setup = build_setup(config)
    with pytest.raises(RecipeError, match="stage 9 does not exist"):
        load_features(
            setup.model,
            "test_convnext",
            setup.data,
            "train",
            setup.data_config,
            config.data,
            stages=[9],
        )
    config = parse_config(
        None,
        [*target_args(work, source, "z", "--mode", "linear_probe"), "--model_name", "test_resnet"],
    )
    with pytest.raises(RecipeError, match="is a test_convnext, not a test_resnet"):
        run_recipe(config)


def test_too_many_frozen_stages_is_one_line_error(work: Path, source: Path, capsys):
    argv = ["train", *target_args(work, source, "w", "--mode", "finetune", "--freeze_stages", "7")]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: ConvNeXt has 4 feature stages")


def test_slow_path_is_the_engine_with_a_frozen_backbone(work: Path, source: Path):
    config = parse_config(
        None,
        target_args(
            work,
            source,
            "slow",
            "--mode",
            "linear_probe",
            "--cached_features",
            "false",
            "--num_epochs",
            "1",
        ),
    )
    results = run_recipe(config)
    run_dir = Path(results["run_dir"])
    assert (run_dir / "steps.jsonl").exists() and (run_dir / "checkpoints").is_dir()
    assert "feature_cache" not in results


def test_probe_then_finetune_starts_from_the_probed_head(work: Path, source: Path):
    config = parse_config(
        None,
        target_args(
            work,
            source,
            "lpft",
            "--mode",
            "finetune",
            "--probe_epochs",
            "3",
            "--num_epochs",
            "1",
            "--freeze_stages",
            "1",
            "--max_seconds",
            "600",  # holds the fine-tuning epochs; the cached probe before them takes none
        ),
    )
    results = run_recipe(config)
    run_dir = Path(results["run_dir"])
    assert results["planned_steps"] == results["steps"] > 0
    assert (run_dir / "probe" / "best_model").is_dir() and (run_dir / "model").is_dir()
    assert results["probe"]["best_val_accuracy"] > 0.8
    saved = (run_dir / "config.yaml").read_text()
    assert f"checkpoint: {run_dir / 'probe' / 'model'}" in saved and "freeze_stages: 1" in saved
    probed = load_model(run_dir / "probe" / "model").state_dict()
    tuned = load_model(run_dir / "model").state_dict()
    assert torch.equal(probed["stem.0.weight"], tuned["stem.0.weight"])  # stem frozen
    assert not torch.equal(probed["head.fc.weight"], tuned["head.fc.weight"])


def test_advise_measures_and_places_the_data_in_the_table(work: Path, source: Path):
    config = parse_config(None, target_args(work, source, "adv", "--train_per_class", "10"))
    advice = advise(config)
    assert advice.examples_per_class == 10 and advice.little_data
    assert set(advice.stage_accuracy) == {"stage_0", "stage_1", "stage_2", "stage_3", "pooled"}
    assert 0 < advice.random_accuracy <= 1 and 0 < advice.pretrained_accuracy <= 1
    assert advice.similar == (advice.pretrained_accuracy - advice.random_accuracy >= 0.10)
    assert advice.settings["mode"] in ("linear_probe", "finetune")
    report = advice.report()
    assert "-> " in report and "recipe:" in report
    scratch = advise(parse_config(None, [*FAST, *TARGET]))
    assert scratch.settings == {"mode": "scratch"} and not scratch.little_data


def test_strategy_auto_runs_the_advised_mode(work: Path, source: Path):
    config = parse_config(
        None,
        target_args(
            work,
            source,
            "auto",
            "--strategy",
            "auto",
            "--train_per_class",
            "10",
            "--num_epochs",
            "1",
        ),
    )
    results = run_recipe(config)
    run_dir = Path(results["run_dir"])
    advice = json.loads((run_dir / "advice.json").read_text())
    assert f"mode: {advice['settings']['mode']}" in (run_dir / "config.yaml").read_text()


def test_compare_backbones_with_local_checkpoints(work: Path, source: Path, capsys):
    other = save_model(
        timm.create_model("test_resnet", num_classes=5),
        work / "random_resnet",
        list("abcde"),
        {"mean": (0.5,) * 3, "std": (0.5,) * 3},
    )
    out = work / "compare"
    main(
        [
            "transfer",
            "compare-backbones",
            "--backbone",
            f"test_convnext={source}",
            "--backbone",
            f"test_resnet={other}@0.2",
            "--out",
            str(out),
            *FAST,
            *TARGET,
            "--feature_cache_dir",
            str(work / "cache"),
            "--num_epochs",
            "3",
        ]
    )
    rows = json.loads((out / "compare.json").read_text())["rows"]
    src_results = json.loads((source.parent / "results.json").read_text())
    assert rows[0]["pretrain_accuracy"] == src_results["best_val_accuracy"]
    assert rows[1]["pretrain_accuracy"] == 0.2
    assert all(0 < r["probe_test_accuracy"] <= 1 for r in rows)
    assert (out / "compare.png").is_file() and "probe test" in capsys.readouterr().out


def test_study_compares_the_four_methods(work: Path, source: Path, capsys):
    out = work / "study"
    main(
        [
            "transfer",
            "study",
            "--checkpoint",
            str(source),
            "--shots",
            "5",
            "--updates",
            "4",
            "--out",
            str(out),
        ]
    )
    rows = json.loads((out / "study.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["scratch", "linear_probe", "finetune", "probe_finetune"]
    assert all(0 <= r["test_accuracy"] <= 1 for r in rows)
    assert (out / "study.png").is_file() and "| 5 |" in (out / "study.md").read_text()
    with pytest.raises(SystemExit):
        main(["transfer", "study", "--shots", "five"])
    assert "--shots: five is not a count" in capsys.readouterr().err


def test_a_sweep_trains_a_linear_probe_recipe_through_the_cached_probe(work, source, tmp_path):
    """Sweep trials take the route `recipes train` takes, and Hyperband-style pruning stops
    a cached-probe trial after the epoch the (deterministic) pruner rejects."""
    import optuna
    import yaml
    from optuna.trial import TrialState

    from recipes.search.spec import load_sweep
    from recipes.search.trial import run_trial

    fixed = target_args(work, source, "unused", "--mode", "linear_probe", "--num_epochs", "4")
    fixed = [a for a in fixed if a not in ("--output_dir", str(work / "unused"))]
    sweep = {
        "name": "probe-sweep",
        "method": "grid",
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": {"weight_decay": {"values": [0.0]}},
        "command": ["${env}", "${interpreter}", "-m", "recipes", "train", *fixed, "${args}"],
    }
    path = tmp_path / "probe.yaml"
    path.write_text(yaml.safe_dump(sweep))
    spec = load_sweep(path)
    pruner = optuna.pruners.ThresholdPruner(lower=1.1)  # prunes at the first report
    study = optuna.create_study(direction="maximize", pruner=pruner)
    study.optimize(partial(run_trial, spec, tmp_path), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [1]
    results = json.loads((tmp_path / "trials" / "trial_000" / "results.json").read_text())
    assert results["solver"] == "lbfgs" and set(results["feature_cache"]) == {"train", "validation"}
    assert results["epochs"] == 1 and results["stopped_early"] is True
