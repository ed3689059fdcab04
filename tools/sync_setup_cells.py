"""Write the Colab setup cell into every notebook under book/, and keep notebooks stripped.

Every notebook's first code cell installs the companion package on Colab and does nothing
anywhere else. Its text is built from ``companion/_about.py`` (REPOSITORY_URL, BRANCH), the one
place the repository URL is defined, and the cell is tagged ``remove-cell`` so the HTML hides it.

    python tools/sync_setup_cells.py            # rewrite the notebooks that are out of sync
    python tools/sync_setup_cells.py --check    # list them and exit 1; change nothing
    python tools/sync_setup_cells.py PATH ...   # only these notebooks (or folders)

For each notebook it:
- replaces the first code cell's text with the template if that cell is a setup cell (its text
  mentions ``google.colab``), else inserts a new setup cell just before the first code cell (at
  the end when there is none);
- makes sure the setup cell carries the ``remove-cell`` tag;
- removes outputs and execution counts from every code cell (notebooks are stored stripped; the
  book build executes them).
Everything else (other cells, metadata, key order) is kept; files are written as nbformat writes
them (1-space indented JSON, UTF-8, trailing newline) and only when something changed.

Standard library only, so it runs before any environment exists.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
ABOUT = ROOT / "companion" / "_about.py"
SETUP_TAG = "remove-cell"
SETUP_MARKER = "google.colab"
SETUP_CELL_ID = "colab-setup"


def read_about(path: Path = ABOUT) -> dict[str, str]:
    """Return the string constants of ``companion/_about.py`` without importing the package."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    values: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                    values[target.id] = node.value.value
    return values


def setup_cell_source(repository_url: str, branch: str) -> str:
    """The exact text of the Colab setup cell (no trailing newline, as Jupyter stores cells)."""
    return (
        "# Colab setup: installs the companion package; does nothing outside Colab.\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    %pip install --quiet "dl-course-companion @ git+{repository_url}@{branch}"'
    )


def split_lines(text: str) -> list[str]:
    """Cell text as nbformat stores it: a list of lines, each but the last keeping its newline."""
    return text.splitlines(keepends=True)


def join_source(source: str | list[str]) -> str:
    return source if isinstance(source, str) else "".join(source)


def _new_setup_cell(nb: dict, source: str) -> dict:
    # Keys in nbformat's (sorted) order.
    cell: dict = {"cell_type": "code", "execution_count": None}
    if (nb.get("nbformat", 4), nb.get("nbformat_minor", 0)) >= (4, 5):
        ids = {c.get("id") for c in nb.get("cells", [])}
        cell_id, n = SETUP_CELL_ID, 1
        while cell_id in ids:
            n += 1
            cell_id = f"{SETUP_CELL_ID}-{n}"
        cell["id"] = cell_id
    cell["metadata"] = {"tags": [SETUP_TAG]}
    cell["outputs"] = []
    cell["source"] = split_lines(source)
    return cell


def sync_notebook(nb: dict, source: str) -> list[str]:
    """Bring one notebook (parsed JSON, changed in place) in line; return what was changed."""
    changes: list[str] = []
    cells = nb.setdefault("cells", [])
    code_indices = [i for i, c in enumerate(cells) if c.get("cell_type") == "code"]
    first = code_indices[0] if code_indices else None
    if first is not None and SETUP_MARKER in join_source(cells[first].get("source", "")):
        cell = cells[first]
        if join_source(cell.get("source", "")) != source:
            cell["source"] = split_lines(source)
            changes.append("setup cell text")
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if SETUP_TAG not in tags:
            tags.append(SETUP_TAG)
            changes.append(f"setup cell tag {SETUP_TAG!r}")
    else:
        cells.insert(len(cells) if first is None else first, _new_setup_cell(nb, source))
        changes.append("setup cell inserted")
    code_cells = [c for c in cells if c.get("cell_type") == "code"]
    if any(c.get("outputs") for c in code_cells):
        changes.append("outputs removed")
    if any(c.get("execution_count") is not None for c in code_cells):
        changes.append("execution counts removed")
    for cell in code_cells:
        cell["outputs"] = []
        cell["execution_count"] = None
    return changes


def dumps(nb: dict) -> str:
    """Serialise like nbformat.write: 1-space indent, non-ASCII kept, trailing newline."""
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def find_notebooks(paths: list[Path]) -> list[Path]:
    found: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found.update(p for p in path.rglob("*.ipynb")
                         if not any(part.startswith(".") for part in p.relative_to(path).parts))
        elif path.suffix == ".ipynb":
            found.add(path)
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks or folders (default: book/)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; list the notebooks out of sync and exit 1 if any")
    args = parser.parse_args(argv)

    about = read_about()
    source = setup_cell_source(about["REPOSITORY_URL"], about["BRANCH"])
    notebooks = find_notebooks(args.paths or [BOOK])
    out_of_sync = []
    for path in notebooks:
        text = path.read_text(encoding="utf-8")
        nb = json.loads(text)
        changes = sync_notebook(nb, source)
        new_text = dumps(nb)
        if new_text == text:
            continue
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        out_of_sync.append(f"{shown}: {', '.join(changes) or 'JSON not laid out as nbformat writes it'}")
        if not args.check:
            path.write_text(new_text, encoding="utf-8")

    if args.check:
        if out_of_sync:
            print("Notebooks out of sync (run `make sync-notebooks`):", file=sys.stderr)
            for line in out_of_sync:
                print(f"  {line}", file=sys.stderr)
            return 1
        print(f"{len(notebooks)} notebooks in sync.")
        return 0
    for line in out_of_sync:
        print(f"updated {line}")
    print(f"{len(notebooks)} notebooks checked, {len(out_of_sync)} updated.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
