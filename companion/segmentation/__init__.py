"""Part 4, segmentation: per-pixel classes (semantic) and per-object masks (instances).

Import from the submodules; importing ``companion`` alone stays cheap:

- ``data``: the detection chapter's scenes as (image, class-mask) pairs; random crops.
- ``datasets``: PASCAL VOC 2012, Oxford-IIIT Pets and Penn-Fudan behind ``get_segmentation_dataset``.
- ``metrics``: confusion matrix, per-class IoU, mean IoU, pixel accuracy; ``losses``: Dice and focal.
- ``fcn``, ``unet``, ``segnet``, ``pspnet``, ``deeplab``: the semantic segmentation architectures.
- ``mask_ap``: mask IoU and COCO-style mask AP for instance segmentation.
"""
