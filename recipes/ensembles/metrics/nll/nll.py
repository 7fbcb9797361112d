"""Negative log-likelihood of the true class: the proper score that rewards honest confidence."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Mean negative log-likelihood (cross-entropy) of the reference class under the predicted
class probabilities. Probabilities are clipped at `eps` so that a hard vote (probability 0 for
the true class) gives a large finite penalty instead of infinity.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): class probabilities, one row per example.
    references (`list` of `int`): the true class of each example.
    eps (`float`): smallest probability used in the logarithm, default 1e-12.
Returns:
    nll (`float`): 0 for certain and right, log(num_classes) for uniform guesses.
Examples:
    >>> metric = evaluate.load("recipes/metrics/nll")
    >>> round(metric.compute(predictions=[[0.5, 0.5]], references=[1])["nll"], 4)
    0.6931
"""

_CITATION = """
@book{hastie2009elements,
  title={The Elements of Statistical Learning},
  author={Hastie, Trevor and Tibshirani, Robert and Friedman, Jerome},
  year={2009},
  publisher={Springer}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class NLL(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, predictions, references, eps=1e-12):
        probs = np.asarray(predictions, dtype=np.float64)
        labels = np.asarray(references)
        true_class = probs[np.arange(len(labels)), labels]
        return {"nll": float(-np.log(np.clip(true_class, eps, 1.0)).mean())}
