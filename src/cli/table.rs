//! Terminal tables and error boxes drawn exactly the way Python's Rich (13.x) draws them for the
//! Flower CLI: the `flwr ls` runs table (heavy header box, a line between rows), the one-run detail
//! table (light box, no header) and Typer's red "Error" panel.
//!
//! This module owns layout: column measurement, Rich's shrinking rules when the terminal is too
//! narrow (collapse the widest wrappable columns first, then shave every column), word wrapping,
//! truncation with "…", alignment, box drawing, and optional ANSI SGR colouring segment by segment
//! as Rich emits it. Widths are display widths (`unicode-width`); ANSI codes never count.
//!
//! It never queries the terminal itself (callers pass the width, from
//! `cli::output::terminal_width`), never writes to stdout/stderr, never decides whether colour is wanted, and never
//! parses Rich markup: styles come in as data ([`Style`] on columns and cells).
//!
//! Known differences from Rich: only `\n` breaks lines inside a cell (Rich also measures other
//! Unicode line breaks); tabs are expanded to 8-column stops before measuring; control characters
//! are not stripped; character widths come from `unicode-width`, which can disagree with Rich's own
//! tables for some emoji and zero-width characters; cells beyond the number of columns are ignored.
//! Verified byte for byte against Rich 13.9.4 (Flower 1.27's environment); Rich 15 differs in one
//! rare case (a no-wrap cell whose trailing space makes it exactly one cell too wide).

use unicode_width::UnicodeWidthChar;

// ---------------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------------

/// A text style; ANSI SGR codes are emitted only when colour is requested.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Style {
    #[default]
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

/// A table column. `style` colours the whole cell, padding included (Rich's column `style=`);
/// `no_wrap` columns are never shrunk before the others and their cells are cut with "…" instead
/// of wrapped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Column {
    pub header: String,
    pub no_wrap: bool,
    pub style: Style,
}

/// A body cell. `style` colours the text only (like Rich markup `[green]…[/green]`), layered over
/// the column's style: its colour wins, bold adds up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    pub style: Style,
}

/// Builders for tests (the CLI builds its columns as literals).
#[cfg(test)]
impl Column {
    pub fn new(header: &str) -> Self {
        Column {
            header: header.to_string(),
            no_wrap: false,
            style: Style::Plain,
        }
    }

    pub(crate) fn no_wrap(mut self) -> Self {
        self.no_wrap = true;
        self
    }

    pub(crate) fn style(mut self, style: Style) -> Self {
        self.style = style;
        self
    }
}

impl Cell {
    pub fn new(text: impl Into<String>, style: Style) -> Self {
        Cell {
            text: text.into(),
            style,
        }
    }

    pub fn plain(text: impl Into<String>) -> Self {
        Cell::new(text, Style::Plain)
    }
}

/// Rich's `Table(header_style="bold cyan", show_lines=True)`: heavy header box, centred bold cyan
/// headers, left-aligned cells, a separator line between rows. `width` is the terminal width; the
/// result has one `\n`-terminated line per terminal line. Missing cells in short rows are empty.
pub(crate) fn render_table(columns: &[Column], rows: &[Vec<Cell>], width: usize, color: bool) -> String {
    let cols: Vec<ColumnData> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| ColumnData {
            header: Some(RText::plain(&c.header)),
            cells: rows
                .iter()
                .map(|row| match row.get(i) {
                    Some(cell) => RText::styled(&cell.text, cell.style.attrs()),
                    None => RText::plain(""),
                })
                .collect(),
            no_wrap: c.no_wrap,
            attrs: c.style.attrs(),
        })
        .collect();
    let layout = Layout {
        show_header: true,
        show_lines: true,
        chars: &HEAVY_HEAD,
        header_attrs: Style::BoldCyan.attrs(),
    };
    layout.render(&cols, width as isize).emit(color)
}

/// Rich's `Table(show_header=False)` with a bold cyan no-wrap key column and a value column: the
/// `flwr ls --run-id` detail view.
pub(crate) fn render_key_values(rows: &[(String, Cell)], width: usize, color: bool) -> String {
    let cols = vec![
        ColumnData {
            header: None,
            cells: rows.iter().map(|(k, _)| RText::plain(k)).collect(),
            no_wrap: true,
            attrs: Style::BoldCyan.attrs(),
        },
        ColumnData {
            header: None,
            cells: rows
                .iter()
                .map(|(_, v)| RText::styled(&v.text, v.style.attrs()))
                .collect(),
            no_wrap: false,
            attrs: Attrs::default(),
        },
    ];
    let layout = Layout {
        show_header: false,
        show_lines: false,
        chars: &SQUARE,
        header_attrs: Attrs::default(),
    };
    layout.render(&cols, width as isize).emit(color)
}

/// Typer's error panel: a rounded box as wide as the terminal titled " Error ", the message
/// word-wrapped inside (over-long words folded), its own line breaks kept. With colour the border is
/// red and `-x` / `--option` / `<META>` in the message are highlighted like Typer does.
pub(crate) fn render_error_box(message: &str, width: usize, color: bool) -> String {
    let width = width as isize;
    let border = Style::Red.attrs();
    let mut out = Output::default();
    let text = highlight_options(&expand_tabs(message));
    // Panel(expand=True, padding=(0, 1)): the text gets `width - 4` cells.
    let mut lines = Vec::new();
    if width - 2 >= 1 {
        let inner = render_text_lines(&text, width - 4, Justify::Default, Overflow::Fold, false);
        for line in inner {
            let mut segs = vec![Seg::new(" ", Attrs::default())];
            segs.extend(line);
            segs.push(Seg::new(" ", Attrs::default()));
            lines.push(adjust_line_length(segs, width - 2, Attrs::default()));
        }
    }
    let mut top = Vec::new();
    if width <= 4 {
        top.push(Seg::new(
            &format!("╭{}╮", "─".repeat((width - 2).max(0) as usize)),
            border,
        ));
    } else {
        top.push(Seg::new("╭─", border));
        let mut title = RText::plain(" Error ");
        title.truncate(width - 4, Overflow::Fold, false);
        let title = title.string();
        let fill = width - 4 - cell_len(&title) as isize;
        top.push(Seg::new(&title, border));
        if fill > 0 {
            top.push(Seg::new(&"─".repeat(fill as usize), border));
        }
        top.push(Seg::new("─╮", border));
    }
    out.lines.push(top);
    for line in lines {
        let mut segs = vec![Seg::new("│", border)];
        segs.extend(line);
        segs.push(Seg::new("│", border));
        out.lines.push(segs);
    }
    out.lines.push(vec![Seg::new(
        &format!("╰{}╯", "─".repeat((width - 2).max(0) as usize)),
        border,
    )]);
    out.crop(width);
    out.emit(color)
}

/// One line of text in `style`, with ANSI SGR codes when `color` is on (as
/// Typer's `secho` prints the CLI's messages).
pub(crate) fn paint(text: &str, style: Style, color: bool) -> String {
    let attrs = style.attrs();
    if !color || attrs.is_plain() || text.is_empty() {
        return text.to_string();
    }
    format!("\x1b[{}m{text}\x1b[0m", attrs.sgr())
}

// ---------------------------------------------------------------------------------------------------
// Styles and segments
// ---------------------------------------------------------------------------------------------------

/// Resolved SGR attributes; `fg` is the SGR colour code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Attrs {
    bold: bool,
    fg: Option<u8>,
}

impl Style {
    fn attrs(self) -> Attrs {
        let (bold, fg) = match self {
            Style::Plain => (false, None),
            Style::Bold => (true, None),
            Style::Cyan => (false, Some(36)),
            Style::BoldCyan => (true, Some(36)),
            Style::Green => (false, Some(32)),
            Style::Red => (false, Some(31)),
            Style::Yellow => (false, Some(33)),
            Style::Blue => (false, Some(34)),
            Style::BrightBlack => (false, Some(90)),
        };
        Attrs { bold, fg }
    }
}

impl Attrs {
    /// `self` with `top` layered over it (Rich's `Style.__add__`).
    fn with(self, top: Attrs) -> Attrs {
        Attrs {
            bold: self.bold || top.bold,
            fg: top.fg.or(self.fg),
        }
    }

    fn is_plain(self) -> bool {
        !self.bold && self.fg.is_none()
    }

    fn sgr(self) -> String {
        let mut codes = Vec::new();
        if self.bold {
            codes.push("1".to_string());
        }
        if let Some(fg) = self.fg {
            codes.push(fg.to_string());
        }
        codes.join(";")
    }
}

/// A run of text in one style (Rich's `Segment`).
#[derive(Clone, Debug, PartialEq)]
struct Seg {
    text: String,
    attrs: Attrs,
}

impl Seg {
    fn new(text: &str, attrs: Attrs) -> Seg {
        Seg {
            text: text.to_string(),
            attrs,
        }
    }
}

type Line = Vec<Seg>;

#[derive(Default)]
struct Output {
    lines: Vec<Line>,
}

impl Output {
    /// `Console.print(crop=True)`: lines wider than the terminal are cut, never padded.
    fn crop(&mut self, width: isize) {
        for line in &mut self.lines {
            if line_len(line) as isize > width {
                *line = adjust_line_length(std::mem::take(line), width, Attrs::default());
            }
        }
    }

    fn emit(&self, color: bool) -> String {
        let mut out = String::new();
        for line in &self.lines {
            for seg in line {
                if color && !seg.attrs.is_plain() && !seg.text.is_empty() {
                    out.push_str(&format!("\x1b[{}m{}\x1b[0m", seg.attrs.sgr(), seg.text));
                } else {
                    out.push_str(&seg.text);
                }
            }
            out.push('\n');
        }
        out
    }
}

fn char_width(c: char) -> usize {
    c.width().unwrap_or(0)
}

fn cell_len(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

fn line_len(line: &[Seg]) -> usize {
    line.iter().map(|s| cell_len(&s.text)).sum()
}

/// Python's `str.isspace()` (what `\s` matches in Python regexes).
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `\w`.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Rich's `set_cell_size`: cut or pad `text` to exactly `total` cells (a wide character that does
/// not fit becomes a space).
fn set_cell_size(text: &str, total: isize) -> String {
    let total = total.max(0) as usize;
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = char_width(c);
        if used + w > total {
            break;
        }
        used += w;
        out.push(c);
    }
    out.extend(std::iter::repeat_n(' ', total - used));
    out
}

/// Rich's `Segment.adjust_line_length`: pad with a `pad`-styled run or cut to `width` cells.
fn adjust_line_length(line: Line, width: isize, pad: Attrs) -> Line {
    let len = line_len(&line) as isize;
    if len < width {
        let mut line = line;
        line.push(Seg::new(&" ".repeat((width - len) as usize), pad));
        line
    } else if len > width {
        let mut out = Vec::new();
        let mut used = 0isize;
        for seg in line {
            let w = cell_len(&seg.text) as isize;
            if used + w < width {
                used += w;
                out.push(seg);
            } else {
                out.push(Seg::new(&set_cell_size(&seg.text, width - used), seg.attrs));
                break;
            }
        }
        out
    } else {
        line
    }
}

fn expand_tabs(text: &str) -> String {
    if !text.contains('\t') {
        return text.to_string();
    }
    let mut out = String::new();
    let mut column = 0;
    for c in text.chars() {
        match c {
            '\t' => {
                let spaces = 8 - column % 8;
                out.extend(std::iter::repeat_n(' ', spaces));
                column += spaces;
            }
            '\n' => {
                out.push(c);
                column = 0;
            }
            c => {
                out.push(c);
                column += char_width(c);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------
// Rich text: characters plus style spans
// ---------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
struct Span {
    start: usize,
    end: usize,
    attrs: Attrs,
}

/// Rich's `Text`: characters (offsets are in characters) and spans layered in order.
#[derive(Clone, Debug, PartialEq)]
struct RText {
    chars: Vec<char>,
    spans: Vec<Span>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Justify {
    Default,
    Left,
    Center,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Overflow {
    Fold,
    Ellipsis,
}

impl RText {
    fn plain(text: &str) -> RText {
        RText {
            chars: expand_tabs(text).chars().collect(),
            spans: Vec::new(),
        }
    }

    /// Text whose every character carries `attrs` (a cell written as `[style]text[/style]`).
    fn styled(text: &str, attrs: Attrs) -> RText {
        let mut t = RText::plain(text);
        if !attrs.is_plain() && !t.chars.is_empty() {
            t.spans.push(Span {
                start: 0,
                end: t.chars.len(),
                attrs,
            });
        }
        t
    }

    fn string(&self) -> String {
        self.chars.iter().collect()
    }

    fn cell_len(&self) -> usize {
        self.chars.iter().map(|c| char_width(*c)).sum()
    }

    /// The text between two character offsets, spans clipped.
    fn slice(&self, start: usize, end: usize) -> RText {
        RText {
            chars: self.chars[start..end].to_vec(),
            spans: self
                .spans
                .iter()
                .filter_map(|s| {
                    let (a, b) = (s.start.max(start), s.end.min(end));
                    (b > a).then(|| Span {
                        start: a - start,
                        end: b - start,
                        attrs: s.attrs,
                    })
                })
                .collect(),
        }
    }

    /// `Text.divide`: pieces between the given character offsets.
    fn divide(&self, offsets: &[usize]) -> Vec<RText> {
        let mut bounds = vec![0];
        bounds.extend_from_slice(offsets);
        bounds.push(self.chars.len());
        bounds.windows(2).map(|w| self.slice(w[0], w[1])).collect()
    }

    /// `Text.split("\n", allow_blank=True)`.
    fn split_lines(&self) -> Vec<RText> {
        let breaks: Vec<usize> = self
            .chars
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == '\n')
            .map(|(i, _)| i)
            .collect();
        if breaks.is_empty() {
            return vec![self.clone()];
        }
        let mut lines = Vec::new();
        let mut start = 0;
        for b in breaks {
            lines.push(self.slice(start, b));
            start = b + 1;
        }
        lines.push(self.slice(start, self.chars.len()));
        lines
    }

    /// Replaces the characters, trimming spans that now reach past the end (Rich's `plain` setter).
    fn set_chars(&mut self, chars: Vec<char>) {
        let len = chars.len();
        if len < self.chars.len() {
            self.spans.retain(|s| s.start < len);
            for s in &mut self.spans {
                s.end = s.end.min(len);
            }
        }
        self.chars = chars;
    }

    fn trailing_space(&self) -> usize {
        self.chars.iter().rev().take_while(|c| is_space(**c)).count()
    }

    fn right_crop(&mut self, amount: usize) {
        let keep = self.chars.len() - amount;
        self.set_chars(self.chars[..keep].to_vec());
    }

    /// `Text.rstrip_end`: drop trailing whitespace beyond `size` characters.
    fn rstrip_end(&mut self, size: isize) {
        let len = self.chars.len() as isize;
        if len > size {
            let ws = self.trailing_space();
            if ws > 0 {
                self.right_crop(ws.min((len - size) as usize));
            }
        }
    }

    fn rstrip(&mut self) {
        let ws = self.trailing_space();
        if ws > 0 {
            self.right_crop(ws);
        }
    }

    /// `Text.truncate`.
    fn truncate(&mut self, width: isize, overflow: Overflow, pad: bool) {
        let len = self.cell_len() as isize;
        if len > width {
            let s = self.string();
            let new = match overflow {
                Overflow::Ellipsis => format!("{}…", set_cell_size(&s, width - 1)),
                Overflow::Fold => set_cell_size(&s, width),
            };
            self.set_chars(new.chars().collect());
        }
        if pad && len < width {
            self.chars.extend(std::iter::repeat_n(' ', (width - len) as usize));
        }
    }

    fn pad_left(&mut self, count: usize) {
        if count > 0 {
            let mut chars = vec![' '; count];
            chars.extend_from_slice(&self.chars);
            self.chars = chars;
            for s in &mut self.spans {
                s.start += count;
                s.end += count;
            }
        }
    }

    fn pad_right(&mut self, count: usize) {
        self.chars.extend(std::iter::repeat_n(' ', count));
    }

    /// `Text.render`: one segment per stretch with the same set of active spans.
    fn render(&self) -> Line {
        let mut cuts: Vec<usize> = vec![0, self.chars.len()];
        for s in &self.spans {
            cuts.push(s.start);
            cuts.push(s.end);
        }
        cuts.sort_unstable();
        cuts.dedup();
        let mut line = Vec::new();
        for w in cuts.windows(2) {
            let (a, b) = (w[0], w[1]);
            if b <= a || b > self.chars.len() {
                continue;
            }
            let attrs = self
                .spans
                .iter()
                .filter(|s| s.start <= a && b <= s.end)
                .fold(Attrs::default(), |acc, s| acc.with(s.attrs));
            line.push(Seg {
                text: self.chars[a..b].iter().collect(),
                attrs,
            });
        }
        line
    }

    /// Rich's `Text.__rich_measure__`: (longest word, longest line).
    fn measure(&self) -> (isize, isize) {
        let text = self.string();
        let max = text.split('\n').map(cell_len).max().unwrap_or(0) as isize;
        let min = text
            .split(is_space)
            .filter(|w| !w.is_empty())
            .map(cell_len)
            .max()
            .map(|m| m as isize)
            .unwrap_or(max);
        (min, max)
    }
}

/// Rich's `divide_line`: character offsets where a line must break to fit `width` cells.
fn divide_line(text: &[char], width: isize, fold: bool) -> Vec<usize> {
    let mut breaks = Vec::new();
    let mut offset = 0isize;
    let mut pos = 0;
    while pos < text.len() {
        // A word is `\s*\S+\s*`.
        let start = pos;
        let mut end = pos;
        while end < text.len() && is_space(text[end]) {
            end += 1;
        }
        if end == text.len() {
            break;
        }
        while end < text.len() && !is_space(text[end]) {
            end += 1;
        }
        while end < text.len() && is_space(text[end]) {
            end += 1;
        }
        pos = end;
        let word = &text[start..end];
        let word_cells = |w: &[char]| w.iter().map(|c| char_width(*c)).sum::<usize>() as isize;
        let trailing = word.iter().rev().take_while(|c| is_space(**c)).count();
        let word_len = word_cells(&word[..word.len() - trailing]);
        if width - offset >= word_len {
            offset += word_cells(word);
        } else if word_len > width {
            if fold {
                let pieces = chop_cells(word, width);
                let mut piece_start = start;
                for (i, piece) in pieces.iter().enumerate() {
                    if piece_start > 0 {
                        breaks.push(piece_start);
                    }
                    if i + 1 == pieces.len() {
                        offset = word_cells(piece);
                    } else {
                        piece_start += piece.len();
                    }
                }
            } else {
                if start > 0 {
                    breaks.push(start);
                }
                offset = word_cells(word);
            }
        } else if offset > 0 && start > 0 {
            breaks.push(start);
            offset = word_cells(word);
        }
    }
    breaks
}

/// Rich's `chop_cells`: split characters into pieces of at most `width` cells.
fn chop_cells(text: &[char], width: isize) -> Vec<Vec<char>> {
    let mut lines: Vec<Vec<char>> = vec![Vec::new()];
    let mut total = 0isize;
    for &c in text {
        let w = char_width(c) as isize;
        if total + w > width {
            lines.push(vec![c]);
            total = w;
        } else {
            if let Some(last) = lines.last_mut() {
                last.push(c);
            }
            total += w;
        }
    }
    lines
}

/// Rich's `Text.wrap`.
fn wrap(text: &RText, width: isize, justify: Justify, overflow: Overflow, no_wrap: bool) -> Vec<RText> {
    let mut out = Vec::new();
    for line in text.split_lines() {
        let mut pieces = if no_wrap {
            vec![line]
        } else {
            line.divide(&divide_line(&line.chars, width, overflow == Overflow::Fold))
        };
        for piece in &mut pieces {
            piece.rstrip_end(width);
            match justify {
                Justify::Default => {}
                Justify::Left => piece.truncate(width, overflow, true),
                Justify::Center => {
                    piece.rstrip();
                    piece.truncate(width, overflow, false);
                    let left = (width - piece.cell_len() as isize).max(0) as usize / 2;
                    piece.pad_left(left);
                    let right = (width - piece.cell_len() as isize).max(0) as usize;
                    piece.pad_right(right);
                }
            }
            piece.truncate(width, overflow, false);
        }
        out.extend(pieces);
    }
    out
}

/// `Console.render_lines(text, width)`: wrapped lines cut or padded (unstyled) to `width` cells.
fn render_text_lines(text: &RText, width: isize, justify: Justify, overflow: Overflow, no_wrap: bool) -> Vec<Line> {
    if width < 1 {
        return Vec::new();
    }
    wrap(text, width, justify, overflow, no_wrap)
        .iter()
        .map(|l| adjust_line_length(l.render(), width, Attrs::default()))
        .collect()
}

/// Typer's `OptionHighlighter`: spans for `-x` switches, `--options`, `<METAVARS>` and "Usage: ".
fn highlight_options(message: &str) -> RText {
    let mut text = RText::plain(message);
    let chars = &text.chars;
    let mut spans = Vec::new();
    let n = chars.len();
    // `(^|\W)(?P<switch>\-\w+)` and `(^|\W)(?P<option>\-\-[\w\-]+)`, each scanned like re.finditer.
    for (dashes, attrs) in [
        (1, Style::Bold.attrs().with(Style::Green.attrs())),
        (2, Style::BoldCyan.attrs()),
    ] {
        let body = |c: char| is_word(c) || (dashes == 2 && c == '-');
        let try_at = |p: usize| -> Option<(usize, usize)> {
            let group_at = |g: usize| -> Option<(usize, usize)> {
                if g + dashes > n || chars[g..g + dashes].iter().any(|c| *c != '-') {
                    return None;
                }
                let mut end = g + dashes;
                while end < n && body(chars[end]) {
                    end += 1;
                }
                (end > g + dashes).then_some((g, end))
            };
            let at_start = if p == 0 { group_at(p) } else { None };
            at_start.or_else(|| (p < n && !is_word(chars[p])).then(|| group_at(p + 1)).flatten())
        };
        let mut p = 0;
        while p <= n {
            match try_at(p) {
                Some((start, end)) => {
                    spans.push(Span { start, end, attrs });
                    p = end;
                }
                None => p += 1,
            }
        }
    }
    // `(?P<metavar>\<[^\>]+\>)`
    let mut p = 0;
    while p < n {
        if chars[p] == '<' {
            if let Some(close) = chars[p + 1..].iter().position(|c| *c == '>') {
                if close > 0 {
                    let end = p + 1 + close + 1;
                    spans.push(Span {
                        start: p,
                        end,
                        attrs: Style::Bold.attrs().with(Style::Yellow.attrs()),
                    });
                    p = end;
                    continue;
                }
            }
        }
        p += 1;
    }
    // `(?P<usage>Usage: )`
    let needle: Vec<char> = "Usage: ".chars().collect();
    let mut p = 0;
    while p + needle.len() <= n {
        if chars[p..p + needle.len()] == needle[..] {
            spans.push(Span {
                start: p,
                end: p + needle.len(),
                attrs: Style::Yellow.attrs(),
            });
            p += needle.len();
        } else {
            p += 1;
        }
    }
    text.spans = spans;
    text
}

// ---------------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------------

/// Box characters: `[left, horizontal, cross, right]` for rule lines, `[left, vertical, right]` for
/// content lines.
struct BoxChars {
    top: [char; 4],
    head: [char; 3],
    head_row: [char; 4],
    mid: [char; 3],
    row: [char; 4],
    foot: [char; 3],
    bottom: [char; 4],
}

const HEAVY_HEAD: BoxChars = BoxChars {
    top: ['┏', '━', '┳', '┓'],
    head: ['┃', '┃', '┃'],
    head_row: ['┡', '━', '╇', '┩'],
    mid: ['│', '│', '│'],
    row: ['├', '─', '┼', '┤'],
    foot: ['│', '│', '│'],
    bottom: ['└', '─', '┴', '┘'],
};

const SQUARE: BoxChars = BoxChars {
    top: ['┌', '─', '┬', '┐'],
    head: ['│', '│', '│'],
    head_row: ['├', '─', '┼', '┤'],
    mid: ['│', '│', '│'],
    row: ['├', '─', '┼', '┤'],
    foot: ['│', '│', '│'],
    bottom: ['└', '─', '┴', '┘'],
};

fn rule(chars: [char; 4], widths: &[isize]) -> Line {
    let mut s = String::new();
    s.push(chars[0]);
    for (i, w) in widths.iter().enumerate() {
        if i > 0 {
            s.push(chars[2]);
        }
        s.extend(std::iter::repeat_n(chars[1], (*w).max(0) as usize));
    }
    s.push(chars[3]);
    vec![Seg::new(&s, Attrs::default())]
}

struct ColumnData {
    header: Option<RText>,
    cells: Vec<RText>,
    no_wrap: bool,
    attrs: Attrs,
}

struct Layout<'a> {
    show_header: bool,
    show_lines: bool,
    chars: &'a BoxChars,
    header_attrs: Attrs,
}

/// A (minimum, maximum) width pair, as Rich's `Measurement`.
type Measure = (isize, isize);

fn normalize((min, max): Measure) -> Measure {
    let min = min.max(0).min(max);
    (min.max(0), min.max(max).max(0))
}

fn with_maximum((min, max): Measure, width: isize) -> Measure {
    (min.min(width), max.min(width))
}

/// `Measurement.get` applied to a measurement computed for `max_width`.
fn measurement_get(raw: Measure, max_width: isize) -> Measure {
    let m = with_maximum(normalize(raw), max_width);
    if m.1 < 1 {
        (0, 0)
    } else {
        normalize(m)
    }
}

/// A cell as the table measures it: the text inside one space of padding each side.
fn measure_cell(text: &RText, max_width: isize) -> Measure {
    if max_width < 1 {
        return (0, 0);
    }
    let padded = if max_width - 2 < 1 {
        (max_width, max_width)
    } else {
        let (min, max) = measurement_get(text.measure(), max_width);
        with_maximum((min + 2, max + 2), max_width)
    };
    measurement_get(padded, max_width)
}

/// Rich's `ratio_reduce`: take `total` away from `values` in proportion to `ratios`, at most
/// `maximums[i]` from each, rounding half to even like Python's `round`.
fn ratio_reduce(total: isize, ratios: &[isize], maximums: &[isize], values: &[isize]) -> Vec<isize> {
    let ratios: Vec<isize> = ratios
        .iter()
        .zip(maximums)
        .map(|(r, m)| if *m != 0 { *r } else { 0 })
        .collect();
    let mut total_ratio: isize = ratios.iter().sum();
    if total_ratio == 0 {
        return values.to_vec();
    }
    let mut remaining = total;
    let mut out = Vec::with_capacity(values.len());
    for ((ratio, maximum), value) in ratios.iter().zip(maximums).zip(values) {
        if *ratio != 0 && total_ratio > 0 {
            let distributed = (*maximum).min(round_half_even(ratio * remaining, total_ratio));
            out.push(value - distributed);
            remaining -= distributed;
            total_ratio -= ratio;
        } else {
            out.push(*value);
        }
    }
    out
}

/// `round(n / d)` in Python (banker's rounding), for `d > 0`.
fn round_half_even(n: isize, d: isize) -> isize {
    let q = n.div_euclid(d);
    let r = n.rem_euclid(d);
    match (2 * r).cmp(&d) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q & 1),
    }
}

/// Rich's `Table._collapse_widths`: shrink the widest wrappable columns toward the next widest.
fn collapse_widths(widths: &[isize], wrappable: &[bool], max_width: isize) -> Vec<isize> {
    let mut widths = widths.to_vec();
    let mut total: isize = widths.iter().sum();
    let mut excess = total - max_width;
    if wrappable.iter().any(|w| *w) {
        while total != 0 && excess > 0 {
            let max_column = widths
                .iter()
                .zip(wrappable)
                .filter(|(_, w)| **w)
                .map(|(v, _)| *v)
                .max()
                .unwrap_or(0);
            let second = widths
                .iter()
                .zip(wrappable)
                .map(|(v, w)| if *w && *v != max_column { *v } else { 0 })
                .max()
                .unwrap_or(0);
            let difference = max_column - second;
            let ratios: Vec<isize> = widths
                .iter()
                .zip(wrappable)
                .map(|(v, w)| isize::from(*w && *v == max_column))
                .collect();
            if ratios.iter().all(|r| *r == 0) || difference == 0 {
                break;
            }
            let max_reduce = vec![excess.min(difference); widths.len()];
            widths = ratio_reduce(excess, &ratios, &max_reduce, &widths);
            total = widths.iter().sum();
            excess = total - max_width;
        }
    }
    widths
}

impl Layout<'_> {
    fn column_cells<'c>(&self, col: &'c ColumnData) -> impl Iterator<Item = &'c RText> {
        let header = if self.show_header { col.header.as_ref() } else { None };
        header.into_iter().chain(col.cells.iter())
    }

    /// Rich's `Table._measure_column`.
    fn measure_column(&self, col: &ColumnData, max_width: isize) -> Measure {
        if max_width < 1 {
            return (0, 0);
        }
        let measures: Vec<Measure> = self.column_cells(col).map(|t| measure_cell(t, max_width)).collect();
        let min = measures.iter().map(|m| m.0).max().unwrap_or(1);
        let max = measures.iter().map(|m| m.1).max().unwrap_or(max_width);
        with_maximum((min, max), max_width)
    }

    /// Rich's `Table._calculate_column_widths` (no expand, no fixed widths).
    fn column_widths(&self, cols: &[ColumnData], max_width: isize) -> Vec<isize> {
        let ranges: Vec<Measure> = cols.iter().map(|c| self.measure_column(c, max_width)).collect();
        let mut widths: Vec<isize> = ranges.iter().map(|r| if r.1 == 0 { 1 } else { r.1 }).collect();
        let total: isize = widths.iter().sum();
        if total > max_width {
            let wrappable: Vec<bool> = cols.iter().map(|c| !c.no_wrap).collect();
            widths = collapse_widths(&widths, &wrappable, max_width);
            let total: isize = widths.iter().sum();
            if total > max_width {
                let ones = vec![1; widths.len()];
                widths = ratio_reduce(total - max_width, &ones, &widths, &widths);
            }
            widths = cols
                .iter()
                .zip(&widths)
                .map(|(c, w)| self.measure_column(c, *w).1)
                .collect();
        }
        widths
    }

    /// One table cell rendered into `width` cells: padding, wrapping, then the cell style on top.
    fn render_cell(&self, text: &RText, width: isize, justify: Justify, no_wrap: bool, attrs: Attrs) -> Vec<Line> {
        if width < 1 {
            return Vec::new();
        }
        render_text_lines(text, width - 2, justify, Overflow::Ellipsis, no_wrap)
            .into_iter()
            .map(|inner| {
                let mut line = vec![Seg::new(" ", Attrs::default())];
                line.extend(inner);
                line.push(Seg::new(" ", Attrs::default()));
                let line = line
                    .into_iter()
                    .map(|s| Seg {
                        text: s.text,
                        attrs: attrs.with(s.attrs),
                    })
                    .collect();
                adjust_line_length(line, width, attrs)
            })
            .collect()
    }

    fn render(&self, cols: &[ColumnData], console_width: isize) -> Output {
        let mut out = Output::default();
        if cols.is_empty() {
            out.lines.push(Vec::new());
            return out;
        }
        let extra = 2 + cols.len() as isize - 1;
        let widths = self.column_widths(cols, console_width - extra);
        let body_rows = cols.iter().map(|c| c.cells.len()).max().unwrap_or(0);
        let total_rows = body_rows + usize::from(self.show_header);
        let empty = RText::plain("");
        out.lines.push(rule(self.chars.top, &widths));
        for index in 0..total_rows {
            let first = index == 0;
            let last = index + 1 == total_rows;
            let header_row = first && self.show_header;
            let body_index = index.wrapping_sub(usize::from(self.show_header));
            let mut cells: Vec<Vec<Line>> = Vec::new();
            let mut cell_attrs = Vec::new();
            for (col, width) in cols.iter().zip(&widths) {
                let (text, justify, attrs) = if header_row {
                    let text = col.header.as_ref().unwrap_or(&empty);
                    (text, Justify::Center, self.header_attrs)
                } else {
                    (col.cells.get(body_index).unwrap_or(&empty), Justify::Left, col.attrs)
                };
                cells.push(self.render_cell(text, *width, justify, col.no_wrap, attrs));
                cell_attrs.push(attrs);
            }
            let row_height = cells.iter().map(|c| c.len()).max().unwrap_or(0);
            let height = row_height.max(1);
            for ((cell, width), attrs) in cells.iter_mut().zip(&widths).zip(&cell_attrs) {
                let blank = vec![Seg::new(&" ".repeat((*width).max(0) as usize), *attrs)];
                let missing = row_height - cell.len();
                if header_row {
                    let mut lines = vec![blank; missing];
                    lines.append(cell);
                    *cell = lines;
                } else {
                    cell.extend(std::iter::repeat_n(blank, missing));
                }
                while cell.len() < height {
                    cell.push(vec![Seg::new(&" ".repeat((*width).max(0) as usize), Attrs::default())]);
                }
            }
            let [left, vertical, right] = if first {
                self.chars.head
            } else if last {
                self.chars.foot
            } else {
                self.chars.mid
            };
            for line_no in 0..height {
                let mut line = vec![Seg::new(&left.to_string(), Attrs::default())];
                for (i, cell) in cells.iter().enumerate() {
                    if i > 0 {
                        line.push(Seg::new(&vertical.to_string(), Attrs::default()));
                    }
                    line.extend(cell[line_no].iter().cloned());
                }
                line.push(Seg::new(&right.to_string(), Attrs::default()));
                out.lines.push(line);
            }
            if header_row {
                out.lines.push(rule(self.chars.head_row, &widths));
            } else if self.show_lines && !last {
                out.lines.push(rule(self.chars.row, &widths));
            }
        }
        out.lines.push(rule(self.chars.bottom, &widths));
        out.crop(console_width);
        out
    }
}

#[cfg(test)]
mod tests {
    //! Expected strings were rendered by Rich 13.9.4 and Typer 0.20.1 (the versions in Flower 1.27's
    //! environment) from the table definitions in `flwr/cli/ls.py` and Typer's error panel, by
    //! `tools/gen_table_tests.py` (the fixed tests; `--check` compares every expected string here with
    //! Rich) and `tools/gen_rich_cases.py` (the random sample):
    //! `python3 -m venv /tmp/rich && /tmp/rich/bin/pip install rich==13.9.4 typer==0.20.1 &&
    //! /tmp/rich/bin/python tools/gen_table_tests.py --check`.

    use super::*;

    const RUNS: [[&str; 7]; 3] = [
        [
            "11552096691401131052",
            "@none/default",
            "@anchors/fedlogreg==1.0.0",
            "finished:completed",
            "green",
            "5s",
            "2026-11-28 02:08:07Z",
        ],
        [
            "4328516879096858863",
            "@none/default",
            "@anchors/fedlogreg==1.0.0",
            "finished:completed",
            "green",
            "6s",
            "2026-11-28 02:07:59Z",
        ],
        [
            "77",
            "@none/default",
            "@anchors/fedlogreg==1.0.0",
            "running",
            "blue",
            "1m 3s",
            "2026-11-28 02:09:00Z",
        ],
    ];

    const ERR_60_MSG: &str =
        "The options '--run-id' and '--limit' cannot be used together. This message is long enough to wrap.";

    enum Case {
        Table(
            Vec<(&'static str, bool, Style)>,
            Vec<Vec<(&'static str, Style)>>,
            usize,
            bool,
            &'static str,
        ),
        Kv(Vec<(&'static str, &'static str, Style)>, usize, bool, &'static str),
        Err(&'static str, usize, bool, &'static str),
    }

    /// Random layouts (wrapping, newlines in cells, wide characters, tiny widths, colour), rendered by
    /// Rich 13.9.4, the first five of each kind out of 300:
    /// `python3 -m venv /tmp/rich && /tmp/rich/bin/pip install rich==13.9.4 typer==0.20.1 &&
    /// /tmp/rich/bin/python tools/gen_rich_cases.py 300 99` (`--all` prints all 300, which pass too).
    #[test]
    fn random_sample_matches_rich() {
        let cases = vec![
            Case::Kv(vec![("中文字符 ", "", Style::Green)], 40, true, "┌───────────┬──┐\n│\u{1b}[1;36m \u{1b}[0m\u{1b}[1;36m中文字符 \u{1b}[0m\u{1b}[1;36m \u{1b}[0m│  │\n└───────────┴──┘\n"),
            Case::Err("02:08:07Z @none/default  héllo  xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n2026-11-28 5s  11552096691401131052 status  11552096691401131052 2026-11-28 run", 40, false, "╭─ Error ──────────────────────────────╮\n│ 02:08:07Z @none/default  héllo       │\n│ xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx       │\n│ 2026-11-28 5s  11552096691401131052  │\n│ status  11552096691401131052         │\n│ 2026-11-28 run                       │\n╰──────────────────────────────────────╯\n"),
            Case::Err("N/A  ok 02:08:07Z -h 5s\nrun  Usage:", 120, false, "╭─ Error ──────────────────────────────────────────────────────────────────────────────────────────────────────────────╮\n│ N/A  ok 02:08:07Z -h 5s                                                                                              │\n│ run  Usage:                                                                                                          │\n╰──────────────────────────────────────────────────────────────────────────────────────────────────────────────────────╯\n"),
            Case::Err("status @anchors/fedlogreg==1.0.0 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx  @none/default Usage:", 45, false, "╭─ Error ───────────────────────────────────╮\n│ status @anchors/fedlogreg==1.0.0          │\n│ xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx            │\n│ @none/default Usage:                      │\n╰───────────────────────────────────────────╯\n"),
            Case::Table(vec![("run  finished:completed status", true, Style::Red), ("Usage:", false, Style::Plain), ("--limit", false, Style::Cyan), ("@anchors/fedlogreg==1.0.0  ok ", false, Style::Cyan)], vec![vec![("", Style::Bold), ("", Style::Cyan), ("changed -h ", Style::BoldCyan), ("N/A  中文字符 it's changed", Style::BrightBlack)], vec![("a\nok", Style::Yellow), ("N/A  1.2 MB  5s", Style::Cyan), ("", Style::Red), ("1.2 MB  中文字符 finished:completed finished:completed it's", Style::Red)], vec![("@anchors/fedlogreg==1.0.0", Style::BoldCyan), ("@  run  -h", Style::Green), ("", Style::BrightBlack), ("11552096691401131052 <ARG>", Style::Green)]], 4, true, "┏┳┳┳\n┃┃┃┃\n┡╇╇╇\n││││\n├┼┼┼\n││││\n├┼┼┼\n││││\n└┴┴┴\n"),
            Case::Kv(vec![("@", " @none/default\n11552096691401131052  héllo  N/A 5s", Style::Red), ("héllo finished:completed", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx -h 11552096691401131052", Style::Bold), ("02:08:07Z a\n@ Usage:", "héllo xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx  --limit", Style::Green), (" xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "", Style::Green)], 20, true, "┌─────────────────┬┐\n│\u{1b}[1;36m \u{1b}[0m\u{1b}[1;36m@              \u{1b}[0m\u{1b}[1;36m \u{1b}[0m││\n│\u{1b}[1;36m \u{1b}[0m\u{1b}[1;36mhéllo finished…\u{1b}[0m\u{1b}[1;36m \u{1b}[0m││\n│\u{1b}[1;36m \u{1b}[0m\u{1b}[1;36m02:08:07Z a    \u{1b}[0m\u{1b}[1;36m \u{1b}[0m││\n│\u{1b}[1;36m \u{1b}[0m\u{1b}[1;36m@ Usage:       \u{1b}[0m\u{1b}[1;36m \u{1b}[0m││\n│\u{1b}[1;36m \u{1b}[0m\u{1b}[1;36m xxxxxxxxxxxxx…\u{1b}[0m\u{1b}[1;36m \u{1b}[0m││\n└─────────────────┴┘\n"),
            Case::Table(vec![("@ 02:08:07Z\n2026-11-28", false, Style::Yellow)], vec![vec![("…", Style::Cyan)], vec![("--limit", Style::Yellow)], vec![("02:08:07Z 5s héllo", Style::Yellow)]], 80, true, "┏━━━━━━━━━━━━━━━━━━━━┓\n┃\u{1b}[1;36m \u{1b}[0m\u{1b}[1;36m   @ 02:08:07Z    \u{1b}[0m\u{1b}[1;36m \u{1b}[0m┃\n┃\u{1b}[1;36m \u{1b}[0m\u{1b}[1;36m    2026-11-28    \u{1b}[0m\u{1b}[1;36m \u{1b}[0m┃\n┡━━━━━━━━━━━━━━━━━━━━┩\n│\u{1b}[33m \u{1b}[0m\u{1b}[36m…\u{1b}[0m\u{1b}[33m                 \u{1b}[0m\u{1b}[33m \u{1b}[0m│\n├────────────────────┤\n│\u{1b}[33m \u{1b}[0m\u{1b}[33m--limit\u{1b}[0m\u{1b}[33m           \u{1b}[0m\u{1b}[33m \u{1b}[0m│\n├────────────────────┤\n│\u{1b}[33m \u{1b}[0m\u{1b}[33m02:08:07Z 5s héllo\u{1b}[0m\u{1b}[33m \u{1b}[0m│\n└────────────────────┘\n"),
            Case::Table(vec![("11552096691401131052 run\n中文字符", false, Style::Bold), ("<ARG> N/A", true, Style::BrightBlack), ("finished:completed 2026-11-28", true, Style::Cyan), ("ok  ok N/A\n中文字符", true, Style::Blue), ("", false, Style::Yellow), ("héllo ", true, Style::Green)], vec![vec![("", Style::BrightBlack), ("02:08:07Z ", Style::Red), (" 02:08:07Z xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx status 02:08:07Z", Style::BrightBlack), ("1.2 MB 5s @none/default\n@none/default N/A", Style::Red), ("-h @ xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx status  finished:completed", Style::Plain), ("1.2 MB", Style::Bold)], vec![("2026-11-28", Style::Bold), ("changed", Style::Red), ("N/A\nok", Style::Plain), ("changed a", Style::BrightBlack), ("@ <ARG>", Style::Bold), ("", Style::Red)]], 46, false, "┏┳━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━\n┃┃ ┃                            ┃ ok  ok N/A  \n┃┃ ┃ finished:completed 2026-1… ┃  中文字符   \n┡╇━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━\n││ │  02:08:07Z xxxxxxxxxxxxxx… │ 1.2 MB 5s … \n││ │                            │ @none/defa… \n├┼─┼────────────────────────────┼─────────────\n││ │ N/A                        │ changed a   \n││ │ ok                         │             \n└┴─┴────────────────────────────┴─────────────\n"),
            Case::Table(vec![("11552096691401131052 ok", true, Style::BoldCyan), ("status @  -h\n@anchors/fedlogreg==1.0.0", true, Style::BrightBlack), ("ok 中文字符 changed", true, Style::Plain), ("a status finished:completed ok", true, Style::Yellow), ("a", true, Style::Yellow), ("run 2026-11-28 N/A", false, Style::Bold), ("Usage: 中文字符", false, Style::Bold)], vec![vec![("héllo status  xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx changed", Style::Green), ("finished:completed", Style::BrightBlack), ("run 中文字符\n中文字符  1.2 MB", Style::Bold), ("…", Style::Red), ("héllo finished:completed ok", Style::Red), ("ok", Style::Cyan), ("11552096691401131052 a", Style::Green)], vec![("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", Style::Cyan), ("1.2 MB @anchors/fedlogreg==1.0.0", Style::Green), (" --limit", Style::Plain), (" 中文字符 @none/default", Style::Yellow), ("", Style::Red), ("1.2 MB 02:08:07Z ", Style::Bold), ("", Style::Plain)], vec![("héllo", Style::Green), ("", Style::Plain), ("it's  run <ARG>", Style::Yellow), ("finished:completed N/A it's Usage:", Style::Plain), ("…", Style::Bold), ("@\n@none/default", Style::Blue), ("--limit\na\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx run  it's", Style::Green)]], 100, false, "┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━┳━━━━┳━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳┳┓\n┃                                      ┃   status @  -h   ┃    ┃                    ┃            ┃┃┃\n┃       11552096691401131052 ok        ┃ @anchors/fedlog… ┃ o… ┃ a status finished… ┃     a      ┃┃┃\n┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━╇━━━━╇━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇╇┩\n│ héllo status  xxxxxxxxxxxxxxxxxxxxx… │ finished:comple… │ r… │ …                  │ héllo fin… │││\n│                                      │                  │  … │                    │            │││\n├──────────────────────────────────────┼──────────────────┼────┼────────────────────┼────────────┼┼┤\n│ xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx       │ 1.2 MB @anchors… │  … │  中文字符 @none/d… │            │││\n├──────────────────────────────────────┼──────────────────┼────┼────────────────────┼────────────┼┼┤\n│ héllo                                │                  │ i… │ finished:complete… │ …          │││\n└──────────────────────────────────────┴──────────────────┴────┴────────────────────┴────────────┴┴┘\n"),
            Case::Kv(vec![("中文字符\n@anchors/fedlogreg==1.0.0\nit's 1.2 MB", "", Style::Green), ("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx  N/A\nrun", "", Style::Bold)], 160, true, "┌─────────────────────────────────────┬──┐\n│\u{1b}[1;36m \u{1b}[0m\u{1b}[1;36m中文字符                           \u{1b}[0m\u{1b}[1;36m \u{1b}[0m│  │\n│\u{1b}[1;36m \u{1b}[0m\u{1b}[1;36m@anchors/fedlogreg==1.0.0          \u{1b}[0m\u{1b}[1;36m \u{1b}[0m│  │\n│\u{1b}[1;36m \u{1b}[0m\u{1b}[1;36mit's 1.2 MB                        \u{1b}[0m\u{1b}[1;36m \u{1b}[0m│  │\n│\u{1b}[1;36m \u{1b}[0m\u{1b}[1;36mxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx  N/A\u{1b}[0m\u{1b}[1;36m \u{1b}[0m│  │\n│\u{1b}[1;36m \u{1b}[0m\u{1b}[1;36mrun                                \u{1b}[0m\u{1b}[1;36m \u{1b}[0m│  │\n└─────────────────────────────────────┴──┘\n"),
            Case::Err("-h\n2026-11-28 a ", 5, false, "╭─ ─╮\n│ - │\n│ h │\n│ 2 │\n│ 0 │\n│ 2 │\n│ 6 │\n│ - │\n│ 1 │\n│ 1 │\n│ - │\n│ 2 │\n│ 8 │\n│   │\n│ a │\n╰───╯\n"),
            Case::Kv(vec![], 10, true, "┌───────┬┐\n└───────┴┘\n"),
            Case::Table(vec![("status", false, Style::Cyan), ("it's changed  1.2 MB", true, Style::BrightBlack), ("… …", true, Style::Bold)], vec![vec![("1.2 MB @\n<ARG>", Style::BrightBlack), ("--limit Usage:", Style::Cyan), ("@ héllo Usage: ", Style::BrightBlack)], vec![("@none/default", Style::BrightBlack), ("", Style::BoldCyan), ("-h 2026-11-28 N/A  2026-11-28", Style::Plain)]], 42, false, "┏┳━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┓\n┃┃ it's change… ┃          … …           ┃\n┡╇━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━┩\n││ --limit Usa… │ @ héllo Usage:         │\n├┼──────────────┼────────────────────────┤\n││              │ -h 2026-11-28 N/A  20… │\n└┴──────────────┴────────────────────────┘\n"),
            Case::Kv(vec![], 3, true, "┌┬┐\n└┴┘\n"),
            Case::Err(" finished:completed\n@none/default  @anchors/fedlogreg==1.0.0  changed\n5s\nchanged\n02:08:07Z a @none/default\n5s status  ok", 12, false, "╭─ Error ──╮\n│  finishe │\n│ d:comple │\n│ ted      │\n│ @none/de │\n│ fault    │\n│ @anchors │\n│ /fedlogr │\n│ eg==1.0. │\n│ 0        │\n│ changed  │\n│ 5s       │\n│ changed  │\n│ 02:08:07 │\n│ Z a      │\n│ @none/de │\n│ fault    │\n│ 5s       │\n│ status   │\n│ ok       │\n╰──────────╯\n"),
        ];
        for (i, case) in cases.into_iter().enumerate() {
            let (got, want) = match case {
                Case::Table(cols, rows, width, color, want) => {
                    let cols: Vec<Column> = cols
                        .iter()
                        .map(|(h, no_wrap, style)| Column {
                            header: h.to_string(),
                            no_wrap: *no_wrap,
                            style: *style,
                        })
                        .collect();
                    let rows: Vec<Vec<Cell>> = rows
                        .iter()
                        .map(|r| r.iter().map(|(t, s)| Cell::new(*t, *s)).collect())
                        .collect();
                    (render_table(&cols, &rows, width, color), want)
                }
                Case::Kv(rows, width, color, want) => {
                    let rows: Vec<(String, Cell)> = rows
                        .iter()
                        .map(|(k, t, s)| (k.to_string(), Cell::new(*t, *s)))
                        .collect();
                    (render_key_values(&rows, width, color), want)
                }
                Case::Err(message, width, color, want) => (render_error_box(message, width, color), want),
            };
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn wide_characters_use_display_width() {
        let cols = [Column::new("名前"), Column::new("v")];
        let rows = [vec![Cell::plain("中文字符中文"), Cell::plain("x")]];
        // Rendered by Rich 13.9.4: at width 13 the CJK cell is cut to "中文…"; at width 12 the cut
        // falls inside a wide character, which becomes a space.
        let want_13 = "\
┏━━━━━━━┳━━━┓
┃ 名前  ┃ v ┃
┡━━━━━━━╇━━━┩
│ 中文… │ x │
└───────┴───┘
";
        assert_eq!(render_table(&cols, &rows, 13, false), want_13);
        let want_12 = "\
┏━━━━━━┳━━━┓
┃ 名前 ┃ v ┃
┡━━━━━━╇━━━┩
│ 中 … │ x │
└──────┴───┘
";
        assert_eq!(render_table(&cols, &rows, 12, false), want_12);
    }

    #[test]
    fn ansi_codes_never_count_toward_width() {
        let cols = [Column::new("A").style(Style::BrightBlack), Column::new("B")];
        let rows = [vec![Cell::new("red", Style::Red), Cell::new("bold", Style::Bold)]];
        let plain = render_table(&cols, &rows, 80, false);
        let colored = render_table(&cols, &rows, 80, true);
        let mut stripped = String::new();
        let mut in_escape = false;
        for c in colored.chars() {
            match (in_escape, c) {
                (false, '\x1b') => in_escape = true,
                (true, 'm') => in_escape = false,
                (true, _) => {}
                (false, c) => stripped.push(c),
            }
        }
        assert_eq!(stripped, plain);
        assert!(colored.contains("\x1b[31mred\x1b[0m"));
        assert!(colored.contains("\x1b[90m \x1b[0m"));
        assert!(colored.contains("\x1b[1mbold\x1b[0m"));
    }

    #[test]
    fn tiny_widths_never_panic() {
        let cols = runs_columns();
        let rows = runs(3);
        for width in 0..=12 {
            let table = render_table(&cols, &rows, width, true);
            assert!(table.lines().count() >= 3);
            let _ = render_table(&cols, &[], width, false);
            let _ = render_table(&[], &rows, width, false);
            let _ = render_key_values(&detail(13), width, true);
            let _ = render_key_values(&[], width, false);
            let _ = render_error_box("Run ID not found.\n\nTry --help.", width, true);
            let _ = render_error_box("", width, false);
        }
    }

    #[test]
    fn shrinking_helpers_match_rich() {
        // Values checked against rich._ratio.ratio_reduce and Table._collapse_widths.
        assert_eq!(ratio_reduce(2, &[1, 1], &[2, 2], &[10, 10]), vec![9, 9]);
        assert_eq!(ratio_reduce(3, &[1, 1], &[3, 3], &[10, 10]), vec![8, 9]);
        assert_eq!(ratio_reduce(5, &[1, 0, 1], &[1, 5, 5], &[4, 4, 4]), vec![3, 4, 0]);
        assert_eq!(
            collapse_widths(&[22, 15, 27, 20, 9, 22], &[false, true, true, true, true, true], 113),
            vec![22, 15, 25, 20, 9, 22]
        );
        assert_eq!(
            collapse_widths(&[22, 15, 27, 20, 9, 22], &[false, true, true, true, true, true], 73),
            vec![22, 11, 10, 11, 9, 10]
        );
        assert_eq!(round_half_even(5, 2), 2);
        assert_eq!(round_half_even(7, 2), 4);
    }

    /// The columns of `flwr ls`.
    fn runs_columns() -> Vec<Column> {
        vec![
            Column::new("Run ID").no_wrap(),
            Column::new("Federation"),
            Column::new("App"),
            Column::new("Status"),
            Column::new("Elapsed").style(Style::Blue),
            Column::new("Status Changed @"),
        ]
    }

    fn runs(n: usize) -> Vec<Vec<Cell>> {
        RUNS[..n]
            .iter()
            .map(|r| {
                let status_style = if r[4] == "green" { Style::Green } else { Style::Blue };
                vec![
                    Cell::new(r[0], Style::Bold),
                    Cell::plain(r[1]),
                    Cell::plain(r[2]),
                    Cell::new(r[3], status_style),
                    Cell::plain(r[5]),
                    Cell::plain(r[6]),
                ]
            })
            .collect()
    }

    /// The rows of `flwr ls --run-id`.
    fn detail(n: usize) -> Vec<(String, Cell)> {
        let rows = [
            ("Run ID", "11552096691401131052", Style::Bold),
            ("Federation", "@none/default", Style::Plain),
            ("App", "@anchors/fedlogreg==1.0.0", Style::Plain),
            ("FAB Hash", "98b366ef...51b26366", Style::Plain),
            ("Status", "finished:completed", Style::Green),
            ("Elapsed", "5s", Style::Blue),
            ("Pending At", "2026-11-28 02:08:01Z", Style::Plain),
            ("Starting At", "2026-11-28 02:08:02Z", Style::Plain),
            ("Running At", "2026-11-28 02:08:02Z", Style::Plain),
            ("Finished At", "2026-11-28 02:08:07Z", Style::Plain),
            ("Network traffic (inbound)", "1.2 MB", Style::Blue),
            ("Network traffic (outbound)", "3.4 kB", Style::Blue),
            ("Network Traffic (total)", "1.2 MB", Style::Blue),
        ];
        rows[..n]
            .iter()
            .map(|(k, v, s)| (k.to_string(), Cell::new(*v, *s)))
            .collect()
    }

    #[test]
    fn runs_120() {
        let want = "\
┏━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━┓
┃        Run ID        ┃  Federation   ┃           App           ┃       Status       ┃ Elapsed ┃   Status Changed @   ┃
┡━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━┩
│ 11552096691401131052 │ @none/default │ @anchors/fedlogreg==1.… │ finished:completed │ 5s      │ 2026-11-28 02:08:07Z │
├──────────────────────┼───────────────┼─────────────────────────┼────────────────────┼─────────┼──────────────────────┤
│ 4328516879096858863  │ @none/default │ @anchors/fedlogreg==1.… │ finished:completed │ 6s      │ 2026-11-28 02:07:59Z │
└──────────────────────┴───────────────┴─────────────────────────┴────────────────────┴─────────┴──────────────────────┘
";
        assert_eq!(render_table(&runs_columns(), &runs(2), 120, false), want);
    }

    #[test]
    fn runs_80() {
        let want = "\
┏━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━┓
┃                      ┃           ┃          ┃           ┃         ┃  Status  ┃
┃                      ┃           ┃          ┃           ┃         ┃ Changed  ┃
┃        Run ID        ┃ Federati… ┃   App    ┃  Status   ┃ Elapsed ┃    @     ┃
┡━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━┩
│ 11552096691401131052 │ @none/de… │ @anchor… │ finished… │ 5s      │ 2026-11… │
│                      │           │          │           │         │ 02:08:0… │
├──────────────────────┼───────────┼──────────┼───────────┼─────────┼──────────┤
│ 4328516879096858863  │ @none/de… │ @anchor… │ finished… │ 6s      │ 2026-11… │
│                      │           │          │           │         │ 02:07:5… │
├──────────────────────┼───────────┼──────────┼───────────┼─────────┼──────────┤
│ 77                   │ @none/de… │ @anchor… │ running   │ 1m 3s   │ 2026-11… │
│                      │           │          │           │         │ 02:09:0… │
└──────────────────────┴───────────┴──────────┴───────────┴─────────┴──────────┘
";
        assert_eq!(render_table(&runs_columns(), &runs(3), 80, false), want);
    }

    #[test]
    fn runs_200() {
        let want = "\
┏━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━┓
┃        Run ID        ┃  Federation   ┃            App            ┃       Status       ┃ Elapsed ┃   Status Changed @   ┃
┡━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━┩
│ 11552096691401131052 │ @none/default │ @anchors/fedlogreg==1.0.0 │ finished:completed │ 5s      │ 2026-11-28 02:08:07Z │
├──────────────────────┼───────────────┼───────────────────────────┼────────────────────┼─────────┼──────────────────────┤
│ 4328516879096858863  │ @none/default │ @anchors/fedlogreg==1.0.0 │ finished:completed │ 6s      │ 2026-11-28 02:07:59Z │
├──────────────────────┼───────────────┼───────────────────────────┼────────────────────┼─────────┼──────────────────────┤
│ 77                   │ @none/default │ @anchors/fedlogreg==1.0.0 │ running            │ 1m 3s   │ 2026-11-28 02:09:00Z │
└──────────────────────┴───────────────┴───────────────────────────┴────────────────────┴─────────┴──────────────────────┘
";
        assert_eq!(render_table(&runs_columns(), &runs(3), 200, false), want);
    }

    #[test]
    fn runs_40() {
        let want = "\
┏━━━━━━━━━━━━━━━━━━━━━━┳━━┳━━┳━━┳━━━┳━━┓
┃        Run ID        ┃  ┃  ┃  ┃ … ┃  ┃
┡━━━━━━━━━━━━━━━━━━━━━━╇━━╇━━╇━━╇━━━╇━━┩
│ 11552096691401131052 │  │  │  │ … │  │
└──────────────────────┴──┴──┴──┴───┴──┘
";
        assert_eq!(render_table(&runs_columns(), &runs(1), 40, false), want);
    }

    #[test]
    fn runs_10() {
        let want = "\
┏━━━┳┳┳┳┳┓
┃ … ┃┃┃┃┃┃
┡━━━╇╇╇╇╇┩
│ … ││││││
└───┴┴┴┴┴┘
";
        assert_eq!(render_table(&runs_columns(), &runs(1), 10, false), want);
    }

    #[test]
    fn runs_empty() {
        let want = "\
┏━━━━━━━━┳━━━━━━━━━━━━┳━━━━━┳━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━━━━━━━━━┓
┃ Run ID ┃ Federation ┃ App ┃ Status ┃ Elapsed ┃ Status Changed @ ┃
┡━━━━━━━━╇━━━━━━━━━━━━╇━━━━━╇━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━━━━━━━━━┩
└────────┴────────────┴─────┴────────┴─────────┴──────────────────┘
";
        assert_eq!(render_table(&runs_columns(), &runs(0), 120, false), want);
    }

    #[test]
    fn detail_120() {
        let want = "\
┌────────────────────────────┬───────────────────────────┐
│ Run ID                     │ 11552096691401131052      │
│ Federation                 │ @none/default             │
│ App                        │ @anchors/fedlogreg==1.0.0 │
│ FAB Hash                   │ 98b366ef...51b26366       │
│ Status                     │ finished:completed        │
│ Elapsed                    │ 5s                        │
│ Pending At                 │ 2026-11-28 02:08:01Z      │
│ Starting At                │ 2026-11-28 02:08:02Z      │
│ Running At                 │ 2026-11-28 02:08:02Z      │
│ Finished At                │ 2026-11-28 02:08:07Z      │
│ Network traffic (inbound)  │ 1.2 MB                    │
│ Network traffic (outbound) │ 3.4 kB                    │
│ Network Traffic (total)    │ 1.2 MB                    │
└────────────────────────────┴───────────────────────────┘
";
        assert_eq!(render_key_values(&detail(13), 120, false), want);
    }

    #[test]
    fn detail_40() {
        let want = "\
┌────────────────────────────┬─────────┐
│ Run ID                     │ 115520… │
│ Federation                 │ @none/… │
│ App                        │ @ancho… │
│ FAB Hash                   │ 98b366… │
│ Status                     │ finish… │
│ Elapsed                    │ 5s      │
│ Pending At                 │ 2026-1… │
│                            │ 02:08:… │
│ Starting At                │ 2026-1… │
│                            │ 02:08:… │
│ Running At                 │ 2026-1… │
│                            │ 02:08:… │
│ Finished At                │ 2026-1… │
│                            │ 02:08:… │
│ Network traffic (inbound)  │ 1.2 MB  │
│ Network traffic (outbound) │ 3.4 kB  │
│ Network Traffic (total)    │ 1.2 MB  │
└────────────────────────────┴─────────┘
";
        assert_eq!(render_key_values(&detail(13), 40, false), want);
    }

    #[test]
    fn detail_20() {
        let want = "\
┌────────────┬─────┐
│ Run ID     │ 11… │
│ Federation │ @n… │
│ App        │ @a… │
└────────────┴─────┘
";
        assert_eq!(render_key_values(&detail(3), 20, false), want);
    }

    #[test]
    fn err_120() {
        let want = "\
╭─ Error ──────────────────────────────────────────────────────────────────────────────────────────────────────────────╮
│ Run ID not found.                                                                                                    │
╰──────────────────────────────────────────────────────────────────────────────────────────────────────────────────────╯
";
        assert_eq!(render_error_box("Run ID not found.", 120, false), want);
    }

    #[test]
    fn err_60() {
        let want = "\
╭─ Error ──────────────────────────────────────────────────╮
│ The options '--run-id' and '--limit' cannot be used      │
│ together. This message is long enough to wrap.           │
╰──────────────────────────────────────────────────────────╯
";
        assert_eq!(render_error_box(ERR_60_MSG, 60, false), want);
    }

    #[test]
    fn err_multi() {
        let want = "\
╭─ Error ────────────────────────────────────────╮
│ Permission denied.                             │
│ Account 'alice' may not list runs of           │
│ federation                                     │
│                                                │
│ @none/default                                  │
╰────────────────────────────────────────────────╯
";
        assert_eq!(
            render_error_box(
                "Permission denied.\nAccount 'alice' may not list runs of federation\n\n@none/default",
                50,
                false
            ),
            want
        );
    }

    #[test]
    fn err_fold() {
        let want = "\
╭─ Error ────────────────────╮
│ Unknown-key:aVeryLongIdent │
│ ifierWithoutAnySpacesThatM │
│ ustBeFolded                │
╰────────────────────────────╯
";
        assert_eq!(
            render_error_box(
                "Unknown-key:aVeryLongIdentifierWithoutAnySpacesThatMustBeFolded",
                30,
                false
            ),
            want
        );
    }

    #[test]
    fn err_5() {
        let want = "\
╭─ ─╮
│ x │
╰───╯
";
        assert_eq!(render_error_box("x", 5, false), want);
    }

    #[test]
    fn runs_120_color() {
        let want = "┏━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━┓\n┃\x1b[1;36m \x1b[0m\x1b[1;36m       Run ID       \x1b[0m\x1b[1;36m \x1b[0m┃\x1b[1;36m \x1b[0m\x1b[1;36m Federation  \x1b[0m\x1b[1;36m \x1b[0m┃\x1b[1;36m \x1b[0m\x1b[1;36m          App          \x1b[0m\x1b[1;36m \x1b[0m┃\x1b[1;36m \x1b[0m\x1b[1;36m      Status      \x1b[0m\x1b[1;36m \x1b[0m┃\x1b[1;36m \x1b[0m\x1b[1;36mElapsed\x1b[0m\x1b[1;36m \x1b[0m┃\x1b[1;36m \x1b[0m\x1b[1;36m  Status Changed @  \x1b[0m\x1b[1;36m \x1b[0m┃\n┡━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━┩\n│ \x1b[1m11552096691401131052\x1b[0m │ @none/default │ @anchors/fedlogreg==1.… │ \x1b[32mfinished:completed\x1b[0m │\x1b[34m \x1b[0m\x1b[34m5s     \x1b[0m\x1b[34m \x1b[0m│ 2026-11-28 02:08:07Z │\n├──────────────────────┼───────────────┼─────────────────────────┼────────────────────┼─────────┼──────────────────────┤\n│ \x1b[1m4328516879096858863\x1b[0m  │ @none/default │ @anchors/fedlogreg==1.… │ \x1b[32mfinished:completed\x1b[0m │\x1b[34m \x1b[0m\x1b[34m6s     \x1b[0m\x1b[34m \x1b[0m│ 2026-11-28 02:07:59Z │\n└──────────────────────┴───────────────┴─────────────────────────┴────────────────────┴─────────┴──────────────────────┘\n";
        assert_eq!(render_table(&runs_columns(), &runs(2), 120, true), want);
    }

    #[test]
    fn runs_80_color() {
        let want = "┏━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━┓\n┃\x1b[1;36m                      \x1b[0m┃\x1b[1;36m           \x1b[0m┃\x1b[1;36m          \x1b[0m┃\x1b[1;36m           \x1b[0m┃\x1b[1;36m         \x1b[0m┃\x1b[1;36m \x1b[0m\x1b[1;36m Status \x1b[0m\x1b[1;36m \x1b[0m┃\n┃\x1b[1;36m                      \x1b[0m┃\x1b[1;36m           \x1b[0m┃\x1b[1;36m          \x1b[0m┃\x1b[1;36m           \x1b[0m┃\x1b[1;36m         \x1b[0m┃\x1b[1;36m \x1b[0m\x1b[1;36mChanged \x1b[0m\x1b[1;36m \x1b[0m┃\n┃\x1b[1;36m \x1b[0m\x1b[1;36m       Run ID       \x1b[0m\x1b[1;36m \x1b[0m┃\x1b[1;36m \x1b[0m\x1b[1;36mFederati…\x1b[0m\x1b[1;36m \x1b[0m┃\x1b[1;36m \x1b[0m\x1b[1;36m  App   \x1b[0m\x1b[1;36m \x1b[0m┃\x1b[1;36m \x1b[0m\x1b[1;36m Status  \x1b[0m\x1b[1;36m \x1b[0m┃\x1b[1;36m \x1b[0m\x1b[1;36mElapsed\x1b[0m\x1b[1;36m \x1b[0m┃\x1b[1;36m \x1b[0m\x1b[1;36m   @    \x1b[0m\x1b[1;36m \x1b[0m┃\n┡━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━┩\n│ \x1b[1m11552096691401131052\x1b[0m │ @none/de… │ @anchor… │ \x1b[32mfinished…\x1b[0m │\x1b[34m \x1b[0m\x1b[34m5s     \x1b[0m\x1b[34m \x1b[0m│ 2026-11… │\n│                      │           │          │           │\x1b[34m         \x1b[0m│ 02:08:0… │\n├──────────────────────┼───────────┼──────────┼───────────┼─────────┼──────────┤\n│ \x1b[1m4328516879096858863\x1b[0m  │ @none/de… │ @anchor… │ \x1b[32mfinished…\x1b[0m │\x1b[34m \x1b[0m\x1b[34m6s     \x1b[0m\x1b[34m \x1b[0m│ 2026-11… │\n│                      │           │          │           │\x1b[34m         \x1b[0m│ 02:07:5… │\n├──────────────────────┼───────────┼──────────┼───────────┼─────────┼──────────┤\n│ \x1b[1m77\x1b[0m                   │ @none/de… │ @anchor… │ \x1b[34mrunning\x1b[0m   │\x1b[34m \x1b[0m\x1b[34m1m 3s  \x1b[0m\x1b[34m \x1b[0m│ 2026-11… │\n│                      │           │          │           │\x1b[34m         \x1b[0m│ 02:09:0… │\n└──────────────────────┴───────────┴──────────┴───────────┴─────────┴──────────┘\n";
        assert_eq!(render_table(&runs_columns(), &runs(3), 80, true), want);
    }

    #[test]
    fn detail_120_color() {
        let want = "┌────────────────────────────┬───────────────────────────┐\n│\x1b[1;36m \x1b[0m\x1b[1;36mRun ID                    \x1b[0m\x1b[1;36m \x1b[0m│ \x1b[1m11552096691401131052\x1b[0m      │\n│\x1b[1;36m \x1b[0m\x1b[1;36mFederation                \x1b[0m\x1b[1;36m \x1b[0m│ @none/default             │\n│\x1b[1;36m \x1b[0m\x1b[1;36mApp                       \x1b[0m\x1b[1;36m \x1b[0m│ @anchors/fedlogreg==1.0.0 │\n│\x1b[1;36m \x1b[0m\x1b[1;36mFAB Hash                  \x1b[0m\x1b[1;36m \x1b[0m│ 98b366ef...51b26366       │\n│\x1b[1;36m \x1b[0m\x1b[1;36mStatus                    \x1b[0m\x1b[1;36m \x1b[0m│ \x1b[32mfinished:completed\x1b[0m        │\n│\x1b[1;36m \x1b[0m\x1b[1;36mElapsed                   \x1b[0m\x1b[1;36m \x1b[0m│ \x1b[34m5s\x1b[0m                        │\n│\x1b[1;36m \x1b[0m\x1b[1;36mPending At                \x1b[0m\x1b[1;36m \x1b[0m│ 2026-11-28 02:08:01Z      │\n│\x1b[1;36m \x1b[0m\x1b[1;36mStarting At               \x1b[0m\x1b[1;36m \x1b[0m│ 2026-11-28 02:08:02Z      │\n│\x1b[1;36m \x1b[0m\x1b[1;36mRunning At                \x1b[0m\x1b[1;36m \x1b[0m│ 2026-11-28 02:08:02Z      │\n│\x1b[1;36m \x1b[0m\x1b[1;36mFinished At               \x1b[0m\x1b[1;36m \x1b[0m│ 2026-11-28 02:08:07Z      │\n│\x1b[1;36m \x1b[0m\x1b[1;36mNetwork traffic (inbound) \x1b[0m\x1b[1;36m \x1b[0m│ \x1b[34m1.2 MB\x1b[0m                    │\n│\x1b[1;36m \x1b[0m\x1b[1;36mNetwork traffic (outbound)\x1b[0m\x1b[1;36m \x1b[0m│ \x1b[34m3.4 kB\x1b[0m                    │\n│\x1b[1;36m \x1b[0m\x1b[1;36mNetwork Traffic (total)   \x1b[0m\x1b[1;36m \x1b[0m│ \x1b[34m1.2 MB\x1b[0m                    │\n└────────────────────────────┴───────────────────────────┘\n";
        assert_eq!(render_key_values(&detail(13), 120, true), want);
    }

    #[test]
    fn err_60_color() {
        let want = "\x1b[31m╭─\x1b[0m\x1b[31m Error \x1b[0m\x1b[31m─────────────────────────────────────────────────\x1b[0m\x1b[31m─╮\x1b[0m\n\x1b[31m│\x1b[0m The options '\x1b[1;36m-\x1b[0m\x1b[1;36m-run\x1b[0m\x1b[1;36m-id\x1b[0m' and '\x1b[1;36m-\x1b[0m\x1b[1;36m-limit\x1b[0m' cannot be used      \x1b[31m│\x1b[0m\n\x1b[31m│\x1b[0m together. This message is long enough to wrap.           \x1b[31m│\x1b[0m\n\x1b[31m╰──────────────────────────────────────────────────────────╯\x1b[0m\n";
        assert_eq!(render_error_box(ERR_60_MSG, 60, true), want);
    }
}
