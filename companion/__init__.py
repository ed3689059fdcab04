"""Companion package of the deep-learning course.

Importing ``companion`` is cheap and offline: subpackages (and torch) are imported only when used.
The chapters of the book map to subpackages: ``companion.foundations`` for Part 1, and so on.
"""

from companion._about import REPOSITORY_URL, __version__
from companion.profiles import PROFILES, Profile, profile

__all__ = ["PROFILES", "Profile", "REPOSITORY_URL", "__version__", "profile"]
