"""One-vs-rest ROC and precision-recall curves, and their figures: the areas are the report's."""

import logging
import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
from sklearn import metrics as skm

from stellar.evaluation.metrics import classification_report, one_vs_rest_curves
from stellar.evaluation.report import pr_figure, roc_figure

NAMES = ["O", "B", "A", "F"]


def _scores(n=300, k=4, seed=0, absent=None):
    """Softmax probabilities with some signal, labels drawn from them; class ``absent`` relabelled away."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, k))
    labels = (logits + rng.gumbel(size=logits.shape)).argmax(axis=1)
    if absent is not None:
        labels[labels == absent] = (absent + 1) % k
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True), labels


def _legend(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_areas_are_the_reports_and_curves_are_sklearns():
    probs, labels = _scores()
    labels[:10] = -1  # unknown labels are left out of both
    report = classification_report(probs, probs, labels, NAMES)
    curves, skipped = one_vs_rest_curves(probs, labels, NAMES)
    assert skipped == {}
    assert [c.name for c in curves] == NAMES
    for c, curve in enumerate(curves):
        assert curve.roc_auc == report["roc_auc_ovr"][curve.name]
        assert curve.average_precision == report["pr_auc_ovr"][curve.name]
        pos, score = labels[10:] == c, probs[10:, c]
        fpr, tpr, _ = skm.roc_curve(pos, score)
        precision, recall, _ = skm.precision_recall_curve(pos, score)
        np.testing.assert_array_equal(curve.fpr, fpr)
        np.testing.assert_array_equal(curve.tpr, tpr)
        np.testing.assert_array_equal(curve.precision, precision)
        np.testing.assert_array_equal(curve.recall, recall)
        # the area under the drawn curve is the area reported
        assert skm.auc(curve.fpr, curve.tpr) == pytest.approx(curve.roc_auc, abs=1e-12)
        assert -np.sum(np.diff(curve.recall) * curve.precision[:-1]) == pytest.approx(curve.average_precision)


def test_figure_legends_show_each_class_area():
    probs, labels = _scores()
    report = classification_report(probs, probs, labels, NAMES)
    curves, skipped = one_vs_rest_curves(probs, labels, NAMES)
    roc, pr = roc_figure(curves, skipped), pr_figure(curves, skipped)
    try:
        for fig, key, tag in ((roc, "roc_auc_ovr", "AUC"), (pr, "pr_auc_ovr", "PR-AUC")):
            shown = {m[1]: m[2] for t in _legend(fig) if (m := re.fullmatch(rf"(\w+) \({tag} ([\d.]+)\)", t))}
            assert shown == {name: f"{v:.3f}" for name, v in report[key].items()}
        assert len(roc.axes[0].get_lines()) == 1 + len(NAMES)  # chance diagonal + one curve per class
    finally:
        plt.close(roc)
        plt.close(pr)


def test_binary_draws_the_positive_class_only():
    probs, labels = _scores(k=2)
    report = classification_report(probs, probs, labels, ["GALAXY", "STAR"])
    curves, skipped = one_vs_rest_curves(probs, labels, ["GALAXY", "STAR"])
    assert [c.name for c in curves] == ["STAR"] and skipped == {}
    assert curves[0].roc_auc == report["roc_auc_ovr"]["STAR"]
    assert curves[0].average_precision == report["pr_auc_ovr"]["STAR"]
    # the other class's ROC is the mirror image: same area
    assert report["roc_auc_ovr"]["GALAXY"] == pytest.approx(curves[0].roc_auc)


def test_a_class_absent_from_the_rows_is_skipped_and_said(caplog):
    probs, labels = _scores(absent=2)
    with caplog.at_level(logging.WARNING):
        curves, skipped = one_vs_rest_curves(probs, labels, NAMES)
    assert [c.name for c in curves] == ["O", "B", "F"]
    assert skipped == {"A": "no positives"}
    assert "'A' has no positives" in caplog.text
    assert set(classification_report(probs, probs, labels, NAMES)["roc_auc_ovr"]) == {"O", "B", "F"}
    for fig in (roc_figure(curves, skipped), pr_figure(curves, skipped)):
        assert "A: no positives, no curve" in _legend(fig)
        plt.close(fig)


def test_a_class_that_is_every_row_has_no_curve():
    probs, _ = _scores(n=20)
    curves, skipped = one_vs_rest_curves(probs, np.zeros(20, dtype=int), NAMES)
    assert skipped == {"O": "no negatives", "B": "no positives", "A": "no positives", "F": "no positives"}
    assert curves == []
    fig = roc_figure(curves, skipped)  # still a figure, saying why it is empty
    assert "O: no negatives, no curve" in _legend(fig)
    plt.close(fig)
