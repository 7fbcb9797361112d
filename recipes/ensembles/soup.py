"""Model soups (Wortsman et al. 2022): average the weights of models fine-tuned from one start."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch

from recipes.core.data import load_image_data
from recipes.core.errors import RecipeError
from recipes.core.models import read_shapes, save_model, weights_file
from recipes.ensembles.ensemble import (
    Ensemble,
    Normalized,
    build_ensemble,
    check_members,
    eval_loader,
    input_size,
    predict,
    read_model_config,
    score_split,
)
from recipes.ensembles.members import (
    member_data,
    named,
    row_costs,
    score_members,
)
from recipes.ensembles.metrics import SPLITS, Scorer, write_report

DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


def check_soup(directories: list[Path]) -> None:
    """One architecture with the same weight names and shapes, or one line saying which differ."""
    first = directories[0]
    arch = read_model_config(first).get("architecture")
    shapes = read_shapes(weights_file(first))
    for other in directories[1:]:
        other_arch = read_model_config(other).get("architecture")
        if other_arch != arch:
            raise RecipeError(
                f"{first} is a {arch} but {other} is a {other_arch}; "
                "a soup averages checkpoints of one architecture"
            )
        theirs = read_shapes(weights_file(other))
        key = next(
            (k for k in shapes.keys() | theirs.keys() if shapes.get(k) != theirs.get(k)), None
        )
        if key is not None:
            raise RecipeError(
                f"{first} and {other} differ at {key} ({shapes.get(key)} vs {theirs.get(key)}); "
                "soup only checkpoints fine-tuned from one start with the same model settings"
            )


def average(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Uniform average of floating-point weights; integer buffers (counters) from the first."""
    return {
        key: torch.stack([s[key].float() for s in states]).mean(0).to(value.dtype)
        if value.is_floating_point()
        else value
        for key, value in states[0].items()
    }


def make_soup(template: torch.nn.Module, states: list[dict]) -> torch.nn.Module:
    soup = copy.deepcopy(template)
    soup.load_state_dict(average(states))
    return soup.eval()


def accuracy(model: Normalized, loader, device: torch.device) -> float:
    logits, labels = predict(Ensemble([model]), loader, device)
    return float((logits[0].argmax(-1).numpy() == labels).mean())


def greedy_soup(
    members: dict[str, Normalized], val_accuracy: dict[str, float], loader
) -> list[str]:
    """Add members best first, keeping each one only if validation accuracy does not drop."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    order = sorted(members, key=val_accuracy.get, reverse=True)
    states = {name: member.model.state_dict() for name, member in members.items()}
    best = members[order[0]]
    chosen, score = [order[0]], val_accuracy[order[0]]
    for name in order[1:]:
        soup = make_soup(best.model, [states[n] for n in [*chosen, name]])
        candidate = accuracy(best.wrap(soup), loader, device)
        if candidate >= score:
            chosen, score = [*chosen, name], candidate
    return chosen


def soup(
    dirs: list[Path], out: Path | None = None, data_recipe: str | None = None,
    scorer: Scorer | None = None, batch_size: int = 256,
) -> str:  # fmt: skip
    """Uniform and greedy soups of fine-tuned checkpoints against the best member and ensemble."""
    labels = check_members(dirs)
    check_soup(dirs)
    scorer = scorer or Scorer()
    data = load_image_data(member_data(dirs, data_recipe))
    out = Path(out or Path(os.path.commonpath([d.resolve() for d in dirs])) / "soup")
    members, size = named(dirs), input_size(dirs)
    ensemble = build_ensemble(dirs)
    report = score_members(ensemble, list(members), data, size, ["probs"], scorer, batch_size)
    loaded = dict(zip(members, ensemble.members, strict=True))
    val_accuracy = {name: report["validation"][name]["accuracy"] for name in members}
    val_loader = eval_loader(data, "validation", size, batch_size)
    chosen = greedy_soup(loaded, val_accuracy, val_loader)
    template = loaded[chosen[0]]
    states = [member.model.state_dict() for member in loaded.values()]
    soups = {
        "soup (uniform)": make_soup(template.model, states),
        f"soup (greedy, {len(chosen)} of {len(dirs)})": make_soup(
            template.model, [loaded[n].model.state_dict() for n in chosen]
        ),
    }
    score_soups(report, soups, template, data, size, scorer, batch_size)
    data_config = {k: template.model.pretrained_cfg[k] for k in DATA_CONFIG_KEYS}
    for name, soup in zip(("uniform_soup", "greedy_soup"), soups.values(), strict=True):
        save_model(soup.cpu(), out / name, labels, data_config)
    text = write_report(out, {**report, "greedy_soup": chosen}, row_costs(report, members))
    return f"{text}\n\ngreedy soup of {', '.join(chosen)}; soups saved in {out}"


def score_soups(report: dict, soups: dict, template: Normalized, data, size, scorer, batch) -> None:
    """Add each soup's validation and test metrics to the report, both soups in one data pass."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    together = Ensemble([template.wrap(soup) for soup in soups.values()])
    for split in SPLITS:
        logits, labels = predict(together, eval_loader(data, split, size, batch), device)
        report[split].update(score_split(list(soups), logits, labels, [], scorer))
