//! Flower App Bundles (FABs): the public API the rest of the crate uses
//! (errors, limits, [`BuiltFab`], [`VerifiedFab`], names and hashes) and the
//! builder, which turns an app directory into a FAB.
//!
//! [`build_fab`] reproduces Flower 1.27's `flwr build` / `flwr run` byte for
//! byte: the same file selection (pathspec "gitwildmatch" rules, the root
//! `.gitignore`, hidden files included, file symlinks followed, directory
//! symlinks not entered), `pyproject.toml` re-serialised as `tomli_w` does
//! ([`tomli_w_dumps`]), the `.info/CONTENT` manifest and a ZIP container
//! written exactly as Python's `zipfile` writes it (STORED entries,
//! 2024-10-01 00:00:00, mode 0600, no extra fields). Equal inputs therefore
//! give the same sha256 as real Flower.
//!
//! [`verify_fab`] is the server side: size, claimed hash, a defensive ZIP
//! reader (no unsafe names, no duplicates, bounded entry count and
//! uncompressed size, CRCs checked), the manifest's hashes, and a valid
//! `pyproject.toml`. [`read_fab_file`] extracts one entry with the same checks.
//!
//! One job per file:
//!
//! - `mod.rs`: the public API and the builder (file walk, selection, manifest).
//! - `ignore.rs`: pathspec's gitwildmatch patterns, translated to regexes.
//! - `toml_write.rs`: `tomli_w.dumps`, by hand for byte identity.
//! - `zip_write.rs`: Python `zipfile`'s STORED layout, by hand for byte identity.
//! - `zip_read.rs`: the defensive ZIP reader.
//! - `verify.rs`: the checks of a received FAB, and extraction.
//!
//! This module never writes files, never talks to a SuperLink and never
//! executes app code; validation of the configuration itself is `crate::app`.

mod ignore;
mod toml_write;
mod verify;
mod zip_read;
mod zip_write;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::app::{self, AppConfig, AppError, PYPROJECT};
use ignore::{gitignore_patterns, PathSpec};
pub use toml_write::tomli_w_dumps;
pub use verify::{read_fab_file, read_fab_files, verify_fab};
use zip_write::write_stored_zip;

/// Maximum FAB size accepted and produced (Flower's `FAB_MAX_SIZE`).
pub(crate) const FAB_MAX_SIZE: usize = 10 * 1024 * 1024;
/// Maximum number of entries [`verify_fab`] accepts.
pub(crate) const MAX_ENTRIES: usize = 10_000;
/// Maximum total uncompressed size [`verify_fab`] accepts (zip-bomb guard).
pub(crate) const MAX_UNCOMPRESSED: u64 = 100 * 1024 * 1024;
/// The manifest entry.
pub(crate) const CONTENT_ENTRY: &str = ".info/CONTENT";

/// Flower 1.27's `FAB_INCLUDE_PATTERNS`.
const INCLUDE_PATTERNS: [&str; 4] = ["**/*.py", "**/*.toml", "**/*.md", "/LICENSE"];
/// Flower 1.27's `FAB_EXCLUDE_PATTERNS`; the root `.gitignore` is appended.
const EXCLUDE_PATTERNS: [&str; 3] = [".flwr/**", "**/__pycache__/**", "pyproject.toml"];

/// Errors of this module; each message is one line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FabError {
    /// The app's configuration is missing or invalid.
    #[error("{}", one_line(&.0.to_string()))]
    App(#[from] AppError),
    /// The app path is not a directory (Flower's text).
    #[error("The path {0} is not a valid path to a Flower app.")]
    NotADirectory(String),
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
    /// The entries would expand beyond `MAX_UNCOMPRESSED`.
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
fn fab_filename(app: &AppConfig, hash: &str) -> String {
    let short: String = hash.chars().take(8).collect();
    format!(
        "{}.{}.{}.{}.fab",
        app.publisher,
        app.name,
        app.version.replace('.', "-"),
        short
    )
}

/// The `.info/CONTENT` manifest of `entries`: one `name,sha256,bits` line
/// each, in order (what `flwr build` writes and the verifier checks).
pub(crate) fn content_manifest<N: AsRef<str>, D: AsRef<[u8]>>(entries: &[(N, D)]) -> String {
    entries
        .iter()
        .map(|(name, data)| {
            let data = data.as_ref();
            format!("{},{},{}", name.as_ref(), sha256_hex(data), data.len() * 8)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Lowercase hex sha256.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
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
    let manifest = content_manifest(&entries);
    entries.push((CONTENT_ENTRY.to_string(), manifest.into_bytes()));

    let bytes = write_stored_zip(&entries);
    if bytes.len() > FAB_MAX_SIZE {
        return Err(FabError::BuildTooLarge);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::zip_read::le32;
    use super::*;

    #[test]
    fn no_configuration_file_is_larger_than_a_fab() {
        assert_eq!(crate::app::CONFIG_FILE_MAX, FAB_MAX_SIZE as u64);
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
        content_manifest(entries).into_bytes()
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
