"""`pip install .` (and so `pip install git+URL`) gives an importable `companion` with every subpackage."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_an_importable_companion(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("dl_course_companion-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    source_packages = sorted(p.parent.relative_to(ROOT).as_posix()
                             for p in (ROOT / "companion").rglob("__init__.py"))
    for package in source_packages:
        assert f"{package}/__init__.py" in names, f"{package} is missing from the wheel"
    assert not any(name.startswith(("tests/", "book/", "tools/")) for name in names)

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    code = "import companion, companion.engine, companion.data; print(companion.__file__, companion.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    location, version = out.stdout.split()
    assert location.startswith(str(target)) and version == __import__("companion").__version__
