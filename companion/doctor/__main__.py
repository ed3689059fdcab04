"""Print the doctor's report: ``python -m companion.doctor``. Exits 1 if a model smoke test failed."""

import sys

from companion.doctor import report


def main() -> int:
    rows = report()
    section = None
    for current, key, value in rows:
        if current != section:
            print(f"\n[{current}]")
            section = current
        print(f"  {key:<22} {value}")
    failed = [key for current, key, value in rows if current == "models" and value.startswith("FAILED")]
    print(f"\n{len(failed)} model smoke test(s) failed" if failed else "\nall model smoke tests passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
