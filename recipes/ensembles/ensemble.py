"""Model ensembles of independent runs, a sweep's best trials or one run's snapshots."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from recipes.core import runs
from recipes.core.arguments import DataArguments
from recipes.core.data import ImageData, build_transforms, load_image_data, make_loader
from recipes.core.errors import RecipeError
from recipes.core.models import load_model, read_shapes, weights_file
from recipes.ensembles.metrics import Scorer

MANIFEST = "ensemble.json"
COMBINE = {
    "probs": "average of the members' softmax probabilities",
    "logits": "softmax of the members' averaged logits",
    "vote": "majority vote, ties to the higher mean probability",
}
# Members see images in [0, 1]; each one applies its own mean/std inside the ensemble.
UNIT_SCALE = {"mean": (0.0,), "std": (1.0,)}  # one value for any number of channels


class Normalized(torch.nn.Module):
    """A member with its own input normalisation, so that all members share one image tensor."""

    def __init__(self, model: torch.nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images - self.mean) / self.std)

    def wrap(self, model: torch.nn.Module) -> Normalized:
        """Another model (such as a soup) with this member's normalisation."""
        return Normalized(model, self.mean.flatten().tolist(), self.std.flatten().tolist())


def combine_probs(logits: torch.Tensor, how: str = "probs") -> torch.Tensor:
    """Members' logits (members, batch, classes) to the ensemble's class probabilities."""
    probs = logits.float().softmax(-1).mean(0)
    if how == "logits":
        return logits.float().mean(0).softmax(-1)
    if how == "vote":
        votes = torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float().mean(0)
        return (votes + 1e-3 * probs) / 1.001
    return probs


class Ensemble(torch.nn.Module):
    """One classifier made of members; input is images in [0, 1], output log-probabilities."""

    def __init__(self, members: list[torch.nn.Module], combine: str = "probs", label_names=()):
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.combine = combine
        self.label_names = list(label_names)

    def member_logits(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(images).float() for member in self.members])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return combine_probs(self.member_logits(images), self.combine).log()


def read_model_config(directory: Path) -> dict:
    """The config.json that `save_model` writes beside the weights."""
    try:
        return json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        raise RecipeError(
            f"member {directory} has no readable config.json; give folders saved by recipes "
            "(a run's model/, best_model/, ema_model/ or snapshots/step_N/)"
        ) from None


def check_members(directories: list[Path]) -> list[str]:
    """At least two readable members predicting one label set; returns the label names."""
    if len(directories) < 2:
        raise RecipeError(
            f"an ensemble needs at least 2 members, got {len(directories)}; add members"
        )
    labels, first = None, directories[0]
    for directory in directories:
        read_shapes(weights_file(directory))
        names = read_model_config(directory).get("label_names")
        if labels is None:
            labels = names
        elif names != labels:
            raise RecipeError(
                f"members {first} and {directory} predict different label sets "
                f"({len(labels)} labels {labels[:3]}... vs {len(names or [])} labels "
                f"{(names or [])[:3]}...); combine only models trained on the same classes"
            )
    return labels


def load_member(directory: Path) -> Normalized:
    """A saved model in eval mode, wrapped with the normalisation it was trained with."""
    try:
        model = load_model(directory)
    except RecipeError:
        raise
    except Exception as err:
        raise RecipeError(
            f"member {directory} cannot be loaded ({type(err).__name__}); it is corrupt: "
            "delete it (a trained member is then retrained on the next call) or leave it out"
        ) from None
    cfg = model.pretrained_cfg
    return Normalized(model, cfg["mean"], cfg["std"]).eval()


def input_size(directories: list[Path]) -> int:
    """The image side all members take; members of different sizes cannot share one batch."""
    sizes = {tuple(read_model_config(d)["pretrained_cfg"]["input_size"]) for d in directories}
    if len(sizes) > 1:
        raise RecipeError(f"members take different input sizes {sorted(sizes)}; use one image_size")
    return sizes.pop()[-1]


def build_ensemble(directories: list[Path], combine: str = "probs") -> Ensemble:
    labels = check_members(directories)
    return Ensemble([load_member(d) for d in directories], combine, labels).eval()


def load(directory: str | Path) -> Ensemble:
    """An ensemble folder (written by `recipes ensemble`) back as one torch.nn.Module."""
    directory = Path(directory)
    if not (directory / MANIFEST).is_file():
        raise RecipeError(
            f"no ensemble at {directory}; expected {MANIFEST} made by `recipes ensemble`"
        )
    manifest = json.loads((directory / MANIFEST).read_text())
    return build_ensemble([directory / p for p in manifest["members"]], manifest["combine"])


def save(out: Path, members: dict[str, Path], combine: str) -> Path:
    """Write the ensemble folder; members outside it are copied in, so that it stands alone."""
    paths = []
    for name, directory in members.items():
        if out.resolve() not in directory.resolve().parents:
            copy = out / "members" / name
            shutil.copytree(directory, copy, dirs_exist_ok=True)
            directory = copy
        paths.append(os.path.relpath(directory, out))
    manifest = {
        "members": paths,
        "combine": combine,
        "input_size": input_size(list(members.values())),
    }
    runs.write_json(out / MANIFEST, manifest)
    return out


def eval_loader(data: ImageData, split: str, size: int, batch_size: int):
    """Images resized and scaled to [0, 1] once; every member normalises them its own way."""
    transform = build_transforms(DataArguments(image_size=size), UNIT_SCALE)[1]
    return make_loader(data, split, transform, batch_size, shuffle=False)


@torch.no_grad()
def predict(ensemble: Ensemble, loader, device: torch.device) -> tuple[torch.Tensor, np.ndarray]:
    """Every member's logits over a split in one pass: each image decoded and transformed once."""
    ensemble.to(device).eval()
    logits, labels = [], []
    for images, targets in loader:
        logits.append(ensemble.member_logits(images.to(device)).cpu())
        labels.append(targets)
    return torch.cat(logits, 1), torch.cat(labels).numpy()


def score_split(names: list[str], logits, labels, combines: list[str], scorer: Scorer) -> dict:
    """Metrics of each member and of each way of combining them, on one split."""
    rows = {name: scorer(logits[i].softmax(-1).numpy(), labels) for i, name in enumerate(names)}
    for how in combines:
        label = "ensemble" if how == "probs" else f"ensemble ({how})"
        rows[label] = scorer(combine_probs(logits, how).numpy(), labels)
    return rows


def score_saved(
    model_dirs: dict[str, Path], data_args: DataArguments, split: str = "test"
) -> dict[str, dict]:
    """Accuracy, NLL and ECE of saved models on one split, and with several their ensemble."""
    data = load_image_data(data_args)
    models = Ensemble([load_member(d) for d in model_dirs.values()], "probs", data.label_names)
    loader = eval_loader(data, split, data_args.image_size, 256)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    logits, labels = predict(models, loader, device)
    combine = ["probs"] if len(model_dirs) > 1 else []
    return score_split(list(model_dirs), logits, labels, combine, Scorer())
