"""Data, pipeline and hybrid parallelism on real CPU process groups (gloo), and large batches."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

from recipes.core.config import parse_config
from recipes.core.errors import RecipeError
from recipes.core.models import load_model
from recipes.distributed.layers import bubble_fraction, pipeline_layers
from recipes.schedules import build_optimizer
from recipes.training.accelerator import check_gpu_request
from recipes.training.route import run_recipe

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIGS = ROOT / "accelerate_configs"
# 128 images, global batch 32: four SGD updates on the same samples whatever the process layout.
SAME_RUN = [
    "--report_to", "none", "--model_name", "test_convnext", "--num_epochs", "1",
    "--max_train_samples", "128", "--augment", "false", "--logging_steps", "1",
    "--optimizer", "sgd", "--learning_rate", "0.05", "--per_device_eval_batch_size", "512",
]  # fmt: skip
LAUNCH_TIMEOUT = 420


def free_port() -> str:
    """A port no other test's process group is using, so parallel launches never meet."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def launch(command: list[str], out: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a launcher in its own process group; on timeout the whole group is killed."""
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **(env or {})}, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=LAUNCH_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{' '.join(command[:4])} did not finish in {LAUNCH_TIMEOUT} s")
    (out.parent / f"{out.name}.log").write_text(output)
    return subprocess.CompletedProcess(command, proc.returncode, output)


def accelerate(
    config: str, out: Path, *args: str, launcher: list[str] = ()
) -> subprocess.CompletedProcess:
    command = [str(BIN / "accelerate"), "launch", "--config_file", str(CONFIGS / config)]
    command += ["--main_process_port", free_port(), *launcher]
    return launch(
        [*command, "-m", "recipes", "train", *SAME_RUN, "--output_dir", str(out), *args], out
    )


def torchrun(processes: int, out: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        str(BIN / "torchrun"),
        "--nproc_per_node",
        str(processes),
        "--master_port",
        free_port(),
    ]
    command += ["-m", "recipes", "train"]
    return launch([*command, *SAME_RUN, "--output_dir", str(out), *args], out)


def ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-3000:]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model" / "model.safetensors")


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "steps.jsonl").read_text().splitlines())]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("parallel")


@pytest.fixture(scope="module")
def reference(runs_dir: Path) -> Path:
    """One process, batch 32: what every parallel layout below must reproduce."""
    out = runs_dir / "reference"
    ok(launch([sys.executable, "-m", "recipes", "train", *SAME_RUN, "--output_dir", str(out),
               "--per_device_train_batch_size", "32"], out))  # fmt: skip
    return out


def test_multi_gpu_config_averages_gradients(reference: Path, runs_dir: Path):
    """2 processes x 16 images (on the CPU here) end where 1 process x 32 does."""
    out = runs_dir / "multi_gpu"
    ok(accelerate("multi_gpu.yaml", out, "--per_device_train_batch_size", "16"))
    assert "global batch 32, lr 0.05, 2 process(es)" in out.with_suffix(".log").read_text()
    assert max_difference(weights(out), weights(reference)) < 1e-5


def test_processes_and_accumulation_with_linear_scaling(reference: Path, runs_dir: Path):
    """2 processes x 8 images x 2 accumulation steps, LR 0.025 at base batch 16 scaled to 0.05."""
    out = runs_dir / "cpu_2proc"
    ok(accelerate("cpu_2proc.yaml", out, "--per_device_train_batch_size", "8",
                  "--gradient_accumulation_steps", "2", "--learning_rate", "0.025",
                  "--scale_lr", "linear", "--base_batch_size", "16"))  # fmt: skip
    assert "global batch 32, lr 0.05," in out.with_suffix(".log").read_text()
    assert max_difference(weights(out), weights(reference)) < 1e-5


def test_deepspeed_zero2_averages_gradients(reference: Path, runs_dir: Path):
    out = runs_dir / "zero2"
    ok(accelerate("deepspeed_zero2.yaml", out, "--per_device_train_batch_size", "16"))
    assert (out / "checkpoints" / "step_4" / "pytorch_model").is_dir()  # a DeepSpeed checkpoint
    assert max_difference(weights(out), weights(reference)) < 1e-5


def test_deepspeed_zero3_trains_and_saves_whole_model(reference: Path, runs_dir: Path):
    out = runs_dir / "zero3"
    ok(accelerate("deepspeed_zero3.yaml", out, "--per_device_train_batch_size", "16"))
    assert max_difference(weights(out), weights(reference)) < 1e-5
    load_model(out / "model")


def test_zero3_gathers_sharded_weights_to_save(reference: Path, runs_dir: Path):
    """Every weight sharded (persistence threshold 0): the saved models are whole and right."""
    out = runs_dir / "zero3_sharded"
    config = str(ROOT / "tests" / "deepspeed" / "zero3_shard_all.yaml")
    ok(accelerate(config, out, "--per_device_train_batch_size", "16"))
    assert max_difference(weights(out), weights(reference)) < 1e-5
    best = load_file(out / "best_model" / "model.safetensors")
    assert {k: v.shape for k, v in best.items()} == {k: v.shape for k, v in weights(out).items()}


def test_two_machines_on_one_host(reference: Path, runs_dir: Path):
    """Two launchers of multi_node.yaml, machine ranks 0 and 1, meeting at 127.0.0.1."""
    out = runs_dir / "multi_node"
    base = [str(BIN / "accelerate"), "launch", "--config_file", str(CONFIGS / "multi_node.yaml")]
    base += ["--main_process_port", free_port()]
    train = ["-m", "recipes", "train", *SAME_RUN, "--per_device_train_batch_size", "16"]
    second = subprocess.Popen(
        [*base, "--machine_rank", "1", *train, "--output_dir", str(out)], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        ok(launch([*base, "--machine_rank", "0", *train, "--output_dir", str(out)], out))
        assert second.wait(timeout=60) == 0
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
    assert "global batch 32" in out.with_suffix(".log").read_text()
    assert max_difference(weights(out), weights(reference)) < 1e-5


def test_pipeline_two_stages_follows_single_process(reference: Path, runs_dir: Path):
    """And max_steps (the reference's 4 updates) ends it, whatever num_epochs says."""
    out = runs_dir / "pipe2"
    ok(torchrun(2, out, "--per_device_train_batch_size", "32", "--parallel", "pipeline",
                "--pipeline_stages", "2", "--micro_batches", "4",
                "--num_epochs", "3", "--max_steps", "4"))  # fmt: skip
    assert losses(out) == pytest.approx(losses(reference), rel=1e-5)
    assert max_difference(weights(out), weights(reference)) < 1e-5
    results = json.loads((out / "results.json").read_text())
    assert (results["pipeline_stages"], results["replicas"]) == (2, 1)
    for name in ("config.yaml", "epochs.jsonl", "best_model", "curves.png", "checkpoints/step_4"):
        assert (out / name).exists(), name
    assert load_model(out / "model").num_classes == 10


def test_pipeline_two_stages_two_replicas(reference: Path, runs_dir: Path):
    out = runs_dir / "pipe2x2"
    args = ["--parallel", "pipeline", "--pipeline_stages", "2", "--micro_batches", "2"]
    ok(torchrun(4, out, *args, "--per_device_train_batch_size", "16", "--partition", "uniform"))
    results = json.loads((out / "results.json").read_text())
    assert (results["replicas"], results["replica_spread"]) == (2, 0.0)
    assert losses(out) == pytest.approx(losses(reference), rel=1e-5)
    assert max_difference(weights(out), weights(reference)) < 1e-5


def test_fsdp_without_gpus_fails_in_one_line(runs_dir: Path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = accelerate("fsdp.yaml", runs_dir / "fsdp")
    assert result.returncode != 0
    assert "error: FSDP runs only on GPUs and this machine has none" in result.stdout
    assert "RecipeError" not in result.stdout  # our line, not a traceback of ours


@pytest.mark.parametrize("name", ["test_resnet", "test_convnext", "test_vit", "test_efficientnet"])
def test_pipeline_layers_compute_the_model(name: str):
    model = timm.create_model(name, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    y = x
    for layer in pipeline_layers(model):
        y = layer(y)
    torch.testing.assert_close(y, model(x))


def test_pipeline_refuses_other_families():
    with pytest.raises(
        RecipeError, match="cannot split a ByobNet; it splits ConvNeXt, EfficientNet"
    ):
        pipeline_layers(timm.create_model("test_byobnet"))


PIPE = ["--report_to", "none", "--parallel", "pipeline", "--model_name", "test_resnet"]


def refused_before_process_group(monkeypatch, world: str | None, argv: list[str], message: str):
    """run_recipe refuses `argv` with `message` under a launcher's environment of `world`
    processes (None: no launcher), before torch.distributed starts."""
    if world:
        monkeypatch.setenv("WORLD_SIZE", world)
        monkeypatch.setenv("LOCAL_RANK", "0")
    else:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    with pytest.raises(RecipeError, match=message):
        run_recipe(parse_config(None, argv))
    assert not torch.distributed.is_initialized()


@pytest.mark.parametrize(
    ("world", "args", "message"),
    [
        ("8", ["--pipeline_stages", "8"], "pipeline_stages 8 is more than the model's 6 layers"),
        ("3", ["--pipeline_stages", "2"], "3 processes do not divide into 2 pipeline stages"),
        ("4", ["--per_device_train_batch_size", "30", "--micro_batches", "4"],
         r"global batch 60 \(30 per replica x 2 replicas\) does not split into 4 micro-batches"),
        (None, [], "parallel: pipeline needs a distributed launcher"),
    ],
)  # fmt: skip
def test_pipeline_bad_shapes_fail_before_any_process_group(
    monkeypatch, tmp_path, world, args, message
):
    refused_before_process_group(monkeypatch, world, [*PIPE, *args, "--output_dir", str(tmp_path)],
                                 message)  # fmt: skip


def test_fsdp_check_needs_no_process_group(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(RecipeError, match="FSDP runs only on GPUs"):
        check_gpu_request()


def test_bubble_fraction_is_gpipe():
    assert [bubble_fraction(2, m) for m in (1, 4, 8)] == [1 / 2, 1 / 5, 1 / 9]


@pytest.mark.parametrize("name", ["lars", "lamb"])
def test_large_batch_optimizers_train(name: str):
    torch.manual_seed(0)
    model = timm.create_model("test_convnext", num_classes=10)
    optimizer = build_optimizer(model, name, lr=0.02 if name == "lars" else 3e-3, weight_decay=1e-4)
    images, labels = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    first = None
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert type(optimizer).__name__.lower().startswith(name)
    assert loss.item() < first


def test_largebatch_study_writes_table_and_plot(tmp_path: Path):
    spec = importlib.util.spec_from_file_location("study", ROOT / "scripts" / "largebatch_study.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    rows = study.main(
        ["--out", str(tmp_path), "--multipliers", "2", "--processes", "1", "--epochs", "1",
         "--max_train_samples", "64", "--batch", "8", "--lr", "0.02", "--warmup_epochs", "0.5"]
    )  # fmt: skip
    assert [(r["processes"], r["accumulation"]) for r in rows] == [(1, 1)] + [(1, 2)] * 3
    assert [r["lr"] for r in rows] == pytest.approx([0.02, 0.02, 0.04, 0.04])
    assert all(0.0 <= r["val_accuracy"] <= 1.0 and r["seconds_per_epoch"] > 0 for r in rows)
    assert (tmp_path / "study.png").stat().st_size > 0
    assert "| batch 16, rule + warmup | 1 x 2 | 0.04 |" in (tmp_path / "study.md").read_text()
