"""Print the expected strings of the fixed tests in `src/cli/table.rs` (`runs_*`, `detail_*`, `err_*`,
`wide_characters_use_display_width`), rendered by the real Rich 13.9.4 and Typer 0.20.1 (Flower
1.27's environment) from the table definitions of `flwr/cli/ls.py` and Typer's error panel (the
rendering calls are those of `tools/gen_rich_cases.py`).

Without options it prints each test's `let want = ...;` in the form the test uses. `--check` reads
`src/cli/table.rs` instead and compares, byte for byte, every expected string of those tests and
every case of `random_sample_matches_rich` with what Rich renders now; it exits 1 on a difference.

Rerun (from the repository root):

    python3 -m venv /tmp/rich && /tmp/rich/bin/pip install rich==13.9.4 typer==0.20.1 \
        && /tmp/rich/bin/python tools/gen_table_tests.py --check
"""

import argparse
import ast
import re
import sys
from pathlib import Path

from gen_rich_cases import render_error_box, render_key_values, render_table, rust_str

ROOT = Path(__file__).resolve().parents[1]

RUNS = [
    ("11552096691401131052", "@none/default", "@anchors/fedlogreg==1.0.0", "finished:completed", "Green", "5s",
     "2026-11-28 02:08:07Z"),
    ("4328516879096858863", "@none/default", "@anchors/fedlogreg==1.0.0", "finished:completed", "Green", "6s",
     "2026-11-28 02:07:59Z"),
    ("77", "@none/default", "@anchors/fedlogreg==1.0.0", "running", "Blue", "1m 3s", "2026-11-28 02:09:00Z"),
]

# flwr/cli/ls.py `_to_table`: (header, no_wrap, style)
RUNS_COLUMNS = [
    ("Run ID", True, "Plain"),
    ("Federation", False, "Plain"),
    ("App", False, "Plain"),
    ("Status", False, "Plain"),
    ("Elapsed", False, "Blue"),
    ("Status Changed @", False, "Plain"),
]

DETAIL = [
    ("Run ID", "11552096691401131052", "Bold"),
    ("Federation", "@none/default", "Plain"),
    ("App", "@anchors/fedlogreg==1.0.0", "Plain"),
    ("FAB Hash", "98b366ef...51b26366", "Plain"),
    ("Status", "finished:completed", "Green"),
    ("Elapsed", "5s", "Blue"),
    ("Pending At", "2026-11-28 02:08:01Z", "Plain"),
    ("Starting At", "2026-11-28 02:08:02Z", "Plain"),
    ("Running At", "2026-11-28 02:08:02Z", "Plain"),
    ("Finished At", "2026-11-28 02:08:07Z", "Plain"),
    ("Network traffic (inbound)", "1.2 MB", "Blue"),
    ("Network traffic (outbound)", "3.4 kB", "Blue"),
    ("Network Traffic (total)", "1.2 MB", "Blue"),
]

ERR_60_MSG = "The options '--run-id' and '--limit' cannot be used together. This message is long enough to wrap."


def runs(n):
    return [
        [(r[0], "Bold"), (r[1], "Plain"), (r[2], "Plain"), (r[3], r[4]), (r[5], "Plain"), (r[6], "Plain")]
        for r in RUNS[:n]
    ]


def table(n, width, color=False):
    return render_table(RUNS_COLUMNS, runs(n), width, color)


# (test function, variable, expected string)
def fixed_cases():
    wide = [("名前", False, "Plain"), ("v", False, "Plain")]
    wide_rows = [[("中文字符中文", "Plain"), ("x", "Plain")]]
    return [
        ("wide_characters_use_display_width", "want_13", render_table(wide, wide_rows, 13, False)),
        ("wide_characters_use_display_width", "want_12", render_table(wide, wide_rows, 12, False)),
        ("runs_120", "want", table(2, 120)),
        ("runs_80", "want", table(3, 80)),
        ("runs_200", "want", table(3, 200)),
        ("runs_40", "want", table(1, 40)),
        ("runs_10", "want", table(1, 10)),
        ("runs_empty", "want", table(0, 120)),
        ("detail_120", "want", render_key_values(DETAIL, 120, False)),
        ("detail_40", "want", render_key_values(DETAIL, 40, False)),
        ("detail_20", "want", render_key_values(DETAIL[:3], 20, False)),
        ("err_120", "want", render_error_box("Run ID not found.", 120, False)),
        ("err_60", "want", render_error_box(ERR_60_MSG, 60, False)),
        (
            "err_multi",
            "want",
            render_error_box(
                "Permission denied.\nAccount 'alice' may not list runs of federation\n\n@none/default", 50, False
            ),
        ),
        (
            "err_fold",
            "want",
            render_error_box("Unknown-key:aVeryLongIdentifierWithoutAnySpacesThatMustBeFolded", 30, False),
        ),
        ("err_5", "want", render_error_box("x", 5, False)),
        ("runs_120_color", "want", table(2, 120, True)),
        ("runs_80_color", "want", table(3, 80, True)),
        ("detail_120_color", "want", render_key_values(DETAIL, 120, True)),
        ("err_60_color", "want", render_error_box(ERR_60_MSG, 60, True)),
    ]


def rust_want(var, text):
    """`let var = ...;` as the tests write it: a `"\\` block for plain text, escapes otherwise."""
    if "\x1b" not in text and '"' not in text and "\\" not in text:
        return f'let {var} = "\\\n{text}";'
    return f"let {var} = {rust_str(text)};"


def parse_rust_str(src, i):
    """The value of the Rust string literal starting at src[i] == '"', and the index after it."""
    assert src[i] == '"', src[i : i + 20]
    out = []
    i += 1
    simple = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}
    while src[i] != '"':
        if src[i] != "\\":
            out.append(src[i])
            i += 1
            continue
        e = src[i + 1]
        if e == "\n":
            i += 2
            while src[i] in " \t\n\r":
                i += 1
        elif e == "x":
            out.append(chr(int(src[i + 2 : i + 4], 16)))
            i += 4
        elif e == "u":
            end = src.index("}", i)
            out.append(chr(int(src[i + 3 : end], 16)))
            i = end + 1
        else:
            out.append(simple[e])
            i += 2
    return "".join(out), i + 1


def fn_body(src, name):
    start = src.index(f"fn {name}()")
    nxt = src.find("\n    #[test]", start)
    return src[start : nxt if nxt != -1 else len(src)]


def committed_random_cases(src):
    """The cases of `random_sample_matches_rich` as the tuples `gen_rich_cases.random_case` makes."""
    body = fn_body(src, "random_sample_matches_rich")
    body = body[body.index("vec![") + len("vec![") : body.index("\n        ];")]
    cases = []
    for line in body.strip().split("\n"):
        line = line.strip().rstrip(",")
        # Rust to Python: string escapes, vec!, Style::X, booleans.
        out, i = [], 0
        while i < len(line):
            if line[i] == '"':
                value, i = parse_rust_str(line, i)
                out.append(repr(value))
            else:
                out.append(line[i])
                i += 1
        py = "".join(out)
        py = re.sub(r"\bvec!\[", "[", py)
        py = re.sub(r"\bStyle::(\w+)", r"'\1'", py)
        py = re.sub(r"\btrue\b", "True", py).replace("false", "False")
        m = re.match(r"Case::(\w+)\((.*)\)$", py)
        args = ast.literal_eval("(" + m.group(2) + ",)")
        cases.append((m.group(1),) + args)
    return cases


def check():
    src = (ROOT / "src/cli/table.rs").read_text()
    bad = 0
    for name, var, want in fixed_cases():
        body = fn_body(src, name)
        got, _ = parse_rust_str(body, body.index(f"let {var} = ") + len(f"let {var} = "))
        ok = got == want
        bad += not ok
        print(f"{name} {var}: {'identical' if ok else 'DIFFERS'}")
    for i, case in enumerate(committed_random_cases(src)):
        kind, want = case[0], case[-1]
        args = case[1:-1]
        render = {"Table": render_table, "Kv": render_key_values, "Err": render_error_box}[kind]
        ok = render(*args) == want
        bad += not ok
        print(f"random_sample_matches_rich case {i} ({kind}): {'identical' if ok else 'DIFFERS'}")
    print(f"{bad} differ")
    return bad


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with src/cli/table.rs instead of printing")
    args = parser.parse_args()
    if args.check:
        sys.exit(1 if check() else 0)
    for name, var, want in fixed_cases():
        print(f"// {name}\n{rust_want(var, want)}\n")


if __name__ == "__main__":
    main()
