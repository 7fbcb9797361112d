"""A zoo of user mistakes: each is refused with exit code 2 and one line, no traceback, and
nothing already saved changes (the run folder is checksummed before and after)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml
from PIL import Image

from recipes.cli import main
from tests.conftest import FAST

TINY = [*FAST, "--max_train_samples", "128", "--per_device_eval_batch_size", "512"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """A finished run, bad folders and files to make mistakes with."""
    root = tmp_path_factory.mktemp("zoo")
    main(["train", *TINY, "--output_dir", str(root / "run")])
    one = root / "one_class" / "cat"
    one.mkdir(parents=True)
    tiny = root / "tiny" / "dog"
    tiny.mkdir(parents=True)
    (root / "tiny" / "cat").mkdir()
    for i in range(4):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(one / f"{i}.png")
        Image.new("RGB", (8, 8), (0, i, 0)).save(tiny / f"{i}.png")
    Image.new("RGB", (8, 8)).save(root / "tiny" / "cat" / "0.png")
    (root / "a_file").write_text("not a folder")
    (root / "broken.yaml").write_text("learning_rate: [1e-3\n")
    (root / "unknown.yaml").write_text(yaml.safe_dump({"learnin_rate": 1e-3}))
    space = {"learning_rate": {"min": 1e-4, "max": 1e-2}}
    sweep = {"method": "random", "metric": {"name": "val_accuracy"}, "parameters": space}
    (root / "no_cap.yaml").write_text(yaml.safe_dump(sweep))
    (root / "bad_method.yaml").write_text(yaml.safe_dump({**sweep, "method": "annealing"}))
    return {"root": root, "run": root / "run"}


def checksum(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.endswith(".lock"):  # locks are not saved work
            digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


T = ["train", *TINY, "--output_dir", "{run}"]
MISTAKES = {
    # train: values out of range
    "negative learning rate": ([*T, "--learning_rate", "-0.1"], "learning_rate"),
    "zero learning rate": ([*T, "--learning_rate", "0"], "learning_rate"),
    "image size 0": ([*T, "--image_size", "0"], "image_size"),
    "negative weight decay": ([*T, "--weight_decay", "-1"], "weight_decay"),
    "zero epochs": ([*T, "--num_epochs", "0"], "num_epochs"),
    "flip probability above 1": ([*T, "--hflip", "1.5"], "hflip"),
    "crop scale 0": ([*T, "--crop_scale", "0"], "crop_scale"),
    "label smoothing 1": ([*T, "--label_smoothing", "1.0"], "label_smoothing"),
    "momentum above 1": ([*T, "--momentum", "1.2"], "momentum"),
    "batch size 0": ([*T, "--per_device_train_batch_size", "0"], "per_device_train_batch_size"),
    "drop rate 1": ([*T, "--drop_rate", "1"], "drop_rate"),
    "EMA decay 1": ([*T, "--ema_decay", "1"], "ema_decay"),
    "negative clipping": ([*T, "--max_grad_norm", "-1"], "max_grad_norm"),
    "negative time limit": ([*T, "--max_seconds", "-60"], "max_seconds"),
    "keep no checkpoint": ([*T, "--save_total_limit", "0"], "save_total_limit"),
    "NaN learning rate": ([*T, "--learning_rate", "nan"], "learning_rate"),
    "not a number": ([*T, "--num_epochs", "ten"], "num_epochs"),
    # train: values that contradict each other or the data
    "warmup as long as training": ([*T, "--warmup_epochs", "1"], "warmup"),
    "warmup steps past training": ([*T, "--warmup_steps", "500"], "warmup"),
    "misspelt scheduler kwarg": (
        [*T, "--lr_scheduler", "cosine_with_restarts", "--scheduler_kwargs", '{"num_cycle": 2}'],
        "num_cycle",
    ),
    "kwarg of another family": ([*T, "--scheduler_kwargs", '{"gamma": 0.5}'], "gamma"),
    "milestone after training": (
        [*T, "--lr_scheduler", "multistep", "--scheduler_kwargs", '{"milestones": [5]}'],
        "milestones",
    ),
    "time limit on a pipeline": (
        [*T, "--parallel", "pipeline", "--max_seconds", "60"],
        "max_seconds",
    ),
    "time limit on snapshots": (
        [
            *T,
            "--lr_scheduler",
            "cosine_with_restarts",
            "--scheduler_kwargs",
            '{"num_cycles": 2}',
            "--snapshot_ensemble",
            "true",
            "--max_seconds",
            "60",
        ],
        "max_seconds",
    ),  # fmt: skip
    "scheduler kwargs not JSON": ([*T, "--scheduler_kwargs", "{num_cycles: }"], "JSON"),
    "accumulation past an epoch": (
        [*T, "--gradient_accumulation_steps", "50"],
        "gradient_accumulation_steps",
    ),
    "an image size the network cannot take": ([*T, "--image_size", "2"], "image_size"),
    "a ViT at a size its patches do not divide": (
        [*T, "--model_name", "test_vit", "--image_size", "30"],
        "image_size",
    ),
    # train: names and files
    "unknown model": ([*T, "--model_name", "resnet_10t"], "resnet10t"),
    "unknown optimizer": ([*T, "--optimizer", "adamm"], "optimizer"),
    "unknown scheduler": ([*T, "--lr_scheduler", "cosin"], "cosine"),
    "unknown precision": ([*T, "--mixed_precision", "fp8"], "mixed_precision"),
    "misspelt argument": ([*T, "--learning_rat", "1e-3"], "learning_rate"),
    "missing checkpoint": ([*T, "--checkpoint", "{root}/missing.safetensors"], "checkpoint"),
    "missing recipe file": (["train", "{root}/nope.yaml"], "nope.yaml"),
    "recipe file that is not YAML": (["train", "{root}/broken.yaml"], "broken.yaml"),
    "misspelt key in a recipe": (["train", "{root}/unknown.yaml"], "learnin_rate"),
    "same folder, another recipe": ([*T, "--learning_rate", "0.5"], "different recipe"),
    "resume from a missing checkpoint": (
        [*T, "--resume_from_checkpoint", "{root}/no_such_step"],
        "checkpoint",
    ),
    "output folder is a file": (["train", *TINY, "--output_dir", "{root}/a_file"], "a file"),
    "output folder inside a file": (
        ["train", *TINY, "--output_dir", "{root}/a_file/run"],
        "a file",
    ),
    "image folder with one class": (
        [
            "train",
            *TINY,
            "--dataset",
            "imagefolder",
            "--data_dir",
            "{root}/one_class",
            "--output_dir",
            "{root}/out1",
        ],
        "at least 2",
    ),  # fmt: skip
    "a class with one image": (
        [
            "train",
            *TINY,
            "--dataset",
            "imagefolder",
            "--data_dir",
            "{root}/tiny",
            "--output_dir",
            "{root}/out2",
        ],
        "too few images",
    ),  # fmt: skip
    "image folder that does not exist": (
        ["train", *TINY, "--dataset", "imagefolder", "--data_dir", "{root}/nowhere"],
        "not found",
    ),
    # check, tune
    "check with no overfit steps": (["check", *TINY, "--overfit_steps", "0"], "--overfit_steps"),
    "check with a negative LR": (["check", *TINY, "--learning_rate", "-1"], "learning_rate"),
    "tune with an unreadable budget": (["tune", "--budget", "soon"], "budget"),
    "tune with an ensemble of 0": (["tune", "--ensemble", "0"], "ensemble"),
    # sweep
    "missing sweep file": (["sweep", "{root}/nope.yaml"], "nope.yaml"),
    "zero trials": (["sweep", "{root}/no_cap.yaml", "--trials", "0"], "--trials"),
    "unknown sweep method": (["sweep", "{root}/bad_method.yaml", "--dry-run"], "method"),
    "zero workers": (["sweep", "{root}/no_cap.yaml", "--workers", "0"], "--workers"),
    "storage that is not a URL": (
        ["sweep", "{root}/no_cap.yaml", "--trials", "1", "--storage", "nowhere"],
        "storage",
    ),
    # ensemble, soup, transfer, curves
    "ensemble of missing models": (["ensemble", "--models", "{run}/model", "{root}/gone"], "gone"),
    "ensemble of top 0": (["ensemble", "--from-sweep", "{root}", "--top", "0"], "--top"),
    "soup of a missing checkpoint": (["soup", "{run}/model", "{root}/gone"], "gone"),
    "transfer study with no updates": (["transfer", "study", "--updates", "0"], "--updates"),
    "unknown transfer command": (["transfer", "teleport"], "teleport"),
    "curves of a folder that is no run": (["curves", "{root}/one_class"], "one_class"),
    "curves of a missing folder": (["curves", "{root}/gone"], "gone"),
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_a_mistake_is_one_line_and_changes_nothing(name, saved, capsys):
    argv, needle = MISTAKES[name]
    argv = [
        a.replace("{run}", str(saved["run"])).replace("{root}", str(saved["root"])) for a in argv
    ]
    before = checksum(saved["root"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err, err
    assert checksum(saved["root"]) == before
