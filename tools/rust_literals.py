"""Rust literals for the expected values the generators under tools/ print
(imported by gen_pformat.py and gen_rich_cases.py; nothing to run)."""


def rust_str(text: str) -> str:
    """A Rust string literal for `text`, as Rust's `{:?}` writes it: printable
    characters kept, the usual escapes, others as `\\u{..}`."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append("\\u{%x}" % ord(ch))
    return '"' + "".join(out) + '"'
