//! Flower's console log lines: `INFO :      message`.
//!
//! Apps and strategies write to a [`Logger`], which only collects lines; the
//! runtime decides where they go (the run's log on the SuperLink, stdout, or
//! nowhere during a replay). [`format_line`] renders a line exactly as
//! Flower's `flwr` logger does, with or without its ANSI colours.
//!
//! This module does no I/O.

/// Flower's log levels (the ones it uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
        }
    }

    fn color(self) -> &'static str {
        match self {
            Level::Debug => "\x1b[94m",
            Level::Info => "\x1b[92m",
            Level::Warning => "\x1b[93m",
            Level::Error => "\x1b[91m",
        }
    }
}

const RESET: &str = "\x1b[0m";

/// One line as Flower prints it, newline included:
/// `{colour}{LEVEL} {reset}: {pad} {message}` with `pad` = 8 − len(LEVEL) spaces.
pub fn format_line(level: Level, message: &str, color: bool) -> String {
    let pad = " ".repeat(8 - level.name().len());
    if color {
        format!("{}{} {RESET}: {pad} {message}\n", level.color(), level.name())
    } else {
        format!("{} : {pad} {message}\n", level.name())
    }
}

/// One thing logged: a line at a level (rendered by [`format_line`]), or
/// output that is already text (what a Python ClientApp printed or logged
/// through Flower's own logger).
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    Line(Level, String),
    Output(String),
}

/// Collects log lines in order.
#[derive(Debug, Default)]
pub struct Logger {
    entries: Vec<Entry>,
}

impl Logger {
    pub fn new() -> Logger {
        Logger::default()
    }

    pub fn log(&mut self, level: Level, message: impl Into<String>) {
        self.entries.push(Entry::Line(level, message.into()));
    }

    /// Text that is already formatted (newlines included).
    pub fn output(&mut self, text: impl Into<String>) {
        self.entries.push(Entry::Output(text.into()));
    }

    pub fn info(&mut self, message: impl Into<String>) {
        self.log(Level::Info, message);
    }

    pub fn warning(&mut self, message: impl Into<String>) {
        self.log(Level::Warning, message);
    }

    pub fn error(&mut self, message: impl Into<String>) {
        self.log(Level::Error, message);
    }

    /// Takes what was collected so far.
    pub fn drain(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.entries)
    }

    /// The lines collected so far (without raw output).
    pub fn lines(&self) -> Vec<(Level, String)> {
        self.entries
            .iter()
            .filter_map(|entry| match entry {
                Entry::Line(level, line) => Some((*level, line.clone())),
                Entry::Output(_) => None,
            })
            .collect()
    }
}

/// Removes ANSI SGR sequences (`ESC [ ... m`), for output that is not a
/// terminal or when `NO_COLOR` is set.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `lines` (log text) in consecutive groups of at most `max_bytes`, for
/// pushes of bounded size: a longer line is cut at char boundaries.
#[cfg(feature = "server")]
pub(crate) fn batches(lines: Vec<String>, max_bytes: usize) -> Vec<Vec<String>> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut size = max_bytes;
    for line in lines {
        let mut rest = line.as_str();
        while !rest.is_empty() {
            let mut cut = rest.len().min(max_bytes);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            if cut == 0 {
                // A char wider than `max_bytes` goes whole.
                cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
            }
            let (piece, tail) = rest.split_at(cut);
            if size + piece.len() > max_bytes {
                groups.push(Vec::new());
                size = 0;
            }
            size += piece.len();
            groups.last_mut().expect("a group").push(piece.to_string());
            rest = tail;
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_match_flower() {
        assert_eq!(format_line(Level::Info, "Starting", false), "INFO :      Starting\n");
        assert_eq!(format_line(Level::Warning, "x", false), "WARNING :   x\n");
        assert_eq!(format_line(Level::Error, "x", false), "ERROR :     x\n");
        assert_eq!(format_line(Level::Info, "", false), "INFO :      \n");
        let colored = format_line(Level::Info, "Starting", true);
        assert_eq!(colored, "\x1b[92mINFO \x1b[0m:      Starting\n");
        assert_eq!(strip_ansi(&colored), "INFO :      Starting\n");
    }

    #[test]
    #[cfg(feature = "server")]
    fn batches_are_bounded_and_keep_the_text() {
        let lines: Vec<String> = vec!["aaa".into(), "bb".into(), "ééééé".into(), "c".into()];
        let groups = batches(lines.clone(), 4);
        for group in &groups {
            assert!(group.iter().map(String::len).sum::<usize>() <= 4, "{groups:?}");
        }
        let joined: String = groups.concat().concat();
        assert_eq!(joined, lines.concat());
        assert_eq!(groups[0], ["aaa"]);
        assert!(batches(Vec::new(), 4).is_empty());
        assert_eq!(batches(vec!["é".into()], 1), [["é"]]);
    }
}
