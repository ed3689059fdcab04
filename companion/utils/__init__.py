"""Shared machinery: device, mixed precision, seeding, plotting.

``from companion.utils import get_device`` imports torch; ``import companion`` alone does not.
"""

from companion.utils.amp import autocast, autocast_dtype, grad_scaler
from companion.utils.device import get_device
from companion.utils.seed import seed_everything

__all__ = ["autocast", "autocast_dtype", "get_device", "grad_scaler", "seed_everything"]
