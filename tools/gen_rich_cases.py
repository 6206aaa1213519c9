"""Print random `Case` literals for `random_sample_matches_rich` in `src/cli/table.rs`, rendered by
the real Rich 13.9.4 and Typer 0.20.1 (the versions in Flower 1.27's environment).

Three kinds of case, drawn from one `random.Random(SEED)`:
- `Case::Table(columns, rows, width, color, expected)`: the `flwr ls` runs table, i.e.
  `Table(header_style="bold cyan", show_lines=True)` with `add_column(Text(header,
  justify="center"), no_wrap=..., style=...)` and cells styled like Rich markup `[style]text[/style]`;
- `Case::Kv(rows, width, color, expected)`: the `flwr ls --run-id` detail table,
  `Table(show_header=False, show_lines=False)`, a bold cyan no-wrap key column and a value column;
- `Case::Err(message, width, color, expected)`: Typer's error panel, `Panel(highlighter(message),
  border_style="red", title="Error", title_align="left")` with Typer's option highlighter and theme.
Texts are words from the CLI's vocabulary (wide characters, "…", options, `<ARG>`, `Usage: `, long
words) joined by one or two spaces or newlines; widths run from 1 to 203; colour is on for about
half the cases (standard 16-colour SGR codes, as Rich writes to a terminal).

`COUNT SEED` draws COUNT cases and prints the first `--pick` (default 5) of each kind, in the order
drawn: that is the committed sample. `--all` prints every case, to check more of them by pasting
the lines into the test locally.

Rerun (from the repository root):

    python3 -m venv /tmp/rich && /tmp/rich/bin/pip install rich==13.9.4 typer==0.20.1 \
        && /tmp/rich/bin/python tools/gen_rich_cases.py 300 99
"""

import argparse
import io
import random

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.theme import Theme
from typer import rich_utils

from rust_literals import rust_str

# The Rust `Style` variants and the Rich styles they stand for.
STYLES = {
    "Plain": "",
    "Bold": "bold",
    "Cyan": "cyan",
    "BoldCyan": "bold cyan",
    "Green": "green",
    "Red": "red",
    "Yellow": "yellow",
    "Blue": "blue",
    "BrightBlack": "bright_black",
}


def _console(width: int, color: bool) -> tuple[Console, io.StringIO]:
    """Typer's `_get_rich_console` with a fixed width, writing to a buffer (a terminal when `color`)."""
    buf = io.StringIO()
    console = Console(
        file=buf,
        width=width,
        force_terminal=color,
        color_system="standard" if color else None,
        theme=Theme(
            {
                "option": rich_utils.STYLE_OPTION,
                "switch": rich_utils.STYLE_SWITCH,
                "negative_option": rich_utils.STYLE_NEGATIVE_OPTION,
                "negative_switch": rich_utils.STYLE_NEGATIVE_SWITCH,
                "metavar": rich_utils.STYLE_METAVAR,
                "metavar_sep": rich_utils.STYLE_METAVAR_SEPARATOR,
                "usage": rich_utils.STYLE_USAGE,
            }
        ),
        highlighter=rich_utils.highlighter,
        legacy_windows=False,
        _environ={},
    )
    return console, buf


def _print(renderable, width: int, color: bool) -> str:
    console, buf = _console(width, color)
    console.print(renderable)
    return buf.getvalue()


def styled(text: str, style: str) -> Text:
    """A cell as Rich markup `[style]text[/style]` makes it (the style covers the text only)."""
    t = Text(text)
    if STYLES[style]:
        t.stylize(STYLES[style])
    return t


def render_table(columns, rows, width: int, color: bool) -> str:
    """columns: [(header, no_wrap, style)]; rows: [[(text, style)]]."""
    table = Table(header_style="bold cyan", show_lines=True)
    for header, no_wrap, style in columns:
        table.add_column(Text(header, justify="center"), no_wrap=no_wrap, style=STYLES[style])
    for row in rows:
        table.add_row(*(styled(t, s) for t, s in row))
    return _print(table, width, color)


def render_key_values(rows, width: int, color: bool) -> str:
    """rows: [(key, value, value_style)]."""
    table = Table(show_header=False, show_lines=False)
    table.add_column("Field", style="bold cyan", no_wrap=True)
    table.add_column("Value")
    for key, value, style in rows:
        table.add_row(Text(key), styled(value, style))
    return _print(table, width, color)


def render_error_box(message: str, width: int, color: bool) -> str:
    panel = Panel(
        rich_utils.highlighter(message),
        border_style=rich_utils.STYLE_ERRORS_PANEL_BORDER,
        title=rich_utils.ERRORS_PANEL_TITLE,
        title_align=rich_utils.ALIGN_ERRORS_PANEL,
    )
    return _print(panel, width, color)


def rust_bool(b: bool) -> str:
    return "true" if b else "false"


def rust_case(case) -> str:
    kind = case[0]
    if kind == "Table":
        _, columns, rows, width, color = case
        cols = ", ".join(f"({rust_str(h)}, {rust_bool(nw)}, Style::{s})" for h, nw, s in columns)
        body = ", ".join("vec![" + ", ".join(f"({rust_str(t)}, Style::{s})" for t, s in row) + "]" for row in rows)
        want = render_table(columns, rows, width, color)
        return f"Case::Table(vec![{cols}], vec![{body}], {width}, {rust_bool(color)}, {rust_str(want)}),"
    if kind == "Kv":
        _, rows, width, color = case
        body = ", ".join(f"({rust_str(k)}, {rust_str(v)}, Style::{s})" for k, v, s in rows)
        want = render_key_values(rows, width, color)
        return f"Case::Kv(vec![{body}], {width}, {rust_bool(color)}, {rust_str(want)}),"
    _, message, width, color = case
    want = render_error_box(message, width, color)
    return f"Case::Err({rust_str(message)}, {width}, {rust_bool(color)}, {rust_str(want)}),"


WORDS = [
    "a",
    "ok",
    "run",
    "it's",
    "status",
    "changed",
    "héllo",
    "中文字符",
    "…",
    "@",
    "N/A",
    "5s",
    "1.2 MB",
    "-h",
    "--limit",
    "<ARG>",
    "Usage:",
    "02:08:07Z",
    "2026-11-28",
    "@none/default",
    "finished:completed",
    "11552096691401131052",
    "@anchors/fedlogreg==1.0.0",
    "x" * 30,
]
SEPARATORS = [" ", " ", " ", "  ", "\n"]
WIDTHS = [1, 2, 3, 4, 5, 8, 10, 12, 16, 20, 23, 30, 40, 42, 45, 46, 51, 60, 80, 100, 119, 120, 160, 203]
STYLE_NAMES = list(STYLES)


def random_text(rng: random.Random, max_words: int) -> str:
    n = rng.randint(0, max_words)
    if n == 0:
        return ""
    parts = [rng.choice(WORDS)]
    for _ in range(n - 1):
        parts += [rng.choice(SEPARATORS), rng.choice(WORDS)]
    text = "".join(parts)
    edge = rng.random()
    if edge < 0.1:
        text = " " + text
    elif edge < 0.2:
        text += " "
    return text


def random_case(rng: random.Random):
    kind = rng.choice(["Table", "Kv", "Err"])
    width = rng.choice(WIDTHS)
    color = rng.random() < 0.5
    if kind == "Table":
        ncols = rng.randint(1, 7)
        columns = [(random_text(rng, 4), rng.random() < 0.3, rng.choice(STYLE_NAMES)) for _ in range(ncols)]
        rows = [
            [(random_text(rng, 5), rng.choice(STYLE_NAMES)) for _ in range(ncols)] for _ in range(rng.randint(0, 3))
        ]
        return ("Table", columns, rows, width, color)
    if kind == "Kv":
        rows = [(random_text(rng, 4), random_text(rng, 5), rng.choice(STYLE_NAMES)) for _ in range(rng.randint(0, 4))]
        return ("Kv", rows, width, color)
    return ("Err", random_text(rng, 14), width, color)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("count", type=int)
    parser.add_argument("seed", type=int)
    parser.add_argument("--pick", type=int, default=5, help="cases of each kind to print (default 5)")
    parser.add_argument("--all", action="store_true", help="print every case")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    cases = [random_case(rng) for _ in range(args.count)]
    taken = {"Table": 0, "Kv": 0, "Err": 0}
    for case in cases:
        if args.all or taken[case[0]] < args.pick:
            taken[case[0]] += 1
            print("            " + rust_case(case))


if __name__ == "__main__":
    main()
