//! Files and directories only their owner can use: directories 0700, files
//! 0600, whatever the umask of the process that creates them.
//!
//! The SuperLink's state (`state.db` and its `-wal`/`-shm`, FABs in `ffs/`,
//! `superlink.log` and its rotations, lock files, the Local API secret) is
//! the owner's alone: a FAB may hold a secret an app directory linked to, a
//! log may hold anything an app printed. The SuperLink runs with umask 077
//! (so that every file it or SQLite creates is private) and gives its
//! children back the umask it inherited; what existed before is tightened at
//! start; what the CLI creates in the state directory is created private.
//!
//! It never follows symbolic links when it tightens, and never widens a mode.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// Mode of private directories.
const DIRECTORY_MODE: u32 = 0o700;
/// Mode of private files.
const FILE_MODE: u32 = 0o600;

/// The umask this process inherited, before [`restrict_umask`].
static INHERITED_UMASK: AtomicU32 = AtomicU32::new(u32::MAX);

/// Makes every file this process creates from now on private (umask 077),
/// remembering the inherited umask for `inherited_umask`.
pub fn restrict_umask() {
    // SAFETY: umask(2) only changes this process's file creation mask.
    let inherited = unsafe { libc::umask(0o077) };
    let _ = INHERITED_UMASK.compare_exchange(u32::MAX, inherited as u32, Ordering::SeqCst, Ordering::SeqCst);
}

/// The umask to give child processes that run users' code: the one this
/// process inherited (files an app writes for its user are not ours to
/// restrict).
pub(crate) fn inherited_umask() -> Option<libc::mode_t> {
    match INHERITED_UMASK.load(Ordering::SeqCst) {
        u32::MAX => None,
        mask => Some(mask as libc::mode_t),
    }
}

/// Creates `path` and its missing parents as private directories, and makes
/// `path` itself private if it already existed.
pub fn create_dir_all(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIRECTORY_MODE)
        .create(path)?;
    restrict(path)
}

/// Options that create a file private (mode 0600 before the umask, which can
/// only remove bits).
pub fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// Opens `path` for appending, creating it private.
pub(crate) fn open_append(path: &Path) -> std::io::Result<File> {
    let file = options().create(true).append(true).open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Replaces `path` with `bytes` atomically (a private temporary file in the
/// same directory, synced, then renamed over it): a reader sees the old
/// content or the new, never a part, and never a moment where others could
/// read it.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    written_beside(path, bytes)?
        .persist(path)
        .map(drop)
        .map_err(|e| e.error)
}

/// Creates `path` with `bytes` unless it exists, atomically: the file
/// appears whole or not at all, and one that exists (or that another
/// process creates first) is never replaced. Returns whether this call
/// created it.
pub(crate) fn create_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    match written_beside(path, bytes)?.persist_noclobber(path) {
        Ok(_) => Ok(true),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e.error),
    }
}

/// `bytes` in a private temporary file beside `path`, synced: a name of its
/// own for every write (random, created exclusively), so that threads and
/// processes writing one file at once never share one. It is removed when
/// dropped before it is persisted.
fn written_beside(path: &Path, bytes: &[u8]) -> std::io::Result<tempfile::NamedTempFile> {
    let directory = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let mut file = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(FILE_MODE))
        .tempfile_in(directory)?;
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    Ok(file)
}

/// Removes group and other permissions from `path` (not following a
/// symbolic link). A missing path is fine.
fn restrict(path: &Path) -> std::io::Result<()> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    if metadata.file_type().is_symlink() {
        return Ok(());
    }
    let mode = metadata.permissions().mode() & 0o7777;
    let private = mode & 0o700;
    if mode != private {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(private))?;
    }
    Ok(())
}

/// [`restrict`] on `path` and everything under it.
pub(crate) fn restrict_tree(path: &Path) -> std::io::Result<()> {
    restrict(path)?;
    let is_directory = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    if is_directory {
        for entry in std::fs::read_dir(path)? {
            restrict_tree(&entry?.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Threads of one process replacing one file at once: each write lands
    /// whole (they shared one temporary name, and one removed another's).
    #[test]
    fn concurrent_atomic_writes_of_one_file_all_succeed() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("config.toml");
        for attempt in 0..20 {
            let start = std::sync::Barrier::new(8);
            std::thread::scope(|scope| {
                let writes: Vec<_> = (0..8u8)
                    .map(|writer| {
                        let (start, path) = (&start, &path);
                        scope.spawn(move || {
                            start.wait();
                            write_atomically(path, &vec![writer; 64 * 1024])
                        })
                    })
                    .collect();
                for write in writes {
                    write
                        .join()
                        .unwrap()
                        .unwrap_or_else(|e| panic!("attempt {attempt}: {e}"));
                }
            });
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(bytes.len(), 64 * 1024);
            assert!(bytes.iter().all(|b| *b == bytes[0]), "a torn write");
            assert_eq!(mode(&path), FILE_MODE);
        }
        let names: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("config.toml")]);
    }

    #[test]
    fn creates_private_and_tightens_what_exists() {
        let root = tempfile::tempdir().unwrap();
        let directory = root.path().join("a/b");
        create_dir_all(&directory).unwrap();
        assert_eq!((mode(&root.path().join("a")), mode(&directory)), (0o700, 0o700));

        let log = directory.join("log");
        drop(open_append(&log).unwrap());
        assert_eq!(mode(&log), 0o600);
        write_atomically(&directory.join("secret"), b"s").unwrap();
        assert_eq!(mode(&directory.join("secret")), 0o600);
        assert_eq!(std::fs::read(directory.join("secret")).unwrap(), b"s");

        let open = directory.join("open");
        std::fs::write(&open, b"x").unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o777)).unwrap();
        let target = root.path().join("target");
        std::fs::write(&target, b"t").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&target, directory.join("link")).unwrap();
        restrict_tree(&root.path().join("a")).unwrap();
        assert_eq!((mode(&directory), mode(&open)), (0o700, 0o700));
        // A link's target is not ours to change.
        assert_eq!(mode(&target), 0o644);
    }
}
