import subprocess
import sys


def test_importing_companion_is_cheap_and_offline():
    code = "import sys, companion; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_companion_never_imports_d2l():
    from pathlib import Path

    import companion

    root = Path(companion.__file__).parent
    offenders = [str(p) for p in root.rglob("*.py")
                 if any(line.strip().startswith(("import d2l", "from d2l")) for line in p.read_text().splitlines())]
    assert offenders == []
