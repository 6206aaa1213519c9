//! How the configurable parameters of the strategies, the DP wrappers and
//! the client mods are described: their run-config key, type, default and
//! meaning, for the builders' checks, their error messages and the
//! generated `docs/STRATEGIES.md`.
//!
//! A leaf shared by the server side (`strategy`) and the client side
//! (`mods`); it never builds anything and never does I/O.

use crate::pyfmt::float_repr;
use crate::records::Scalar;

/// A parameter's type in the run configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// A float (an int is accepted).
    Float,
    Int,
    Str,
}

impl ParamKind {
    pub fn name(self) -> &'static str {
        match self {
            ParamKind::Float => "float",
            ParamKind::Int => "int",
            ParamKind::Str => "str",
        }
    }
}

/// A parameter's default.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ParamDefault {
    Float(f64),
    Int(i64),
    Str(&'static str),
    /// Must be given.
    Required,
    /// Flower's `None`; the doc says what that means.
    Unset,
}

impl ParamDefault {
    /// As written in the docs (TOML syntax).
    pub fn render(self) -> String {
        match self {
            ParamDefault::Float(f) => float_repr(f),
            ParamDefault::Int(i) => i.to_string(),
            ParamDefault::Str(s) => format!("\"{s}\""),
            ParamDefault::Required => "required".into(),
            ParamDefault::Unset => "unset".into(),
        }
    }
}

/// One configurable parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamDoc {
    /// The run-config key.
    pub key: &'static str,
    /// Flower's constructor parameter.
    pub flower_name: &'static str,
    /// Strategy names, `dp.mode` values, or `"*"` (every strategy).
    pub applies_to: &'static [&'static str],
    pub kind: ParamKind,
    pub default: ParamDefault,
    pub doc: &'static str,
}

/// `int (3)`, `str ("x")`: a value's type and value, for error messages.
pub fn describe_scalar(value: &Scalar) -> String {
    match value {
        Scalar::Bool(b) => format!("bool ({b})"),
        Scalar::Int(i) => format!("int ({i})"),
        Scalar::Float(f) => format!("float ({})", float_repr(*f)),
        Scalar::Str(s) => format!("str ({:?})", crate::app::clip(s)),
    }
}

/// A Markdown table of parameters (with their `applies to` column when
/// asked).
pub fn markdown_table(out: &mut String, rows: &[&ParamDoc], with_applies: bool) {
    if with_applies {
        out.push_str("| key | applies to | type | default | Flower parameter | meaning |\n|---|---|---|---|---|---|\n");
    } else {
        out.push_str("| key | type | default | Flower parameter | meaning |\n|---|---|---|---|---|\n");
    }
    for d in rows {
        let applies = if with_applies {
            format!(" {} |", d.applies_to.join(", "))
        } else {
            String::new()
        };
        out.push_str(&format!(
            "| `{}` |{applies} {} | {} | `{}` | {} |\n",
            d.key,
            d.kind.name(),
            d.default.render(),
            d.flower_name,
            d.doc
        ));
    }
}
