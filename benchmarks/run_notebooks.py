"""Execute every notebook of the book in the quick profile and record its time and headline metric.

Usage: ``python benchmarks/run_notebooks.py [NOTEBOOK ...]`` (default: every notebook in _toc.yml).
Writes ``benchmarks/results/notebooks.csv`` (shown in the book's appendix) and prints the table.
Each notebook's last cell is tagged ``headline`` and evaluates to ``{"metric": ..., "value": ...}``; other
numeric keys in that dict (e.g. ``"coco_map"``) are recorded in the ``also`` column and can have targets too.
Targets below are checked and reported; the exit status is 1 when one is missed.
"""

from __future__ import annotations

import argparse
import ast
import csv
import datetime
import os
import platform
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "notebooks.csv"
# Targets from the issues: notebook -> (minimum headline value, maximum seconds for the notebook).
TARGETS = {
    "book/01_foundations/02_mlp_fashion_mnist.ipynb": (0.88, 30.0),
    "book/02_cnn/02_lenet.ipynb": (0.90, 45.0),
    # issue 4: every architecture's quick-profile accuracy on the 10k test set is at least 0.85
    **{f"book/02_cnn/{name}.ipynb": (0.85, 60.0)
       for name in ("03_alexnet", "04_vgg", "05_inception", "06_resnet", "07_densenet", "08_mobilenet",
                    "09_training_recipe")},
    # issue 5: the small SSD and YOLO-style detectors reach mAP@.5 >= 0.90 and COCO mAP >= 0.60
    "book/03_detection/06_ssd.ipynb": (0.90, 60.0, {"coco_map": 0.60}),
    "book/03_detection/07_yolo.ipynb": (0.90, 60.0, {"coco_map": 0.60}),
    # issue 6: the quick-profile U-Net reaches mIoU >= 0.85 on the test split
    "book/04_segmentation/03_unet.ipynb": (0.85, 60.0),
}
PER_NOTEBOOK_BUDGET_S = 60.0  # every quick-profile notebook should finish in about a minute


def machine() -> str:
    model = platform.processor() or "cpu"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        if match:
            model = match.group(1).strip()
    return f"{os.cpu_count()} cores, {model}"


def toc_notebooks() -> list[Path]:
    entries = re.findall(r"file:\s*(\S+)", (ROOT / "_toc.yml").read_text())
    return [ROOT / f"{entry}.ipynb" for entry in entries if (ROOT / f"{entry}.ipynb").exists()]


def run(path: Path) -> tuple[float, str, float | None, dict[str, float]]:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    for cell in notebook.cells:
        if "headline" in cell.get("metadata", {}).get("tags", []):
            for output in cell.get("outputs", []):
                text = output.get("data", {}).get("text/plain")
                if text:
                    headline = ast.literal_eval(text)
                    extras = {key: float(value) for key, value in headline.items() if key not in ("metric", "value")}
                    return seconds, str(headline["metric"]), float(headline["value"]), extras
    return seconds, "(no headline cell)", None, {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args()
    os.environ["COMPANION_PROFILE"] = "quick"
    os.environ["COMPANION_PROGRESS"] = "0"
    notebooks = [p.resolve() for p in args.notebooks] or toc_notebooks()
    rows, missed = [], []
    today = datetime.date.today().isoformat()
    for path in notebooks:
        name = str(path.relative_to(ROOT))
        seconds, metric, value, extras = run(path)
        also = "; ".join(f"{key} {number:.4g}" for key, number in extras.items())
        rows.append({"notebook": name, "seconds": f"{seconds:.1f}", "metric": metric,
                     "value": "" if value is None else f"{value:.4g}", "also": also, "machine": machine(),
                     "date": today})
        minimum, maximum, *rest = TARGETS.get(name, (None, PER_NOTEBOOK_BUDGET_S))
        extra_minimums = rest[0] if rest else {}
        verdict = "ok"
        if (seconds > maximum or (minimum is not None and (value is None or value < minimum))
                or any(extras.get(key, float("-inf")) < bound for key, bound in extra_minimums.items())):
            wanted = ", ".join([f"value >= {minimum}"] + [f"{k} >= {b}" for k, b in extra_minimums.items()])
            verdict = f"MISSED (target: {wanted}, seconds <= {maximum})"
            missed.append(name)
        print(f"{name:<55} {seconds:6.1f} s  {metric}: {value}  {also}  {verdict}", flush=True)
    previous = {}
    if RESULTS.exists() and args.notebooks:
        with RESULTS.open() as handle:
            previous = {row["notebook"]: row for row in csv.DictReader(handle)}
    previous.update({row["notebook"]: row for row in rows})
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["notebook", "seconds", "metric", "value", "also", "machine", "date"],
                                restval="")
        writer.writeheader()
        writer.writerows(sorted(previous.values(), key=lambda row: row["notebook"]))
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
