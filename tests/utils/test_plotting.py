import matplotlib

matplotlib.use("Agg")

import matplotlib.colors  # noqa: E402
import torch  # noqa: E402

from companion.utils import plotting  # noqa: E402


def _opaque_white(fig):
    return matplotlib.colors.to_rgba(fig.get_facecolor()) == (1.0, 1.0, 1.0, 1.0)


def test_history_plot_has_labelled_panels():
    history = {"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.7],
               "train_accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7]}
    fig = plotting.plot_history(history)
    assert len(fig.axes) == 2 and _opaque_white(fig)
    for ax in fig.axes:
        assert ax.get_xlabel() == "epoch" and ax.get_ylabel()
        assert len(ax.get_lines()) == 2


def test_image_grid_and_confusion_matrix_and_regions():
    fig = plotting.show_images(torch.rand(10, 1, 8, 8), titles=[str(i) for i in range(10)], ncols=5)
    assert len(fig.axes) == 10 and _opaque_white(fig)
    fig = plotting.plot_confusion_matrix(torch.tensor([[5, 1], [2, 7]]), ["a", "b"])
    assert fig.axes[0].get_xlabel() == "predicted class" and _opaque_white(fig)
    points = torch.randn(20, 2)
    fig = plotting.plot_decision_regions(lambda grid: (grid[:, 0] > 0).long(), points, (points[:, 0] > 0).long())
    assert fig.axes[0].get_xlabel() == "$x_1$"
