//! Python-compatible text formatting, byte for byte.
//!
//! This module owns the pieces of CPython's text output that Flower's logs expose:
//! `repr(float)` ([`float_repr`]), printf-style `%.Ne` / `%.Nf` / `%.Ng` ([`format_e`], [`format_f`],
//! [`format_g`]), `repr()` / `str()` of plain Python values ([`PyValue`]), and
//! `pprint.pformat(value, indent=2, width=80)` with sorted dicts ([`pformat`], [`pformat_with`]).
//!
//! Floats are converted through an exact decimal expansion of the binary value and rounded half-to-even
//! on exact ties, which is what CPython (and glibc's printf) do; Rust's own `{:.N}` is not relied upon.
//!
//! It never does I/O, never touches global state, never depends on anything beyond `std`, and knows
//! nothing about Flower itself: callers build a [`PyValue`] and get a `String` back.
//!
//! Known differences from CPython: `repr` of a string treats unassigned code points (Unicode category
//! `Cn`) as printable, where CPython escapes them; when dict keys cannot be ordered by Python's `<`
//! and share a type (e.g. two tuples holding incomparable items), CPython falls back to object ids,
//! which we replace with "keep insertion order"; `pformat_with(_, _, 0)` formats where Python raises.
//!
//! The unit tests read the fixture `tests/data/pyfmt_floats.txt` (path relative to the crate root,
//! `include_str!("../tests/data/pyfmt_floats.txt")` from this file).

use std::fmt;

// ---------------------------------------------------------------------------------------------------
// Exact decimal expansion of a double
// ---------------------------------------------------------------------------------------------------

/// A non-negative decimal number `0.d1 d2 ... dn × 10^point`; `digits` has no leading or trailing
/// zeros, and is empty for zero.
struct Decimal {
    digits: Vec<u8>,
    point: i64,
}

const LIMB: u64 = 1_000_000_000;

/// Multiplies a little-endian base-10^9 number by `m` (`m < 2^32`).
fn mul_small(limbs: &mut Vec<u64>, m: u64) {
    let mut carry = 0u64;
    for limb in limbs.iter_mut() {
        let v = *limb * m + carry;
        *limb = v % LIMB;
        carry = v / LIMB;
    }
    while carry > 0 {
        limbs.push(carry % LIMB);
        carry /= LIMB;
    }
}

impl Decimal {
    /// The exact value of `|x|` (`x` finite).
    fn exact(x: f64) -> Decimal {
        let bits = x.to_bits();
        let biased = ((bits >> 52) & 0x7ff) as i64;
        let fraction = bits & ((1u64 << 52) - 1);
        let (mant, exp) = if biased == 0 {
            (fraction, -1074)
        } else {
            (fraction | (1u64 << 52), biased - 1075)
        };
        if mant == 0 {
            return Decimal {
                digits: Vec::new(),
                point: 0,
            };
        }
        let mut limbs = vec![mant % LIMB, (mant / LIMB) % LIMB, mant / (LIMB * LIMB)];
        // value = mant * 2^exp; for exp < 0 that is mant * 5^-exp / 10^-exp.
        let (mut n, factor, chunk, chunk_factor) = if exp >= 0 {
            (exp, 2u64, 29, 1u64 << 29)
        } else {
            (-exp, 5u64, 13, 1_220_703_125u64)
        };
        while n >= chunk {
            mul_small(&mut limbs, chunk_factor);
            n -= chunk;
        }
        if n > 0 {
            mul_small(&mut limbs, factor.pow(n as u32));
        }
        let frac_digits = if exp >= 0 { 0 } else { -exp };
        while limbs.last() == Some(&0) {
            limbs.pop();
        }
        let mut text = String::new();
        for (i, limb) in limbs.iter().rev().enumerate() {
            if i == 0 {
                text.push_str(&limb.to_string());
            } else {
                text.push_str(&format!("{limb:09}"));
            }
        }
        let mut digits: Vec<u8> = text.bytes().map(|b| b - b'0').collect();
        let point = digits.len() as i64 - frac_digits;
        while digits.last() == Some(&0) {
            digits.pop();
        }
        Decimal { digits, point }
    }

    /// Rounds half-to-even so that at most `keep` leading digits remain (`keep` may be zero or
    /// negative, meaning a rounding position at or before the first digit).
    fn round_at(&mut self, keep: i64) {
        if keep >= self.digits.len() as i64 {
            return;
        }
        if keep < 0 {
            self.digits.clear();
            self.point = 0;
            return;
        }
        let keep = keep as usize;
        let rounding = self.digits[keep];
        let rest_nonzero = self.digits[keep + 1..].iter().any(|&d| d != 0);
        let last_odd = keep > 0 && self.digits[keep - 1] % 2 == 1;
        let up = rounding > 5 || (rounding == 5 && (rest_nonzero || last_odd));
        self.digits.truncate(keep);
        if up {
            let mut i = keep;
            loop {
                if i == 0 {
                    self.digits.insert(0, 1);
                    self.point += 1;
                    break;
                }
                i -= 1;
                if self.digits[i] == 9 {
                    self.digits[i] = 0;
                } else {
                    self.digits[i] += 1;
                    break;
                }
            }
        }
        while self.digits.last() == Some(&0) {
            self.digits.pop();
        }
        if self.digits.is_empty() {
            self.point = 0;
        }
    }

    /// The digit at index `i` (0 = first significant digit), `'0'` outside the stored digits.
    fn digit(&self, i: i64) -> char {
        if i < 0 || i >= self.digits.len() as i64 {
            '0'
        } else {
            (b'0' + self.digits[i as usize]) as char
        }
    }

    fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }
}

fn non_finite(x: f64) -> Option<String> {
    if x.is_nan() {
        Some("nan".to_string())
    } else if x.is_infinite() {
        Some(if x > 0.0 { "inf" } else { "-inf" }.to_string())
    } else {
        None
    }
}

fn sign(x: f64) -> &'static str {
    if x.is_sign_negative() {
        "-"
    } else {
        ""
    }
}

fn push_exponent(out: &mut String, exp: i64) {
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    out.push_str(&format!("{:02}", exp.abs()));
}

// ---------------------------------------------------------------------------------------------------
// Float formatting
// ---------------------------------------------------------------------------------------------------

/// The shortest digits that round-trip to `x` (finite, positive) and the decimal exponent of the
/// first one. Among equally short candidates the one nearest to `x` wins, ties going to an even last
/// digit (David Gay's rule, which CPython uses; Rust's `{:e}` may pick the other neighbour on ties).
fn shortest_digits(x: f64) -> (String, i64) {
    // Rust's `{:e}` gives a shortest round-trip string, e.g. "1.2345678901234568e17".
    let shortest = format!("{x:e}");
    let (mantissa, exp) = shortest.split_once('e').unwrap_or((shortest.as_str(), "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // The correctly rounded value with as many digits is preferred when it round-trips too.
    let mut nearest = Decimal::exact(x);
    nearest.round_at(digits.len() as i64);
    let candidate: String = nearest.digits.iter().map(|d| (b'0' + d) as char).collect();
    let candidate_exp = nearest.point - 1;
    if candidate != digits.trim_end_matches('0') || candidate_exp != exp {
        let text = format!("0.{candidate}e{}", nearest.point);
        if text.parse::<f64>() == Ok(x) {
            return (candidate, candidate_exp);
        }
    }
    (digits, exp)
}

/// Python's `repr(float)` / `str(float)`: the shortest digits that round-trip, laid out the Python way.
///
/// `1.0 -> "1.0"`, `1e-07 -> "1e-07"`, `1e16 -> "1e+16"`, `nan -> "nan"`, `-0.0 -> "-0.0"`.
/// The exponent form is used when the decimal exponent is `< -4` or `>= 16`.
pub fn float_repr(x: f64) -> String {
    if let Some(s) = non_finite(x) {
        return s;
    }
    if x == 0.0 {
        return format!("{}0.0", sign(x));
    }
    let (digits, exp) = shortest_digits(x.abs());
    let mut out = String::from(sign(x));
    if !(-4..16).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        push_exponent(&mut out, exp);
    } else {
        let point = exp + 1;
        let len = digits.len() as i64;
        if point <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-point) as usize));
            out.push_str(&digits);
        } else if point >= len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', (point - len) as usize));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..point as usize]);
            out.push('.');
            out.push_str(&digits[point as usize..]);
        }
    }
    out
}

/// C / Python printf `"%.{precision}e"`: `format_e(5.259259, 4) == "5.2593e+00"`.
pub fn format_e(x: f64, precision: usize) -> String {
    if let Some(s) = non_finite(x) {
        return s;
    }
    let mut d = Decimal::exact(x);
    d.round_at(precision as i64 + 1);
    let exp = if d.is_zero() { 0 } else { d.point - 1 };
    let mut out = String::from(sign(x));
    out.push(d.digit(0));
    if precision > 0 {
        out.push('.');
        for i in 1..=precision as i64 {
            out.push(d.digit(i));
        }
    }
    push_exponent(&mut out, exp);
    out
}

/// C / Python printf `"%.{precision}f"`: `format_f(0.125, 2) == "0.12"` (ties go to even).
pub fn format_f(x: f64, precision: usize) -> String {
    if let Some(s) = non_finite(x) {
        return s;
    }
    let mut d = Decimal::exact(x);
    d.round_at(d.point + precision as i64);
    let mut out = String::from(sign(x));
    if d.point <= 0 {
        out.push('0');
    } else {
        for i in 0..d.point {
            out.push(d.digit(i));
        }
    }
    if precision > 0 {
        out.push('.');
        for j in 0..precision as i64 {
            out.push(d.digit(d.point + j));
        }
    }
    out
}

/// C / Python printf `"%.{precision}g"` (`"%g"` is precision 6): `%e` or `%f` depending on the
/// exponent, then trailing zeros (and a bare decimal point) removed.
pub fn format_g(x: f64, precision: usize) -> String {
    if let Some(s) = non_finite(x) {
        return s;
    }
    let p = precision.max(1) as i64;
    let mut d = Decimal::exact(x);
    d.round_at(p);
    let exp = if d.is_zero() { 0 } else { d.point - 1 };
    let s = if (-4..p).contains(&exp) {
        format_f(x, (p - 1 - exp) as usize)
    } else {
        format_e(x, (p - 1) as usize)
    };
    let (mantissa, exponent) = match s.find('e') {
        Some(i) => s.split_at(i),
        None => (s.as_str(), ""),
    };
    let mantissa = if mantissa.contains('.') {
        mantissa.trim_end_matches('0').trim_end_matches('.')
    } else {
        mantissa
    };
    format!("{mantissa}{exponent}")
}

// ---------------------------------------------------------------------------------------------------
// Python values and repr()
// ---------------------------------------------------------------------------------------------------

/// A Python value, for `repr()`, `str()` and `pprint.pformat()`.
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
    /// Items in insertion order (what `repr` shows; `pformat` sorts them).
    Dict(Vec<(PyValue, PyValue)>),
}

impl PyValue {
    /// Exactly Python's `repr()`; dicts keep insertion order.
    pub fn repr(&self) -> String {
        let mut out = String::new();
        write_repr(self, false, &mut out);
        out
    }
}

/// Python's `str()`: the raw text for `Str`, `repr()` for everything else.
impl fmt::Display for PyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PyValue::Str(s) => f.write_str(s),
            other => f.write_str(&other.repr()),
        }
    }
}

impl From<bool> for PyValue {
    fn from(v: bool) -> Self {
        PyValue::Bool(v)
    }
}

impl From<i64> for PyValue {
    fn from(v: i64) -> Self {
        PyValue::Int(v)
    }
}

impl From<f64> for PyValue {
    fn from(v: f64) -> Self {
        PyValue::Float(v)
    }
}

impl From<&str> for PyValue {
    fn from(v: &str) -> Self {
        PyValue::Str(v.to_string())
    }
}

impl From<String> for PyValue {
    fn from(v: String) -> Self {
        PyValue::Str(v)
    }
}

/// `repr()` into `out`; with `sorted`, dict items are ordered the way `pprint` orders them.
fn write_repr(value: &PyValue, sorted: bool, out: &mut String) {
    match value {
        PyValue::None => out.push_str("None"),
        PyValue::Bool(true) => out.push_str("True"),
        PyValue::Bool(false) => out.push_str("False"),
        PyValue::Int(i) => out.push_str(&i.to_string()),
        PyValue::Float(x) => out.push_str(&float_repr(*x)),
        PyValue::Str(s) => out.push_str(&str_repr(s)),
        PyValue::Bytes(b) => out.push_str(&bytes_repr(b)),
        PyValue::List(items) => {
            out.push('[');
            write_items(items, sorted, out);
            out.push(']');
        }
        PyValue::Tuple(items) => {
            out.push('(');
            write_items(items, sorted, out);
            if items.len() == 1 {
                out.push(',');
            }
            out.push(')');
        }
        PyValue::Dict(items) => {
            out.push('{');
            let ordered: Vec<&(PyValue, PyValue)> = if sorted {
                sorted_items(items)
            } else {
                items.iter().collect()
            };
            for (i, (k, v)) in ordered.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(k, sorted, out);
                out.push_str(": ");
                write_repr(v, sorted, out);
            }
            out.push('}');
        }
    }
}

fn write_items(items: &[PyValue], sorted: bool, out: &mut String) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_repr(item, sorted, out);
    }
}

/// Non-printable code points other than unassigned ones, as Python 3.11 (Unicode 14) defines them:
/// categories Cc, Cf, Cs, Co, Zl, Zp and Zs (except the ASCII space).
const NON_PRINTABLE: &[(u32, u32)] = &[
    (0x0, 0x1f),
    (0x7f, 0xa0),
    (0xad, 0xad),
    (0x600, 0x605),
    (0x61c, 0x61c),
    (0x6dd, 0x6dd),
    (0x70f, 0x70f),
    (0x890, 0x891),
    (0x8e2, 0x8e2),
    (0x1680, 0x1680),
    (0x180e, 0x180e),
    (0x2000, 0x200f),
    (0x2028, 0x202f),
    (0x205f, 0x2064),
    (0x2066, 0x206f),
    (0x3000, 0x3000),
    (0xd800, 0xf8ff),
    (0xfeff, 0xfeff),
    (0xfff9, 0xfffb),
    (0x110bd, 0x110bd),
    (0x110cd, 0x110cd),
    (0x13430, 0x13438),
    (0x1bca0, 0x1bca3),
    (0x1d173, 0x1d17a),
    (0xe0001, 0xe0001),
    (0xe0020, 0xe007f),
    (0xf0000, 0xffffd),
    (0x100000, 0x10fffd),
];

fn is_printable(c: char) -> bool {
    let c = c as u32;
    !NON_PRINTABLE.iter().any(|&(lo, hi)| lo <= c && c <= hi)
}

/// Python's quote choice: `'` unless the text contains `'` and no `"`.
fn pick_quote(has_single: bool, has_double: bool) -> char {
    if has_single && !has_double {
        '"'
    } else {
        '\''
    }
}

/// Python's `repr(str)`.
fn str_repr(s: &str) -> String {
    let quote = pick_quote(s.contains('\''), s.contains('"'));
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x7f || is_printable(c) => out.push(c),
            c if (c as u32) <= 0xff => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push(quote);
    out
}

/// Python's `repr(bytes)`.
fn bytes_repr(b: &[u8]) -> String {
    let quote = pick_quote(b.contains(&b'\''), b.contains(&b'"'));
    let mut out = String::with_capacity(b.len() + 3);
    out.push('b');
    out.push(quote);
    for &byte in b {
        match byte {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            byte if byte as char == quote => {
                out.push('\\');
                out.push(quote);
            }
            0x20..=0x7e => out.push(byte as char),
            byte => out.push_str(&format!("\\x{byte:02x}")),
        }
    }
    out.push(quote);
    out
}

// ---------------------------------------------------------------------------------------------------
// Python ordering (for pprint's sorted dicts)
// ---------------------------------------------------------------------------------------------------

/// A Python number: bool and int are exact integers.
enum Num {
    Int(i128),
    Float(f64),
}

fn as_num(v: &PyValue) -> Option<Num> {
    match v {
        PyValue::Bool(b) => Some(Num::Int(*b as i128)),
        PyValue::Int(i) => Some(Num::Int(*i as i128)),
        PyValue::Float(f) => Some(Num::Float(*f)),
        _ => None,
    }
}

/// Exact comparison of an integer with a double, like Python's `int < float`.
fn cmp_int_float(i: i128, f: f64) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering;
    if f.is_nan() {
        return None;
    }
    if f >= 1.7e38 {
        return Some(Ordering::Less);
    }
    if f <= -1.7e38 {
        return Some(Ordering::Greater);
    }
    let t = f.trunc();
    match i.cmp(&(t as i128)) {
        Ordering::Equal => {
            let frac = f - t;
            Some(if frac > 0.0 {
                Ordering::Less
            } else if frac < 0.0 {
                Ordering::Greater
            } else {
                Ordering::Equal
            })
        }
        other => Some(other),
    }
}

fn num_cmp(a: &Num, b: &Num) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(y)),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(y),
        (Num::Int(x), Num::Float(y)) => cmp_int_float(*x, *y),
        (Num::Float(x), Num::Int(y)) => cmp_int_float(*y, *x).map(|o| o.reverse()),
    }
}

/// Python's `a == b`.
fn py_eq(a: &PyValue, b: &PyValue) -> bool {
    if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
        return num_cmp(&x, &y) == Some(std::cmp::Ordering::Equal);
    }
    match (a, b) {
        (PyValue::None, PyValue::None) => true,
        (PyValue::Str(x), PyValue::Str(y)) => x == y,
        (PyValue::Bytes(x), PyValue::Bytes(y)) => x == y,
        (PyValue::List(x), PyValue::List(y)) | (PyValue::Tuple(x), PyValue::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q))
        }
        (PyValue::Dict(x), PyValue::Dict(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.iter().any(|(k2, v2)| py_eq(k, k2) && py_eq(v, v2)))
        }
        _ => false,
    }
}

/// Python's `a < b`; `Err(())` where Python raises `TypeError`.
fn py_lt(a: &PyValue, b: &PyValue) -> Result<bool, ()> {
    if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
        return Ok(num_cmp(&x, &y) == Some(std::cmp::Ordering::Less));
    }
    match (a, b) {
        (PyValue::Str(x), PyValue::Str(y)) => Ok(x < y),
        (PyValue::Bytes(x), PyValue::Bytes(y)) => Ok(x < y),
        (PyValue::List(x), PyValue::List(y)) | (PyValue::Tuple(x), PyValue::Tuple(y)) => {
            match x.iter().zip(y).position(|(p, q)| !py_eq(p, q)) {
                Some(i) => py_lt(&x[i], &y[i]),
                None => Ok(x.len() < y.len()),
            }
        }
        _ => Err(()),
    }
}

fn type_name(v: &PyValue) -> &'static str {
    match v {
        PyValue::None => "<class 'NoneType'>",
        PyValue::Bool(_) => "<class 'bool'>",
        PyValue::Int(_) => "<class 'int'>",
        PyValue::Float(_) => "<class 'float'>",
        PyValue::Str(_) => "<class 'str'>",
        PyValue::Bytes(_) => "<class 'bytes'>",
        PyValue::List(_) => "<class 'list'>",
        PyValue::Tuple(_) => "<class 'tuple'>",
        PyValue::Dict(_) => "<class 'dict'>",
    }
}

/// `pprint._safe_key.__lt__`: Python's `<`, falling back to comparing type names.
fn safe_key_lt(a: &PyValue, b: &PyValue) -> bool {
    py_lt(a, b).unwrap_or_else(|()| type_name(a) < type_name(b))
}

/// CPython's `list.sort` for short lists (a leading run, then binary insertion); a stable sort that
/// never panics, even when `lt` is not a total order.
fn py_sort<T>(items: &mut [T], lt: impl Fn(&T, &T) -> bool) {
    let n = items.len();
    if n < 2 {
        return;
    }
    let mut run = 2;
    if lt(&items[1], &items[0]) {
        while run < n && lt(&items[run], &items[run - 1]) {
            run += 1;
        }
        items[..run].reverse();
    } else {
        while run < n && !lt(&items[run], &items[run - 1]) {
            run += 1;
        }
    }
    for start in run..n {
        let (mut lo, mut hi) = (0, start);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if lt(&items[start], &items[mid]) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        items[lo..=start].rotate_right(1);
    }
}

fn sorted_items(items: &[(PyValue, PyValue)]) -> Vec<&(PyValue, PyValue)> {
    let mut refs: Vec<&(PyValue, PyValue)> = items.iter().collect();
    py_sort(&mut refs, |a, b| safe_key_lt(&a.0, &b.0));
    refs
}

// ---------------------------------------------------------------------------------------------------
// pprint.pformat
// ---------------------------------------------------------------------------------------------------

/// Python's `pprint.pformat(value, indent=2, width=80)` (dicts sorted by key).
pub fn pformat(value: &PyValue) -> String {
    pformat_with(value, 2, 80)
}

/// Python's `pprint.pformat(value, indent=indent, width=width)` (dicts sorted by key, not compact).
pub fn pformat_with(value: &PyValue, indent: usize, width: usize) -> String {
    let printer = Printer {
        per_level: indent,
        width: width as i64,
    };
    let mut out = String::new();
    printer.format(value, &mut out, 0, 0, 0);
    out
}

fn char_len(s: &str) -> i64 {
    s.chars().count() as i64
}

fn sorted_repr(value: &PyValue) -> String {
    let mut out = String::new();
    write_repr(value, true, &mut out);
    out
}

/// Python's `str.isspace()` (what `\s` matches in Python's `re`).
pub(crate) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `str.splitlines(keepends=True)`.
fn split_lines_keep(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut iter = s.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        let is_break = matches!(
            c,
            '\n' | '\r' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}' | '\u{2029}'
        );
        if is_break {
            let mut end = i + c.len_utf8();
            if c == '\r' {
                if let Some(&(j, '\n')) = iter.peek() {
                    end = j + 1;
                    iter.next();
                }
            }
            lines.push(&s[start..end]);
            start = end;
        }
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// `re.findall(r'\S*\s*', line)` without the final empty match.
fn word_parts(line: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_space = false;
    for (i, c) in line.char_indices() {
        let space = is_py_space(c);
        if !space && in_space {
            parts.push(&line[start..i]);
            start = i;
        }
        in_space = space;
    }
    if start < line.len() {
        parts.push(&line[start..]);
    }
    parts
}

struct Printer {
    per_level: usize,
    width: i64,
}

impl Printer {
    /// `PrettyPrinter._format`.
    fn format(&self, value: &PyValue, out: &mut String, indent: i64, allowance: i64, level: usize) {
        let rep = sorted_repr(value);
        let max_width = self.width - indent - allowance;
        if char_len(&rep) > max_width {
            match value {
                PyValue::Dict(items) => return self.pprint_dict(items, out, indent, allowance, level + 1),
                PyValue::List(items) => {
                    out.push('[');
                    self.format_items(items, out, indent, allowance + 1, level + 1);
                    out.push(']');
                    return;
                }
                PyValue::Tuple(items) => {
                    out.push('(');
                    let end = if items.len() == 1 { ",)" } else { ")" };
                    self.format_items(items, out, indent, allowance + end.len() as i64, level + 1);
                    out.push_str(end);
                    return;
                }
                PyValue::Str(s) => return self.pprint_str(s, out, indent, allowance, level + 1),
                PyValue::Bytes(b) => return self.pprint_bytes(b, out, indent, allowance, level + 1),
                _ => {}
            }
        }
        out.push_str(&rep);
    }

    fn pad_after_open(&self, out: &mut String) {
        if self.per_level > 1 {
            out.extend(std::iter::repeat_n(' ', self.per_level - 1));
        }
    }

    /// `_pprint_dict` + `_format_dict_items`.
    fn pprint_dict(&self, items: &[(PyValue, PyValue)], out: &mut String, indent: i64, allowance: i64, level: usize) {
        out.push('{');
        self.pad_after_open(out);
        if !items.is_empty() {
            let indent = indent + self.per_level as i64;
            let allowance = allowance + 1;
            let sorted = sorted_items(items);
            let last_index = sorted.len() - 1;
            for (i, (key, value)) in sorted.into_iter().enumerate() {
                let last = i == last_index;
                let rep = sorted_repr(key);
                out.push_str(&rep);
                out.push_str(": ");
                let item_allowance = if last { allowance } else { 1 };
                self.format(value, out, indent + char_len(&rep) + 2, item_allowance, level);
                if !last {
                    out.push_str(",\n");
                    out.extend(std::iter::repeat_n(' ', indent as usize));
                }
            }
        }
        out.push('}');
    }

    /// `_format_items` (lists and tuples, not compact).
    fn format_items(&self, items: &[PyValue], out: &mut String, indent: i64, allowance: i64, level: usize) {
        let indent = indent + self.per_level as i64;
        self.pad_after_open(out);
        for (i, item) in items.iter().enumerate() {
            let last = i + 1 == items.len();
            if i > 0 {
                out.push_str(",\n");
                out.extend(std::iter::repeat_n(' ', indent.max(0) as usize));
            }
            self.format(item, out, indent, if last { allowance } else { 1 }, level);
        }
    }

    /// `_pprint_str`: long strings become implicitly concatenated pieces split at word boundaries.
    fn pprint_str(&self, s: &str, out: &mut String, indent: i64, allowance: i64, level: usize) {
        if s.is_empty() {
            out.push_str(&str_repr(s));
            return;
        }
        let (indent, allowance) = if level == 1 {
            (indent + 1, allowance + 1)
        } else {
            (indent, allowance)
        };
        let max_width = self.width - indent;
        let mut max_width1 = max_width;
        let lines = split_lines_keep(s);
        let mut chunks: Vec<String> = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let rep = str_repr(line);
            let last_line = i + 1 == lines.len();
            if last_line {
                max_width1 -= allowance;
            }
            if char_len(&rep) <= max_width1 {
                chunks.push(rep);
                continue;
            }
            let parts = word_parts(line);
            let mut max_width2 = max_width;
            let mut current = String::new();
            for (j, part) in parts.iter().enumerate() {
                let candidate = format!("{current}{part}");
                if j + 1 == parts.len() && last_line {
                    max_width2 -= allowance;
                }
                if char_len(&str_repr(&candidate)) > max_width2 {
                    if !current.is_empty() {
                        chunks.push(str_repr(&current));
                    }
                    current = part.to_string();
                } else {
                    current = candidate;
                }
            }
            if !current.is_empty() {
                chunks.push(str_repr(&current));
            }
        }
        if chunks.len() == 1 {
            out.push_str(&chunks[0]);
            return;
        }
        self.write_chunks(&chunks, out, indent, level == 1);
    }

    /// `_pprint_bytes` + `_wrap_bytes_repr`.
    fn pprint_bytes(&self, b: &[u8], out: &mut String, indent: i64, allowance: i64, level: usize) {
        if b.len() <= 4 {
            out.push_str(&bytes_repr(b));
            return;
        }
        let parens = level == 1;
        let (indent, allowance) = if parens {
            (indent + 1, allowance + 1)
        } else {
            (indent, allowance)
        };
        let mut width = self.width - indent;
        let last = b.len() / 4 * 4;
        let mut chunks = Vec::new();
        let mut current: Vec<u8> = Vec::new();
        for i in (0..b.len()).step_by(4) {
            let part = &b[i..(i + 4).min(b.len())];
            let mut candidate = current.clone();
            candidate.extend_from_slice(part);
            if i == last {
                width -= allowance;
            }
            if char_len(&bytes_repr(&candidate)) > width {
                if !current.is_empty() {
                    chunks.push(bytes_repr(&current));
                }
                current = part.to_vec();
            } else {
                current = candidate;
            }
        }
        if !current.is_empty() {
            chunks.push(bytes_repr(&current));
        }
        self.write_chunks(&chunks, out, indent, parens);
    }

    fn write_chunks(&self, chunks: &[String], out: &mut String, indent: i64, parens: bool) {
        if parens {
            out.push('(');
        }
        for (i, chunk) in chunks.iter().enumerate() {
            if i > 0 {
                out.push('\n');
                out.extend(std::iter::repeat_n(' ', indent.max(0) as usize));
            }
            out.push_str(chunk);
        }
        if parens {
            out.push(')');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python's output for ~2000 doubles (random magnitudes and bit patterns, subnormals, exact ties,
    /// integers, nan/inf, -0.0); the file's `#` header describes the columns.
    const FLOATS: &str = include_str!("../tests/data/pyfmt_floats.txt");

    fn s(text: &str) -> PyValue {
        PyValue::Str(text.to_string())
    }

    fn d(items: Vec<(PyValue, PyValue)>) -> PyValue {
        PyValue::Dict(items)
    }

    fn int(i: i64) -> PyValue {
        PyValue::Int(i)
    }

    #[test]
    fn float_repr_examples() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1e-07, "1e-07"),
            (1e16, "1e+16"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (0.00012, "0.00012"),
            (0.0001, "0.0001"),
            (1e15, "1000000000000000.0"),
            (-0.0, "-0.0"),
            (f64::NAN, "nan"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            // Two shortest candidates (…052.2 and …052.3) are equally near: Python keeps the even one.
            (-723422218681052.2, "-723422218681052.2"),
        ];
        for (x, want) in cases {
            assert_eq!(float_repr(x), want, "{x:e}");
        }
    }

    #[test]
    fn printf_examples() {
        assert_eq!(format_e(5.259259, 4), "5.2593e+00");
        assert_eq!(format_e(0.33792, 4), "3.3792e-01");
        assert_eq!(format_e(0.0, 4), "0.0000e+00");
        assert_eq!(format_e(1e-300, 0), "1e-300");
        assert_eq!(format_e(9.99995, 4), "1.0000e+01"); // rounding carries into the exponent
        assert_eq!(format_e(f64::NAN, 4), "nan");
        assert_eq!(format_f(0.125, 2), "0.12"); // exact tie: half to even
        assert_eq!(format_f(0.375, 2), "0.38");
        assert_eq!(format_f(2.5, 0), "2");
        assert_eq!(format_f(3.5, 0), "4");
        assert_eq!(format_f(0.5, 0), "0");
        assert_eq!(format_f(-0.001, 2), "-0.00");
        assert_eq!(format_f(1e22, 1), "10000000000000000000000.0");
        assert_eq!(format_f(f64::NEG_INFINITY, 3), "-inf");
        assert_eq!(format_g(0.0001, 6), "0.0001");
        assert_eq!(format_g(0.00001, 6), "1e-05");
        assert_eq!(format_g(123456.0, 6), "123456");
        assert_eq!(format_g(1234567.0, 6), "1.23457e+06");
        assert_eq!(format_g(100.0, 0), "1e+02");
        assert_eq!(format_g(-0.0, 6), "-0");
        assert_eq!(format_g(2.5, 1), "2");
    }

    #[test]
    fn str_and_display() {
        assert_eq!(s("it's").repr(), "\"it's\"");
        assert_eq!(s("it's").to_string(), "it's");
        assert_eq!(PyValue::Float(1.0).to_string(), "1.0");
        assert_eq!(PyValue::None.to_string(), "None");
        let v = d(vec![
            (s("b"), int(1)),
            (s("a"), PyValue::List(vec![1.0.into(), 2.5.into()])),
        ]);
        assert_eq!(v.repr(), "{'b': 1, 'a': [1.0, 2.5]}");
        assert_eq!(v.to_string(), v.repr());
    }

    fn metric(name: &str, value: &str) -> PyValue {
        d(vec![(s(name), s(value))])
    }

    #[test]
    fn pformat_flower_train_history() {
        let v = d(vec![
            (int(1), metric("train_loss", "3.3792e-01")),
            (int(2), metric("train_loss", "2.7848e-01")),
            (int(3), metric("train_loss", "2.5067e-01")),
        ]);
        let want = "\
{ 1: {'train_loss': '3.3792e-01'},
  2: {'train_loss': '2.7848e-01'},
  3: {'train_loss': '2.5067e-01'}}";
        assert_eq!(pformat(&v), want);
        let one = d(vec![(int(1), metric("train_loss", "2.3333e+00"))]);
        assert_eq!(pformat(&one), "{1: {'train_loss': '2.3333e+00'}}");
    }

    #[test]
    fn pformat_flower_eval_history_sorts_keys() {
        let round = |loss: &str, acc: &str| d(vec![(s("eval_loss"), s(loss)), (s("eval_acc"), s(acc))]);
        let v = d(vec![
            (int(3), round("2.5734e-01", "8.9250e-01")),
            (int(1), round("3.5409e-01", "8.9000e-01")),
            (int(2), round("2.8658e-01", "8.9000e-01")),
        ]);
        let want = "\
{ 1: {'eval_acc': '8.9000e-01', 'eval_loss': '3.5409e-01'},
  2: {'eval_acc': '8.9000e-01', 'eval_loss': '2.8658e-01'},
  3: {'eval_acc': '8.9250e-01', 'eval_loss': '2.5734e-01'}}";
        assert_eq!(pformat(&v), want);
    }

    #[test]
    fn pformat_nested_dicts_wrap_after_key() {
        let full = || {
            d(vec![
                (s("zeta"), s("1.0000e+00")),
                (s("alpha"), s("2")),
                (s("lst"), s("['1.0000e+00', '2.5000e+00']")),
            ])
        };
        let v = d(vec![
            (int(10), d(vec![(s("zeta"), s("1.0000e+00")), (s("alpha"), s("2"))])),
            (int(2), full()),
            (int(1), full()),
        ]);
        let want = "\
{ 1: { 'alpha': '2',
       'lst': \"['1.0000e+00', '2.5000e+00']\",
       'zeta': '1.0000e+00'},
  2: { 'alpha': '2',
       'lst': \"['1.0000e+00', '2.5000e+00']\",
       'zeta': '1.0000e+00'},
  10: {'alpha': '2', 'zeta': '1.0000e+00'}}";
        assert_eq!(pformat(&v), want);
    }

    #[test]
    fn sort_never_panics_on_inconsistent_order() {
        // bool < bytes < int by type name, but True > 0 numerically: Python's sort is not total here.
        let v = d(vec![
            (PyValue::Bool(true), int(1)),
            (PyValue::Bytes(b"x".to_vec()), int(2)),
            (int(0), int(3)),
        ]);
        // Generated with python3: pprint.pformat({True: 1, b'x': 2, 0: 3}, indent=2, width=10)
        assert_eq!(pformat_with(&v, 2, 10), "{ True: 1,\n  b'x': 2,\n  0: 3}");
    }

    /// Generated by `python3 tools/gen_pformat.py repr` (Python 3.11; one case a line, then `cargo fmt`).
    #[test]
    fn repr_matches_python() {
        let cases: Vec<(PyValue, &str)> = vec![
            (PyValue::None, "None"),
            (PyValue::Bool(true), "True"),
            (PyValue::Bool(false), "False"),
            (PyValue::Int(0), "0"),
            (PyValue::Int(-17), "-17"),
            (PyValue::Int(9223372036854775807), "9223372036854775807"),
            (PyValue::Float(1.0), "1.0"),
            (PyValue::Float(0.1), "0.1"),
            (PyValue::Float(1e-07), "1e-07"),
            (PyValue::Float(1e+16), "1e+16"),
            (PyValue::Float(-0.0), "-0.0"),
            (PyValue::Float(f64::NAN), "nan"),
            (PyValue::Float(f64::NEG_INFINITY), "-inf"),
            (s(""), "''"),
            (s("abc"), "'abc'"),
            (s("it's"), "\"it's\""),
            (s("say \"hi\""), "'say \"hi\"'"),
            (s("both ' and \""), "'both \\' and \"'"),
            (s("tab\there\nnew\rcr\\back"), "'tab\\there\\nnew\\rcr\\\\back'"),
            (
                s("\u{0}\u{1f}\u{7f}\u{80}\u{9f}\u{a0}\u{ad}"),
                "'\\x00\\x1f\\x7f\\x80\\x9f\\xa0\\xad'",
            ),
            (s("café 中文 😀"), "'café 中文 😀'"),
            (
                s("zero\u{200b}width \u{2028} \u{feff} \u{e000} \u{f0000}"),
                "'zero\\u200bwidth \\u2028 \\ufeff \\ue000 \\U000f0000'",
            ),
            (s("\u{85}"), "'\\x85'"),
            (PyValue::Bytes(b"".to_vec()), "b''"),
            (PyValue::Bytes(b"abc".to_vec()), "b'abc'"),
            (PyValue::Bytes(b"it's".to_vec()), "b\"it's\""),
            (PyValue::Bytes(b"\"q\"".to_vec()), "b'\"q\"'"),
            (PyValue::Bytes(b"'\"".to_vec()), "b'\\'\"'"),
            (
                PyValue::Bytes(b"\x00\x09\x0a\x0d\\\x7f\x80\xff".to_vec()),
                "b'\\x00\\t\\n\\r\\\\\\x7f\\x80\\xff'",
            ),
            (PyValue::List(vec![]), "[]"),
            (
                PyValue::List(vec![PyValue::Int(1), PyValue::Float(2.5), s("x")]),
                "[1, 2.5, 'x']",
            ),
            (PyValue::Tuple(vec![]), "()"),
            (PyValue::Tuple(vec![PyValue::Int(1)]), "(1,)"),
            (PyValue::Tuple(vec![PyValue::Int(1), PyValue::Int(2)]), "(1, 2)"),
            (d(vec![]), "{}"),
            (
                d(vec![
                    (s("b"), PyValue::Int(1)),
                    (s("a"), PyValue::List(vec![PyValue::Float(1.0), PyValue::Float(2.5)])),
                ]),
                "{'b': 1, 'a': [1.0, 2.5]}",
            ),
            (
                d(vec![
                    (PyValue::Int(1), d(vec![(s("x"), PyValue::None)])),
                    (
                        PyValue::Tuple(vec![PyValue::Int(1), s("a")]),
                        PyValue::Tuple(vec![PyValue::Bool(true)]),
                    ),
                ]),
                "{1: {'x': None}, (1, 'a'): (True,)}",
            ),
            (
                PyValue::List(vec![
                    PyValue::List(vec![PyValue::List(vec![])]),
                    d(vec![]),
                    PyValue::Tuple(vec![]),
                ]),
                "[[[]], {}, ()]",
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(value.repr(), expected, "{value:?}");
        }
    }

    /// Generated by `python3 tools/gen_pformat.py pformat` (Python 3.11): (value, indent, width, expected).
    #[test]
    fn pformat_matches_python() {
        let cases: Vec<(PyValue, usize, usize, &str)> = vec![
        (d(vec![(PyValue::Int(1), d(vec![(s("train_loss"), s("3.3792e-01"))])), (PyValue::Int(2), d(vec![(s("train_loss"), s("2.7848e-01"))])), (PyValue::Int(3), d(vec![(s("train_loss"), s("2.5067e-01"))]))]), 2, 80, "{ 1: {'train_loss': '3.3792e-01'},\n  2: {'train_loss': '2.7848e-01'},\n  3: {'train_loss': '2.5067e-01'}}"),
        (d(vec![(PyValue::Int(1), d(vec![(s("eval_loss"), s("3.5409e-01")), (s("eval_acc"), s("8.9000e-01"))])), (PyValue::Int(2), d(vec![(s("eval_loss"), s("2.8658e-01")), (s("eval_acc"), s("8.9000e-01"))])), (PyValue::Int(3), d(vec![(s("eval_loss"), s("2.5734e-01")), (s("eval_acc"), s("8.9250e-01"))]))]), 2, 80, "{ 1: {'eval_acc': '8.9000e-01', 'eval_loss': '3.5409e-01'},\n  2: {'eval_acc': '8.9000e-01', 'eval_loss': '2.8658e-01'},\n  3: {'eval_acc': '8.9250e-01', 'eval_loss': '2.5734e-01'}}"),
        (d(vec![(PyValue::Int(1), d(vec![(s("train_loss"), s("2.3333e+00"))]))]), 2, 80, "{1: {'train_loss': '2.3333e+00'}}"),
        (d(vec![(PyValue::Int(10), d(vec![(s("zeta"), s("1.0000e+00")), (s("alpha"), s("2"))])), (PyValue::Int(1), d(vec![(s("zeta"), s("1.0000e+00")), (s("alpha"), s("2")), (s("lst"), s("['1.0000e+00', '2.5000e+00']"))])), (PyValue::Int(2), d(vec![(s("zeta"), s("1.0000e+00")), (s("alpha"), s("2")), (s("lst"), s("['1.0000e+00', '2.5000e+00', '3.0000e+00']"))]))]), 2, 80, "{ 1: { 'alpha': '2',\n       'lst': \"['1.0000e+00', '2.5000e+00']\",\n       'zeta': '1.0000e+00'},\n  2: { 'alpha': '2',\n       'lst': \"['1.0000e+00', '2.5000e+00', '3.0000e+00']\",\n       'zeta': '1.0000e+00'},\n  10: {'alpha': '2', 'zeta': '1.0000e+00'}}"),
        (d(vec![(PyValue::Int(10), s("a")), (PyValue::Int(2), s("b")), (PyValue::Float(1.5), s("c")), (PyValue::Int(-3), s("d")), (PyValue::Float(0.0), s("e"))]), 2, 20, "{ -3: 'd',\n  0.0: 'e',\n  1.5: 'c',\n  2: 'b',\n  10: 'a'}"),
        (d(vec![(s("b"), PyValue::Int(1)), (s("B"), PyValue::Int(2)), (s("a"), PyValue::Int(3)), (s("é"), PyValue::Int(4)), (s("_x"), PyValue::Int(5)), (s("aa"), PyValue::Int(6)), (s(""), PyValue::Int(7))]), 2, 30, "{ '': 7,\n  'B': 2,\n  '_x': 5,\n  'a': 3,\n  'aa': 6,\n  'b': 1,\n  'é': 4}"),
        (d(vec![(s("a"), PyValue::Int(1)), (PyValue::Int(2), s("b")), (PyValue::None, PyValue::Int(0)), (PyValue::Tuple(vec![PyValue::Int(1), PyValue::Int(2)]), PyValue::Int(3)), (PyValue::Float(1.5), s("f")), (PyValue::Bytes(b"k".to_vec()), PyValue::Int(9)), (PyValue::Bool(false), s("no"))]), 2, 40, "{ None: 0,\n  False: 'no',\n  b'k': 9,\n  1.5: 'f',\n  2: 'b',\n  'a': 1,\n  (1, 2): 3}"),
        (s("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua."), 2, 80, "('Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod '\n 'tempor incididunt ut labore et dolore magna aliqua.')"),
        (d(vec![(s("msg"), s("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.")), (s("n"), PyValue::Int(1))]), 2, 80, "{ 'msg': 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do '\n         'eiusmod tempor incididunt ut labore et dolore magna aliqua.',\n  'n': 1}"),
        (PyValue::List(vec![s("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua."), s("Lorem ipsum dolor sit amet, consectetur adipiscing")]), 2, 80, "[ 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod '\n  'tempor incididunt ut labore et dolore magna aliqua.',\n  'Lorem ipsum dolor sit amet, consectetur adipiscing']"),
        (s("first line\nsecond line that is fairly long and keeps going well past the width limit\nthird"), 2, 40, "('first line\\n'\n 'second line that is fairly long and '\n 'keeps going well past the width '\n 'limit\\n'\n 'third')"),
        (d(vec![(s("k"), s("a\r\nb  c\tda\r\nb  c\tda\r\nb  c\tda\r\nb  c\tda\r\nb  c\tda\r\nb  c\tda\r\nb  c\tda\r\nb  c\tda\r\nb  c\tda\r\nb  c\tda\r\nb  c\tda\r\nb  c\td"))]), 2, 40, "{ 'k': 'a\\r\\n'\n       'b  c\\tda\\r\\n'\n       'b  c\\tda\\r\\n'\n       'b  c\\tda\\r\\n'\n       'b  c\\tda\\r\\n'\n       'b  c\\tda\\r\\n'\n       'b  c\\tda\\r\\n'\n       'b  c\\tda\\r\\n'\n       'b  c\\tda\\r\\n'\n       'b  c\\tda\\r\\n'\n       'b  c\\tda\\r\\n'\n       'b  c\\tda\\r\\n'\n       'b  c\\td'}"),
        (PyValue::List(vec![PyValue::Float(0.0), PyValue::Float(0.1), PyValue::Float(0.2), PyValue::Float(0.30000000000000004), PyValue::Float(0.4), PyValue::Float(0.5), PyValue::Float(0.6000000000000001), PyValue::Float(0.7000000000000001), PyValue::Float(0.8), PyValue::Float(0.9), PyValue::Float(1.0), PyValue::Float(1.1), PyValue::Float(1.2000000000000002), PyValue::Float(1.3), PyValue::Float(1.4000000000000001), PyValue::Float(1.5), PyValue::Float(1.6), PyValue::Float(1.7000000000000002), PyValue::Float(1.8), PyValue::Float(1.9000000000000001), PyValue::Float(2.0), PyValue::Float(2.1), PyValue::Float(2.2), PyValue::Float(2.3000000000000003), PyValue::Float(2.4000000000000004), PyValue::Float(2.5), PyValue::Float(2.6), PyValue::Float(2.7), PyValue::Float(2.8000000000000003), PyValue::Float(2.9000000000000004)]), 2, 80, "[ 0.0,\n  0.1,\n  0.2,\n  0.30000000000000004,\n  0.4,\n  0.5,\n  0.6000000000000001,\n  0.7000000000000001,\n  0.8,\n  0.9,\n  1.0,\n  1.1,\n  1.2000000000000002,\n  1.3,\n  1.4000000000000001,\n  1.5,\n  1.6,\n  1.7000000000000002,\n  1.8,\n  1.9000000000000001,\n  2.0,\n  2.1,\n  2.2,\n  2.3000000000000003,\n  2.4000000000000004,\n  2.5,\n  2.6,\n  2.7,\n  2.8000000000000003,\n  2.9000000000000004]"),
        (PyValue::Tuple(vec![PyValue::Int(1)]), 2, 3, "( 1,)"),
        (PyValue::Tuple(vec![PyValue::Tuple(vec![s("xxxxxxxxxx")])]), 2, 12, "( ( 'xxxxxxxxxx',),)"),
        (d(vec![(s("t"), PyValue::Tuple(vec![PyValue::Int(1), PyValue::Int(2), PyValue::Int(3), PyValue::Int(1), PyValue::Int(2), PyValue::Int(3), PyValue::Int(1), PyValue::Int(2), PyValue::Int(3), PyValue::Int(1), PyValue::Int(2), PyValue::Int(3), PyValue::Int(1), PyValue::Int(2), PyValue::Int(3), PyValue::Int(1), PyValue::Int(2), PyValue::Int(3), PyValue::Int(1), PyValue::Int(2), PyValue::Int(3), PyValue::Int(1), PyValue::Int(2), PyValue::Int(3), PyValue::Int(1), PyValue::Int(2), PyValue::Int(3), PyValue::Int(1), PyValue::Int(2), PyValue::Int(3)])), (s("l"), PyValue::List(vec![PyValue::List(vec![PyValue::Int(1), PyValue::Int(2)]), PyValue::List(vec![PyValue::Int(3), PyValue::Int(4)]), PyValue::List(vec![PyValue::Int(1), PyValue::Int(2)]), PyValue::List(vec![PyValue::Int(3), PyValue::Int(4)]), PyValue::List(vec![PyValue::Int(1), PyValue::Int(2)]), PyValue::List(vec![PyValue::Int(3), PyValue::Int(4)]), PyValue::List(vec![PyValue::Int(1), PyValue::Int(2)]), PyValue::List(vec![PyValue::Int(3), PyValue::Int(4)]), PyValue::List(vec![PyValue::Int(1), PyValue::Int(2)]), PyValue::List(vec![PyValue::Int(3), PyValue::Int(4)]), PyValue::List(vec![PyValue::Int(1), PyValue::Int(2)]), PyValue::List(vec![PyValue::Int(3), PyValue::Int(4)]), PyValue::List(vec![PyValue::Int(1), PyValue::Int(2)]), PyValue::List(vec![PyValue::Int(3), PyValue::Int(4)]), PyValue::List(vec![PyValue::Int(1), PyValue::Int(2)]), PyValue::List(vec![PyValue::Int(3), PyValue::Int(4)])])), (s("e"), PyValue::List(vec![])), (s("f"), d(vec![]))]), 2, 80, "{ 'e': [],\n  'f': {},\n  'l': [ [1, 2],\n         [3, 4],\n         [1, 2],\n         [3, 4],\n         [1, 2],\n         [3, 4],\n         [1, 2],\n         [3, 4],\n         [1, 2],\n         [3, 4],\n         [1, 2],\n         [3, 4],\n         [1, 2],\n         [3, 4],\n         [1, 2],\n         [3, 4]],\n  't': ( 1,\n         2,\n         3,\n         1,\n         2,\n         3,\n         1,\n         2,\n         3,\n         1,\n         2,\n         3,\n         1,\n         2,\n         3,\n         1,\n         2,\n         3,\n         1,\n         2,\n         3,\n         1,\n         2,\n         3,\n         1,\n         2,\n         3,\n         1,\n         2,\n         3)}"),
        (PyValue::Bytes(b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_vec()), 2, 40, "(b'0123456789abcdef0123456789abcdef0123'\n b'456789abcdef0123456789abcdef01234567'\n b'89abcdef0123456789abcdef0123456789ab'\n b'cdef0123456789abcdef')"),
        (d(vec![(s("b"), PyValue::Bytes(b"\x00\xff'\"\x00\xff'\"\x00\xff'\"\x00\xff'\"\x00\xff'\"\x00\xff'\"\x00\xff'\"\x00\xff'\"\x00\xff'\"\x00\xff'\"".to_vec()))]), 2, 40, "{ 'b': b'\\x00\\xff\\'\"\\x00\\xff\\'\"'\n       b'\\x00\\xff\\'\"\\x00\\xff\\'\"'\n       b'\\x00\\xff\\'\"\\x00\\xff\\'\"'\n       b'\\x00\\xff\\'\"\\x00\\xff\\'\"'\n       b'\\x00\\xff\\'\"\\x00\\xff\\'\"'}"),
        (PyValue::Bytes(b"abcdef".to_vec()), 2, 5, "(b'abcd'\n b'ef')"),
        (d(vec![(s("deep"), d(vec![(s("a"), d(vec![(s("b"), d(vec![(s("c"), d(vec![(s("d"), PyValue::List(vec![PyValue::Int(1), PyValue::Int(2), PyValue::Int(3), d(vec![(s("e"), s("ffffffffffffffffffffffffffffffffffffffff"))])]))]))]))]))]))]), 2, 80, "{ 'deep': { 'a': { 'b': { 'c': { 'd': [ 1,\n                                        2,\n                                        3,\n                                        { 'e': 'ffffffffffffffffffffffffffffffffffffffff'}]}}}}}"),
        (d(vec![]), 2, 1, "{ }"),
        (PyValue::List(vec![]), 2, 1, "[ ]"),
        (PyValue::List(vec![PyValue::List(vec![PyValue::Int(1), PyValue::Int(2)]), PyValue::List(vec![PyValue::Int(3), PyValue::Int(4)])]), 2, 5, "[ [ 1,\n    2],\n  [ 3,\n    4]]"),
        (d(vec![(s("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"), s("yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"))]), 2, 80, "{ 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx': 'yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy'}"),
        (d(vec![(PyValue::Int(3), s("c")), (PyValue::Int(1), s("a")), (PyValue::Int(2), d(vec![(s("z"), PyValue::Int(1)), (s("y"), PyValue::List(vec![PyValue::Float(1.5), PyValue::Float(2.5e-07), PyValue::Float(1e+16), PyValue::Float(f64::NAN), PyValue::Float(f64::INFINITY), PyValue::Float(-0.0)]))]))]), 1, 30, "{1: 'a',\n 2: {'y': [1.5,\n           2.5e-07,\n           1e+16,\n           nan,\n           inf,\n           -0.0],\n     'z': 1},\n 3: 'c'}"),
        (d(vec![(PyValue::Int(3), s("c")), (PyValue::Int(1), s("a")), (PyValue::Int(2), d(vec![(s("z"), PyValue::Int(1)), (s("y"), PyValue::List(vec![PyValue::Float(1.5), PyValue::Float(2.5e-07), PyValue::Float(1e+16), PyValue::Bool(true), PyValue::None, s("x y")]))]))]), 4, 20, "{   1: 'a',\n    2: {   'y': [   1.5,\n                    2.5e-07,\n                    1e+16,\n                    True,\n                    None,\n                    'x '\n                    'y'],\n           'z': 1},\n    3: 'c'}"),
        (s("word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word "), 2, 80, "('word word word word word word word word word word word word word word word '\n 'word word word word word word word word word word word word word word word ')"),
        (s(""), 2, 1, "''"),
        (s("nospaceatallinthisverylongstringsoitcannotbesplitanywhereatallxxxxxxxxxxxxxxxxxxxxx"), 2, 40, "'nospaceatallinthisverylongstringsoitcannotbesplitanywhereatallxxxxxxxxxxxxxxxxxxxxx'"),
        (d(vec![(s("s"), s(" lead and trail spaces  lead and trail spaces  lead and trail spaces  lead and trail spaces  lead and trail spaces "))]), 2, 40, "{ 's': ' lead and trail spaces  lead '\n       'and trail spaces  lead and '\n       'trail spaces  lead and trail '\n       'spaces  lead and trail spaces '}"),
        (s("café 中文 café 中文 café 中文 café 中文 café 中文 café 中文 café 中文 café 中文 café 中文 café 中文 café 中文 café 中文 "), 2, 30, "('café 中文 café 中文 café 中文 '\n 'café 中文 café 中文 café 中文 '\n 'café 中文 café 中文 café 中文 '\n 'café 中文 café 中文 café 中文 ')"),
        ];
        for (value, indent, width, expected) in cases {
            assert_eq!(
                pformat_with(&value, indent, width),
                expected,
                "{value:?} indent={indent} width={width}"
            );
        }
    }

    #[test]
    fn floats_match_python_fixture() {
        let mut checked = 0;
        for line in FLOATS.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f.len(), 8, "bad fixture line {line:?}");
            let x: f64 = f[0].parse().expect("fixture float");
            assert_eq!(float_repr(x), f[0], "repr of {line}");
            let pe: usize = f[1].parse().unwrap();
            assert_eq!(format_e(x, pe), f[2], "%.{pe}e of {line}");
            if f[3] != "-" {
                let pf: usize = f[3].parse().unwrap();
                assert_eq!(format_f(x, pf), f[4], "%.{pf}f of {line}");
            }
            let pg: usize = f[5].parse().unwrap();
            assert_eq!(format_g(x, pg), f[6], "%.{pg}g of {line}");
            assert_eq!(format_g(x, 6), f[7], "%g of {line}");
            checked += 1;
        }
        assert!(checked >= 2000, "only {checked} fixture lines");
    }
}
