"""Expected calibration error: how far confidence is from accuracy, with its reliability bins."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Expected calibration error (Guo et al. 2017): examples are put in `n_bins` equal-width bins
of confidence (the top class probability); ECE is the example-weighted mean of
|accuracy - confidence| over the bins. `ece_bins` holds each bin's count, mean confidence and
accuracy, the points of a reliability diagram.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): class probabilities, one row per example.
    references (`list` of `int`): the true class of each example.
    n_bins (`int`): number of confidence bins over (0, 1], default 15.
Returns:
    ece (`float`): between 0 (calibrated) and 1.
    ece_bins (`dict`): lists `count`, `confidence` and `accuracy`, one entry per bin.
Examples:
    >>> metric = evaluate.load("recipes/metrics/ece")
    >>> metric.compute(predictions=[[0.9, 0.1], [0.9, 0.1]], references=[0, 1])["ece"]
    0.4
"""

_CITATION = """
@inproceedings{guo2017calibration,
  title={On Calibration of Modern Neural Networks},
  author={Guo, Chuan and Pleiss, Geoff and Sun, Yu and Weinberger, Kilian Q.},
  booktitle={ICML},
  year={2017}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ECE(evaluate.Metric):
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

    def _compute(self, predictions, references, n_bins=15):
        probs = np.asarray(predictions, dtype=np.float64)
        confidence = probs.max(-1)
        hits = (probs.argmax(-1) == np.asarray(references)).astype(np.float64)
        bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
        count = np.bincount(bins, minlength=n_bins)
        seen = np.maximum(count, 1)
        mean_conf = np.bincount(bins, confidence, n_bins) / seen
        accuracy = np.bincount(bins, hits, n_bins) / seen
        ece = float((count * np.abs(accuracy - mean_conf)).sum() / max(len(hits), 1))
        reliability = {
            "count": count.tolist(),
            "confidence": mean_conf.tolist(),
            "accuracy": accuracy.tolist(),
        }
        return {"ece": ece, "ece_bins": reliability}
