"""Part 3, object detection: boxes, anchors, NMS, evaluation, detectors and tracking.

Import from the submodules; importing ``companion`` alone stays cheap:

- ``boxes``: box formats (``xyxy``, ``xywh``, ``cxcywh``), area, IoU and generalized IoU.
- ``masks``: boxes from instance masks.
- ``nms``: greedy non-maximum suppression as a readable loop and vectorised, and per-class
  (batched) NMS.
- ``anchors``, ``box_coder``, ``matcher``: anchor boxes, box offsets and IoU matching, as in
  torchvision's detectors.
- ``roi``: RoI pooling and RoI Align.
- ``evaluate``: COCO-style mAP (mAP@[.5:.95], mAP@.5, mAP@.75), equal to pycocotools.
- ``scenes``: the synthetic dataset (Fashion-MNIST items on real textures, exact boxes and masks);
  ``datasets``: the stardist nuclei, Penn-Fudan and PASCAL VOC behind one loader.
- ``train``: the loop that trains any detector with torchvision's interface, and its evaluation.
- ``rpn``: the region proposal network of Faster R-CNN.
- ``ssd``, ``yolo``, ``fcos``: single-shot detectors.
- ``kalman``, ``tracking``: SORT-style tracking by detection and the CLEAR MOT metrics.
"""
