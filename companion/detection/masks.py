"""Instance masks: from a label image to one binary mask per object, and from masks to boxes.

Segmentation datasets store their instances as a *label image*: an integer image where 0 is the
background and every object's pixels carry that object's id. Splitting it gives one boolean mask
per object, and the tightest box around each mask is a detection target for free.

Box convention (torchvision's ``masks_to_boxes``, kept here so both give the same numbers): the
corners are the 0-based indices of the first and last pixel that the mask covers, so ``x2`` is the
index of the rightmost pixel, not one past it. A one-pixel object gets a box with ``x1 == x2``,
and its box width is one less than its width in pixels. A mask with no pixels gets the box
``(0, 0, 0, 0)``, as in torchvision.

Taught in: book/03_detection/01_boxes_iou.ipynb (boxes of real instances: the stardist nuclei).
"""

from __future__ import annotations

import torch


def _check_masks(masks: torch.Tensor) -> None:
    if not isinstance(masks, torch.Tensor):
        raise ValueError(f"masks must be a torch.Tensor of shape (K, H, W), got {type(masks).__name__}; "
                         "convert it with torch.as_tensor(masks).")
    if masks.dim() != 3:
        raise ValueError(f"masks must have shape (K, H, W), got {tuple(masks.shape)}; "
                         "add the instance dimension with masks.unsqueeze(0) for a single mask.")


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """The tightest ``xyxy`` box around each mask; equal to ``torchvision.ops.masks_to_boxes``.

    A mask's rows and columns that hold at least one pixel are found by projecting it onto each
    axis (``any`` along the other); the box runs from the first to the last of them.

    Args:
        masks: ``(K, H, W)`` masks, boolean or numeric (non-zero means "inside").

    Returns:
        ``(K, 4)`` float32 boxes ``(x1, y1, x2, y2)`` on the masks' device; ``x2``/``y2`` are the
        indices of the last covered column/row (see the module docstring). Empty masks give
        ``(0, 0, 0, 0)``; ``K = 0`` gives a ``(0, 4)`` tensor.
    """
    _check_masks(masks)
    if masks.numel() == 0:
        return torch.zeros((0, 4), dtype=torch.float32, device=masks.device)
    _, height, width = masks.shape
    inside = masks.bool()  # (K, H, W)
    rows = inside.any(dim=2).float()  # (K, H): 1 where the row holds a pixel of the mask
    columns = inside.any(dim=1).float()  # (K, W): 1 where the column does
    # argmax returns the first maximum: the first covered row/column; flipping finds the last.
    y1 = rows.argmax(dim=1)  # (K,)
    x1 = columns.argmax(dim=1)  # (K,)
    y2 = (height - 1) - rows.flip(dims=[1]).argmax(dim=1)  # (K,)
    x2 = (width - 1) - columns.flip(dims=[1]).argmax(dim=1)  # (K,)
    boxes = torch.stack([x1, y1, x2, y2], dim=1).float()  # (K, 4)
    empty = rows.sum(dim=1) == 0  # (K,) masks without a single pixel
    boxes[empty] = 0.0
    return boxes


def label_image_to_masks(label_image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a label image into one boolean mask per object id.

    Args:
        label_image: ``(H, W)`` integer image; 0 is the background, each other value one object.
            Ids need not be consecutive.

    Returns:
        ``masks``: ``(K, H, W)`` bool, one per id in increasing order, and ``ids``: ``(K,)`` int64.
    """
    if not isinstance(label_image, torch.Tensor) or label_image.dim() != 2:
        shape = tuple(label_image.shape) if isinstance(label_image, torch.Tensor) else type(label_image).__name__
        raise ValueError(f"label_image must be a 2-D integer tensor (H, W), got {shape}; "
                         "pass one image at a time, e.g. label_image[0].")
    if label_image.is_floating_point() or label_image.dtype == torch.bool:
        raise ValueError(f"label_image must hold integer ids, got {label_image.dtype}; "
                         "convert it with label_image.long() if the values are whole numbers.")
    ids = torch.unique(label_image)  # (K + 1,) sorted, the background 0 included if present
    ids = ids[ids != 0].long()  # (K,)
    masks = label_image.unsqueeze(0) == ids.to(label_image.dtype).reshape(-1, 1, 1)  # (K, H, W)
    return masks, ids
