"""Recipe files, command-line overrides in both forms, and one-line errors for bad keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from recipes.core.config import DIGITS_RECIPES, parse_config
from recipes.core.errors import RecipeError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_defaults_in_code() -> None:
    config = parse_config()
    assert config.data.dataset == "digits"
    assert config.model.mode == "scratch"
    assert config.training.resume_from_checkpoint == "auto"


def test_recipe_then_overrides_in_both_forms(tmp_path: Path) -> None:
    recipe = write(tmp_path, "learning_rate: 1e-3\nnum_epochs: 3\nlr_scheduler: linear\n")
    config = parse_config(recipe, ["--learning_rate=0.5", "--num_epochs", "7"])
    assert config.training.learning_rate == 0.5
    assert config.training.num_epochs == 7
    assert config.training.lr_scheduler == "linear"


def test_yaml_exponents_without_a_dot_are_numbers(tmp_path: Path) -> None:
    config = parse_config(write(tmp_path, "learning_rate: 1e-3\nweight_decay: 5e-4\n"))
    assert config.training.learning_rate == pytest.approx(1e-3)
    assert config.training.weight_decay == pytest.approx(5e-4)


def test_nested_values_and_booleans(tmp_path: Path) -> None:
    recipe = write(
        tmp_path,
        "lr_scheduler: multistep\nscheduler_kwargs: {milestones: [3, 6]}\naugment: false\n",
    )
    config = parse_config(recipe, ["--channels_last=true", "--checkpoint", "none"])
    assert config.training.scheduler_kwargs == {"milestones": [3, 6]}
    assert config.data.augment is False
    assert config.training.channels_last is True
    assert config.model.checkpoint is None


@pytest.mark.parametrize("name", ["scratch", "linear_probe", "finetune"])
def test_shipped_digits_recipes_parse(name: str) -> None:
    config = parse_config(DIGITS_RECIPES / f"{name}.yaml")
    assert config.model.mode == name
    assert config.data.dataset == "digits"


def test_unknown_key_in_file_names_close_ones(tmp_path: Path) -> None:
    with pytest.raises(
        RecipeError, match="unknown argument 'learning_rte'; did you mean learning_rate"
    ):
        parse_config(write(tmp_path, "learning_rte: 0.1\n"))


def test_unknown_key_on_command_line_names_close_ones() -> None:
    with pytest.raises(RecipeError, match="unknown argument 'num_epoch'; did you mean num_epochs"):
        parse_config(None, ["--num_epoch=3"])


def test_bad_value_is_one_line() -> None:
    with pytest.raises(RecipeError, match="learning_rate.*invalid float value"):
        parse_config(None, ["--learning_rate", "fast"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("learning_rate: [0.1\n", "not valid YAML at line"),
        ("- 1\n- 2\n", "must be a mapping"),
        ("mode: finetune\n", "mode finetune needs weights"),
        ("scale_lr: cubic\n", "scale_lr: unknown value 'cubic'"),
        ("scheduler_kwargs: '{bad'\n", "scheduler_kwargs: not valid JSON"),
    ],
)
def test_bad_recipes_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        parse_config(write(tmp_path, text))


def test_missing_file() -> None:
    with pytest.raises(RecipeError, match="recipe file not found: nope.yaml"):
        parse_config("nope.yaml")


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    config = parse_config(
        None,
        ["--learning_rate=0.25", "--lr_scheduler", "step", "--scheduler_kwargs", '{"gamma": 0.5}'],
    )
    config.save(tmp_path / "config.yaml")
    again = parse_config(tmp_path / "config.yaml")
    assert again.to_dict() == config.to_dict()
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["learning_rate"] == 0.25


@pytest.mark.parametrize(
    ("flags", "expected"),
    [({"avx2"}, "no"), ({"avx2", "avx512_bf16"}, "bf16"), ({"avx2", "amx_bf16"}, "bf16")],
)
def test_auto_precision_is_bf16_only_where_the_cpu_computes_it(monkeypatch, flags, expected):
    """On a CPU without AVX-512 BF16 or AMX, bf16 is emulated and slower than fp32."""
    import recipes.core.precision as precision

    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    assert parse_config(None, ["--mixed_precision", "auto"]).training.mixed_precision == expected
    assert parse_config(None, ["--mixed_precision", "fp16"]).training.mixed_precision == "fp16"


def test_this_cpus_flags_are_read_and_decide_auto() -> None:
    from recipes.core.precision import BF16_CPU_FLAGS, cpu_flags, native_bf16

    if not Path("/proc/cpuinfo").is_file() or torch.cuda.is_available():
        pytest.skip("a CPU-only Linux machine decides by /proc/cpuinfo")
    flags = cpu_flags()
    assert flags & {"avx2", "sse2", "asimd", "fp"}, sorted(flags)[:20]
    assert native_bf16() == bool(flags & set(BF16_CPU_FLAGS))
