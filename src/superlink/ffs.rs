//! FAB storage: content-addressed files under the storage directory, as
//! Flower 1.27's `DiskFfs` keeps them (`<sha256>` and `<sha256>.META`).
//!
//! Files are written to a temporary name and renamed, so a reader never sees
//! half a FAB; bytes are checked against their name when read back. The
//! directory and its files are private to their owner (a FAB may hold
//! anything an app directory linked to).

use std::path::{Path, PathBuf};

use crate::fab::sha256_hex;

pub(crate) struct Ffs {
    directory: PathBuf,
}

impl Ffs {
    pub fn open(directory: &Path) -> std::io::Result<Ffs> {
        crate::owner_only::create_dir_all(directory)?;
        Ok(Ffs {
            directory: directory.to_path_buf(),
        })
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    fn path(&self, hash: &str) -> std::io::Result<PathBuf> {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("invalid FAB hash {hash:?}"),
            ));
        }
        Ok(self.directory.join(hash))
    }

    /// Stores `bytes` under their hash (a no-op when already stored).
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<String> {
        let hash = sha256_hex(bytes);
        let path = self.path(&hash)?;
        if !path.exists() {
            crate::owner_only::write_atomically(&path, bytes)?;
        }
        let meta = self.directory.join(format!("{hash}.META"));
        if !meta.exists() {
            crate::owner_only::write_atomically(&meta, b"{}")?;
        }
        Ok(hash)
    }

    /// The FAB stored under `hash`, checked against it.
    pub fn get(&self, hash: &str) -> std::io::Result<Vec<u8>> {
        let bytes = std::fs::read(self.path(hash)?)?;
        if sha256_hex(&bytes) != hash {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the stored FAB {hash} does not match its hash; the storage directory is corrupt"),
            ));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_then_get_by_hash() {
        let directory = tempfile::tempdir().unwrap();
        let ffs = Ffs::open(directory.path()).unwrap();
        let hash = ffs.put(b"fab bytes").unwrap();
        assert_eq!(hash, sha256_hex(b"fab bytes"));
        assert_eq!(ffs.put(b"fab bytes").unwrap(), hash);
        assert_eq!(ffs.get(&hash).unwrap(), b"fab bytes");
        assert!(directory.path().join(format!("{hash}.META")).exists());
        assert!(ffs.get("../etc/passwd").is_err());
        std::fs::write(directory.path().join(&hash), b"tampered").unwrap();
        assert!(ffs.get(&hash).is_err());
    }

    /// Concurrent StartRuns of one FAB store it at once in one process: each
    /// must succeed (they shared one temporary name, and the loser's rename
    /// found its file gone: "cannot store the FAB: No such file or directory").
    #[test]
    fn concurrent_puts_of_one_fab_all_succeed() {
        for attempt in 0..20 {
            let directory = tempfile::tempdir().unwrap();
            let ffs = Ffs::open(directory.path()).unwrap();
            let content = vec![attempt as u8; 256 * 1024];
            let start = std::sync::Barrier::new(8);
            std::thread::scope(|scope| {
                let puts: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            start.wait();
                            ffs.put(&content)
                        })
                    })
                    .collect();
                for put in puts {
                    let hash = put.join().unwrap().unwrap_or_else(|e| panic!("attempt {attempt}: {e}"));
                    assert_eq!(ffs.get(&hash).unwrap(), content);
                }
            });
            let left: Vec<_> = std::fs::read_dir(directory.path())
                .unwrap()
                .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                .filter(|name| name.ends_with(".tmp"))
                .collect();
            assert!(left.is_empty(), "temporary files left behind: {left:?}");
        }
    }
}
