//! Flower App Bundles (FABs): building them from an app directory and
//! verifying the ones a client sends.
//!
//! [`build_fab`] reproduces Flower 1.27's `flwr build` / `flwr run` byte for
//! byte: the same file selection (pathspec "gitwildmatch" rules, the root
//! `.gitignore`, hidden files included, file symlinks followed, directory
//! symlinks not entered), `pyproject.toml` re-serialised as `tomli_w` does
//! ([`tomli_w_dumps`]), the `.info/CONTENT` manifest and a ZIP container
//! written by hand exactly as Python's `zipfile` writes it (STORED entries,
//! 2024-10-01 00:00:00, mode 0600, no extra fields). Equal inputs therefore
//! give the same sha256 as real Flower.
//!
//! [`verify_fab`] is the server side: size, claimed hash, a defensive ZIP
//! reader (no unsafe names, no duplicates, bounded entry count and
//! uncompressed size, CRCs checked), the manifest's hashes, and a valid
//! `pyproject.toml`. [`read_fab_file`] extracts one entry with the same checks.
//!
//! This module never writes files, never talks to a SuperLink and never
//! executes app code; validation of the configuration itself is `crate::app`.

use std::collections::{BTreeMap, HashSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::app::{self, AppConfig, AppError, PYPROJECT};

/// Maximum FAB size accepted and produced (Flower's `FAB_MAX_SIZE`).
pub const FAB_MAX_SIZE: usize = 10 * 1024 * 1024;
/// Maximum number of entries [`verify_fab`] accepts.
pub const MAX_ENTRIES: usize = 10_000;
/// Maximum total uncompressed size [`verify_fab`] accepts (zip-bomb guard).
pub const MAX_UNCOMPRESSED: u64 = 100 * 1024 * 1024;
/// The manifest entry.
pub const CONTENT_ENTRY: &str = ".info/CONTENT";

/// Flower 1.27's `FAB_INCLUDE_PATTERNS`.
const INCLUDE_PATTERNS: [&str; 4] = ["**/*.py", "**/*.toml", "**/*.md", "/LICENSE"];
/// Flower 1.27's `FAB_EXCLUDE_PATTERNS`; the root `.gitignore` is appended.
const EXCLUDE_PATTERNS: [&str; 3] = [".flwr/**", "**/__pycache__/**", "pyproject.toml"];

/// DOS date of Flower's `FAB_DATE` (2024-10-01); the time is 00:00:00.
const FAB_DOS_DATE: u16 = ((2024 - 1980) << 9) | (10 << 5) | 1;

/// Errors of this module; each message is one line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FabError {
    /// The app's configuration is missing or invalid.
    #[error("{}", one_line(&.0.to_string()))]
    App(#[from] AppError),
    /// The app path is not a directory (Flower's text).
    #[error("The path {0} is not a valid path to a Flower app.")]
    NotADirectory(String),
    /// `flwr build` needs a directory named like a project (Flower's text).
    #[error("The Flower App name {0} is invalid, a valid app name must start with a letter, and can only contain letters, digits, and hyphens.")]
    InvalidAppDirName(String),
    /// In-memory builds need a `pyproject.toml` (Flower's text).
    #[error("pyproject.toml not found in files")]
    PyprojectNotInFiles,
    /// A file of the app could not be read.
    #[error("failed to read '{path}': {reason}")]
    Io { path: String, reason: String },
    /// A file to include has a name that is not UTF-8.
    #[error("cannot include '{0}' in the FAB: its name is not valid UTF-8")]
    NonUtf8Path(String),
    /// A root `.gitignore` line is not a valid gitwildmatch pattern.
    #[error("invalid pattern in .gitignore: '{0}'")]
    InvalidPattern(String),
    /// The built FAB is too large (Flower's text).
    #[error("FAB size exceeds maximum allowed size of 10,485,760 bytes. To reduce the package size, consider ignoring unnecessary files via your `.gitignore` file or excluding them from the build.")]
    BuildTooLarge,
    /// More files than a ZIP without ZIP64 records can hold.
    #[error("too many files for a FAB: {0} (at most 65,534 besides .info/CONTENT)")]
    TooManyFiles(usize),
    /// A received FAB is too large.
    #[error("FAB size ({0} bytes) exceeds maximum allowed size of 10,485,760 bytes.")]
    TooLarge(usize),
    /// The claimed hash is not the sha256 of the bytes (Flower 1.27's text).
    #[error("FAB ({0}) hash from request doesn't match contents")]
    HashMismatch(String),
    /// The bytes are not a ZIP archive this reader accepts.
    #[error("invalid FAB archive: {0}")]
    InvalidZip(String),
    /// An entry name could escape the extraction directory or is malformed.
    #[error("unsafe entry name {name:?} in FAB: {reason}")]
    UnsafeEntryName { name: String, reason: String },
    /// Two entries have the same name.
    #[error("duplicate entry {0:?} in FAB")]
    DuplicateEntry(String),
    /// Too many entries.
    #[error("FAB has {0} entries; at most 10,000 are accepted")]
    TooManyEntries(usize),
    /// The entries would expand beyond [`MAX_UNCOMPRESSED`].
    #[error("FAB expands to more than 100 MiB ({0} bytes declared)")]
    TooBigUncompressed(u64),
    /// An entry uses a feature this reader does not support.
    #[error("unsupported entry {name:?} in FAB: {reason}")]
    UnsupportedEntry { name: String, reason: String },
    /// `.info/CONTENT` is missing (Flower's text, with the reason).
    #[error("FAB file has incorrect format. It has no .info/CONTENT manifest.")]
    MissingManifest,
    /// The manifest does not match the files (Flower's text, with the reason).
    #[error("File hashes couldn't be verified. {0}")]
    HashesNotVerified(String),
    /// The FAB has no `pyproject.toml`.
    #[error("FAB has no pyproject.toml")]
    MissingPyproject,
    /// [`read_fab_file`] found no such entry.
    #[error("FAB has no entry {0:?}")]
    EntryNotFound(String),
}

fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A FAB built from an app directory.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltFab {
    /// The `.fab` bytes.
    pub bytes: Vec<u8>,
    /// Lowercase hex sha256 of `bytes`.
    pub hash: String,
    /// `<publisher>.<name>.<version with . -> ->.<hash8>.fab`.
    pub filename: String,
    /// The app's validated configuration.
    pub app: AppConfig,
    /// Flower's warnings about recommended properties.
    pub warnings: Vec<String>,
}

/// A FAB that passed [`verify_fab`].
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedFab {
    /// The configuration from the FAB's `pyproject.toml`.
    pub app: AppConfig,
    /// The file entries in archive order, without `.info/` entries.
    pub files: Vec<String>,
}

/// Flower's FAB file name for an app and a FAB hash.
pub fn fab_filename(app: &AppConfig, hash: &str) -> String {
    let short: String = hash.chars().take(8).collect();
    format!(
        "{}.{}.{}.{}.fab",
        app.publisher,
        app.name,
        app.version.replace('.', "-"),
        short
    )
}

/// `flwr build`'s check of the app directory's own name (Flower's
/// `is_valid_project_name`): a letter, then letters, digits and hyphens.
pub fn check_app_dir_name(app_dir: &Path) -> Result<(), FabError> {
    let name = app_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(char::is_alphabetic) && chars.all(|c| c.is_alphanumeric() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(FabError::InvalidAppDirName(name))
    }
}

/// Lowercase hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

// ---------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------

enum Source {
    Disk { path: PathBuf, size: u64 },
    Memory(Vec<u8>),
}

impl Source {
    fn size(&self) -> u64 {
        match self {
            Source::Disk { size, .. } => *size,
            Source::Memory(b) => b.len() as u64,
        }
    }

    fn read(&self) -> Result<Vec<u8>, FabError> {
        match self {
            Source::Disk { path, .. } => std::fs::read(path).map_err(|e| FabError::Io {
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
            Source::Memory(b) => Ok(b.clone()),
        }
    }
}

/// One candidate file: its relative POSIX path (lossy if not UTF-8) and
/// whether the name really is UTF-8.
struct Candidate {
    rel: String,
    utf8: bool,
    source: Source,
}

/// Builds the FAB of the app in `app_dir`, as Flower 1.27's `flwr run` and
/// `flwr build` do (without the CLI-only module check: see
/// [`app::check_components`]).
pub fn build_fab(app_dir: &Path) -> Result<BuiltFab, FabError> {
    let root = std::fs::canonicalize(app_dir)
        .ok()
        .filter(|p| p.is_dir())
        .ok_or_else(|| {
            FabError::NotADirectory(
                std::path::absolute(app_dir)
                    .unwrap_or_else(|_| app_dir.to_path_buf())
                    .display()
                    .to_string(),
            )
        })?;
    let (app, warnings) = app::parse_pyproject_file(&root.join(PYPROJECT))?;
    let mut candidates = Vec::new();
    walk(&root, &root, &mut candidates);
    let bytes = build_from_candidates(candidates)?;
    Ok(finish(bytes, app, warnings))
}

/// Builds a FAB from in-memory files (relative POSIX path → content), with
/// the same selection rules as [`build_fab`]; `pyproject.toml` must be there.
pub fn build_fab_from_files(files: &BTreeMap<String, Vec<u8>>) -> Result<BuiltFab, FabError> {
    let pyproject = files.get(PYPROJECT).ok_or(FabError::PyprojectNotInFiles)?;
    let text = String::from_utf8(pyproject.clone()).map_err(|_| {
        FabError::App(AppError::Unreadable {
            path: PYPROJECT.into(),
            reason: "It is not valid UTF-8.".into(),
        })
    })?;
    let (app, warnings) = app::parse_pyproject(&text)?;
    let candidates = files
        .iter()
        .map(|(k, v)| Candidate {
            rel: k.replace('\\', "/"),
            utf8: true,
            source: Source::Memory(v.clone()),
        })
        .collect();
    let bytes = build_from_candidates(candidates)?;
    Ok(finish(bytes, app, warnings))
}

fn finish(bytes: Vec<u8>, app: AppConfig, warnings: Vec<String>) -> BuiltFab {
    let hash = sha256_hex(&bytes);
    BuiltFab {
        filename: fab_filename(&app, &hash),
        bytes,
        hash,
        app,
        warnings,
    }
}

/// Python 3.11's `Path.rglob("*")` filtered by `is_file()`: every entry,
/// hidden ones included; real directories are entered, symlinked ones are
/// not; symlinks to files count as files (their target is read), broken
/// symlinks and special files do not. Unreadable directories are skipped.
fn walk(root: &Path, dir: &Path, out: &mut Vec<Candidate>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            walk(root, &path, out);
            continue;
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            continue; // broken symlink
        };
        if !meta.is_file() {
            continue;
        }
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let utf8 = rel.to_str().is_some();
        let rel = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        out.push(Candidate {
            rel,
            utf8,
            source: Source::Disk { path, size: meta.len() },
        });
    }
}

fn build_from_candidates(candidates: Vec<Candidate>) -> Result<Vec<u8>, FabError> {
    let by_path: BTreeMap<&str, &Candidate> = candidates.iter().map(|c| (c.rel.as_str(), c)).collect();
    let pyproject = by_path
        .get(PYPROJECT)
        .ok_or(FabError::PyprojectNotInFiles)?
        .source
        .read()?;
    let text = String::from_utf8(pyproject).map_err(|_| {
        FabError::App(AppError::Unreadable {
            path: PYPROJECT.into(),
            reason: "It is not valid UTF-8.".into(),
        })
    })?;
    let mut document = app::parse_toml(&text).map_err(|(line, column, message)| {
        FabError::App(AppError::Syntax {
            path: PYPROJECT.into(),
            line,
            column,
            message,
        })
    })?;
    if let Some(toml::Value::Table(tool)) = document.get_mut("tool") {
        if let Some(toml::Value::Table(flwr)) = tool.get_mut("flwr") {
            flwr.remove("federations");
        }
    }

    // The root .gitignore, decoded as Flower does (undecodable -> ignored).
    let mut exclude: Vec<String> = EXCLUDE_PATTERNS.iter().map(|s| s.to_string()).collect();
    if let Some(gitignore) = by_path.get(".gitignore") {
        let content = gitignore.source.read()?;
        if let Ok(text) = String::from_utf8(content) {
            exclude.extend(gitignore_patterns(&text));
        }
    }
    let include = PathSpec::new(INCLUDE_PATTERNS.iter().map(|s| s.to_string())).expect("built-in patterns are valid");
    let exclude = PathSpec::new(exclude)?;

    let mut selected: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| include.matches(&c.rel) && !exclude.matches(&c.rel))
        .collect();
    selected.sort_by(|a, b| a.rel.cmp(&b.rel));
    if let Some(bad) = selected.iter().find(|c| !c.utf8) {
        return Err(FabError::NonUtf8Path(bad.rel.clone()));
    }
    if selected.len() + 2 > 0xFFFF {
        return Err(FabError::TooManyFiles(selected.len() + 1));
    }

    let pyproject_bytes = tomli_w_dumps(&document).into_bytes();

    // Fail early, before reading anything big, when the archive cannot fit.
    let estimate: u64 = selected
        .iter()
        .map(|c| c.source.size() + 2 * c.rel.len() as u64 + 76)
        .sum::<u64>()
        + pyproject_bytes.len() as u64;
    if estimate > FAB_MAX_SIZE as u64 {
        return Err(FabError::BuildTooLarge);
    }

    let mut entries: Vec<(String, Vec<u8>)> = Vec::with_capacity(selected.len() + 2);
    entries.push((PYPROJECT.to_string(), pyproject_bytes));
    for c in &selected {
        entries.push((c.rel.clone(), c.source.read()?));
    }
    let manifest = entries
        .iter()
        .map(|(name, data)| format!("{name},{},{}", sha256_hex(data), data.len() * 8))
        .collect::<Vec<_>>()
        .join("\n");
    entries.push((CONTENT_ENTRY.to_string(), manifest.into_bytes()));

    let bytes = write_stored_zip(&entries);
    if bytes.len() > FAB_MAX_SIZE {
        return Err(FabError::BuildTooLarge);
    }
    Ok(bytes)
}

/// Writes entries as Python's `zipfile.writestr(ZipInfo(name, FAB_DATE), data)`
/// does on a seekable buffer: STORED, version 2.0 made on Unix, mode 0600,
/// UTF-8 flag only for non-ASCII names, no extra fields, no comments.
fn write_stored_zip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    fn u16le(out: &mut Vec<u8>, v: u16) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    fn u32le(out: &mut Vec<u8>, v: u32) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let flags: u16 = if name.is_ascii() { 0 } else { 0x0800 };
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let crc = crc.sum();
        let offset = out.len() as u32;
        let size = data.len() as u32;

        u32le(&mut out, 0x0403_4b50);
        u16le(&mut out, 20); // version needed
        u16le(&mut out, flags);
        u16le(&mut out, 0); // STORED
        u16le(&mut out, 0); // time 00:00:00
        u16le(&mut out, FAB_DOS_DATE);
        u32le(&mut out, crc);
        u32le(&mut out, size);
        u32le(&mut out, size);
        u16le(&mut out, name.len() as u16);
        u16le(&mut out, 0); // extra
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);

        u32le(&mut central, 0x0201_4b50);
        u16le(&mut central, (3 << 8) | 20); // made by: Unix, 2.0
        u16le(&mut central, 20);
        u16le(&mut central, flags);
        u16le(&mut central, 0);
        u16le(&mut central, 0);
        u16le(&mut central, FAB_DOS_DATE);
        u32le(&mut central, crc);
        u32le(&mut central, size);
        u32le(&mut central, size);
        u16le(&mut central, name.len() as u16);
        u16le(&mut central, 0); // extra
        u16le(&mut central, 0); // comment
        u16le(&mut central, 0); // disk
        u16le(&mut central, 0); // internal attributes
        u32le(&mut central, 0o600 << 16); // external attributes
        u32le(&mut central, offset);
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    let cd_size = central.len() as u32;
    out.extend_from_slice(&central);
    u32le(&mut out, 0x0605_4b50);
    u16le(&mut out, 0);
    u16le(&mut out, 0);
    u16le(&mut out, entries.len() as u16);
    u16le(&mut out, entries.len() as u16);
    u32le(&mut out, cd_size);
    u32le(&mut out, cd_offset);
    u16le(&mut out, 0);
    out
}

// ---------------------------------------------------------------------------
// .gitignore patterns (pathspec 0.12 "gitwildmatch", as Flower 1.27 uses it)
// ---------------------------------------------------------------------------

/// Python's `str.isspace`.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

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
fn gitignore_patterns(text: &str) -> Vec<String> {
    py_splitlines(text)
        .into_iter()
        .map(|l| l.trim_matches(py_isspace))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// A character predicate of the small regexes pathspec generates.
#[derive(Debug, Clone)]
enum Pred {
    Lit(char),
    /// `[^/]`
    NotSlash,
    /// `.` (anything but a newline)
    Dot,
    /// A bracket expression.
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

impl Pred {
    fn accepts(&self, c: char) -> bool {
        match self {
            Pred::Lit(l) => *l == c,
            Pred::NotSlash => c != '/',
            Pred::Dot => c != '\n',
            Pred::Class { negated, items } => items.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated,
        }
    }
}

/// A piece of a pattern's regex.
#[derive(Debug, Clone)]
enum Piece {
    One(Pred),
    Star(Pred),
    Plus(Pred),
    Opt(Vec<Piece>),
}

#[derive(Debug, Clone)]
enum State {
    Pred(Pred, usize),
    Split(usize, usize),
    Match,
}

/// A compiled pattern: a Thompson NFA for `^pieces$` plus its polarity.
#[derive(Debug, Clone)]
struct Pattern {
    states: Vec<State>,
    start: usize,
    include: bool,
}

fn compile_seq(pieces: &[Piece], next: usize, states: &mut Vec<State>) -> usize {
    let mut next = next;
    for piece in pieces.iter().rev() {
        next = match piece {
            Piece::One(p) => {
                states.push(State::Pred(p.clone(), next));
                states.len() - 1
            }
            Piece::Star(p) => {
                states.push(State::Split(0, 0));
                let split = states.len() - 1;
                states.push(State::Pred(p.clone(), split));
                states[split] = State::Split(states.len() - 1, next);
                split
            }
            Piece::Plus(p) => {
                let star = compile_seq(&[Piece::Star(p.clone())], next, states);
                states.push(State::Pred(p.clone(), star));
                states.len() - 1
            }
            Piece::Opt(inner) => {
                let body = compile_seq(inner, next, states);
                states.push(State::Split(body, next));
                states.len() - 1
            }
        };
    }
    next
}

impl Pattern {
    /// pathspec's `GitWildMatchPattern.pattern_to_regex`, as pieces; `None`
    /// for patterns that match nothing (comments, blank, `/`).
    fn compile(raw: &str) -> Result<Option<Pattern>, FabError> {
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
        let slash = Piece::One(Pred::Lit('/'));
        let pieces: Vec<Piece> = if segs.len() == 2 && segs[0] == "**" && segs[1].is_empty() {
            // `**/`: everything except files in the root directory.
            vec![Piece::Plus(Pred::Dot), slash, Piece::Star(Pred::Dot)]
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
            let mut out = Vec::new();
            let mut need_slash = false;
            let trailing = || Piece::Opt(vec![Piece::One(Pred::Lit('/')), Piece::Star(Pred::Dot)]);
            for (i, seg) in segs.iter().enumerate() {
                if *seg == "**" {
                    if i == 0 && i == end {
                        out.push(Piece::Plus(Pred::NotSlash));
                        out.push(trailing());
                    } else if i == 0 {
                        out.push(Piece::Opt(vec![Piece::Plus(Pred::Dot), slash.clone()]));
                        need_slash = false;
                    } else if i == end {
                        out.push(slash.clone());
                        out.push(Piece::Star(Pred::Dot));
                    } else {
                        out.push(Piece::Opt(vec![slash.clone(), Piece::Plus(Pred::Dot)]));
                        need_slash = true;
                    }
                } else if *seg == "*" {
                    if need_slash {
                        out.push(slash.clone());
                    }
                    out.push(Piece::Plus(Pred::NotSlash));
                    if i == end {
                        out.push(trailing());
                    }
                    need_slash = true;
                } else {
                    if need_slash {
                        out.push(slash.clone());
                    }
                    out.extend(translate_segment_glob(seg).ok_or_else(invalid)?);
                    if i == end {
                        out.push(trailing());
                    }
                    need_slash = true;
                }
            }
            out
        };
        let mut states = vec![State::Match];
        let start = compile_seq(&pieces, 0, &mut states);
        Ok(Some(Pattern { states, start, include }))
    }

    /// `re.match(regex, path)` with the regex ending in `$` (which Python
    /// also lets match just before a final newline).
    fn matches(&self, path: &str) -> bool {
        let chars: Vec<char> = path.chars().collect();
        let mut current = vec![false; self.states.len()];
        self.add(self.start, &mut current);
        for (pos, &c) in chars.iter().enumerate() {
            if current[0] && pos + 1 == chars.len() && c == '\n' {
                return true;
            }
            let mut next = vec![false; self.states.len()];
            let mut any = false;
            for (s, on) in current.iter().enumerate() {
                if *on {
                    if let State::Pred(p, to) = &self.states[s] {
                        if p.accepts(c) {
                            self.add(*to, &mut next);
                            any = true;
                        }
                    }
                }
            }
            if !any {
                return false;
            }
            current = next;
        }
        current[0]
    }

    fn add(&self, s: usize, set: &mut [bool]) {
        if set[s] {
            return;
        }
        set[s] = true;
        if let State::Split(a, b) = self.states[s] {
            self.add(a, set);
            self.add(b, set);
        }
    }
}

/// pathspec's `_translate_segment_glob`; `None` for a dangling escape or an
/// invalid range (Python raises for both).
fn translate_segment_glob(seg: &str) -> Option<Vec<Piece>> {
    let p: Vec<char> = seg.chars().collect();
    let end = p.len();
    let mut out = Vec::new();
    let mut i = 0;
    let mut escape = false;
    while i < end {
        let c = p[i];
        i += 1;
        if escape {
            escape = false;
            out.push(Piece::One(Pred::Lit(c)));
        } else if c == '\\' {
            escape = true;
        } else if c == '*' {
            out.push(Piece::Star(Pred::NotSlash));
        } else if c == '?' {
            out.push(Piece::One(Pred::NotSlash));
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
                let mut items = Vec::new();
                let mut k = 0;
                while k < body.len() {
                    if k + 2 < body.len() && body[k + 1] == '-' {
                        if body[k] > body[k + 2] {
                            return None;
                        }
                        items.push((body[k], body[k + 2]));
                        k += 3;
                    } else {
                        items.push((body[k], body[k]));
                        k += 1;
                    }
                }
                out.push(Piece::One(Pred::Class { negated, items }));
                i = j + 1;
            } else {
                out.push(Piece::One(Pred::Lit('[')));
            }
        } else {
            out.push(Piece::One(Pred::Lit(c)));
        }
    }
    (!escape).then_some(out)
}

/// pathspec's `PathSpec.from_lines("gitwildmatch", ...)`: the last matching
/// pattern decides (a `!` pattern un-matches).
struct PathSpec {
    patterns: Vec<Pattern>,
}

impl PathSpec {
    fn new(lines: impl IntoIterator<Item = String>) -> Result<PathSpec, FabError> {
        let mut patterns = Vec::new();
        for line in lines {
            if let Some(p) = Pattern::compile(&line)? {
                patterns.push(p);
            }
        }
        Ok(PathSpec { patterns })
    }

    fn matches(&self, path: &str) -> bool {
        let path = path
            .strip_prefix('/')
            .or_else(|| path.strip_prefix("./"))
            .unwrap_or(path);
        let mut matched = false;
        for p in &self.patterns {
            if p.matches(path) {
                matched = p.include;
            }
        }
        matched
    }
}

/// Whether `path` (relative, POSIX) matches the gitwildmatch `patterns` as
/// Flower 1.27's pathspec does: the last matching pattern decides.
pub fn pathspec_matches(patterns: &[&str], path: &str) -> Result<bool, FabError> {
    Ok(PathSpec::new(patterns.iter().map(|s| s.to_string()))?.matches(path))
}

// ---------------------------------------------------------------------------
// tomli_w
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Reading and verifying
// ---------------------------------------------------------------------------

struct Entry {
    name: String,
    method: u16,
    crc: u32,
    compressed: u64,
    size: u64,
    data_start: usize,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn bad(reason: impl Into<String>) -> FabError {
    FabError::InvalidZip(reason.into())
}

fn check_entry_name(name: &str) -> Result<(), FabError> {
    let unsafe_name = |reason: &str| FabError::UnsafeEntryName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(unsafe_name("empty name"));
    }
    if name.contains('\0') {
        return Err(unsafe_name("contains NUL"));
    }
    if name.contains('\\') {
        return Err(unsafe_name("contains a backslash"));
    }
    if name.starts_with('/') {
        return Err(unsafe_name("absolute path"));
    }
    let b = name.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return Err(unsafe_name("drive-letter path"));
    }
    let parts: Vec<&str> = name.trim_end_matches('/').split('/').collect();
    if parts.contains(&"..") {
        return Err(unsafe_name("contains a '..' component"));
    }
    if parts.iter().any(|p| p.is_empty() || *p == ".") {
        return Err(unsafe_name("contains an empty or '.' component"));
    }
    if name.chars().any(|c| (c as u32) < 32) {
        return Err(unsafe_name("contains a control character"));
    }
    Ok(())
}

/// Parses the central directory defensively. Directory entries are skipped.
fn read_entries(bytes: &[u8]) -> Result<Vec<Entry>, FabError> {
    const EOCD: usize = 22;
    if bytes.len() < EOCD {
        return Err(bad("too short to be a ZIP archive"));
    }
    let lowest = bytes.len().saturating_sub(EOCD + 0xFFFF);
    let eocd = (lowest..=bytes.len() - EOCD)
        .rev()
        .find(|&i| le32(bytes, i) == 0x0605_4b50 && i + EOCD + le16(bytes, i + 20) as usize <= bytes.len())
        .ok_or_else(|| bad("no end-of-central-directory record"))?;
    if le16(bytes, eocd + 4) != 0 || le16(bytes, eocd + 6) != 0 {
        return Err(bad("multi-disk archives are not supported"));
    }
    let count = le16(bytes, eocd + 10) as usize;
    let cd_size = le32(bytes, eocd + 12) as usize;
    let cd_offset = le32(bytes, eocd + 16) as usize;
    if count == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
        return Err(bad("ZIP64 archives are not supported"));
    }
    if le16(bytes, eocd + 8) as usize != count {
        return Err(bad("inconsistent entry counts"));
    }
    if count > MAX_ENTRIES {
        return Err(FabError::TooManyEntries(count));
    }
    if cd_offset.checked_add(cd_size) != Some(eocd) {
        return Err(bad("central directory is not where the end record says"));
    }

    let mut entries = Vec::with_capacity(count);
    let mut names = HashSet::new();
    let mut total: u64 = 0;
    let mut at = cd_offset;
    for _ in 0..count {
        if at + 46 > eocd || le32(bytes, at) != 0x0201_4b50 {
            return Err(bad("corrupt central directory"));
        }
        let flags = le16(bytes, at + 8);
        let method = le16(bytes, at + 10);
        let crc = le32(bytes, at + 16);
        let compressed = le32(bytes, at + 20) as u64;
        let size = le32(bytes, at + 24) as u64;
        let name_len = le16(bytes, at + 28) as usize;
        let extra_len = le16(bytes, at + 30) as usize;
        let comment_len = le16(bytes, at + 32) as usize;
        let local = le32(bytes, at + 42) as usize;
        let name_end = at + 46 + name_len;
        if name_end + extra_len + comment_len > eocd {
            return Err(bad("corrupt central directory"));
        }
        let raw_name = &bytes[at + 46..name_end];
        let name = if flags & 0x0800 != 0 || raw_name.is_ascii() {
            std::str::from_utf8(raw_name)
                .map_err(|_| bad("an entry name is not valid UTF-8"))?
                .to_string()
        } else {
            return Err(bad("an entry name is not ASCII and not flagged as UTF-8"));
        };
        at = name_end + extra_len + comment_len;

        check_entry_name(&name)?;
        if !names.insert(name.clone()) {
            return Err(FabError::DuplicateEntry(name));
        }
        let unsupported = |reason: &str| FabError::UnsupportedEntry {
            name: name.clone(),
            reason: reason.to_string(),
        };
        if flags & 0x0001 != 0 {
            return Err(unsupported("encrypted"));
        }
        if method != 0 && method != 8 {
            return Err(unsupported("compression method is neither STORED nor DEFLATE"));
        }
        if compressed == 0xFFFF_FFFF || size == 0xFFFF_FFFF {
            return Err(unsupported("ZIP64 sizes"));
        }
        total += size;
        if total > MAX_UNCOMPRESSED {
            return Err(FabError::TooBigUncompressed(total));
        }
        if local + 30 > cd_offset || le32(bytes, local) != 0x0403_4b50 {
            return Err(bad(format!("missing local header for {name:?}")));
        }
        let local_name_len = le16(bytes, local + 26) as usize;
        let local_extra_len = le16(bytes, local + 28) as usize;
        let data_start = local + 30 + local_name_len + local_extra_len;
        if bytes.get(local + 30..local + 30 + local_name_len) != Some(raw_name) {
            return Err(bad(format!("local header name differs for {name:?}")));
        }
        if data_start as u64 + compressed > cd_offset as u64 {
            return Err(bad(format!("data of {name:?} runs past the archive")));
        }
        if method == 0 && compressed != size {
            return Err(bad(format!("stored entry {name:?} has inconsistent sizes")));
        }
        if name.ends_with('/') {
            if size != 0 {
                return Err(bad(format!("directory entry {name:?} has content")));
            }
            continue;
        }
        entries.push(Entry {
            name,
            method,
            crc,
            compressed,
            size,
            data_start,
        });
    }
    Ok(entries)
}

fn extract(bytes: &[u8], e: &Entry) -> Result<Vec<u8>, FabError> {
    let raw = &bytes[e.data_start..e.data_start + e.compressed as usize];
    let data = if e.method == 0 {
        raw.to_vec()
    } else {
        let mut out = Vec::with_capacity(e.size as usize);
        flate2::read::DeflateDecoder::new(raw)
            .take(e.size + 1)
            .read_to_end(&mut out)
            .map_err(|err| bad(format!("cannot inflate {:?}: {err}", e.name)))?;
        out
    };
    if data.len() as u64 != e.size {
        return Err(bad(format!("{:?} does not have its declared size", e.name)));
    }
    let mut crc = flate2::Crc::new();
    crc.update(&data);
    if crc.sum() != e.crc {
        return Err(bad(format!("CRC mismatch for {:?}", e.name)));
    }
    Ok(data)
}

/// Checks a FAB received by the server (StartRun).
///
/// `claimed_hash` is `Fab.hash_str` from the request; an empty claim is not
/// checked (Flower 1.27's server recomputes the hash and never rejects).
pub fn verify_fab(bytes: &[u8], claimed_hash: &str) -> Result<VerifiedFab, FabError> {
    if bytes.len() > FAB_MAX_SIZE {
        return Err(FabError::TooLarge(bytes.len()));
    }
    if !claimed_hash.is_empty() && claimed_hash != sha256_hex(bytes) {
        return Err(FabError::HashMismatch(claimed_hash.to_string()));
    }
    let entries = read_entries(bytes)?;
    let mut contents: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for e in &entries {
        contents.insert(&e.name, extract(bytes, e)?);
    }

    let manifest = contents.get(CONTENT_ENTRY).ok_or(FabError::MissingManifest)?;
    let manifest = std::str::from_utf8(manifest)
        .map_err(|_| FabError::HashesNotVerified(".info/CONTENT is not valid UTF-8.".into()))?;
    for line in manifest.trim().split('\n') {
        let mut parts = line.rsplitn(3, ',');
        let (bits, hash, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(b), Some(h), Some(p)) => (b, h, p),
            _ => {
                return Err(FabError::HashesNotVerified(format!(
                    "Malformed .info/CONTENT line {line:?}."
                )))
            }
        };
        let data = contents
            .get(path)
            .ok_or_else(|| FabError::HashesNotVerified(format!("'{path}' is listed but not in the FAB.")))?;
        if sha256_hex(data) != hash {
            return Err(FabError::HashesNotVerified(format!("The sha256 of '{path}' differs.")));
        }
        if bits.parse::<u64>().ok() != Some(data.len() as u64 * 8) {
            return Err(FabError::HashesNotVerified(format!("The size of '{path}' differs.")));
        }
    }

    let pyproject = contents.get(PYPROJECT).ok_or(FabError::MissingPyproject)?;
    let text = std::str::from_utf8(pyproject).map_err(|_| {
        FabError::App(AppError::Unreadable {
            path: PYPROJECT.into(),
            reason: "It is not valid UTF-8.".into(),
        })
    })?;
    let (app, _) = app::parse_pyproject(text)?;
    Ok(VerifiedFab {
        app,
        files: entries
            .iter()
            .filter(|e| !e.name.starts_with(".info/"))
            .map(|e| e.name.clone())
            .collect(),
    })
}

/// Every file of a FAB but its `.info/` manifest, with the same archive
/// checks as [`verify_fab`]: what Flower installs into the app directory.
pub fn read_fab_files(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, FabError> {
    read_entries(bytes)?
        .iter()
        .filter(|e| !e.name.starts_with(".info/"))
        .map(|e| Ok((e.name.clone(), extract(bytes, e)?)))
        .collect()
}

/// Extracts one entry of a FAB (with the same archive checks as [`verify_fab`]).
pub fn read_fab_file(bytes: &[u8], path: &str) -> Result<Vec<u8>, FabError> {
    let entries = read_entries(bytes)?;
    let entry = entries
        .iter()
        .find(|e| e.name == path)
        .ok_or_else(|| FabError::EntryNotFound(path.to_string()))?;
    extract(bytes, entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(lines: &[&str]) -> PathSpec {
        PathSpec::new(lines.iter().map(|s| s.to_string())).unwrap()
    }

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
    fn app_dir_names() {
        assert!(check_app_dir_name(Path::new("/x/my-app2")).is_ok());
        assert!(check_app_dir_name(Path::new("/x/ünï")).is_ok());
        for bad in ["/x/2app", "/x/my_app", "/x/-a", "/"] {
            assert!(check_app_dir_name(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn gitignore_lines_like_python() {
        assert_eq!(
            gitignore_patterns("a\r\n  b  \n#c\n\n\u{0b}d\u{2028}e"),
            ["a", "b", "d", "e"]
        );
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

    fn write(dir: &Path, rel: &str, content: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    const PYPROJECT_TEXT: &str = "[project]\nname = \"demo\"\nversion = \"1.0.0\"\n\n[tool.flwr.app]\npublisher = \"acme\"\n\n[tool.flwr.app.components]\nserverapp = \"demo.server:app\"\nclientapp = \"demo.client:app\"\n\n[tool.flwr.federations]\ndefault = \"x\"\n";

    fn demo_app() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "pyproject.toml", PYPROJECT_TEXT);
        write(d, "demo/server.py", "app = 1\n");
        write(d, "demo/client.py", "app = 2\n");
        write(d, "demo/__pycache__/x.py", "x\n");
        write(d, ".flwr/y.py", "y\n");
        write(d, "ignored.py", "z\n");
        write(d, "notes.txt", "n\n");
        write(d, ".gitignore", "ignored.py\n");
        dir
    }

    #[test]
    fn builds_and_verifies() {
        let dir = demo_app();
        let fab = build_fab(dir.path()).unwrap();
        assert_eq!(fab.hash, sha256_hex(&fab.bytes));
        assert_eq!(fab.filename, format!("acme.demo.1-0-0.{}.fab", &fab.hash[..8]));
        assert_eq!(fab.warnings.len(), 2);
        let v = verify_fab(&fab.bytes, &fab.hash).unwrap();
        assert_eq!(v.files, ["pyproject.toml", "demo/client.py", "demo/server.py"]);
        assert_eq!(v.app.fab_id(), "acme/demo");
        let inner = String::from_utf8(read_fab_file(&fab.bytes, "pyproject.toml").unwrap()).unwrap();
        assert!(!inner.contains("federations"));
        let content = String::from_utf8(read_fab_file(&fab.bytes, CONTENT_ENTRY).unwrap()).unwrap();
        assert_eq!(content.lines().count(), 3);
        assert!(!content.ends_with('\n'));
        assert!(matches!(
            read_fab_file(&fab.bytes, "nope.py"),
            Err(FabError::EntryNotFound(_))
        ));
        // deterministic
        assert_eq!(build_fab(dir.path()).unwrap().bytes, fab.bytes);
        // in-memory build gives the same bytes
        let mut files = BTreeMap::new();
        for (k, v) in [
            ("pyproject.toml", PYPROJECT_TEXT),
            ("demo/server.py", "app = 1\n"),
            ("demo/client.py", "app = 2\n"),
            ("ignored.py", "z\n"),
            (".gitignore", "ignored.py\n"),
        ] {
            files.insert(k.to_string(), v.as_bytes().to_vec());
        }
        assert_eq!(build_fab_from_files(&files).unwrap().bytes, fab.bytes);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_like_python_rglob() {
        let dir = demo_app();
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "o.py", "o\n");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("linkdir")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("o.py"), dir.path().join("link.py")).unwrap();
        std::os::unix::fs::symlink("missing.py", dir.path().join("broken.py")).unwrap();
        let fab = build_fab(dir.path()).unwrap();
        let v = verify_fab(&fab.bytes, "").unwrap();
        assert!(v.files.contains(&"link.py".to_string()));
        assert!(!v.files.iter().any(|f| f.starts_with("linkdir") || f == "broken.py"));
        assert_eq!(read_fab_file(&fab.bytes, "link.py").unwrap(), b"o\n");
    }

    #[test]
    fn build_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = build_fab(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, FabError::NotADirectory(_)), "{err}");
        let err = build_fab(dir.path()).unwrap_err();
        assert!(err.to_string().contains("File may be missing or invalid"), "{err}");
        write(dir.path(), "pyproject.toml", "[project]\n");
        let err = build_fab(dir.path()).unwrap_err();
        assert!(!err.to_string().contains('\n'));
        assert!(err.to_string().contains("- Property \"name\" missing in [project]"));
        let dir = demo_app();
        std::fs::write(dir.path().join("big.md"), vec![b'x'; FAB_MAX_SIZE]).unwrap();
        assert_eq!(build_fab(dir.path()).unwrap_err(), FabError::BuildTooLarge);
        let dir = demo_app();
        write(dir.path(), ".gitignore", "bad\\\n");
        assert!(matches!(build_fab(dir.path()), Err(FabError::InvalidPattern(_))));
    }

    /// A hand-made archive with chosen names and contents (STORED).
    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let owned: Vec<(String, Vec<u8>)> = entries.iter().map(|(n, d)| (n.to_string(), d.to_vec())).collect();
        write_stored_zip(&owned)
    }

    fn manifest(entries: &[(&str, &[u8])]) -> Vec<u8> {
        entries
            .iter()
            .map(|(n, d)| format!("{n},{},{}", sha256_hex(d), d.len() * 8))
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes()
    }

    #[test]
    fn verify_rejections() {
        let dir = demo_app();
        let fab = build_fab(dir.path()).unwrap();
        assert_eq!(
            verify_fab(&fab.bytes, "00").unwrap_err().to_string(),
            "FAB (00) hash from request doesn't match contents"
        );
        let big = vec![0u8; FAB_MAX_SIZE + 1];
        assert!(matches!(verify_fab(&big, ""), Err(FabError::TooLarge(_))));
        assert!(matches!(verify_fab(b"not a zip", ""), Err(FabError::InvalidZip(_))));
        let mut corrupt = fab.bytes.clone();
        corrupt[40] ^= 0xFF; // inside pyproject.toml's data
        assert!(matches!(verify_fab(&corrupt, ""), Err(FabError::InvalidZip(_))));

        let py = PYPROJECT_TEXT.as_bytes();
        for name in [
            "/abs.py",
            "../up.py",
            "a/../b.py",
            "a\\b.py",
            "C:/x.py",
            "a//b.py",
            "./a.py",
        ] {
            let z = zip_of(&[(name, b"x")]);
            assert!(
                matches!(verify_fab(&z, ""), Err(FabError::UnsafeEntryName { .. })),
                "{name}"
            );
        }
        let z = zip_of(&[("a.py", b"x"), ("a.py", b"y")]);
        assert_eq!(verify_fab(&z, "").unwrap_err(), FabError::DuplicateEntry("a.py".into()));

        let z = zip_of(&[("pyproject.toml", py)]);
        assert_eq!(verify_fab(&z, "").unwrap_err(), FabError::MissingManifest);

        let files: [(&str, &[u8]); 2] = [("pyproject.toml", py), ("a.py", b"x")];
        let mut m = manifest(&files);
        m.extend_from_slice(b"\nmissing.py,00,0");
        let z = zip_of(&[files[0], files[1], (CONTENT_ENTRY, &m)]);
        let err = verify_fab(&z, "").unwrap_err();
        assert!(
            err.to_string().starts_with("File hashes couldn't be verified."),
            "{err}"
        );
        let m = manifest(&[("pyproject.toml", py), ("a.py", b"other")]);
        let z = zip_of(&[files[0], files[1], (CONTENT_ENTRY, &m)]);
        assert!(matches!(verify_fab(&z, ""), Err(FabError::HashesNotVerified(_))));
        let m = manifest(&[("a.py", b"x")]);
        let z = zip_of(&[files[1], (CONTENT_ENTRY, &m)]);
        assert_eq!(verify_fab(&z, "").unwrap_err(), FabError::MissingPyproject);
        let bad_py: &[u8] = b"[project]\n";
        let m = manifest(&[("pyproject.toml", bad_py)]);
        let z = zip_of(&[("pyproject.toml", bad_py), (CONTENT_ENTRY, &m)]);
        let err = verify_fab(&z, "").unwrap_err();
        assert!(matches!(err, FabError::App(_)));
        assert!(!err.to_string().contains('\n'));

        // declared sizes guard against zip bombs before inflating
        let mut z = zip_of(&[("a.py", b"x")]);
        let cd = le32(&z, z.len() - 6) as usize;
        z[cd + 24..cd + 28].copy_from_slice(&(MAX_UNCOMPRESSED as u32 + 1).to_le_bytes());
        assert!(matches!(verify_fab(&z, ""), Err(FabError::TooBigUncompressed(_))));
    }

    #[test]
    fn verify_accepts_deflated_entries() {
        use std::io::Write as _;
        let py = PYPROJECT_TEXT.as_bytes();
        let m = manifest(&[("pyproject.toml", py)]);
        // Build a STORED archive, then rewrite pyproject.toml as DEFLATE.
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(py).unwrap();
        let deflated = enc.finish().unwrap();
        let mut out = Vec::new();
        let mut crc = flate2::Crc::new();
        crc.update(py);
        let name = b"pyproject.toml";
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 0, 0, 8, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(deflated.len() as u32).to_le_bytes());
        out.extend_from_slice(&(py.len() as u32).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(name);
        out.extend_from_slice(&deflated);
        let second = write_stored_zip(&[(CONTENT_ENTRY.to_string(), m)]);
        // Splice: local header of CONTENT follows; rebuild the central directory.
        let content_local_len = 30 + CONTENT_ENTRY.len() + le32(&second, 22) as usize;
        let content_offset = out.len();
        out.extend_from_slice(&second[..content_local_len]);
        let cd_offset = out.len();
        let mut cd = Vec::new();
        cd.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        cd.extend_from_slice(&[20, 3, 20, 0, 0, 0, 8, 0, 0, 0, 0, 0]);
        cd.extend_from_slice(&crc.sum().to_le_bytes());
        cd.extend_from_slice(&(deflated.len() as u32).to_le_bytes());
        cd.extend_from_slice(&(py.len() as u32).to_le_bytes());
        cd.extend_from_slice(&(name.len() as u16).to_le_bytes());
        cd.extend_from_slice(&[0; 12]);
        cd.extend_from_slice(&0u32.to_le_bytes());
        cd.extend_from_slice(name);
        let second_cd = le32(&second, second.len() - 6) as usize;
        let mut content_cd = second[second_cd..second.len() - 22].to_vec();
        content_cd[42..46].copy_from_slice(&(content_offset as u32).to_le_bytes());
        cd.extend_from_slice(&content_cd);
        out.extend_from_slice(&cd);
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 2, 0, 2, 0]);
        out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
        out.extend_from_slice(&(cd_offset as u32).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        let v = verify_fab(&out, &sha256_hex(&out)).unwrap();
        assert_eq!(v.files, ["pyproject.toml"]);
        assert_eq!(read_fab_file(&out, "pyproject.toml").unwrap(), py);
    }
}
