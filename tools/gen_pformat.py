"""Print the Rust case vectors of `src/pyfmt.rs` tests from Python's own `repr` and `pprint.pformat`.

`repr` prints the body of `repr_matches_python` (value, Python's `repr(value)`); `pformat` prints
the body of `pformat_matches_python` (value, indent, width, `pprint.pformat(value, indent=indent,
width=width)`, dicts sorted as pprint's default `sort_dicts=True` does). One case per line; paste
the lines into the `vec![...]` and run `cargo fmt`.

Rerun (from the repository root; Python 3.11, the standard library only):

    python3 tools/gen_pformat.py repr
    python3 tools/gen_pformat.py pformat
"""

import math
import pprint
import sys

from rust_literals import rust_str


def rust_bytes(data: bytes) -> str:
    """A Rust byte-string literal for `data` (printable ASCII kept, the rest as `\\xNN`)."""
    out = []
    for b in data:
        if b == 0x5C:
            out.append("\\\\")
        elif b == 0x22:
            out.append('\\"')
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append("\\x%02x" % b)
    return 'b"' + "".join(out) + '"'


def rust_float(x: float) -> str:
    if math.isnan(x):
        return "f64::NAN"
    if math.isinf(x):
        return "f64::INFINITY" if x > 0 else "f64::NEG_INFINITY"
    return repr(x)


def rust_value(v) -> str:
    """The `PyValue` constructor the tests use for the Python value `v`."""
    if v is None:
        return "PyValue::None"
    if isinstance(v, bool):
        return "PyValue::Bool(%s)" % ("true" if v else "false")
    if isinstance(v, int):
        return "PyValue::Int(%d)" % v
    if isinstance(v, float):
        return "PyValue::Float(%s)" % rust_float(v)
    if isinstance(v, str):
        return "s(%s)" % rust_str(v)
    if isinstance(v, bytes):
        return "PyValue::Bytes(%s.to_vec())" % rust_bytes(v)
    if isinstance(v, list):
        return "PyValue::List(vec![%s])" % ", ".join(rust_value(x) for x in v)
    if isinstance(v, tuple):
        return "PyValue::Tuple(vec![%s])" % ", ".join(rust_value(x) for x in v)
    if isinstance(v, dict):
        return "d(vec![%s])" % ", ".join("(%s, %s)" % (rust_value(k), rust_value(x)) for k, x in v.items())
    raise TypeError(type(v))


REPR_CASES = [
    None,
    True,
    False,
    0,
    -17,
    2**63 - 1,
    1.0,
    0.1,
    1e-07,
    1e16,
    -0.0,
    math.nan,
    -math.inf,
    "",
    "abc",
    "it's",
    'say "hi"',
    "both ' and \"",
    "tab\there\nnew\rcr\\back",
    "\x00\x1f\x7f\x80\x9f\xa0\xad",
    "café 中文 😀",
    "zero\u200bwidth \u2028 \ufeff \ue000 \U000f0000",
    "\x85",
    b"",
    b"abc",
    b"it's",
    b'"q"',
    b"'\"",
    b"\x00\t\n\r\\\x7f\x80\xff",
    [],
    [1, 2.5, "x"],
    (),
    (1,),
    (1, 2),
    {},
    {"b": 1, "a": [1.0, 2.5]},
    {1: {"x": None}, (1, "a"): (True,)},
    [[[]], {}, ()],
]

LOREM = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et "
    "dolore magna aliqua."
)


def metric_rounds(rounds):
    return {r: dict(metrics) for r, metrics in rounds}


# (value, indent, width)
PFORMAT_CASES = [
    (
        metric_rounds(
            [
                (1, [("train_loss", "3.3792e-01")]),
                (2, [("train_loss", "2.7848e-01")]),
                (3, [("train_loss", "2.5067e-01")]),
            ]
        ),
        2,
        80,
    ),
    (
        metric_rounds(
            [
                (1, [("eval_loss", "3.5409e-01"), ("eval_acc", "8.9000e-01")]),
                (2, [("eval_loss", "2.8658e-01"), ("eval_acc", "8.9000e-01")]),
                (3, [("eval_loss", "2.5734e-01"), ("eval_acc", "8.9250e-01")]),
            ]
        ),
        2,
        80,
    ),
    ({1: {"train_loss": "2.3333e+00"}}, 2, 80),
    (
        {
            10: {"zeta": "1.0000e+00", "alpha": "2"},
            1: {"zeta": "1.0000e+00", "alpha": "2", "lst": "['1.0000e+00', '2.5000e+00']"},
            2: {"zeta": "1.0000e+00", "alpha": "2", "lst": "['1.0000e+00', '2.5000e+00', '3.0000e+00']"},
        },
        2,
        80,
    ),
    ({10: "a", 2: "b", 1.5: "c", -3: "d", 0.0: "e"}, 2, 20),
    ({"b": 1, "B": 2, "a": 3, "é": 4, "_x": 5, "aa": 6, "": 7}, 2, 30),
    ({"a": 1, 2: "b", None: 0, (1, 2): 3, 1.5: "f", b"k": 9, False: "no"}, 2, 40),
    (LOREM, 2, 80),
    ({"msg": LOREM, "n": 1}, 2, 80),
    ([LOREM, LOREM[:50]], 2, 80),
    ("first line\nsecond line that is fairly long and keeps going well past the width limit\nthird", 2, 40),
    ({"k": "a\r\nb  c\td" * 12}, 2, 40),
    ([i * 0.1 for i in range(30)], 2, 80),
    ((1,), 2, 3),
    ((("x" * 10,),), 2, 12),
    ({"t": (1, 2, 3) * 10, "l": [[1, 2], [3, 4]] * 8, "e": [], "f": {}}, 2, 80),
    (b"0123456789abcdef" * 8, 2, 40),
    ({"b": b"\x00\xff'\"" * 10}, 2, 40),
    (b"abcdef", 2, 5),
    ({"deep": {"a": {"b": {"c": {"d": [1, 2, 3, {"e": "f" * 40}]}}}}}, 2, 80),
    ({}, 2, 1),
    ([], 2, 1),
    ([[1, 2], [3, 4]], 2, 5),
    ({"x" * 30: "y" * 60}, 2, 80),
    ({3: "c", 1: "a", 2: {"z": 1, "y": [1.5, 2.5e-07, 1e16, math.nan, math.inf, -0.0]}}, 1, 30),
    ({3: "c", 1: "a", 2: {"z": 1, "y": [1.5, 2.5e-07, 1e16, True, None, "x y"]}}, 4, 20),
    ("word " * 30, 2, 80),
    ("", 2, 1),
    ("nospaceatallinthisverylongstringsoitcannotbesplitanywhereatall" + "x" * 21, 2, 40),
    ({"s": " lead and trail spaces " * 5}, 2, 40),
    ("café 中文 " * 12, 2, 30),
]


def main(argv):
    if argv[1:] == ["repr"]:
        for value in REPR_CASES:
            print("(%s, %s)," % (rust_value(value), rust_str(repr(value))))
    elif argv[1:] == ["pformat"]:
        for value, indent, width in PFORMAT_CASES:
            want = pprint.pformat(value, indent=indent, width=width)
            print("(%s, %d, %d, %s)," % (rust_value(value), indent, width, rust_str(want)))
    else:
        sys.exit("usage: python3 tools/gen_pformat.py repr|pformat")


if __name__ == "__main__":
    main(sys.argv)
