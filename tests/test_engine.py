"""The training loop for real: CLI, wandb offline, resume, two processes, NaN, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from recipes.cli import main
from recipes.core import runs
from recipes.core.config import parse_config
from recipes.core.errors import RecipeError
from recipes.training.engine import train
from tests.conftest import FAST, PYTHON, ROOT, run_cli

SMALL = [
    "--max_train_samples",
    "256",
    "--per_device_train_batch_size",
    "32",
    "--logging_steps",
    "1",
]
ACCELERATE = (
    [str(Path(ROOT / ".venv/bin/accelerate"))]
    if (ROOT / ".venv/bin/accelerate").exists()
    else ["accelerate"]
)


def weights(run_dir: Path, folder: str = "model") -> dict[str, torch.Tensor]:
    return load_file(run_dir / folder / "model.safetensors")


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=1e-6, msg=key)


def test_train_command_writes_a_complete_run_with_wandb_offline(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [*FAST, "--report_to", "wandb", "--num_epochs", "2", "--output_dir", str(run_dir)]
    proc = run_cli("train", *args, "--max_train_samples", "512")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"results in {run_dir}" in proc.stdout
    assert "wandb offline" in proc.stdout
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "steps.jsonl", "epochs.jsonl", "results.json", "curves.png"} <= names
    assert {"model", "best_model", "checkpoints", "wandb"} <= names
    epochs = runs.read_jsonl(run_dir / runs.EPOCHS_FILE)
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert epochs[-1]["val_accuracy"] > 0.2
    assert list((run_dir / "wandb").glob("offline-run-*"))


def copy_interrupted(done: Path, target: Path, keep_step: int) -> None:
    """A copy of a finished run as if it had been killed right after checkpoint `keep_step`."""
    shutil.copytree(done, target)
    for checkpoint in runs.checkpoint_dirs(target):
        if runs.read_state(checkpoint)["step"] != keep_step:
            shutil.rmtree(checkpoint)
    for name in ("model", "best_model", runs.RESULTS_FILE):
        path = target / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


@pytest.mark.parametrize("mid_epoch", [False, True])
def test_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path: Path, mid_epoch: bool) -> None:
    # Mid-epoch, the loader has already drawn the next batch's augmentation when the
    # checkpoint is written, so that case is compared without random augmentation.
    args = [*FAST, *SMALL, "--num_epochs", "2", "--save_steps", "4" if mid_epoch else "0"]
    args += ["--augment", str(not mid_epoch).lower()]
    args += ["--save_total_limit", "10", "--ema_decay", "0.9"]
    done = train(parse_config(None, [*args, "--output_dir", str(tmp_path / "done")]))
    keep = 4 if mid_epoch else 8  # 8 updates per epoch
    copy_interrupted(tmp_path / "done", tmp_path / "resumed", keep)
    resumed = train(parse_config(None, [*args, "--output_dir", str(tmp_path / "resumed")]))
    assert resumed["steps"] == done["steps"] == 16
    assert_same_weights(tmp_path / "done", tmp_path / "resumed")
    assert resumed["val_loss"] == pytest.approx(done["val_loss"], abs=1e-6)
    assert resumed["ema_val_loss"] == pytest.approx(done["ema_val_loss"], abs=1e-6)
    lrs = [r["lr"] for r in runs.read_jsonl(tmp_path / "resumed" / runs.STEPS_FILE)]
    assert lrs == [r["lr"] for r in runs.read_jsonl(tmp_path / "done" / runs.STEPS_FILE)]


def test_max_steps_ends_the_last_epoch_part_way_and_resumes_there(tmp_path: Path) -> None:
    """As transformers' max_steps: it overrides num_epochs, the schedule ends at its last update,
    the part-way epoch is evaluated like any other, and a run killed inside it ends the same."""
    args = [*FAST, *SMALL, "--num_epochs", "5", "--max_steps", "12", "--augment", "false"]
    args += ["--save_steps", "10", "--save_total_limit", "10"]
    done = train(parse_config(None, [*args, "--output_dir", str(tmp_path / "done")]))
    assert (done["steps"], done["epochs"], done["stopped_early"]) == (12, 2, False)
    epochs = runs.read_jsonl(tmp_path / "done" / runs.EPOCHS_FILE)
    assert [r["step"] for r in epochs] == [8, 12] and "train_eval_accuracy" in epochs[-1]
    assert epochs[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # the cosine's end, not epoch 5's
    copy_interrupted(tmp_path / "done", tmp_path / "resumed", 10)
    resumed = train(parse_config(None, [*args, "--output_dir", str(tmp_path / "resumed")]))
    assert resumed["steps"] == 12
    assert_same_weights(tmp_path / "done", tmp_path / "resumed")


def test_finished_run_folder_is_reused_and_another_recipe_refused(tmp_path: Path) -> None:
    args = [*FAST, *SMALL, "--output_dir", str(tmp_path / "run")]
    first = train(parse_config(None, args))
    again = train(parse_config(None, args))
    assert (
        again["steps"] == first["steps"]
        and again["best_val_accuracy"] == first["best_val_accuracy"]
    )
    with pytest.raises(RecipeError, match="made by a different recipe \\(learning_rate differ"):
        train(parse_config(None, [*args, "--learning_rate", "0.5"]))
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_two_processes_average_gradients_with_the_same_schedule(tmp_path: Path) -> None:
    base = [*FAST, *SMALL, "--num_epochs", "2", "--augment", "false", "--lr_scheduler", "step"]
    base += ["--scheduler_kwargs", '{"step_size": 1, "gamma": 0.5}', "--warmup_steps", "3"]
    single = run_cli("train", *base, "--output_dir", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr[-2000:]
    launcher = [*ACCELERATE, "launch", "--config_file", "accelerate_configs/cpu_2proc.yaml"]
    two_args = [*base, "--per_device_train_batch_size", "16", "--output_dir", str(tmp_path / "two")]
    double = run_cli("train", *two_args, launcher=launcher, timeout=400)
    assert double.returncode == 0, double.stderr[-3000:]
    results = json.loads((tmp_path / "two" / runs.RESULTS_FILE).read_text())
    assert results["num_processes"] == 2
    assert results["replica_spread"] < 1e-6
    one = runs.read_jsonl(tmp_path / "one" / runs.STEPS_FILE)
    two = runs.read_jsonl(tmp_path / "two" / runs.STEPS_FILE)
    assert [r["step"] for r in one] == [r["step"] for r in two] == list(range(1, 17))
    assert [r["lr"] for r in two] == pytest.approx([r["lr"] for r in one], rel=1e-12)


def test_nan_loss_stops_with_the_last_good_checkpoint_kept(tmp_path: Path) -> None:
    args = [*FAST, *SMALL, "--optimizer", "sgd", "--learning_rate", "1e12", "--max_grad_norm", "0"]
    args += ["--warmup_steps", "6", "--save_steps", "1", "--save_total_limit", "1"]
    args += ["--output_dir", str(tmp_path / "run")]
    with pytest.raises(
        RecipeError, match=r"loss became (nan|inf) at step \d+.*last good checkpoint: .*step_\d+"
    ):
        train(parse_config(None, args))
    kept = runs.checkpoint_dirs(tmp_path / "run")
    assert len(kept) == 1 and (kept[0] / runs.STATE_FILE).is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.yaml"], "recipe file not found: missing.yaml"),
        (["--lr_scheduler", "cosin"], "unknown scheduler 'cosin'; did you mean cosine"),
        (["--optimizer", "adamww"], "unknown optimizer 'adamww'; did you mean adamw"),
        (["--model_name", "resnet1"], "unknown timm model 'resnet1'; did you mean"),
        (["--num_epoch", "3"], "unknown argument 'num_epoch'; did you mean num_epochs"),
        (["--model_name", "resnet10t", "--pretrained", "true"], "weights of resnet10t"),
        (["--dataset", "beans"], "dataset 'beans'"),
        (["--dataset", "imagefolder", "--data_dir", "/nonexistent"], "image folder not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path: Path, capsys, args, message) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *args, "--report_to", "none", "--output_dir", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_malformed_yaml_from_the_shell_has_no_traceback(tmp_path: Path) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("learning_rate: [0.1\n")
    proc = run_cli("train", str(recipe))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: recipe {recipe} is not valid YAML at line 2: fix the file"
    ]


def test_mismatched_checkpoint_from_the_shell(tmp_path: Path) -> None:
    first = train(parse_config(None, [*FAST, *SMALL, "--output_dir", str(tmp_path / "a")]))
    proc = run_cli(
        "train",
        *FAST,
        "--model_name",
        "test_resnet",
        "--mode",
        "finetune",
        "--checkpoint",
        str(Path(first["run_dir"]) / "model"),
        "--output_dir",
        str(tmp_path / "b"),
    )
    assert proc.returncode == 2
    assert "is a test_convnext, not a test_resnet" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_world_size_without_a_launcher_is_refused(tmp_path: Path) -> None:
    env_args = ["env", "WORLD_SIZE=2", "RANK=0", "LOCAL_RANK=0"]
    proc = run_cli(
        "train", *FAST, "--output_dir", str(tmp_path / "run"), launcher=[*env_args, PYTHON]
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: WORLD_SIZE is 2") and "accelerate launch" in proc.stderr
    assert "Traceback" not in proc.stderr
