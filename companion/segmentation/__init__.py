"""Part 4, segmentation: per-pixel classes (semantic) and per-object masks (instances).

Import from the submodules; importing ``companion`` alone stays cheap:

- ``data``: the detection chapter's scenes as (image, class-mask) pairs.
"""
