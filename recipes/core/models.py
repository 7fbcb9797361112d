"""timm backbones: hub or local weights, what trains in each mode, and a HF-format save."""

from __future__ import annotations

import copy
import difflib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import timm
import torch
from timm.models import save_for_hf

from recipes.core.errors import RecipeError
from recipes.core.files import write_atomic
from recipes.core.hub import require_hub

if TYPE_CHECKING:
    from recipes.core.arguments import ModelArguments

WEIGHTS_FILE = "model.safetensors"


def check_model_name(name: str) -> None:
    """Refuse a name timm does not know, suggesting close ones."""
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=4, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
        raise RecipeError(f"unknown timm model {name!r}{hint}")


def weights_file(checkpoint: str | Path) -> Path:
    """The weight file of a checkpoint given as a file or as a saved model folder."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / WEIGHTS_FILE
    if not path.is_file():
        raise RecipeError(
            f"checkpoint not found: {checkpoint}; give a .safetensors/.pth file or a saved folder"
        )
    return path


def read_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of a weight file, without loading a safetensors file into memory."""
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise RecipeError(
            f"cannot read checkpoint {path} ({type(err).__name__}); is it corrupt?"
        ) from None
    state = state.get("state_dict", state.get("model", state))
    return {k: tuple(v.shape) for k, v in state.items() if torch.is_tensor(v)}


def check_architecture(checkpoint: str | Path, model_name: str) -> None:
    """A saved folder names its architecture: refuse one saved from another model."""
    config = Path(checkpoint) / "config.json"
    if config.is_file():
        architecture = json.loads(config.read_text()).get("architecture")
        if architecture and architecture != model_name:
            raise RecipeError(
                f"checkpoint {checkpoint} is a {architecture}, not a {model_name}; "
                f"set model_name: {architecture} or use another checkpoint"
            )


def check_shapes(model: torch.nn.Module, shapes: dict, path: Path, head: str) -> None:
    """Every backbone weight must be in the file with the same shape, or the load is refused.

    The first convolution may take other input channels: timm sums or repeats its weights.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    body = {k: s for k, s in expected.items() if not k.startswith(head + ".")}
    first = f"{model.pretrained_cfg.get('first_conv', '')}.weight"
    if first in body and first in shapes and len(shapes[first]) == 4:
        expected_first = body[first]
        body[first] = (expected_first[0], shapes[first][1], *expected_first[2:])
    missing = [k for k in body if k not in shapes]
    wrong = [k for k in body if k in shapes and shapes[k] != body[k]]
    if missing or wrong:
        key = (wrong or missing)[0]
        found = shapes.get(key, "absent")
        raise RecipeError(
            f"checkpoint {path} does not match {type(model).__name__}: "
            f"{len(missing)} weights missing, "
            f"{len(wrong)} of other shape (e.g. {key}: {found} vs {body[key]}); "
            "use a checkpoint of the same model_name"
        )


def head_name(model: torch.nn.Module) -> str:
    return model.pretrained_cfg.get("classifier", "fc")


def load_local(name: str, checkpoint: str, num_classes: int, **kwargs) -> torch.nn.Module:
    """timm model with local weights; a head of another size is replaced by a new one."""
    check_architecture(checkpoint, name)
    path = weights_file(checkpoint)
    model = timm.create_model(name, num_classes=num_classes, **kwargs)
    shapes = read_shapes(path)
    head = head_name(model)
    check_shapes(model, shapes, path, head)
    saved_classes = shapes.get(f"{head}.weight", (num_classes,))[0]
    overlay = dict(file=str(path), num_classes=saved_classes)
    return timm.create_model(
        name, pretrained=True, num_classes=num_classes, pretrained_cfg_overlay=overlay, **kwargs
    )


def load_from_hub(name: str, num_classes: int, **kwargs) -> torch.nn.Module:
    """Hub weights, from the local cache when offline; a clear line instead of a retry loop."""
    fix = "set checkpoint: PATH to a local .safetensors/.pth file or saved folder"
    require_hub(f"weights of {name}", fix)
    try:
        return timm.create_model(name, pretrained=True, num_classes=num_classes, **kwargs)
    except (OSError, RuntimeError) as err:
        raise RecipeError(
            f"weights of {name} could not be fetched ({type(err).__name__}); {fix}"
        ) from None


def saved_label_names(checkpoint: str | Path) -> list[str] | None:
    config = Path(checkpoint) / "config.json"
    return json.loads(config.read_text()).get("label_names") if config.is_file() else None


def size_kwargs(name: str, image_size: int | None) -> dict:
    """A model made for one input size (a ViT for 224 px) is built for the recipe's size."""
    cfg = timm.models.get_pretrained_cfg(name)
    fixed = cfg is not None and cfg.fixed_input_size and image_size
    return {"img_size": image_size} if fixed and cfg.input_size[-1] != image_size else {}


def fixed_size_error(name: str, image_size: int, err: Exception) -> RecipeError:
    need = timm.models.get_pretrained_cfg(name).input_size[-1]
    reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
    return RecipeError(
        f"{name} is made for {need}x{need} inputs and timm cannot build it for {image_size} "
        f"({reason}); set image_size: {need} or a size it takes, or choose another model"
    )


def check_runs(model: torch.nn.Module, name: str, in_chans: int, image_size: int | None) -> None:
    """One tiny forward pass, so a size the network cannot take fails here in one line."""
    if not image_size:
        return
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(2, in_chans, image_size, image_size))
    except (RuntimeError, ValueError, AssertionError) as err:
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        cfg = timm.models.get_pretrained_cfg(name)
        default = cfg.input_size[-1] if cfg else 224
        raise RecipeError(
            f"{name} cannot run on {image_size}x{image_size} inputs ({reason}); "
            f"set image_size to {default} or another size it takes"
        ) from None
    finally:
        model.train(was_training)


def make_model(
    args: ModelArguments, num_classes: int, label_names, kwargs: dict
) -> torch.nn.Module:
    """From local weights, the hub or scratch."""
    if args.checkpoint:
        model = load_local(args.model_name, args.checkpoint, num_classes, **kwargs)
        saved = saved_label_names(args.checkpoint)
        if label_names is not None and saved is not None and list(saved) != list(label_names):
            model.reset_classifier(num_classes)
        return model
    if args.pretrained:
        return load_from_hub(args.model_name, num_classes, **kwargs)
    return timm.create_model(args.model_name, num_classes=num_classes, **kwargs)


def create_model(
    args: ModelArguments,
    num_classes: int,
    label_names: list[str] | None = None,
    in_chans: int = 3,
    image_size: int | None = None,
) -> torch.nn.Module:
    """The configured timm model with `num_classes` outputs, frozen as its mode asks.

    A saved head is kept only for the same classes: other label names get a new head.
    """
    check_model_name(args.model_name)
    sized = size_kwargs(args.model_name, image_size)
    kwargs = dict(drop_rate=args.drop_rate, in_chans=in_chans, **sized)
    try:
        model = make_model(args, num_classes, label_names, kwargs)
    except (TypeError, AssertionError, ValueError, RuntimeError) as err:
        if not sized:
            raise
        raise fixed_size_error(args.model_name, image_size, err) from None
    check_runs(model, args.model_name, in_chans, image_size)
    if args.mode == "linear_probe":
        freeze_backbone(model)
    elif args.freeze_stages:
        freeze_stages(model, args.freeze_stages)
    return model


def freeze_backbone(model: torch.nn.Module) -> None:
    """Only the classifier trains; `train_mode` keeps the frozen part in eval mode."""
    head = {id(p) for p in model.get_classifier().parameters()}
    for param in model.parameters():
        param.requires_grad_(id(param) in head)


def stage_names(model: torch.nn.Module) -> list[str]:
    """The feature stages timm numbers for `features_only` and `forward_intermediates`."""
    return [info["module"] for info in getattr(model, "feature_info", None) or []]


def freeze_stages(model: torch.nn.Module, count: int) -> None:
    """Freeze everything up to the end of feature stage `count` (stem included)."""
    stages = stage_names(model)
    if count <= 0:
        return
    if count > len(stages):
        raise RecipeError(
            f"{type(model).__name__} has {len(stages)} feature stages "
            f"({', '.join(stages) or 'none'}); freeze_stages {count} is too many: "
            f"use 0 to {len(stages)}"
        )
    modules = [name for name, _ in model.named_modules()]
    last = stages[count - 1]
    start = modules.index(last)
    inside = lambda name: name == last or name.startswith(last + ".")  # noqa: E731
    end = next((i for i in range(start, len(modules)) if not inside(modules[i])), len(modules))
    frozen = set(modules[:end])
    for name, param in model.named_parameters():
        param.requires_grad_(name.rpartition(".")[0] not in frozen)


def train_mode(model: torch.nn.Module) -> None:
    """model.train(), but modules with only frozen weights stay in eval (BatchNorm stats fixed)."""
    model.train()
    for module in model.modules():
        params = list(module.parameters(recurse=True))
        if params and not any(p.requires_grad for p in params):
            module.eval()


def save_model(
    model: torch.nn.Module, directory: Path, label_names: list[str], data_config: dict
) -> Path:
    """config.json + model.safetensors that timm, transformers and `pipeline` all load."""
    directory.mkdir(parents=True, exist_ok=True)
    if any(not t.is_contiguous() for t in model.state_dict().values()):  # channels_last
        model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    save_for_hf(
        model,
        str(directory),
        model_config={"label_names": list(label_names)},
        data_config=data_config,
        safe_serialization=True,
    )
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text())
    config.get("model_args", {}).pop("num_classes", None)
    write_atomic(config_path, json.dumps(config, indent=2))
    return directory


def load_model(directory: str | Path) -> torch.nn.Module:
    """A saved folder back as a timm model, in eval mode."""
    weights_file(directory)
    return timm.create_model(f"local-dir:{Path(directory).resolve()}", pretrained=True).eval()
