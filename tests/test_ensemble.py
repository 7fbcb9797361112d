"""Ensembles, snapshot ensembles, EMA, soups and the shipped calibration metrics, on real runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import evaluate
import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file

from recipes import cli
from recipes.cli.ensemble import ensemble_command
from recipes.cli.soup import soup_command
from recipes.core import runs
from recipes.core.arguments import DataArguments
from recipes.core.data import build_transforms, load_image_data, make_loader
from recipes.core.models import load_model, save_model
from recipes.ensembles.ensemble import combine_probs, eval_loader, load, predict
from recipes.ensembles.members import snapshot_members
from recipes.ensembles.metrics import METRICS_DIR, Scorer
from recipes.schedules import lr_curve
from tests.conftest import FAST, run_cli

SMALL = [*FAST, "--max_train_samples", "256"]
DATA_CONFIG = dict(input_size=(3, 32, 32), crop_pct=1.0, interpolation="bilinear")
DIGITS = [str(d) for d in range(10)]


def report(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def fails(argv: list[str], capsys) -> str:
    """Run a verb as the console script does: exit code 2 and one `error:` line."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.startswith("error: ") and "\n" not in err
    return err


def untrained(folder: Path, name: str = "test_convnext", labels=DIGITS, **kwargs) -> Path:
    """A saved model that needs no training, for the bad-input checks."""
    model = timm.create_model(name, num_classes=len(labels), **kwargs)
    cfg = {**DATA_CONFIG, "mean": (0.5,) * 3, "std": (0.5,) * 3}
    return save_model(model, folder, labels, cfg)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """An ensemble of two members that differ by seed, each trained for one short epoch."""
    base = tmp_path_factory.mktemp("ens") / "digits"
    combine = ["--combine", "probs", "logits", "vote"]
    ensemble_command(["--members", "2", *SMALL, "--output_dir", str(base), *combine])
    return Path(f"{base}-ensemble")


@pytest.fixture(scope="module")
def snapshot_run(tmp_path_factory) -> Path:
    """One run with warmup, two cosine-with-restarts cycles, snapshots and an EMA."""
    from recipes.core.config import parse_config
    from recipes.training.engine import train

    out = tmp_path_factory.mktemp("snap") / "run"
    args = [*SMALL, "--num_epochs", "2", "--max_train_samples", "320", "--logging_steps", "1"]
    args += ["--lr_scheduler", "cosine_with_restarts", "--scheduler_kwargs", '{"num_cycles": 2}']
    args += ["--warmup_steps", "2", "--snapshot_ensemble", "true", "--ema_decay", "0.7"]
    train(parse_config(None, [*args, "--output_dir", str(out)]))
    return out


@pytest.fixture(scope="module")
def soups(trained, tmp_path_factory) -> Path:
    """Two fine-tunes of one trained member (seeds differ), souped."""
    base = trained / "members" / "seed_42" / "model"
    out = tmp_path_factory.mktemp("soup") / "ft"
    finetune = ["--mode", "finetune", "--checkpoint", str(base), "--learning_rate", "1e-3"]
    ensemble_command(["--members", "2", *SMALL, *finetune, "--output_dir", str(out)])
    members = sorted(Path(f"{out}-ensemble").glob("members/*/model"))
    soup_command([*map(str, members), "--out", str(out.parent / "soups")])
    return out.parent / "soups"


def test_shipped_metrics_load_offline_and_match_hand_computed_values() -> None:
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([0, 1, 1, 1])
    metric = {n: evaluate.load(str(METRICS_DIR / n)) for n in ("accuracy", "nll", "ece")}
    assert metric["accuracy"].compute(predictions=probs, references=labels)["accuracy"] == 0.5
    nll = metric["nll"].compute(predictions=probs, references=labels)["nll"]
    assert nll == pytest.approx(-np.log([0.9, 0.1, 0.7, 0.4]).mean(), rel=1e-6)
    ece = metric["ece"].compute(predictions=probs, references=labels)
    # bins: 0.9 (two examples, accuracy 0.5), 0.7 (accuracy 1), 0.6 (accuracy 0)
    assert ece["ece"] == pytest.approx((2 * 0.4 + 0.3 + 0.6) / 4, abs=1e-6)
    assert sum(ece["ece_bins"]["count"]) == 4 and len(ece["ece_bins"]["count"]) == 15


def test_scorer_combines_metrics_and_gives_label_metrics_the_argmax(tmp_path) -> None:
    folder = tmp_path / "hits"
    folder.mkdir()
    source = (METRICS_DIR / "accuracy" / "accuracy.py").read_text()
    source = source.replace(
        'datasets.Sequence(datasets.Value("float32"))', 'datasets.Value("int64")'
    )
    source = source.replace("probs.argmax(-1) == labels", "probs == labels").replace(
        '"accuracy"', '"hits"'
    )
    (folder / "hits.py").write_text(source)
    rng = np.random.default_rng(0)
    probs, labels = rng.dirichlet(np.ones(5), 200), rng.integers(0, 5, 200)
    result = Scorer(["accuracy", "nll", "ece", str(folder)])(probs, labels)
    assert result["hits"] == result["accuracy"] == (probs.argmax(-1) == labels).mean()


def test_a_hub_metric_while_offline_is_one_clear_line(capsys) -> None:
    err = fails(["ensemble", "--models", "a", "b", "--metrics", "f1"], capsys)
    assert "'f1'" in err and "offline" in err and "accuracy, ece, nll" in err


def test_combining_rules_on_known_logits() -> None:
    logits = torch.tensor([[[4.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]], [[0.0, 1.2, 0.0]]])
    members = logits.softmax(-1)
    assert torch.allclose(combine_probs(logits, "probs"), members.mean(0))
    assert torch.allclose(combine_probs(logits, "logits"), logits.mean(0).softmax(-1))
    votes = combine_probs(logits, "vote")
    assert votes.argmax(-1).item() == 1 and votes[0, 1] == pytest.approx(2 / 3, abs=1e-3)
    assert combine_probs(logits, "probs").argmax(-1).item() == 0  # one confident member wins
    tie = combine_probs(logits[:2], "vote")  # one vote each: the higher mean probability
    assert tie.argmax(-1).item() == 0 and tie.sum().item() == pytest.approx(1.0)


def test_ensemble_reports_members_best_member_and_combinations(trained) -> None:
    result = report(trained)
    rows = list(result["test"])
    assert rows[0].startswith("best member (") and {"seed_42", "seed_43", "ensemble"} <= set(rows)
    assert {"ensemble (logits)", "ensemble (vote)"} <= set(rows)
    for split in ("validation", "test"):
        for metrics in result[split].values():
            assert 0 <= metrics["accuracy"] <= 1 and metrics["nll"] > 0 and 0 <= metrics["ece"] <= 1
    costs = result["train_seconds"]
    assert costs["ensemble"] == pytest.approx(costs["seed_42"] + costs["seed_43"])
    assert (trained / "reliability.png").stat().st_size > 0
    assert "| ensemble |" in (trained / "table.md").read_text()


def test_member_scores_agree_with_the_engine_evaluation(trained) -> None:
    for seed in ("seed_42", "seed_43"):
        engine = report(trained / "members" / seed)
        ours = report(trained)["validation"][seed]
        assert abs(ours["accuracy"] - engine["val_accuracy"]) <= 1 / 270
        assert ours["nll"] == pytest.approx(engine["val_loss"], rel=1e-3)


def test_loaded_ensemble_is_one_module_matching_members_on_their_own_transforms(trained) -> None:
    ensemble = load(trained)
    assert isinstance(ensemble, torch.nn.Module) and len(ensemble.members) == 2
    data = load_image_data(DataArguments())
    logits, labels = predict(ensemble, eval_loader(data, "test", 32, 128), torch.device("cpu"))
    alone = []
    for seed in ("seed_42", "seed_43"):
        model = load_model(trained / "members" / seed / "model")
        transform = build_transforms(DataArguments(), model.pretrained_cfg)[1]
        with torch.no_grad():
            batches = make_loader(data, "test", transform, 128, False)
            alone.append(torch.cat([model(x) for x, _ in batches]))
    assert torch.allclose(logits, torch.stack(alone), atol=1e-4)
    images = next(iter(eval_loader(data, "test", 32, 16)))[0]
    with torch.no_grad():
        probs = ensemble(images).exp()
    assert torch.allclose(probs, torch.stack(alone)[:, :16].softmax(-1).mean(0), atol=1e-5)
    accuracy = (combine_probs(logits).argmax(-1).numpy() == labels).mean()
    assert accuracy == pytest.approx(report(trained)["test"]["ensemble"]["accuracy"])


def test_finished_members_are_reused_and_a_new_one_trained(trained) -> None:
    def stamp(seed: str) -> int:
        return (trained / "members" / seed / "model" / "model.safetensors").stat().st_mtime_ns

    before = {seed: stamp(seed) for seed in ("seed_42", "seed_43")}
    ensemble_command(["--members", "3", *SMALL, "--output_dir", str(trained)[: -len("-ensemble")]])
    assert all(stamp(seed) == mtime for seed, mtime in before.items())
    assert {"seed_42", "seed_43", "seed_44"} <= set(report(trained)["test"])


def test_members_of_another_recipe_are_refused_before_any_training(trained, capsys) -> None:
    base = str(trained)[: -len("-ensemble")]
    argv = ["ensemble", "--members", "5", *SMALL, "--output_dir", base, "--learning_rate", "0.1"]
    err = fails(argv, capsys)
    assert "learning_rate" in err
    assert not (trained / "members" / "seed_46").exists()


def test_top_trials_of_a_sweep_folder(trained, tmp_path) -> None:
    sweep = tmp_path / "sweep"
    for i, seed in enumerate(("seed_42", "seed_43", "seed_44")):
        shutil.copytree(trained / "members" / seed, sweep / f"trial_{i}")
    accuracy = {f"trial_{i}": report(sweep / f"trial_{i}")["val_accuracy"] for i in range(3)}
    ensemble_command(["--from-sweep", str(sweep), "--top", "2"])
    chosen = set(report(sweep / "top2")["validation"]) & set(accuracy)
    left = set(accuracy) - chosen
    assert len(chosen) == 2 and min(accuracy[c] for c in chosen) >= accuracy[left.pop()]
    moved = tmp_path / "moved"
    shutil.move(sweep / "top2", moved)  # the folder stands alone: members were copied in
    assert len(load(moved).members) == 2


def test_snapshots_are_the_last_updates_of_each_cycle(snapshot_run) -> None:
    snaps = snapshot_members(snapshot_run)
    steps = [int(p.name.split("_")[1]) for p in snaps]
    total = report(snapshot_run)["steps"]
    lr = lr_curve("cosine_with_restarts", total, 2, num_cycles=2)
    restarts = [s for s in range(3, total) if lr[s] > lr[s - 1]]  # update s+1 starts a cycle
    assert steps == [*restarts, total] and len(steps) == 2
    assert all(
        torch.equal(weights(snaps[-1])[k], v) for k, v in weights(snapshot_run / "model").items()
    )


def test_ema_is_evaluated_each_epoch_and_saved(snapshot_run) -> None:
    epochs = runs.read_jsonl(snapshot_run / runs.EPOCHS_FILE)
    assert all("ema_val_accuracy" in e and "ema_val_loss" in e for e in epochs)
    ema, last = weights(snapshot_run / "ema_model"), weights(snapshot_run / "model")
    assert any(not torch.equal(ema[k], last[k]) for k in last if last[k].is_floating_point())
    model = load_model(snapshot_run / "ema_model")
    data = load_image_data(DataArguments())
    transform = build_transforms(DataArguments(), model.pretrained_cfg)[1]
    loader = make_loader(data, "validation", transform, 128, False)
    with torch.no_grad():
        hits = [(model(x).argmax(-1) == y).float() for x, y in loader]
    assert torch.cat(hits).mean().item() == pytest.approx(epochs[-1]["ema_val_accuracy"], abs=1e-6)


def test_snapshot_ensemble_command(snapshot_run) -> None:
    ensemble_command(["--snapshots", str(snapshot_run)])
    out = snapshot_run / "snapshot_ensemble"
    assert {"step_6", "step_10", "ensemble"} <= set(report(out)["test"])
    assert len(load(out).members) == 2


def test_soups_are_checkpoints_compared_with_best_member_and_ensemble(soups) -> None:
    result = report(soups)
    rows = list(result["validation"])
    assert rows[0].startswith("best member (") and "ensemble" in rows and "soup (uniform)" in rows
    greedy = next(r for r in rows if r.startswith("soup (greedy"))
    assert result["validation"][greedy]["accuracy"] >= result["validation"][rows[0]]["accuracy"]
    assert result["greedy_soup"][0] == rows[0][len("best member (") : -1]
    members = [weights(p) for p in sorted(soups.parent.glob("ft-ensemble/members/*/model"))]
    uniform = weights(soups / "uniform_soup")
    for key in ("stem.0.weight", "head.fc.weight"):
        assert torch.allclose(
            uniform[key], torch.stack([m[key] for m in members]).mean(0), atol=1e-6
        )
    for name in ("uniform_soup", "greedy_soup"):
        assert json.loads((soups / name / "config.json").read_text())["label_names"] == DIGITS
        assert isinstance(load_model(soups / name), torch.nn.Module)


def test_bad_members_are_one_line_each(tmp_path, capsys) -> None:
    good = untrained(tmp_path / "good")
    other = untrained(tmp_path / "other")
    assert "at least 2" in fails(["ensemble", "--members", "1", *SMALL], capsys)
    assert "at least 2" in fails(["ensemble", "--models", str(good)], capsys)
    assert "one source" in fails(
        ["ensemble", "--members", "2", "--snapshots", str(tmp_path)], capsys
    )
    assert "not found" in fails(["soup", str(good), str(tmp_path / "missing")], capsys)
    corrupt = shutil.copytree(good, tmp_path / "corrupt")
    (corrupt / "model.safetensors").write_bytes(b"not weights")
    assert "corrupt" in fails(["soup", str(good), str(corrupt)], capsys)
    letters = untrained(tmp_path / "letters", labels=list("abcdefghij"))
    assert "different label sets" in fails(
        ["ensemble", "--models", str(good), str(letters)], capsys
    )
    resnet = untrained(tmp_path / "resnet", "test_resnet")
    assert "architecture" in fails(["soup", str(good), str(resnet)], capsys)
    wide = untrained(tmp_path / "wide", "test_vit", img_size=64)
    vit = untrained(tmp_path / "vit", "test_vit")
    assert "pos_embed" in fails(["soup", str(vit), str(wide)], capsys)
    assert "snapshot" in fails(["ensemble", "--snapshots", str(tmp_path)], capsys)
    assert "cosine_with_restarts" in fails(["train", *FAST, "--snapshot_ensemble", "true"], capsys)
    assert "ema_decay" in fails(["train", *FAST, "--ema_decay", "1.5"], capsys)
    assert other.is_dir()


def test_console_script_gives_one_line_for_a_missing_member(tmp_path) -> None:
    result = run_cli("soup", str(tmp_path / "a"), str(tmp_path / "b"), timeout=120)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: checkpoint not found") and str(tmp_path / "a") in last
