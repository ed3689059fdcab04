"""The book's frame agrees with itself: notebooks, _toc.yml, _config.yml, pyproject and references.

Fast checks on the files as stored (nothing is executed): the repository URL is defined once, in
companion/_about.py, and everything that repeats it must agree; every notebook starts with the
Colab setup cell and is stored without outputs; the table of contents and the notebooks on disk
match; every citation resolves.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from companion import _about

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
NOTEBOOKS = sorted(p for p in BOOK.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
MARKDOWN = sorted(BOOK.rglob("*.md"))
SOURCE_SUFFIXES = (".md", ".ipynb")

EXPECTED_SETUP_CELL = (
    "# Colab setup: installs the companion package; does nothing outside Colab.\n"
    "import sys\n"
    "\n"
    'if "google.colab" in sys.modules:\n'
    f'    %pip install --quiet "dl-course-companion @ git+{_about.REPOSITORY_URL}@{_about.BRANCH}"'
)

# {cite}`a,b`, {cite:p}`a`, {cite:t}`a`, {cite:ps}`a`, {cite:alp}`a` ... (sphinxcontrib-bibtex roles)
CITE_ROLE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]*)`")
BIB_KEY = re.compile(r"^\s*@\s*(\w+)\s*\{\s*([^,\s]+)\s*,", re.MULTILINE)


def load_notebook(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    return source if isinstance(source, str) else "".join(source)


def notebook_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def toc_files() -> list[str]:
    """Every document named in _toc.yml (root and all file entries), as written there."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [str(toc["root"])]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(str(entry["file"]))
            assert "glob" not in entry, "list files explicitly; the tests do not expand globs"
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key))

    for key in ("parts", "chapters", "sections"):
        walk(toc.get(key))
    return files


def resolve(docname: str) -> Path | None:
    base = ROOT / docname
    if base.suffix in SOURCE_SUFFIXES:
        return base if base.is_file() else None
    for suffix in SOURCE_SUFFIXES:
        if base.with_suffix(suffix).is_file():
            return base.with_suffix(suffix)
    return None


def bib_keys() -> set[str]:
    text = (ROOT / "references.bib").read_text(encoding="utf-8")
    return {key for kind, key in BIB_KEY.findall(text)
            if kind.lower() not in ("comment", "string", "preamble")}


# -- the repository URL is defined once -----------------------------------------------------


def test_about_defines_repository():
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", _about.REPOSITORY_URL)
    assert _about.BRANCH


def test_config_repository_matches_about():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["repository"]["url"] == _about.REPOSITORY_URL
    assert config["repository"]["branch"] == _about.BRANCH
    assert config["repository"].get("path_to_book", "") == ""


def test_config_executes_every_notebook_and_fails_on_errors():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["execute"]["execute_notebooks"] == "force"
    assert config["execute"]["allow_errors"] is False
    assert config["only_build_toc_files"] is True
    assert "references.bib" in config["bibtex_bibfiles"]


def test_pyproject_urls_match_about():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    urls = pyproject["project"]["urls"]
    assert urls, "pyproject.toml has no [project.urls]"
    for name, url in urls.items():
        assert url.startswith(_about.REPOSITORY_URL), f"project.urls.{name} = {url}"


def test_book_markdown_install_lines_use_the_repository_url():
    """Any `dl-course-companion @ git+URL` written out in the book's prose uses the one URL."""
    pattern = re.compile(r"dl-course-companion @ git\+([^\s\"'@]+)")
    for path in MARKDOWN:
        for url in pattern.findall(path.read_text(encoding="utf-8")):
            assert url == _about.REPOSITORY_URL, f"{path.relative_to(ROOT)}: {url}"


# -- notebooks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOKS, ids=notebook_id)
def test_first_code_cell_is_the_colab_setup_cell(path):
    nb = load_notebook(path)
    code_cells = [cell for cell in nb["cells"] if cell["cell_type"] == "code"]
    assert code_cells, "a notebook without code"
    first = code_cells[0]
    assert cell_source(first) == EXPECTED_SETUP_CELL, "run `make sync-notebooks`"
    assert "remove-cell" in first.get("metadata", {}).get("tags", []), "run `make sync-notebooks`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=notebook_id)
def test_notebook_is_stored_without_outputs(path):
    nb = load_notebook(path)
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert cell.get("outputs") == [], f"cell {index} has outputs (run `make sync-notebooks`)"
        assert cell.get("execution_count") is None, f"cell {index} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=notebook_id)
def test_notebook_kernelspec_is_python3(path):
    kernelspec = load_notebook(path)["metadata"].get("kernelspec", {})
    assert kernelspec.get("name") == "python3"
    assert kernelspec.get("language", "python") == "python"


def test_sync_tool_finds_nothing_to_change():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "sync_setup_cells.py"), "--check"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_sync_tool_inserts_and_rewrites_the_setup_cell(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import sync_setup_cells as sync
    finally:
        sys.path.remove(str(ROOT / "tools"))
    assert sync.setup_cell_source(_about.REPOSITORY_URL, _about.BRANCH) == EXPECTED_SETUP_CELL

    nb = {"cells": [
        {"cell_type": "markdown", "id": "title", "metadata": {}, "source": ["# Title"]},
        {"cell_type": "code", "execution_count": 3, "id": "work", "metadata": {"tags": ["x"]},
         "outputs": [{"name": "stdout", "output_type": "stream", "text": ["1\n"]}],
         "source": ["print(1)"]},
    ], "metadata": {"kernelspec": {"name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "book" / "nb.ipynb"
    path.parent.mkdir()
    path.write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")
    tool = [sys.executable, str(ROOT / "tools" / "sync_setup_cells.py")]

    assert subprocess.run(tool + ["--check", str(path)], capture_output=True).returncode == 1
    assert subprocess.run(tool + [str(path)], capture_output=True).returncode == 0
    text = path.read_text(encoding="utf-8")
    synced = json.loads(text)
    assert text.startswith('{\n "cells": [\n  {\n')  # 1-space indent, as nbformat writes
    assert [c.get("id") for c in synced["cells"]] == ["title", "colab-setup", "work"]
    setup = synced["cells"][1]
    assert cell_source(setup) == EXPECTED_SETUP_CELL
    assert setup["metadata"]["tags"] == ["remove-cell"]
    work = synced["cells"][2]
    assert work["outputs"] == [] and work["execution_count"] is None
    assert cell_source(work) == "print(1)" and work["metadata"] == {"tags": ["x"]}
    assert synced["metadata"] == nb["metadata"]

    # An outdated setup cell is rewritten in place, not duplicated; a second run changes nothing.
    setup["source"] = ['# Colab setup\n', 'if "google.colab" in sys.modules:\n', "    pass"]
    setup["metadata"] = {}
    path.write_text(json.dumps(synced, indent=1) + "\n", encoding="utf-8")
    assert subprocess.run(tool + [str(path)], capture_output=True).returncode == 0
    resynced = json.loads(path.read_text(encoding="utf-8"))
    assert len(resynced["cells"]) == 3
    assert cell_source(resynced["cells"][1]) == EXPECTED_SETUP_CELL
    assert resynced["cells"][1]["metadata"]["tags"] == ["remove-cell"]
    assert subprocess.run(tool + ["--check", str(path)], capture_output=True).returncode == 0


# -- table of contents -----------------------------------------------------------------------


def test_every_toc_entry_exists():
    missing = [name for name in toc_files() if resolve(name) is None]
    assert not missing, f"_toc.yml names files that do not exist: {missing}"


def test_every_notebook_is_in_the_toc():
    listed = {resolve(name) for name in toc_files()}
    unlisted = [notebook_id(path) for path in NOTEBOOKS if path not in listed]
    assert not unlisted, f"notebooks missing from _toc.yml: {unlisted}"


def test_toc_has_no_duplicates():
    files = [str(resolve(name) or name) for name in toc_files()]
    assert len(files) == len(set(files))


# -- citations -------------------------------------------------------------------------------


def cited_keys() -> dict[str, set[str]]:
    """Every key cited in book/ (Markdown pages and notebook Markdown cells), by file."""
    texts: dict[str, str] = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in MARKDOWN}
    for path in NOTEBOOKS:
        texts[notebook_id(path)] = "\n".join(
            cell_source(cell) for cell in load_notebook(path)["cells"] if cell["cell_type"] == "markdown")
    cited: dict[str, set[str]] = {}
    for name, text in texts.items():
        for group in CITE_ROLE.findall(text):
            # A role may carry an explicit title: {cite:p}`see <key>`; keys are comma-separated.
            inner = re.search(r"<([^>]*)>", group)
            for key in (inner.group(1) if inner else group).split(","):
                if key.strip():
                    cited.setdefault(name, set()).add(key.strip())
    return cited


def test_cite_regex_reads_the_roles_the_book_uses():
    text = "{cite}`a` {cite:p}`b,c` and {cite:t}`d` {cite:ps}`e, f`"
    assert [g for g in CITE_ROLE.findall(text)] == ["a", "b,c", "d", "e, f"]


def test_every_cited_key_is_in_references_bib():
    keys = bib_keys()
    unknown = {name: sorted(cited - keys) for name, cited in cited_keys().items() if cited - keys}
    assert not unknown, f"keys cited but missing from references.bib: {unknown}"


def test_references_bib_has_no_duplicate_keys():
    text = (ROOT / "references.bib").read_text(encoding="utf-8")
    keys = [key for _, key in BIB_KEY.findall(text)]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)


def test_the_bibliography_is_printed_once():
    pages = [p for p in MARKDOWN if "```{bibliography}" in p.read_text(encoding="utf-8")]
    assert len(pages) == 1, pages
