//! FABs built by floret are byte-identical to the ones real `flwr build`
//! (Flower 1.27.0) produced for the same app directories.
//!
//! The app directories live in `tests/fixtures/fab/<app>/`. Files that git
//! would not keep (caches, files the app's own `.gitignore` ignores) are
//! created at test time by [`materialize`], exactly as they were when the
//! expected FABs were made. The expected FAB of each app is
//! `<app>.fab.bin`; `<app>.sha256` holds `<sha256>  <flwr build file name>`.
//!
//! To regenerate: `python3 tests/fixtures/fab/generate.py` (a venv with
//! flwr 1.27.0 runs `flwr build` on each app plus [`FULL_EXTRAS`], which it
//! reads from this file; `--check` compares only). To look at the exact
//! directories, run this test with `FLORET_KEEP_FAB_FIXTURES=<dir>`.

use std::path::{Path, PathBuf};

use floret::fab::{build_fab, verify_fab};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fab");

/// Files created at test time for `app-full`, with the reason Flower 1.27
/// includes or excludes each.
const FULL_EXTRAS: &[(&str, &str)] = &[
    // excluded: `**/__pycache__/**`
    ("fullapp/__pycache__/server_app.cpython-311.pyc", "\u{0}bytecode"),
    ("fullapp/__pycache__/shadow.py", "shadow = 1\n"),
    // included: `!**/__pycache__/keep.py` in .gitignore re-includes it
    // (pathspec's last-match-wins over built-ins and .gitignore together)
    ("fullapp/__pycache__/keep.py", "keep = 1\n"),
    // excluded: `.flwr/**`
    (".flwr/cache.py", "cache = 1\n"),
    // excluded by the root .gitignore
    ("build/gen.py", "generated = 1\n"),
    ("fullapp/build/deep.py", "deep = 1\n"),
    ("run.log", "log\n"),
    ("secret_key.py", "KEY = 'x'\n"),
    ("data/private/p.py", "p = 1\n"),
    ("docs/draft-1.md", "# draft\n"),
    // included: nested .gitignore files are not honoured
    ("fullapp/utils/nested_ignored.py", "n = 1\n"),
];

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Copies fixture `app` into `root/app` and adds its extra files.
fn materialize(app: &str, root: &Path) -> PathBuf {
    let dir = root.join(app);
    copy_dir(&Path::new(FIXTURES).join(app), &dir);
    let extras: &[(&str, &str)] = if app == "app-full" { FULL_EXTRAS } else { &[] };
    for (rel, content) in extras {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    if let Some(keep) = std::env::var_os("FLORET_KEEP_FAB_FIXTURES") {
        copy_dir(&dir, &Path::new(&keep).join(app));
    }
    dir
}

fn check_identical(app: &str, expected_files: &[&str]) {
    let root = tempfile::tempdir().unwrap();
    let dir = materialize(app, root.path());
    let built = build_fab(&dir).unwrap();

    let expected = std::fs::read(Path::new(FIXTURES).join(format!("{app}.fab.bin"))).unwrap();
    let line = std::fs::read_to_string(Path::new(FIXTURES).join(format!("{app}.sha256"))).unwrap();
    let (hash, filename) = line.trim().split_once("  ").unwrap();

    assert_eq!(built.hash, hash, "{app}: sha256 differs from flwr build 1.27");
    assert_eq!(built.filename, filename);
    assert!(built.bytes == expected, "{app}: bytes differ from flwr build 1.27");

    let verified = verify_fab(&expected, hash).unwrap();
    assert_eq!(verified.files, expected_files);
    // The FAB's pyproject.toml is re-serialised without [tool.flwr.federations];
    // everything the SuperLink uses is the same.
    assert_eq!(verified.app.fab_id(), built.app.fab_id());
    assert_eq!(verified.app.version, built.app.version);
    assert_eq!(verified.app.config, built.app.config);
}

#[test]
fn full_app_matches_flwr_build() {
    check_identical(
        "app-full",
        &[
            "pyproject.toml",
            ".env.py",
            ".hidden/tool.py",
            "LICENSE",
            "README.md",
            "conf/extra.toml",
            "docs/guide ünï.md",
            "fullapp/__init__.py",
            "fullapp/__pycache__/keep.py",
            "fullapp/client_app.py",
            "fullapp/server_app.py",
            "fullapp/task.py",
            "fullapp/utils/README.md",
            "fullapp/utils/__init__.py",
            "fullapp/utils/helpers.py",
            "fullapp/utils/helpers_test.py",
            "fullapp/utils/nested_ignored.py",
        ],
    );
}

#[test]
fn minimal_app_matches_flwr_build() {
    check_identical(
        "app-minimal",
        &[
            "pyproject.toml",
            "minimal/__init__.py",
            "minimal/client.py",
            "minimal/server.py",
        ],
    );
}
