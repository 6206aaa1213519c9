//! Where the CLI's text goes, and how errors look.
//!
//! In the default format, messages go to stdout with Flower's colours when
//! stdout is a terminal (and `NO_COLOR` is unset), logging lines to stderr,
//! and an error ends the command with Flower's red `Error` box on stderr. With
//! `--format json` everything is captured and only one JSON document is
//! printed; an error becomes `{"success": false, "error-message": ...}` with
//! the captured text, emoji removed, as Flower does, but (unlike Flower) the
//! exit status is non-zero.

use std::io::{IsTerminal, Write};

use crate::cli::exit;
use crate::cli::table::{self, Style};

/// A failed command: the message for the user and the exit status.
#[derive(Clone, Debug, PartialEq)]
pub struct CliError {
    pub message: String,
    pub code: i32,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code: exit::ERROR,
        }
    }

    pub(crate) fn with_code(message: impl Into<String>, code: i32) -> CliError {
        CliError {
            message: message.into(),
            code,
        }
    }
}

impl From<String> for CliError {
    fn from(message: String) -> Self {
        CliError::new(message)
    }
}

/// Whether colours are wanted on a stream.
fn color_on(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The terminal width: `$COLUMNS`, the terminal's size, or 80.
pub(crate) fn terminal_width() -> usize {
    if let Some(columns) = columns_from(std::env::var("COLUMNS").ok().as_deref()) {
        return columns;
    }
    for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: TIOCGWINSZ writes a winsize into the struct we pass.
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) } == 0 && size.ws_col > 0 {
            return usize::from(size.ws_col);
        }
    }
    80
}

/// `$COLUMNS` when it is a positive integer (as Rich reads it).
fn columns_from(value: Option<&str>) -> Option<usize> {
    value.and_then(|v| v.trim().parse::<usize>().ok()).filter(|w| *w > 0)
}

/// Removes emoji (and the variation selector), as Flower does for JSON
/// error messages: "🔍 Displaying…" becomes " Displaying…".
fn strip_emoji(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            let code = c as u32;
            !((0x1F000..=0x1FAFF).contains(&code)
                || (0x2600..=0x27BF).contains(&code)
                || (0x2B00..=0x2BFF).contains(&code)
                || code == 0xFE0F
                || code == 0x200D)
        })
        .collect()
}

pub struct Output {
    json: bool,
    /// What would have been printed, in JSON mode.
    captured: String,
    color_stdout: bool,
    color_stderr: bool,
    width: usize,
}

impl Output {
    pub fn new(json: bool) -> Output {
        Output {
            json,
            captured: String::new(),
            color_stdout: color_on(std::io::stdout().is_terminal()),
            color_stderr: color_on(std::io::stderr().is_terminal()),
            width: terminal_width(),
        }
    }

    pub fn json(&self) -> bool {
        self.json
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub(crate) fn color_stdout(&self) -> bool {
        self.color_stdout && !self.json
    }

    /// A line on stdout in Flower's style (captured in JSON mode).
    pub fn say(&mut self, text: &str, style: Style) {
        if self.json {
            self.captured.push_str(text);
            self.captured.push('\n');
            return;
        }
        let line = table::paint(text, style, self.color_stdout);
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    }

    /// Text on stdout as is (logs), without a newline.
    pub(crate) fn raw(&mut self, text: &str) {
        if self.json {
            self.captured.push_str(text);
            return;
        }
        let text = if self.color_stdout {
            text.to_string()
        } else {
            crate::flwr_log::strip_ansi(text)
        };
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    }

    /// A Flower logging line on stderr (`INFO :      ...`).
    pub fn log(&mut self, level: crate::flwr_log::Level, message: &str) {
        let line = crate::flwr_log::format_line(level, message, self.color_stderr);
        if self.json {
            self.captured.push_str(&crate::flwr_log::strip_ansi(&line));
            return;
        }
        let _ = std::io::stderr().write_all(line.as_bytes());
    }

    /// A warning on stderr (yellow), also in JSON mode.
    pub(crate) fn warn(&mut self, text: &str) {
        let line = table::paint(text, Style::Yellow, self.color_stderr);
        let _ = writeln!(std::io::stderr(), "{line}");
    }

    /// The JSON document of a command (2-space indented).
    pub(crate) fn print_json(&mut self, value: &serde_json::Value) {
        let text = serde_json::to_string_pretty(value).expect("JSON values always serialize");
        println!("{text}");
    }

    /// Reports `error` and returns the exit status.
    pub fn fail(&mut self, error: &CliError) -> i32 {
        if self.json {
            let message = strip_emoji(&format!("{}\n{}", self.captured, error.message));
            self.print_json(&serde_json::json!({ "success": false, "error-message": message }));
        } else {
            let text = table::render_error_box(&error.message, self.width, self.color_stderr);
            let _ = std::io::stderr().write_all(text.as_bytes());
        }
        error.code
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_env_parsing() {
        assert_eq!(super::columns_from(Some("120")), Some(120));
        assert_eq!(super::columns_from(Some(" 100 ")), Some(100));
        assert_eq!(super::columns_from(Some("0")), None);
        assert_eq!(super::columns_from(Some("wide")), None);
        assert_eq!(super::columns_from(None), None);
    }

    use super::*;

    #[test]
    fn strips_emoji_like_flower() {
        assert_eq!(strip_emoji("🔍 Displaying information"), " Displaying information");
        assert_eq!(strip_emoji("✋ Stopping run ID 1..."), " Stopping run ID 1...");
        assert_eq!(strip_emoji("✅ done ⚠️"), " done ");
    }
}
