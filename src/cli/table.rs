//! Terminal tables in the style of Python Rich (interim version).

/// Text styles (ANSI SGR), applied only when colour is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    Bold,
    Cyan,
    BoldCyan,
    Green,
    Red,
    Yellow,
    Blue,
    BrightBlack,
}

impl Style {
    fn code(self) -> Option<&'static str> {
        match self {
            Style::Plain => None,
            Style::Bold => Some("1"),
            Style::Cyan => Some("36"),
            Style::BoldCyan => Some("1;36"),
            Style::Green => Some("32"),
            Style::Red => Some("31"),
            Style::Yellow => Some("33"),
            Style::Blue => Some("34"),
            Style::BrightBlack => Some("90"),
        }
    }
}

/// `text` in `style` when `color` is on.
pub fn paint(text: &str, style: Style, color: bool) -> String {
    match (color, style.code()) {
        (true, Some(code)) => format!("\x1b[{code}m{text}\x1b[0m"),
        _ => text.to_string(),
    }
}

pub struct Column {
    pub header: String,
    pub no_wrap: bool,
    pub style: Style,
}

pub struct Cell {
    pub text: String,
    pub style: Style,
}

impl Cell {
    pub fn plain(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            style: Style::Plain,
        }
    }
}

fn width(text: &str) -> usize {
    text.chars().count()
}

fn fit(text: &str, width_max: usize) -> String {
    if width(text) <= width_max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width_max.saturating_sub(1)).collect();
    out.push('…');
    out
}

pub fn render_table(columns: &[Column], rows: &[Vec<Cell>], width_max: usize, color: bool) -> String {
    let mut widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| width(&r[i].text))
                .chain([width(&c.header)])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let total = |w: &[usize]| w.iter().sum::<usize>() + 3 * w.len() + 1;
    while total(&widths) > width_max {
        let widest = (0..columns.len())
            .filter(|&i| !columns[i].no_wrap)
            .max_by_key(|&i| widths[i]);
        match widest {
            Some(i) if widths[i] > 1 => widths[i] -= 1,
            _ => break,
        }
    }
    let line = |l: &str, m: &str, r: &str, fill: &str| {
        let parts: Vec<String> = widths.iter().map(|w| fill.repeat(w + 2)).collect();
        format!("{l}{}{r}\n", parts.join(m))
    };
    let mut out = line("┏", "┳", "┓", "━");
    let headers: Vec<String> = columns
        .iter()
        .zip(&widths)
        .map(|(c, &w)| {
            let text = fit(&c.header, w);
            let pad = w - width(&text);
            let left = pad / 2;
            format!(
                " {}{}{} ",
                " ".repeat(left),
                paint(&text, Style::BoldCyan, color),
                " ".repeat(pad - left)
            )
        })
        .collect();
    out.push_str(&format!("┃{}┃\n", headers.join("┃")));
    out.push_str(&line("┡", "╇", "┩", "━"));
    for (index, row) in rows.iter().enumerate() {
        if index > 0 {
            out.push_str(&line("├", "┼", "┤", "─"));
        }
        let cells: Vec<String> = row
            .iter()
            .zip(columns)
            .zip(&widths)
            .map(|((cell, column), &w)| {
                let text = fit(&cell.text, w);
                let style = if cell.style == Style::Plain {
                    column.style
                } else {
                    cell.style
                };
                format!(" {}{} ", paint(&text, style, color), " ".repeat(w - width(&text)))
            })
            .collect();
        out.push_str(&format!("│{}│\n", cells.join("│")));
    }
    out.push_str(&line("└", "┴", "┘", "─"));
    out
}

pub fn render_key_values(rows: &[(String, Cell)], _width_max: usize, color: bool) -> String {
    let left = rows.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    let right = rows.iter().map(|(_, v)| width(&v.text)).max().unwrap_or(0);
    let mut out = format!("┌{}┬{}┐\n", "─".repeat(left + 2), "─".repeat(right + 2));
    for (key, value) in rows {
        out.push_str(&format!(
            "│ {}{} │ {}{} │\n",
            paint(key, Style::BoldCyan, color),
            " ".repeat(left - width(key)),
            paint(&value.text, value.style, color),
            " ".repeat(right - width(&value.text))
        ));
    }
    out.push_str(&format!("└{}┴{}┘\n", "─".repeat(left + 2), "─".repeat(right + 2)));
    out
}

pub fn render_error_box(message: &str, width_max: usize, color: bool) -> String {
    let inner = width_max.max(20) - 4;
    let mut out = paint(
        &format!("╭─ Error {}╮", "─".repeat(width_max.max(20) - 10)),
        Style::Red,
        color,
    );
    out.push('\n');
    for line in message.lines() {
        let text = fit(line, inner);
        out.push_str(&paint("│", Style::Red, color));
        out.push_str(&format!(" {}{} ", text, " ".repeat(inner - width(&text))));
        out.push_str(&paint("│", Style::Red, color));
        out.push('\n');
    }
    out.push_str(&paint(
        &format!("╰{}╯", "─".repeat(width_max.max(20) - 2)),
        Style::Red,
        color,
    ));
    out.push('\n');
    out
}
