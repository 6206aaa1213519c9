//! The TOML writer of FABs: `tomli_w.dumps` (tomli-w 1.2, default options),
//! which Flower's `flwr build` uses to re-serialise `pyproject.toml` into the
//! FAB.
//!
//! It is written by hand, not with the `toml` crate's serialiser, because
//! the FAB's `pyproject.toml` must be byte-identical to Flower's: section
//! order and nesting, one array item per line, short inline tables, and
//! Python's `str()` of floats and dates are `tomli_w`'s choices, not
//! `toml`'s. It only writes; parsing is the `toml` crate's (through
//! `crate::app`), and it never decides which keys are kept (the builder
//! drops `[tool.flwr.federations]`).

/// Python's `repr` of a float, as `tomli_w` writes floats.
fn py_float(x: f64) -> String {
    crate::pyfmt::float_repr(x)
}

/// Python's `str()` of the `date`/`time`/`datetime` tomli returns.
fn py_datetime(dt: &toml::value::Datetime) -> String {
    let time = |t: &toml::value::Time| {
        let micros = t.nanosecond.unwrap_or(0) / 1000;
        let mut s = format!("{:02}:{:02}:{:02}", t.hour, t.minute, t.second.unwrap_or(0));
        if micros != 0 {
            s.push_str(&format!(".{micros:06}"));
        }
        s
    };
    let mut out = String::new();
    if let Some(d) = &dt.date {
        out.push_str(&format!("{:04}-{:02}-{:02}", d.year, d.month, d.day));
    }
    if let Some(t) = &dt.time {
        if dt.date.is_some() {
            out.push(' ');
        }
        out.push_str(&time(t));
    }
    match dt.offset {
        Some(toml::value::Offset::Z) => out.push_str("+00:00"),
        Some(toml::value::Offset::Custom { minutes }) => {
            let sign = if minutes < 0 { '-' } else { '+' };
            let m = minutes.unsigned_abs();
            out.push_str(&format!("{sign}{:02}:{:02}", m / 60, m % 60));
        }
        None => {}
    }
    out
}

const INDENT: &str = "    ";

fn format_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\u{08}' => out.push_str("\\b"),
            '\n' => out.push_str("\\n"),
            '\u{0c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push('\t'),
            c if (c as u32) < 32 || c as u32 == 127 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn format_key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        k.to_string()
    } else {
        format_string(k)
    }
}

fn format_literal(v: &toml::Value, nest: usize) -> String {
    match v {
        toml::Value::Boolean(b) => if *b { "true" } else { "false" }.into(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => py_float(*f),
        toml::Value::Datetime(d) => py_datetime(d),
        toml::Value::String(s) => format_string(s),
        toml::Value::Array(a) => {
            if a.is_empty() {
                return "[]".into();
            }
            let items: Vec<String> = a
                .iter()
                .map(|item| format!("{}{}", INDENT.repeat(nest + 1), format_literal(item, nest + 1)))
                .collect();
            format!("[\n{},\n{}]", items.join(",\n"), INDENT.repeat(nest))
        }
        toml::Value::Table(t) => format_inline_table(t),
    }
}

fn format_inline_table(t: &toml::Table) -> String {
    if t.is_empty() {
        return "{}".into();
    }
    let items: Vec<String> = t
        .iter()
        .map(|(k, v)| format!("{} = {}", format_key(k), format_literal(v, 0)))
        .collect();
    format!("{{ {} }}", items.join(", "))
}

fn is_suitable_inline_table(t: &toml::Table) -> bool {
    let rendered = format!("{INDENT}{},", format_inline_table(t));
    rendered.chars().count() <= 100 && !rendered.contains('\n')
}

fn gen_table(table: &toml::Table, name: &str, inside_aot: bool, out: &mut String) {
    let mut literals = Vec::new();
    let mut tables: Vec<(&str, &toml::Table, bool)> = Vec::new();
    for (k, v) in table {
        match v {
            toml::Value::Table(t) => tables.push((k, t, false)),
            toml::Value::Array(a)
                if !a.is_empty()
                    && a.iter().all(toml::Value::is_table)
                    && !a.iter().all(|t| t.as_table().is_some_and(is_suitable_inline_table)) =>
            {
                tables.extend(a.iter().filter_map(|t| t.as_table()).map(|t| (k.as_str(), t, true)));
            }
            _ => literals.push((k, v)),
        }
    }
    let mut yielded = false;
    if inside_aot || (!name.is_empty() && (!literals.is_empty() || tables.is_empty())) {
        yielded = true;
        if inside_aot {
            out.push_str(&format!("[[{name}]]\n"));
        } else {
            out.push_str(&format!("[{name}]\n"));
        }
    }
    if !literals.is_empty() {
        yielded = true;
        for (k, v) in literals {
            out.push_str(&format!("{} = {}\n", format_key(k), format_literal(v, 0)));
        }
    }
    for (k, t, in_aot) in tables {
        if yielded {
            out.push('\n');
        } else {
            yielded = true;
        }
        let key = format_key(k);
        let display = if name.is_empty() { key } else { format!("{name}.{key}") };
        gen_table(t, &display, in_aot, out);
    }
}

/// `tomli_w.dumps(document)` (tomli-w 1.2, default options) for a parsed
/// TOML document: tables as `[a.b]` sections, arrays one item per line,
/// arrays of short tables inline, Python's `str()` for numbers and dates.
pub fn tomli_w_dumps(document: &toml::Table) -> String {
    let mut out = String::new();
    gen_table(document, "", false, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_repr() {
        let cases = [
            (0.1, "0.1"),
            (1.0, "1.0"),
            (-2.5, "-2.5"),
            (1e-5, "1e-05"),
            (1e-4, "0.0001"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (0.3, "0.3"),
            (1e300, "1e+300"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (5e-324, "5e-324"),
            (12345.678, "12345.678"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (1359817418054565.2, "1359817418054565.2"),
            (791661079318700.2, "791661079318700.2"),
        ];
        for (x, want) in cases {
            assert_eq!(py_float(x), want, "{x:e}");
        }
    }

    #[test]
    fn tomli_w_layout() {
        let doc: toml::Table = r#"
top = 1
[a.b]
x = [1, [2, 3], { k = "v" }]
[a]
y = "q\"\u0001"
[c]
[[d]]
n = 1
[[d]]
n = 2
[e]
long = [{ s = "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890" }]
"k.e y" = { inner = { z = 1979-05-27T07:32:00-07:00 } }
"#
        .parse()
        .unwrap();
        let want = r#"top = 1
d = [
    { n = 1 },
    { n = 2 },
]

[a]
y = "q\"\u0001"

[a.b]
x = [
    1,
    [
        2,
        3,
    ],
    { k = "v" },
]

[c]

[[e.long]]
s = "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890"

[e."k.e y".inner]
z = 1979-05-27 07:32:00-07:00
"#;
        assert_eq!(tomli_w_dumps(&doc), want);
    }
}
