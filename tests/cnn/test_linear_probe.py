"""The linear probe minimises scikit-learn's logistic-regression objective."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from companion.cnn.linear_probe import fit_linear_probe


def _data(n=300, d=8, k=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    centers = 2 * torch.randn(k, d, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, k, (n,), generator=generator)
    scale = torch.linspace(0.1, 30, d, dtype=torch.float64)  # badly scaled features on purpose
    features = (centers[labels] + torch.randn(n, d, generator=generator, dtype=torch.float64)) * scale + 5
    return features, labels


@pytest.mark.parametrize("C", [0.1, 1.0])
def test_equals_sklearn_logistic_regression_on_standardized_features(C):
    features, labels = _data()
    probe = fit_linear_probe(features, labels, 4, inverse_regularization=C)
    x = features.numpy()
    z = (x - x.mean(0)) / x.std(0)
    reference = LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(z, labels.numpy())
    ours = torch.softmax(probe(features), dim=1).detach().numpy()
    np.testing.assert_allclose(ours, reference.predict_proba(z), atol=1e-4)


def test_applies_to_raw_features_and_keeps_dtype_and_device():
    features, labels = _data()
    probe = fit_linear_probe(features.float(), labels, 4)
    assert probe.weight.dtype == torch.float32 and probe.weight.shape == (4, 8)
    accuracy = (probe(features.float()).argmax(1) == labels).double().mean()
    assert accuracy > 0.9


@pytest.mark.parametrize("features, labels, match", [
    (torch.randn(5, 3), torch.zeros(4, dtype=torch.long), r"\(N, D\)"),
    (torch.randn(0, 3), torch.zeros(0, dtype=torch.long), "empty"),
    (torch.randn(4, 3), torch.tensor([0, 1, 2, 5]), r"\[0, 3\)"),
])
def test_bad_input_is_clear(features, labels, match):
    with pytest.raises(ValueError, match=match):
        fit_linear_probe(features, labels, 3)


def test_nonpositive_regularization_is_refused():
    with pytest.raises(ValueError, match="inverse_regularization=0"):
        fit_linear_probe(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]), 2, inverse_regularization=0)
