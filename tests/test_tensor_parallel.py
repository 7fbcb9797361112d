"""Tensor parallelism (and tensor x data) on real CPU process groups (gloo), against 1 process."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import timm
import torch

from recipes.core import runs
from recipes.core.models import load_model
from recipes.distributed.tensor_plan import make_plan, qkv_rows, unpermute
from tests.conftest import ROOT, run_cli
from tests.test_parallel import (
    BIN,
    free_port,
    launch,
    losses,
    max_difference,
    ok,
    refused_before_process_group,
    weights,
)

# 128 images, global batch 32: four SGD updates on the same samples whatever the process layout.
SAME_RUN = [
    "--report_to", "none", "--num_epochs", "1", "--max_train_samples", "128",
    "--augment", "false", "--logging_steps", "1", "--optimizer", "sgd",
    "--learning_rate", "0.05", "--per_device_eval_batch_size", "512",
]  # fmt: skip
TENSOR = ["--parallel", "tensor", "--tensor_parallel_size", "2"]
BY_MAX_STEPS = ["--num_epochs", "3", "--max_steps", "4"]  # SAME_RUN's 4 updates


def torchrun(processes: int, out: Path, *args: str) -> None:
    """`torchrun -m recipes train` with `processes` ranks; it must succeed."""
    command = [str(BIN / "torchrun"), "--nproc_per_node", str(processes)]
    command += ["--master_port", free_port(), "-m", "recipes", "train"]
    ok(launch([*command, *args, "--output_dir", str(out)], out))


def results(run: Path) -> dict:
    """The run's results.json."""
    return json.loads((run / runs.RESULTS_FILE).read_text())


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    """One folder for this module's runs."""
    return tmp_path_factory.mktemp("tensor")


@pytest.fixture(scope="module")
def reference(runs_dir: Path):
    """One process of the data-parallel engine, batch 32, for each model: what TP must match."""
    made: dict[str, Path] = {}

    def run(model: str) -> Path:
        """The reference run of `model`, made on first use."""
        if model not in made:
            out = runs_dir / f"reference-{model}"
            args = [*SAME_RUN, "--model_name", model, "--per_device_train_batch_size", "32"]
            ok(launch([sys.executable, "-m", "recipes", "train", *args, "--output_dir", str(out)],
                      out))  # fmt: skip
            made[model] = out
        return made[model]

    return run


@pytest.fixture(scope="module")
def tensor_run(runs_dir: Path):
    """2 tensor-parallel ranks, batch 32, for each model (run once, shared by the tests); ended
    by max_steps at the reference's 4 updates, whatever num_epochs says."""
    made: dict[str, Path] = {}

    def run(model: str) -> Path:
        """The 2-rank run of `model`, made on first use."""
        if model not in made:
            out = runs_dir / f"tp2-{model}"
            torchrun(2, out, *SAME_RUN, *TENSOR, "--model_name", model,
                     "--per_device_train_batch_size", "32", *BY_MAX_STEPS)  # fmt: skip
            made[model] = out
        return made[model]

    return run


@pytest.mark.parametrize("model", ["test_vit", "test_convnext"])
def test_two_tensor_ranks_follow_one_process(reference, tensor_run, model: str):
    """Heads and MLP units split over 2 ranks: the same losses and weights as 1 process."""
    out = tensor_run(model)
    assert "2 tensor x 1 data" in out.with_suffix(".log").read_text()
    assert losses(out) == pytest.approx(losses(reference(model)), rel=1e-5)
    assert max_difference(weights(out), weights(reference(model))) < 1e-4
    values = results(out)
    assert (values["tensor_parallel_size"], values["replicas"], values["steps"]) == (2, 1, 4)
    assert values["split_fraction"] == pytest.approx(0.5, abs=0.01)  # slices, biases whole
    for name in ("config.yaml", "epochs.jsonl", "best_model", "curves.png", "checkpoints/step_4"):
        assert (out / name).exists(), name
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            load_model(out / "model")(x), load_model(reference(model) / "model")(x), atol=1e-4,
            rtol=0,
        )  # fmt: skip


def test_saved_tensor_model_loads_in_transformers_pipeline(tensor_run):
    """The gathered model is an ordinary saved folder: transformers' pipeline classifies with it."""
    from PIL import Image
    from transformers import pipeline

    image = Image.fromarray(torch.randint(0, 255, (32, 32, 3), dtype=torch.uint8).numpy())
    classify = pipeline("image-classification", model=str(tensor_run("test_vit") / "model"))
    predictions = classify(image, top_k=3)
    assert len(predictions) == 3 and all(0.0 <= p["score"] <= 1.0 for p in predictions)


@pytest.mark.parametrize(
    ("processes", "batch", "accumulation", "layout"),
    [(4, "16", "1", "global batch 32, lr 0.05, 4 process(es): 2 tensor x 2 data"),
     (2, "16", "2", "global batch 32, lr 0.05, 2 process(es): 2 tensor x 1 data")],
    ids=["2x2_processes", "accumulation"],
)  # fmt: skip
def test_tensor_by_data_and_accumulation_follow_one_process(
    reference, runs_dir: Path, processes: int, batch: str, accumulation: str, layout: str
):
    """2 replicas x 16 images, or 2 accumulated batches of 16, each split over 2 ranks, = 1 x 32."""
    out = runs_dir / f"tp2-{processes}-{accumulation}"
    torchrun(processes, out, *SAME_RUN, *TENSOR, "--model_name", "test_vit",
             "--per_device_train_batch_size", batch,
             "--gradient_accumulation_steps", accumulation)  # fmt: skip
    assert layout in out.with_suffix(".log").read_text()
    assert results(out)["replicas"] == processes // 2
    assert losses(out) == pytest.approx(losses(reference("test_vit")), rel=1e-5)
    assert max_difference(weights(out), weights(reference("test_vit"))) < 1e-4
    ours, theirs = results(out), results(reference("test_vit"))  # validation shared by replicas
    assert ours["val_loss"] == pytest.approx(theirs["val_loss"], rel=1e-5)
    assert ours["val_accuracy"] == pytest.approx(theirs["val_accuracy"], abs=1e-6)
    assert json.loads((out / runs.EPOCHS_FILE).read_text())["val_samples"] == 270


def test_resumed_tensor_run_ends_where_an_uninterrupted_one_does(runs_dir: Path):
    """Killed after update 6 of 8 (mid-epoch, AdamW, augmentation on): the same end."""
    args = [*SAME_RUN, *TENSOR, "--model_name", "test_vit", "--num_epochs", "2"]
    args += ["--per_device_train_batch_size", "32", "--optimizer", "adamw", "--augment", "true"]
    args += ["--learning_rate", "3e-3", "--save_steps", "2", "--save_total_limit", "10"]
    done, resumed = runs_dir / "resume-done", runs_dir / "resume-resumed"
    torchrun(2, done, *args)
    shutil.copytree(done, resumed)
    for checkpoint in runs.checkpoint_dirs(resumed):
        if runs.read_state(checkpoint)["step"] != 6:
            shutil.rmtree(checkpoint)
    for name in ("model", "best_model", runs.RESULTS_FILE):
        path = resumed / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    torchrun(2, resumed, *args)
    assert "resumed at step 6" in resumed.with_suffix(".log").read_text()
    assert results(resumed)["steps"] == results(done)["steps"] == 8
    assert max_difference(weights(done), weights(resumed)) < 1e-6
    assert losses(resumed) == pytest.approx(losses(done), rel=1e-6)
    assert results(resumed)["val_loss"] == pytest.approx(results(done)["val_loss"], abs=1e-6)


def test_resume_with_other_process_count_is_refused(tensor_run, runs_dir: Path):
    """A 2-rank run's folder relaunched on 4 processes: one line, not a missing-file traceback."""
    out = runs_dir / "relaunched"
    shutil.copytree(tensor_run("test_vit"), out)
    command = [str(BIN / "torchrun"), "--nproc_per_node", "4", "--master_port", free_port()]
    command += ["-m", "recipes", "train", *SAME_RUN, *TENSOR, *BY_MAX_STEPS]
    command += ["--model_name", "test_vit"]
    command += ["--per_device_train_batch_size", "32", "--output_dir", str(out)]
    result = launch(command, out)
    assert result.returncode != 0
    assert "was written by 2 processes, this launch has 4; launch 2" in result.stdout
    assert "error: checkpoint " in result.stdout and "FileNotFoundError" not in result.stdout


def test_qkv_rows_give_each_rank_whole_heads():
    """4 heads of 2 on 2 ranks: rank 0's half holds q, k, v of heads 0-1; the order undoes."""
    rows = qkv_rows(num_heads=4, head_dim=2, size=2)
    q, k, v = (list(range(start, start + 4)) for start in (0, 8, 16))
    assert rows[:12].tolist() == q + k + v
    weight = torch.randn(24, 5)
    assert torch.equal(unpermute(weight[rows], rows), weight)


def test_plans_split_vit_and_convnext_blocks():
    """ViT: qkv/fc1 column-wise, proj/fc2 row-wise in all 6 blocks; ConvNeXt: the MLP alone."""
    vit = make_plan(timm.create_model("test_vit", img_size=32), 2)
    assert vit.styles["blocks.0.attn.qkv"] == "colwise" and len(vit.qkv_rows) == 6
    assert vit.styles["blocks.0.mlp.fc2"] == "rowwise"
    convnext = make_plan(timm.create_model("test_convnext"), 2)
    assert set(convnext.styles.values()) == {"colwise", "rowwise"} and not convnext.qkv_rows


BAD = ["--report_to", "none", "--parallel", "tensor", "--max_train_samples", "64"]


@pytest.mark.parametrize(
    ("world", "args", "message"),
    [
        ("3", ["--model_name", "test_vit", "--tensor_parallel_size", "3"],
         "tensor_parallel_size 3 does not divide num_heads 2 of blocks.0.attn"),
        ("2", ["--model_name", "test_resnet"],
         "parallel: tensor has no plan for ResNet models; plans exist for VisionTransformer"),
        ("3", ["--model_name", "test_vit"],
         "3 processes do not divide into tensor_parallel_size 2"),
        ("2", ["--model_name", "test_vit", "--mixed_precision", "fp16"],
         "parallel: tensor has no fp16 loss scaling"),
        (None, ["--model_name", "test_vit"], "parallel: tensor needs a distributed launcher"),
    ],
)  # fmt: skip
def test_refusals_come_before_any_process_group(monkeypatch, tmp_path, world, args, message):
    """Each refusal is one RecipeError raised before torch.distributed starts."""
    refused_before_process_group(monkeypatch, world, [*BAD, *args, "--output_dir", str(tmp_path)],
                                 message)  # fmt: skip


def test_dimension_that_does_not_divide_exits_2_in_one_line(monkeypatch, tmp_path):
    """From the command line: `error: ...` naming the dimension, exit code 2, no traceback."""
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("LOCAL_RANK", "0")
    proc = run_cli("train", *BAD, "--model_name", "test_vit", "--tensor_parallel_size", "3",
                   "--output_dir", str(tmp_path / "run"))  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: tensor_parallel_size 3 does not divide num_heads 2")
    assert "Traceback" not in proc.stderr


def test_the_example_recipe_trains_and_is_tracked(runs_dir: Path):
    """The README's command on its recipe (a ViT-Small over 2 ranks), shortened: wandb (offline)
    tracks the run as it tracks every recipe, and the whole model is saved."""
    out = runs_dir / "example"
    recipe = str(ROOT / "recipes" / "configs" / "digits" / "tensor_parallel.yaml")
    torchrun(
        2, out, recipe, "--num_epochs", "2", "--max_train_samples", "128", "--warmup_epochs", "0"
    )
    assert list((out / "wandb").glob("offline-run-*")), "wandb did not track the run"
    assert results(out)["tensor_parallel_size"] == 2
    model = load_model(out / "model")
    assert type(model).__name__ == "VisionTransformer" and model.blocks[0].attn.num_heads == 6
