"""Every distribution of W&B's schema samples what W&B's own definition does (wandb/sweeps
`params.py`, `HyperParameter.ppf`): quantiles of many draws through Optuna against the reference
quantile function, written here from scipy.stats as W&B writes it."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from scipy import stats

from recipes.search.params import read_parameters
from recipes.search.trial import suggest

DRAWS = 3000
SLACK = 0.03  # in probability: about 2.5 standard errors of a quantile of 3000 draws


def rounded(values, q):
    out = np.round(np.asarray(values) / q) * q
    return out.astype(int) if isinstance(q, int) else out


# name: (the sweep file's parameter, W&B's quantile function, the quantum or 0)
REFERENCE = {
    "uniform": ({"min": -1.0, "max": 3.0}, lambda u: stats.uniform.ppf(u, -1, 4), 0),
    "q_uniform": ({"distribution": "q_uniform", "min": 0, "max": 10, "q": 3},
                  lambda u: rounded(stats.uniform.ppf(u, 0, 10), 3), 3),
    "int_uniform": ({"min": 2, "max": 6}, lambda u: stats.randint.ppf(u, 2, 7), 1),
    "log_uniform": ({"distribution": "log_uniform", "min": -7, "max": -2},
                    lambda u: np.exp(stats.uniform.ppf(u, -7, 5)), 0),
    "q_log_uniform": ({"distribution": "q_log_uniform", "min": 1, "max": 5, "q": 4},
                      lambda u: rounded(np.exp(stats.uniform.ppf(u, 1, 4)), 4), 4),
    "log_uniform_values": ({"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
                           lambda u: np.exp(stats.uniform.ppf(u, np.log(1e-4), np.log(1e3))), 0),
    "q_log_uniform_values": (
        {"distribution": "q_log_uniform_values", "min": 8, "max": 512, "q": 8},
        lambda u: rounded(np.exp(stats.uniform.ppf(u, np.log(8), np.log(64))), 8), 8),
    "inv_log_uniform": ({"distribution": "inv_log_uniform", "min": 0.5, "max": 4.0},
                        lambda u: np.exp(-stats.uniform.ppf(1 - u, 0.5, 3.5)), 0),
    "inv_log_uniform_values": (
        {"distribution": "inv_log_uniform_values", "min": 0.01, "max": 1.0},
        lambda u: np.exp(-stats.uniform.ppf(1 - u, -np.log(1.0), np.log(100))), 0),
    "normal": ({"distribution": "normal", "mu": 5.0, "sigma": 2.0},
               lambda u: stats.norm.ppf(u, 5, 2), 0),
    "normal, defaults": ({"distribution": "normal"}, lambda u: stats.norm.ppf(u), 0),
    "q_normal": ({"distribution": "q_normal", "mu": 0.0, "sigma": 10.0, "q": 5},
                 lambda u: rounded(stats.norm.ppf(u, 0, 10), 5), 5),
    "log_normal": ({"distribution": "log_normal", "mu": 1.0, "sigma": 0.5},
                   lambda u: stats.lognorm.ppf(u, s=0.5, scale=np.exp(1.0)), 0),
    "q_log_normal": ({"distribution": "q_log_normal", "mu": 3.0, "sigma": 0.5, "q": 2.0},
                     lambda u: rounded(stats.lognorm.ppf(u, s=0.5, scale=np.exp(3.0)), 2.0), 2.0),
    "beta": ({"distribution": "beta", "a": 2.0, "b": 5.0},
             lambda u: stats.beta.ppf(u, 2, 5), 0),
    "beta, defaults": ({"distribution": "beta"}, lambda u: stats.beta.ppf(u, 1, 1), 0),
    "q_beta": ({"distribution": "q_beta", "a": 0.5, "b": 0.5, "q": 0.25},
               lambda u: rounded(stats.beta.ppf(u, 0.5, 0.5), 0.25), 0.25),
}  # fmt: skip
WEIGHTED = {
    "categorical": ({"values": ["a", "b", "c"]}, [1 / 3, 1 / 3, 1 / 3]),
    "categorical_w_probabilities": (
        {"distribution": "categorical_w_probabilities", "values": ["a", "b", "c"],
         "probabilities": [0.6, 0.3, 0.1]}, [0.6, 0.3, 0.1]),
    "implied probabilities": ({"values": ["a", "b", "c"], "probabilities": [0.1, 0.1, 0.8]},
                              [0.1, 0.1, 0.8]),
}  # fmt: skip


def key(name: str) -> str:
    return name.replace(",", "").replace(" ", "_")


@pytest.fixture(scope="module")
def draws() -> dict[str, list]:
    """DRAWS samples of every distribution, drawn as a random sweep draws them."""
    space = {key(k): cfg for k, (cfg, *_) in {**REFERENCE, **WEIGHTED}.items()}
    params, _ = read_parameters({"scheduler_kwargs": {"parameters": space}}, "random")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out: dict[str, list] = {name: [] for name in space}
    for _ in range(DRAWS):
        trial = study.ask()
        for param in params:
            out[param.name.split(".", 1)[1]].append(suggest(trial, param))
        study.tell(trial, 0.0)
    return out


@pytest.mark.parametrize("name", REFERENCE)
def test_quantiles_match_wandbs_definition(draws, name):
    _, ppf, q = REFERENCE[name]
    values = np.asarray(draws[key(name)], dtype=float)
    for p in (0.05, 0.25, 0.5, 0.75, 0.95):
        low, high = ppf(p - SLACK), ppf(p + SLACK)
        assert low - 1e-9 <= np.quantile(values, p, method="inverted_cdf") <= high + 1e-9, (name, p)
    support = ppf(np.array([1e-7, 1 - 1e-7]))
    assert support[0] - q - 1e-9 <= values.min() and values.max() <= support[1] + q + 1e-9
    if q:  # on the quantum's lattice, ints when the quantum is an int
        assert np.allclose(values / q, np.round(values / q))
        assert all(isinstance(v, int) for v in draws[key(name)]) == isinstance(q, int)


@pytest.mark.parametrize("name", WEIGHTED)
def test_categorical_frequencies_match_the_probabilities(draws, name):
    _, weights = WEIGHTED[name]
    picked = draws[key(name)]
    for value, weight in zip("abc", weights, strict=True):
        share = picked.count(value) / DRAWS
        assert abs(share - weight) < 3 * np.sqrt(weight * (1 - weight) / DRAWS) + 1e-3, value
