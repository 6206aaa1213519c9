//! `.gitignore`-style patterns as Flower 1.27 matches them: pathspec 0.12's
//! "gitwildmatch" patterns, the last matching pattern deciding, and the
//! lines of a `.gitignore` read as Flower's `load_gitignore_patterns` reads
//! them.
//!
//! pathspec itself translates each pattern into a Python regex
//! (`GitWildMatchPattern.pattern_to_regex`) and calls `re.match` on the
//! whole path; this file does the same translation into a `regex` crate
//! pattern. Python's `$` (end of string, or just before a final newline) is
//! written `\n?\z`; bracket expressions are re-emitted as explicit code
//! points, so that Rust's class syntax (nested classes, `&&`, `[:alpha:]`)
//! never reads them differently, and every other literal is escaped.
//!
//! This is not git's matching, which is why neither `globset` nor the
//! `ignore` crate is used: pathspec lets a negation re-include a file below
//! an excluded directory, decides by pattern order alone (`!d/k.py` then
//! `d/` excludes `d/k.py`; the `ignore` crate's parent walk keeps it),
//! treats an unclosed `[` as a literal (globset refuses the pattern) and
//! braces as literals (globset alternates). The tests pin these cases.
//!
//! It never reads files and never decides what a FAB contains (the
//! builder's include and exclude lists do).

use regex::Regex;

use super::FabError;
use crate::pyfmt::is_py_space as py_isspace;

/// Python's `str.splitlines()` (without keepends).
fn py_splitlines(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut iter = s.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        let is_break = matches!(
            c,
            '\n' | '\r' | '\u{0b}' | '\u{0c}' | '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' | '\u{2028}' | '\u{2029}'
        );
        if is_break {
            lines.push(&s[start..i]);
            let mut next = i + c.len_utf8();
            if c == '\r' {
                if let Some(&(j, '\n')) = iter.peek() {
                    iter.next();
                    next = j + 1;
                }
            }
            start = next;
        }
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// Flower's `load_gitignore_patterns`: stripped, non-empty, non-comment lines.
pub(super) fn gitignore_patterns(text: &str) -> Vec<String> {
    py_splitlines(text)
        .into_iter()
        .map(|l| l.trim_matches(py_isspace))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// `(?:/.*)?`: what follows a pattern's last segment (the files below it).
const TRAILING: &str = "(?:/.*)?";

/// pathspec's `GitWildMatchPattern.pattern_to_regex` for one pattern: the
/// regex and whether the pattern includes (`false` for `!` patterns), or
/// `None` for patterns that match nothing (comments, blank, `/`).
fn pattern_to_regex(raw: &str) -> Result<Option<(String, bool)>, FabError> {
    let invalid = || FabError::InvalidPattern(raw.to_string());
    let mut pattern = if raw.ends_with("\\ ") {
        raw.trim_start_matches(py_isspace)
    } else {
        raw.trim_matches(py_isspace)
    };
    if pattern.starts_with('#') || pattern == "/" || pattern.is_empty() {
        return Ok(None);
    }
    let include = match pattern.strip_prefix('!') {
        Some(rest) => {
            pattern = rest;
            false
        }
        None => true,
    };
    let mut segs: Vec<&str> = pattern.split('/').collect();
    let mut i = segs.len() - 1;
    while i > 0 {
        if segs[i - 1] == "**" && segs[i] == "**" {
            segs.remove(i);
        }
        i -= 1;
    }
    let mut out = String::new();
    if segs.len() == 2 && segs[0] == "**" && segs[1].is_empty() {
        // `**/`: everything except files in the root directory.
        out.push_str(".+/.*");
    } else {
        if segs[0].is_empty() {
            segs.remove(0);
        } else if (segs.len() == 1 || (segs.len() == 2 && segs[1].is_empty())) && segs[0] != "**" {
            segs.insert(0, "**");
        }
        if segs.is_empty() {
            return Err(invalid());
        }
        if segs.len() > 1 && segs.last().is_some_and(|s| s.is_empty()) {
            *segs.last_mut().expect("non-empty") = "**";
        }
        let end = segs.len() - 1;
        let mut need_slash = false;
        for (i, seg) in segs.iter().enumerate() {
            if *seg == "**" {
                if i == 0 && i == end {
                    out.push_str("[^/]+");
                    out.push_str(TRAILING);
                } else if i == 0 {
                    out.push_str("(?:.+/)?");
                    need_slash = false;
                } else if i == end {
                    out.push_str("/.*");
                } else {
                    out.push_str("(?:/.+)?");
                    need_slash = true;
                }
            } else {
                if need_slash {
                    out.push('/');
                }
                if *seg == "*" {
                    out.push_str("[^/]+");
                } else {
                    out.push_str(&translate_segment_glob(seg).ok_or_else(invalid)?);
                }
                if i == end {
                    out.push_str(TRAILING);
                }
                need_slash = true;
            }
        }
    }
    // `re.match(...)` anchors at the start; Python's `$` also matches just
    // before a final newline.
    Ok(Some((format!("\\A(?:{out})\n?\\z"), include)))
}

/// A code point as a regex atom that means just itself, inside or outside
/// a bracket expression.
fn code_point(c: char) -> String {
    format!("\\x{{{:x}}}", c as u32)
}

/// pathspec's `_translate_segment_glob`; `None` for a dangling escape or an
/// invalid range (Python raises for both).
fn translate_segment_glob(seg: &str) -> Option<String> {
    let p: Vec<char> = seg.chars().collect();
    let end = p.len();
    let mut out = String::new();
    let mut i = 0;
    let mut escape = false;
    while i < end {
        let c = p[i];
        i += 1;
        if escape {
            escape = false;
            out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
        } else if c == '\\' {
            escape = true;
        } else if c == '*' {
            out.push_str("[^/]*");
        } else if c == '?' {
            out.push_str("[^/]");
        } else if c == '[' {
            let mut j = i;
            if j < end && (p[j] == '!' || p[j] == '^') {
                j += 1;
            }
            if j < end && p[j] == ']' {
                j += 1;
            }
            while j < end && p[j] != ']' {
                j += 1;
            }
            if j < end {
                let negated = p[i] == '!' || p[i] == '^';
                let body_start = if negated { i + 1 } else { i };
                let body = &p[body_start..j];
                out.push('[');
                if negated {
                    out.push('^');
                }
                let mut k = 0;
                while k < body.len() {
                    if k + 2 < body.len() && body[k + 1] == '-' {
                        if body[k] > body[k + 2] {
                            return None;
                        }
                        out.push_str(&code_point(body[k]));
                        out.push('-');
                        out.push_str(&code_point(body[k + 2]));
                        k += 3;
                    } else {
                        out.push_str(&code_point(body[k]));
                        k += 1;
                    }
                }
                out.push(']');
                i = j + 1;
            } else {
                out.push_str("\\[");
            }
        } else {
            out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
        }
    }
    (!escape).then_some(out)
}

/// pathspec's `PathSpec.from_lines("gitwildmatch", ...)`: the last matching
/// pattern decides (a `!` pattern un-matches).
pub(super) struct PathSpec {
    /// The compiled patterns in file order, with their polarity.
    patterns: Vec<(Regex, bool)>,
}

impl PathSpec {
    pub(super) fn new(lines: impl IntoIterator<Item = String>) -> Result<PathSpec, FabError> {
        let mut patterns = Vec::new();
        for line in lines {
            if let Some((regex, include)) = pattern_to_regex(&line)? {
                // Every atom is escaped, so only the size limit can refuse.
                let regex = Regex::new(&regex).map_err(|_| FabError::InvalidPattern(line.clone()))?;
                patterns.push((regex, include));
            }
        }
        Ok(PathSpec { patterns })
    }

    /// Whether `path` (relative, POSIX) is matched, after pathspec's
    /// `normalize_file` (one leading `/` or `./` dropped).
    pub(super) fn matches(&self, path: &str) -> bool {
        let path = path
            .strip_prefix('/')
            .or_else(|| path.strip_prefix("./"))
            .unwrap_or(path);
        self.patterns
            .iter()
            .rev()
            .find(|(regex, _)| regex.is_match(path))
            .is_some_and(|(_, include)| *include)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{EXCLUDE_PATTERNS, INCLUDE_PATTERNS};
    use super::*;

    fn spec(lines: &[&str]) -> PathSpec {
        PathSpec::new(lines.iter().map(|s| s.to_string())).unwrap()
    }

    #[test]
    fn pathspec_semantics() {
        let inc = spec(&INCLUDE_PATTERNS);
        for p in ["a.py", "x/y/z.py", ".hidden.py", "d/c.toml", "README.md", "LICENSE"] {
            assert!(inc.matches(p), "{p}");
        }
        for p in ["sub/LICENSE", "a.pyc", "notes.txt", "LICENSE.txt"] {
            assert!(!inc.matches(p), "{p}");
        }
        let exc = spec(&EXCLUDE_PATTERNS);
        for p in [
            ".flwr/a.py",
            "__pycache__/x.py",
            "a/__pycache__/b/c.py",
            "pyproject.toml",
            "sub/pyproject.toml",
        ] {
            assert!(exc.matches(p), "{p}");
        }
        for p in ["a/.flwr/x.py", "a.py", "__pycache__.py"] {
            assert!(!exc.matches(p), "{p}");
        }
        // gitignore-style rules: last match wins, negations re-include even
        // below an excluded directory (unlike git itself).
        let g = spec(&[
            "build/",
            "!build/keep.py",
            "*.log",
            "/root.py",
            "docs/*.md",
            "a/**/b.py",
        ]);
        assert!(g.matches("build/x.py"));
        assert!(g.matches("src/build/x.py"));
        assert!(!g.matches("build/keep.py"));
        assert!(g.matches("x/y.log"));
        assert!(g.matches("root.py"));
        assert!(!spec(&["/root.py"]).matches("x/root.py"));
        assert!(spec(&["docs/*.md"]).matches("docs/a.md"));
        assert!(!spec(&["docs/*.md"]).matches("x/docs/a.md"));
        assert!(spec(&["a/**/b.py"]).matches("a/b.py"));
        assert!(spec(&["a/**/b.py"]).matches("a/x/y/b.py"));
        assert!(spec(&["**/"]).matches("x/y.py"));
        assert!(!spec(&["**/"]).matches("y.py"));
        assert!(spec(&["[a-c]?.py"]).matches("bx.py"));
        assert!(!spec(&["[!a-c]?.py"]).matches("bx.py"));
        assert!(spec(&["\\#x.py"]).matches("#x.py"));
        assert!(spec(&["\\!x.py"]).matches("!x.py"));
        assert!(spec(&["x["]).matches("x["));
        assert!(spec(&["*"]).matches("a/b"));
        assert!(PathSpec::new(["trailing\\".to_string()]).is_err());
    }

    #[test]
    fn gitignore_lines_like_python() {
        assert_eq!(
            gitignore_patterns("a\r\n  b  \n#c\n\n\u{0b}d\u{2028}e"),
            ["a", "b", "d", "e"]
        );
    }

    /// Cases where pathspec differs from git, `globset` or the `ignore` crate,
    /// all as pathspec 0.12 decides them.
    #[test]
    fn pathspec_edges() {
        // Python's `$` also matches before one final newline.
        assert!(spec(&["a.py"]).matches("a.py\n"));
        assert!(!spec(&["a.py"]).matches("a.py\n\n"));
        assert!(spec(&["d/"]).matches("d/x\n"));
        // `.` (from `**`) stops at a newline, `[^/]` (from `*`) does not.
        assert!(spec(&["*"]).matches("a\nb"));
        assert!(!spec(&["/**/b"]).matches("x\ny/b/c\nd"));
        // Braces are literal (no alternation as in globset).
        assert!(spec(&["{a,b}.py"]).matches("{a,b}.py"));
        assert!(!spec(&["{a,b}.py"]).matches("a.py"));
        // An unclosed bracket is a literal `[` (globset refuses it).
        assert!(spec(&["a[b"]).matches("a[b"));
        // Bracket contents are plain characters, `^` negates like `!`.
        assert!(spec(&["[]]"]).matches("]"));
        assert!(spec(&["[^a]"]).matches("b"));
        assert!(!spec(&["[^a]"]).matches("a"));
        assert!(spec(&["[[:a]"]).matches(":"));
        assert!(spec(&["[a&&b]"]).matches("&"));
        assert!(spec(&["[a-]"]).matches("-"));
        assert!(spec(&["[\\]"]).matches("\\"));
        assert!(spec(&["[ä-ö]x"]).matches("öx"));
        assert!(PathSpec::new(["[c-a]".to_string()]).is_err());
        // Regex metacharacters are literal.
        assert!(spec(&["a.b+(c)|$"]).matches("a.b+(c)|$"));
        assert!(!spec(&["a.b"]).matches("axb"));
        // Order decides, not git's directory rules: a later directory
        // pattern re-excludes what an earlier negation included.
        assert!(spec(&["!build/keep.py", "build/"]).matches("build/keep.py"));
        assert!(!spec(&["build/", "!build/keep.py"]).matches("build/keep.py"));
        // `d/` matches the files below d, never a file named d.
        assert!(!spec(&["d/"]).matches("d"));
        assert!(spec(&["d/**/"]).matches("d/x"));
        assert!(spec(&["a/**/**/b"]).matches("a/b"));
        // Patterns that match nothing, and leading `/` or `./` of paths.
        assert!(!spec(&["#x", "/", "   "]).matches("x"));
        assert!(spec(&["\\#x"]).matches("/#x"));
        assert!(spec(&["/x"]).matches("./x"));
        assert!(spec(&["x\\ "]).matches("x "));
        assert!(spec(&["x "]).matches("x"));
        assert!(PathSpec::new(["!".to_string()]).is_err());
    }
}
