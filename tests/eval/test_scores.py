"""The two aggregate scores added for the benchmarks: ROC AUC and the Physics-IQ score, by hand."""

import math

import pytest

from kinema.eval import metrics as M


def test_roc_auc_counts_pairs_and_halves_ties():
    # positives 3, 1; negatives 2, 1: pairs (3>2), (3>1), (1<2), (1=1) -> (1 + 1 + 0 + 0.5) / 4
    assert M.roc_auc([3, 1, 2, 1], [1, 1, 0, 0]).value == pytest.approx(0.625)
    assert M.roc_auc([1, 2], [0, 1]).value == 1.0
    assert math.isnan(M.roc_auc([1, 2], [1, 1]).value)
    with pytest.raises(ValueError, match="labels: expected 0"):
        M.roc_auc([1, 2], [1, 2])


def test_physics_iq_score_is_the_original_formula():
    variance = dict(spatial_iou=0.8, spatiotemporal_iou=0.5, weighted_spatial_iou=0.4, mse=0.001)
    model = dict(spatial_iou=0.4, spatiotemporal_iou=0.25, weighted_spatial_iou=0.3, mse=0.011)
    # 100 * ((0.5 + 0.5 + 0.75) / 3 - (0.011 - 0.001))
    assert M.physics_iq_score(model, variance).value == pytest.approx(100 * (1.75 / 3 - 0.01))
    assert M.physics_iq_score(variance, variance).value == 100.0  # as good as a second take
    assert M.physics_iq_score(dict(model, mse=2.0), variance).value == 0.0  # clipped
    with pytest.raises(ValueError, match="missing mse"):
        M.physics_iq_score({k: v for k, v in model.items() if k != "mse"}, variance)
