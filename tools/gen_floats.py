"""Recompute Python's float formatting in `tests/data/pyfmt_floats.txt` (read by
`floats_match_python_fixture` in `src/pyfmt.rs`).

Each line of that file is `repr(x) pe '%.{pe}e'%x pf '%.{pf}f'%x pg '%.{pg}g'%x '%g'%x`. The inputs
are x (the value of `repr(x)`) and the precisions pe, pf and pg; pf and its output are `-` where
`%f` is skipped (most huge x). This script keeps the `#` header and those inputs and recomputes
every Python output column with Python's own `repr` and `%` formatting, so the expected values can
always be made again. The inputs themselves (about 2000 doubles of random magnitudes and bit
patterns plus hand-picked edge cases, drawn with seed 20240611 by an earlier script that was not
kept) are data here: this script does not draw them.

Rerun (from the repository root; Python 3.11, the standard library only):

    python3 tools/gen_floats.py            # rewrite tests/data/pyfmt_floats.txt
    python3 tools/gen_floats.py --check    # compare only; exit 1 on a difference
"""

import argparse
import sys
from pathlib import Path

PATH = Path(__file__).resolve().parents[1] / "tests/data/pyfmt_floats.txt"


def line_for(x: float, pe: int, pf, pg: int) -> str:
    f_cols = ["-", "-"] if pf is None else [str(pf), "%.*f" % (pf, x)]
    return " ".join([repr(x), str(pe), "%.*e" % (pe, x), *f_cols, str(pg), "%.*g" % (pg, x), "%g" % x])


def regenerate(text: str) -> str:
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            out.append(line)
            continue
        cols = line.split(" ")
        x = float(cols[0])
        if repr(x) != cols[0]:
            sys.exit(f"input {cols[0]!r} is not Python's repr of a double")
        pf = None if cols[3] == "-" else int(cols[3])
        out.append(line_for(x, int(cols[1]), pf, int(cols[5])))
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed file, write nothing")
    args = parser.parse_args()
    committed = PATH.read_text()
    text = regenerate(committed)
    if args.check:
        same = text == committed
        print(f"{PATH.name}: {'identical' if same else 'DIFFERS'}")
        sys.exit(0 if same else 1)
    PATH.write_text(text)
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
