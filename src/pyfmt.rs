//! Python-compatible text formatting (interim; replaced by the full module).
//!
//! Flower prints numbers and dicts with Python's `repr`, `%`-formats and
//! `pprint`; our logs must match byte for byte. This module does no I/O.

/// Python's `repr(float)`.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let scientific = format!("{x:e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("scientific form");
    let exponent: i32 = exponent.parse().expect("exponent");
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if negative { "-" } else { "" };
    if !(-4..16).contains(&exponent) {
        let mut out = format!("{sign}{}", &digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(&format!(
            "e{}{:02}",
            if exponent < 0 { '-' } else { '+' },
            exponent.abs()
        ));
        return out;
    }
    if exponent < 0 {
        format!("{sign}0.{}{}", "0".repeat((-exponent - 1) as usize), digits)
    } else {
        let point = exponent as usize + 1;
        if digits.len() <= point {
            format!("{sign}{}{}.0", digits, "0".repeat(point - digits.len()))
        } else {
            format!("{sign}{}.{}", &digits[..point], &digits[point..])
        }
    }
}

/// C's `%.{precision}e`.
pub fn format_e(x: f64, precision: usize) -> String {
    if !x.is_finite() {
        return float_repr(x);
    }
    let formatted = format!("{x:.precision$e}");
    let (mantissa, exponent) = formatted.split_once('e').expect("scientific form");
    let exponent: i32 = exponent.parse().expect("exponent");
    format!(
        "{mantissa}e{}{:02}",
        if exponent < 0 { '-' } else { '+' },
        exponent.abs()
    )
}

/// C's `%.{precision}f`.
pub fn format_f(x: f64, precision: usize) -> String {
    if !x.is_finite() {
        return float_repr(x);
    }
    format!("{x:.precision$}")
}

/// C's `%.{precision}g`.
pub fn format_g(x: f64, precision: usize) -> String {
    if !x.is_finite() {
        return float_repr(x);
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let precision = precision.max(1);
    let scientific = format_e(x, precision - 1);
    let exponent: i32 = scientific.split_once('e').expect("e").1.parse().expect("exponent");
    let strip = |s: String| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if exponent < -4 || exponent >= precision as i32 {
        let (mantissa, exp) = scientific.split_once('e').expect("e");
        format!("{}e{exp}", strip(mantissa.to_string()))
    } else {
        strip(format_f(x, (precision as i32 - 1 - exponent) as usize))
    }
}

/// A Python value, for `repr` and `pformat`.
#[derive(Clone, Debug, PartialEq)]
pub enum PyValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<PyValue>),
    Tuple(Vec<PyValue>),
    Dict(Vec<(PyValue, PyValue)>),
}

fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::new();
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

impl PyValue {
    /// Python's `repr`.
    pub fn repr(&self) -> String {
        match self {
            PyValue::None => "None".into(),
            PyValue::Bool(true) => "True".into(),
            PyValue::Bool(false) => "False".into(),
            PyValue::Int(i) => i.to_string(),
            PyValue::Float(f) => float_repr(*f),
            PyValue::Str(s) => str_repr(s),
            PyValue::Bytes(b) => format!("b{}", str_repr(&String::from_utf8_lossy(b))),
            PyValue::List(items) => format!("[{}]", items.iter().map(PyValue::repr).collect::<Vec<_>>().join(", ")),
            PyValue::Tuple(items) if items.len() == 1 => format!("({},)", items[0].repr()),
            PyValue::Tuple(items) => format!("({})", items.iter().map(PyValue::repr).collect::<Vec<_>>().join(", ")),
            PyValue::Dict(items) => format!(
                "{{{}}}",
                items
                    .iter()
                    .map(|(k, v)| format!("{}: {}", k.repr(), v.repr()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

impl std::fmt::Display for PyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PyValue::Str(s) => f.write_str(s),
            other => f.write_str(&other.repr()),
        }
    }
}

fn sort_key(value: &PyValue) -> (u8, f64, String) {
    match value {
        PyValue::Int(i) => (0, *i as f64, String::new()),
        PyValue::Float(f) => (0, *f, String::new()),
        PyValue::Str(s) => (1, 0.0, s.clone()),
        other => (2, 0.0, other.repr()),
    }
}

fn sorted(items: &[(PyValue, PyValue)]) -> Vec<(PyValue, PyValue)> {
    let mut items = items.to_vec();
    items.sort_by(|a, b| {
        let (ka, kb) = (sort_key(&a.0), sort_key(&b.0));
        ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1)).then(ka.2.cmp(&kb.2))
    });
    items
}

fn sorted_repr(value: &PyValue) -> String {
    match value {
        PyValue::Dict(items) => format!(
            "{{{}}}",
            sorted(items)
                .iter()
                .map(|(k, v)| format!("{}: {}", k.repr(), sorted_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.repr(),
    }
}

fn format_at(value: &PyValue, indent: usize, allowance: usize, out: &mut String) {
    const WIDTH: usize = 80;
    let flat = sorted_repr(value);
    if flat.len() + indent + allowance <= WIDTH {
        out.push_str(&flat);
        return;
    }
    match value {
        PyValue::Dict(items) if !items.is_empty() => {
            out.push_str("{ ");
            let items = sorted(items);
            let last = items.len() - 1;
            for (index, (key, item)) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(",\n");
                    out.push_str(&" ".repeat(indent + 2));
                }
                let key = key.repr();
                out.push_str(&key);
                out.push_str(": ");
                let closing = if index == last { allowance + 1 } else { 1 };
                format_at(item, indent + 2 + key.len() + 2, closing, out);
            }
            out.push('}');
        }
        _ => out.push_str(&flat),
    }
}

/// Python's `pprint.pformat(value, indent=2, width=80)` (sorted dict keys).
pub fn pformat(value: &PyValue) -> String {
    let mut out = String::new();
    format_at(value, 0, 0, &mut out);
    out
}
