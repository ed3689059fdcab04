import pytest
import torch
from sklearn.metrics import accuracy_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from companion.utils.metrics import accuracy, confusion_matrix


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matrix_equals_sklearn(seed):
    generator = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, 7, (500,), generator=generator)
    predictions = torch.randint(0, 7, (500,), generator=generator)
    ours = confusion_matrix(predictions, targets, num_classes=7)
    theirs = sk_confusion_matrix(targets.numpy(), predictions.numpy(), labels=list(range(7)))
    assert ours.tolist() == theirs.tolist()
    assert int(ours.sum()) == 500


def test_accuracy_equals_sklearn():
    logits = torch.randn(300, 5)
    targets = torch.randint(0, 5, (300,))
    assert accuracy(logits, targets) == pytest.approx(accuracy_score(targets, logits.argmax(1)))


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), num_classes=3)
    with pytest.raises(ValueError, match=r"\(N,\)"):
        confusion_matrix(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="expected logits"):
        accuracy(torch.randn(4, 3), torch.zeros(5, dtype=torch.long))
