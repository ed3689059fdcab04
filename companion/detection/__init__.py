"""Part 3, object detection: boxes, overlap and non-maximum suppression.

Import from the submodules; importing ``companion`` alone stays cheap:

- ``boxes``: box formats (``xyxy``, ``xywh``, ``cxcywh``), area, IoU and generalized IoU.
- ``nms``: greedy non-maximum suppression as a readable loop and vectorised, and per-class
  (batched) NMS.
"""
