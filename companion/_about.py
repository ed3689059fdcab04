"""Facts about the project that more than one file needs.

The repository URL lives here and nowhere else in Python; ``tools/sync_setup_cells.py`` writes it
into every notebook's Colab setup cell, and ``tests/test_book.py`` checks that the notebooks,
``_config.yml`` and ``pyproject.toml`` all agree with it.
"""

__version__ = "0.1.0"

REPOSITORY_URL = "https://github.com/deep-learning-course/course"
BRANCH = "main"
