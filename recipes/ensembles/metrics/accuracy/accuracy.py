"""Top-1 accuracy from class probabilities, shipped so that it loads offline."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Fraction of examples whose most probable class is the reference class. Unlike the hub's
`accuracy`, predictions are class-probability rows, so that accuracy, nll and ece can be
combined with `evaluate.combine` and fed the same inputs.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): class probabilities, one row per example.
    references (`list` of `int`): the true class of each example.
Returns:
    accuracy (`float`): between 0 and 1.
Examples:
    >>> metric = evaluate.load("recipes/metrics/accuracy")
    >>> metric.compute(predictions=[[0.9, 0.1], [0.2, 0.8]], references=[0, 0])
    {'accuracy': 0.5}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, predictions, references):
        probs = np.asarray(predictions, dtype=np.float64)
        labels = np.asarray(references)
        return {"accuracy": float((probs.argmax(-1) == labels).mean())}
