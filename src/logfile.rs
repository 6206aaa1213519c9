//! The SuperLink's log file, rotated like Flower's `TimedRotatingFileHandler`:
//! after the interval the file is renamed with a timestamp suffix and a new
//! one begins; only the newest `backups` renamed files are kept. Every file
//! is private to its owner (mode 0600), whatever the umask.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

pub struct RotatingFile {
    path: PathBuf,
    interval: Duration,
    backups: usize,
    /// The open file and when it was started. A std mutex: held for one write.
    current: Mutex<(File, SystemTime)>,
}

fn open(path: &Path) -> std::io::Result<File> {
    crate::owner_only::open_append(path)
}

impl RotatingFile {
    pub fn open(path: &Path, interval: Duration, backups: usize) -> std::io::Result<RotatingFile> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() && !parent.exists() {
                crate::owner_only::create_dir_all(parent)?;
            }
        }
        let file = open(path)?;
        let started = file
            .metadata()
            .and_then(|m| m.created().or_else(|_| m.modified()))
            .unwrap_or_else(|_| SystemTime::now());
        let rotating = RotatingFile {
            path: path.to_path_buf(),
            interval,
            backups,
            current: Mutex::new((file, started)),
        };
        rotating.rotate_if_due()?;
        Ok(rotating)
    }

    fn rotate_if_due(&self) -> std::io::Result<()> {
        let mut current = self.current.lock().expect("log file lock");
        let age = SystemTime::now().duration_since(current.1).unwrap_or_default();
        if self.interval.is_zero() || age < self.interval {
            return Ok(());
        }
        let suffix = chrono::Utc::now().format("%Y-%m-%d_%H-%M-%S");
        let rotated = PathBuf::from(format!("{}.{suffix}", self.path.display()));
        std::fs::rename(&self.path, &rotated)?;
        *current = (open(&self.path)?, SystemTime::now());
        self.prune();
        Ok(())
    }

    /// Deletes the oldest rotated files beyond `backups`.
    fn prune(&self) {
        let (Some(directory), Some(name)) = (self.path.parent(), self.path.file_name().and_then(|n| n.to_str())) else {
            return;
        };
        let prefix = format!("{name}.");
        let mut rotated: Vec<PathBuf> = std::fs::read_dir(directory)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .collect();
        rotated.sort();
        let excess = rotated.len().saturating_sub(self.backups);
        for path in &rotated[..excess] {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Write for &RotatingFile {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let _ = self.rotate_if_due();
        self.current.lock().expect("log file lock").0.write(bytes)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.current.lock().expect("log file lock").0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_and_keeps_backups() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("superlink.log");
        for index in 0..4 {
            std::fs::write(
                directory
                    .path()
                    .join(format!("superlink.log.2026-01-0{}_00-00-00", index + 1)),
                "old",
            )
            .unwrap();
        }
        let file = RotatingFile::open(&path, Duration::from_nanos(1), 2).unwrap();
        (&file).write_all(b"line\n").unwrap();
        let rotated = std::fs::read_dir(directory.path()).unwrap().count() - 1;
        assert_eq!(rotated, 2, "only the newest backups remain");
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("line\n"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the new file after a rotation is private");
    }
}
