//! Server-side checks of a received FAB (StartRun, replay, the Python
//! bridge): size, claimed hash, the archive through the defensive reader,
//! the `.info/CONTENT` manifest's hashes and sizes, and a valid
//! `pyproject.toml`; and extraction of its files with the same checks.
//!
//! It never writes files, never executes app code and never builds FABs.

use std::collections::BTreeMap;

use super::zip_read::{extract, read_entries};
use super::{sha256_hex, FabError, VerifiedFab, CONTENT_ENTRY, FAB_MAX_SIZE};
use crate::app::{self, AppError, PYPROJECT};

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
    use std::sync::LazyLock;

    use proptest::prelude::*;

    use super::super::zip_write::write_stored_zip;
    use super::super::{build_fab_from_files, BuiltFab};
    use super::*;
    use crate::mutation::{mutated, mutations};

    const PYPROJECT_TEXT: &str = "[project]\nname = \"demo\"\nversion = \"1.0.0\"\n\n[tool.flwr.app]\npublisher = \"acme\"\n\n[tool.flwr.app.components]\nserverapp = \"demo.server:app\"\nclientapp = \"demo.client:app\"\n\n[tool.flwr.app.config]\nlr = 0.1\nrounds = 3\n";

    /// A valid FAB built by the builder: several entries, one with a
    /// non-ASCII name (the UTF-8 flag).
    static FAB: LazyLock<BuiltFab> = LazyLock::new(|| {
        let files: BTreeMap<String, Vec<u8>> = [
            ("pyproject.toml", PYPROJECT_TEXT),
            ("demo/server.py", "app = 1\n"),
            ("demo/client.py", "app = 2\n"),
            ("demo/ünï.py", "x = 3\n"),
            ("README.md", "# demo\n"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
        build_fab_from_files(&files).unwrap()
    });

    /// Everything the server does with received FAB bytes.
    fn read_all(bytes: &[u8]) {
        let _ = verify_fab(bytes, "");
        let _ = read_fab_files(bytes);
        let _ = read_fab_file(bytes, PYPROJECT);
        let _ = read_fab_file(bytes, CONTENT_ENTRY);
    }

    #[test]
    fn the_sample_fab_verifies() {
        let v = verify_fab(&FAB.bytes, &FAB.hash).unwrap();
        assert_eq!(v.files.len(), 5);
        assert_eq!(read_fab_files(&FAB.bytes).unwrap().len(), 5);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

        /// Arbitrary bytes, and arbitrary bytes behind a ZIP signature or
        /// before an end-of-central-directory record, never panic.
        #[test]
        fn fab_reader_never_panics_on_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..1024),
            frame in 0..3u8,
        ) {
            let bytes = match frame {
                0 => bytes,
                1 => [&b"PK\x03\x04"[..], &bytes].concat(),
                _ => [&bytes[..], b"PK\x05\x06", &[0; 18]].concat(),
            };
            read_all(&bytes);
        }

        /// Byte flips, edge values over header fields, truncations,
        /// insertions and removals of a valid FAB never panic.
        #[test]
        fn fab_reader_never_panics_on_mutated_fabs(mutations in mutations(4)) {
            read_all(&mutated(&FAB.bytes, &mutations));
        }

        /// A well-formed archive (right CRCs, sizes, offsets) around mutated
        /// `pyproject.toml` or `.info/CONTENT` contents never panics either:
        /// this reaches the manifest check and the configuration's parser.
        #[test]
        fn fab_verifier_never_panics_on_mutated_contents(
            mutations in mutations(4),
            target in 0..3u8,
        ) {
            let mut entries = read_fab_files(&FAB.bytes).unwrap();
            let manifest = read_fab_file(&FAB.bytes, CONTENT_ENTRY).unwrap();
            let index = entries.iter().position(|(n, _)| n == PYPROJECT).unwrap();
            let manifest = match target {
                0 => {
                    entries[index].1 = mutated(&entries[index].1, &mutations);
                    manifest
                }
                1 => {
                    // Mutated pyproject.toml with a manifest that agrees.
                    entries[index].1 = mutated(&entries[index].1, &mutations);
                    super::super::content_manifest(&entries).into_bytes()
                }
                _ => mutated(&manifest, &mutations),
            };
            entries.push((CONTENT_ENTRY.to_string(), manifest));
            read_all(&write_stored_zip(&entries));
        }
    }
}
