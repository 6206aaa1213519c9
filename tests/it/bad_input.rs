//! Bad values a user may type, each refused with one clear line before
//! anything is recorded (run-config words Flower would skip, overrides of
//! many kilobytes, federations that cannot run, a FAB without its hash), by
//! the CLI and by the SuperLink for any client; and the docs' promises: the
//! output Flower's "Run Flower locally" page shows for `flwr run`, and every
//! command of README.md and of the READMEs of the examples with built-in
//! apps, run as shown.

use std::path::Path;

use floret::proto::flwr::proto as pb;
use floret::records::{ConfigRecord, ConfigValue, UserConfig};

use crate::support::{box_text, quickstart, Home};

/// No run was recorded.
#[track_caller]
fn assert_no_runs(home: &Home) {
    assert_eq!(
        home.flwr(&["ls", "--format", "json"]).json()["runs"],
        serde_json::json!([])
    );
}

/// The quickstart's run configuration, as the CLI and the SuperLink fuse it
/// without overrides.
fn quickstart_config() -> UserConfig {
    floret::app::parse_pyproject_file(Path::new(&quickstart()))
        .unwrap()
        .0
        .config
}

/// The most SuperNodes this machine may simulate with the quickstart.
fn max_supernodes() -> u64 {
    let memory = floret::federation::machine_memory().expect("the machine's memory");
    floret::federation::max_supernodes(&quickstart_config(), memory)
}

/// A StartRun request for the quickstart as the Python CLI sends it.
fn quickstart_request(options: &[(&str, ConfigValue)]) -> pb::StartRunRequest {
    let fab = floret::fab::build_fab(Path::new(&quickstart())).unwrap();
    let options: ConfigRecord = options.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    pb::StartRunRequest {
        fab: Some(pb::Fab {
            hash_str: fab.hash.clone(),
            content: fab.bytes.clone(),
            verifications: Default::default(),
        }),
        override_config: Default::default(),
        federation_options: Some(floret::proto::config_record_to_proto(&options)),
        federation: String::new(),
        app_spec: String::new(),
    }
}

/// Sends StartRun to the home's local SuperLink (started if needed).
fn start_run(home: &Home, request: pb::StartRunRequest) -> Result<u64, tonic::Status> {
    home.flwr(&["ls"]).ok();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let address = format!("http://127.0.0.1:{}", home.control_port);
        let mut client = pb::control_client::ControlClient::connect(address)
            .await
            .unwrap()
            .max_encoding_message_size(64 << 20);
        let response = client.start_run(request).await?;
        Ok(response.into_inner().run_id.unwrap())
    })
}

#[track_caller]
fn assert_refused(home: &Home, args: &[&str], expected: &str) {
    let ran = home.flwr(args);
    assert_eq!(ran.code, 1, "{args:?}: {ran:?}");
    let text = box_text(&ran.stderr);
    assert!(text.contains(expected), "{args:?}:\n{text}\nexpected: {expected}");
}

#[test]
fn run_config_words_flower_would_skip_are_errors() {
    let home = Home::new();
    let app = quickstart();
    for (word, expected) in [
        (
            "num-server-rounds",
            "--run-config `num-server-rounds` is not a key=value pair: write e.g. -c 'num-server-rounds=5'",
        ),
        (
            "=5",
            "--run-config `=5` has no key before `=`: write key=value pairs, e.g. -c 'lr=0.1'",
        ),
        ("k=", "--run-config `k=` has no value after `=`: write e.g. -c 'k=5'"),
        (
            "lr=0.1 batch-size=",
            "--run-config `batch-size=` has no value after `=`",
        ),
    ] {
        assert_refused(&home, &["run", &app, "-c", word], expected);
    }
    assert_no_runs(&home);
}

#[test]
fn an_invalid_override_of_16_kib_gets_a_clear_error() {
    let home = Home::new();
    let app = quickstart();
    // The message echoes the value: whole, it overflowed gRPC's status header
    // ("h2 protocol error").
    let value = "x".repeat(16 * 1024 + 100);
    let ran = home.flwr(&["run", &app, "-c", &format!("lr=\"{value}\"")]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let text = box_text(&ran.stderr);
    assert!(
        text.contains("run config `lr` must be a number, found str \"xxxxxxxx"),
        "{text}"
    );
    assert!(text.contains("x…\""), "{text}");
    assert!(ran.stderr.len() < 1000, "{}", ran.stderr);
    // The SuperLink bounds the overrides as a whole.
    let value = "x".repeat(70 * 1024);
    assert_refused(
        &home,
        &["run", &app, "-c", &format!("lr=\"{value}\"")],
        "more than the 65536 a run accepts; put large values in the app's files instead",
    );
    assert_no_runs(&home);
}

#[test]
fn the_cli_refuses_federations_that_cannot_run() {
    let home = Home::new();
    let app = quickstart();
    let run = |option: &str| {
        vec![
            "run".to_string(),
            app.clone(),
            "--federation-config".into(),
            option.into(),
        ]
    };
    let cases = [
        ("backend.init-args.num-cpus=0".to_string(), "backend.init-args.num-cpus = 0 cannot run: the simulation needs at least 1 CPU".to_string()),
        ("backend.init-args.num-cpus=-1".to_string(), "backend.init-args.num-cpus = -1 cannot run".to_string()),
        ("backend.client-resources.num-cpus=0".to_string(), "backend.client-resources.num-cpus = 0 cannot run".to_string()),
        ("num-supernodes=0".to_string(), "num-supernodes = 0 cannot run: a federation needs at least 1 SuperNode".to_string()),
        (
            "num-supernodes=1000000000".to_string(),
            "num-supernodes = 1000000000 is more than floret can simulate (at most 7000000: every node id is recorded in one event".to_string(),
        ),
        (
            format!("num-supernodes={}", max_supernodes() + 1),
            format!(
                "num-supernodes = {} is more than floret can simulate on this machine (at most {}: each node costs ~",
                max_supernodes() + 1,
                max_supernodes()
            ),
        ),
    ];
    for (option, expected) in &cases {
        let args = run(option);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_refused(&home, &args, expected);
    }
    if max_supernodes() < 5_000_000 {
        assert_refused(
            &home,
            &["run", &app, "--federation-config", "num-supernodes=5000000"],
            "num-supernodes = 5000000 is more than floret can simulate on this machine",
        );
    }
    assert_no_runs(&home);
}

#[test]
fn the_superlink_refuses_federations_that_cannot_run() {
    let home = Home::new();
    let max = max_supernodes() as i64;
    let cases = [
        (
            "backend.init-args.num-cpus",
            ConfigValue::Int(0),
            "backend.init-args.num-cpus = 0 cannot run",
        ),
        (
            "backend.init-args.num-cpus",
            ConfigValue::Int(-1),
            "backend.init-args.num-cpus = -1 cannot run",
        ),
        (
            "backend.init-args.num-cpus",
            ConfigValue::Float(2.0),
            "must be of type int, found float 2.0",
        ),
        (
            "num-supernodes",
            ConfigValue::Int(1_000_000_000),
            "num-supernodes = 1000000000 is more than floret can simulate (at most 7000000",
        ),
        (
            "num-supernodes",
            ConfigValue::Int(max + 1),
            "is more than floret can simulate on this machine",
        ),
    ];
    for (key, value, expected) in cases {
        let status = start_run(&home, quickstart_request(&[(key, value.clone())])).unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::FailedPrecondition,
            "{key} = {value:?}: {status:?}"
        );
        assert!(status.message().contains(expected), "{key}: {}", status.message());
    }
    assert_no_runs(&home);
}

#[test]
fn the_superlink_refuses_a_fab_without_its_hash() {
    let home = Home::new();
    for (hash, expected) in [
        (
            "",
            "StartRun's Fab.hash_str is empty: it must be the FAB's SHA-256 (64 lowercase hex digits)",
        ),
        (
            "abc",
            "StartRun's Fab.hash_str 'abc' is not a SHA-256: it must be 64 lowercase hex digits",
        ),
    ] {
        let mut request = quickstart_request(&[]);
        request.fab.as_mut().unwrap().hash_str = hash.to_string();
        let status = start_run(&home, request).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert_eq!(status.message(), expected);
    }
    assert_no_runs(&home);
}

#[test]
fn the_superlink_bounds_what_its_errors_echo() {
    let home = Home::new();
    let long = "y".repeat(17 * 1024);
    let overrides = [
        (
            "lr",
            pb::scalar::Scalar::String(long.clone()),
            "run config `lr` must be a number",
        ),
        (long.as_str(), pb::scalar::Scalar::Sint64(1), "Key 'yyyy"),
    ];
    for (key, value, expected) in overrides {
        let mut request = quickstart_request(&[]);
        request
            .override_config
            .insert(key.to_string(), pb::Scalar { scalar: Some(value) });
        let status = start_run(&home, request).unwrap_err();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
        assert!(status.message().starts_with(expected), "{}", status.message());
        assert!(status.message().len() < 1000, "{} bytes", status.message().len());
    }
    let mut request = quickstart_request(&[]);
    request.app_spec = format!("@{long}/app");
    let status = start_run(&home, request).unwrap_err();
    assert!(status.message().len() < 1000, "{} bytes", status.message().len());
    assert_no_runs(&home);
}

#[test]
fn run_says_what_it_built_before_it_starts_the_superlink() {
    let home = Home::new();
    let filename = floret::fab::build_fab(Path::new(&quickstart())).unwrap().filename;
    assert!(filename.starts_with("floret.quickstart.1-0-0."), "{filename}");
    let ran = home.flwr(&["run", &quickstart()]);
    ran.ok();
    let lines: Vec<&str> = ran.stdout.lines().collect();
    let position = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in:\n{}", ran.stdout))
    };
    let built = position(&format!("🎊 Successfully built {filename}"));
    assert_eq!(lines[built], format!("🎊 Successfully built {filename}"));
    let starting = position(&format!(
        "Starting local SuperLink on 127.0.0.1:{}...",
        home.control_port
    ));
    let started = position("🎊 Successfully started run ");
    assert!(built < starting && starting < started, "{}", ran.stdout);

    // With --format json, only the document.
    let json = home.flwr(&["run", &quickstart(), "--format", "json"]);
    json.ok();
    assert_eq!(json.json()["fab-filename"], filename.as_str());
    assert!(!json.stdout.contains("Successfully built"), "{}", json.stdout);
}

#[test]
fn log_of_an_unknown_run_prints_only_the_error() {
    let home = Home::new();
    home.flwr(&["ls"]).ok();
    for args in [&["log", "123"][..], &["log", "123", "--show"]] {
        let ran = home.flwr(args);
        assert_eq!(ran.code, 1, "{ran:?}");
        assert_eq!(ran.stdout, "");
        assert_eq!(box_text(&ran.stderr), "Run ID not found.", "{}", ran.stderr);
        assert!(!ran.stderr.contains("INFO"), "{}", ran.stderr);
    }
}

/// The commands of a README's plain code blocks, as a user would type them
/// (`target/release/flwr` is the `flwr` of this build; `cargo build` is
/// not run).
fn readme_commands(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut commands = Vec::new();
    let mut block = None;
    for line in text.lines() {
        if let Some(language) = line.strip_prefix("```") {
            block = match block {
                None => Some(language.to_string()),
                Some(_) => None,
            };
            continue;
        }
        if block.as_deref() != Some("") {
            continue;
        }
        let command = line.rsplit(" && ").next().unwrap().trim();
        let command = command.strip_prefix("target/release/").unwrap_or(command);
        if command.starts_with("flwr ") {
            commands.push(command.to_string());
        }
    }
    commands
}

#[test]
fn every_readme_command_works_as_shown() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut readmes = vec![root.join("README.md")];
    // The examples with built-in apps; those with Python components are
    // documented for (and checked against) the real Flower in `python_apps`.
    let mut examples: Vec<_> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|dir| {
            let (app, _) = floret::app::parse_pyproject_file(dir).unwrap();
            let builtin = |component: &str| floret::builtin::builtin_name(component).is_some();
            builtin(&app.serverapp) && builtin(&app.clientapp)
        })
        .map(|dir| dir.join("README.md"))
        .collect();
    examples.sort();
    let names: Vec<_> = examples
        .iter()
        .map(|r| r.parent().unwrap().file_name().unwrap())
        .collect();
    assert_eq!(names, ["large-federation", "noniid-fedprox", "quickstart"]);
    for readme in &examples {
        assert!(readme.exists(), "every example has a README: {}", readme.display());
    }
    readmes.extend(examples);

    let home = Home::new();
    let mut run_id: Option<String> = None;
    let mut ran_any = 0;
    for readme in &readmes {
        for command in readme_commands(readme) {
            let command = match &run_id {
                Some(id) => command.replace("<run-id>", id),
                None => command,
            };
            assert!(
                !command.contains('<'),
                "{}: `{command}` before any run",
                readme.display()
            );
            let ran = home.shell(&command, root);
            assert_eq!(
                ran.code,
                0,
                "{}: `{command}`\n{}\n{}",
                readme.display(),
                ran.stdout,
                ran.stderr
            );
            if let Some(line) = ran
                .stdout
                .lines()
                .find(|l| l.starts_with("🎊 Successfully started run "))
            {
                run_id = Some(line.rsplit(' ').next().unwrap().to_string());
            }
            if command.contains("examples/large-federation") {
                let nodes = if command.contains("num-supernodes=2000") {
                    2000
                } else {
                    10_000
                };
                assert!(
                    ran.stdout.contains(&format!("(out of {nodes})")),
                    "`{command}`: {}",
                    ran.stdout
                );
            }
            ran_any += 1;
        }
    }
    assert!(ran_any >= 10, "only {ran_any} commands found");
}

/// `flwr run` in `home` with `args`, killed if it has not ended within 20 s
/// (and limited to 2 GiB of address space, so that a runaway read fails
/// instead of filling the machine's memory).
fn flwr_within_20s(home: &Home, args: &[&str]) -> (i32, String) {
    use std::os::unix::process::CommandExt;
    let mut command = home.command("flwr", args);
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit(2) in the child before exec; no allocation.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 2 << 30,
                rlim_max: 2 << 30,
            };
            libc::setrlimit(libc::RLIMIT_AS, &limit);
            Ok(())
        });
    }
    let mut child = command.spawn().expect("run flwr");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("`flwr {}` hung for 20 s", args.join(" "));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A `pyproject.toml` that is a FIFO blocked `flwr run` forever (found by
/// the chaos program, tools/chaos.rs), one that links to `/dev/zero` read
/// until the memory ran out, and a `-c FILE.toml` that is a FIFO blocked too.
/// Each is refused at once, before anything is read or recorded.
#[test]
fn configuration_files_that_are_fifos_or_devices_are_refused_at_once() {
    use std::os::unix::ffi::OsStrExt;
    let home = Home::new();
    let dir = crate::support::temp_dir();
    let mkfifo = |path: &Path| {
        let name = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo(3) with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    };
    let fifo_app = dir.path().join("fifo-app");
    let zero_app = dir.path().join("zero-app");
    std::fs::create_dir_all(&fifo_app).unwrap();
    std::fs::create_dir_all(&zero_app).unwrap();
    mkfifo(&fifo_app.join("pyproject.toml"));
    std::os::unix::fs::symlink("/dev/zero", zero_app.join("pyproject.toml")).unwrap();
    let fifo_config = dir.path().join("config.toml");
    mkfifo(&fifo_config);
    let app = quickstart();
    let not_a_file = "It is not a regular file (a FIFO, a device or a socket)";
    for args in [
        vec!["run", fifo_app.to_str().unwrap()],
        vec!["run", zero_app.to_str().unwrap()],
        vec!["run", &app, "-c", fifo_config.to_str().unwrap()],
    ] {
        let (code, stderr) = flwr_within_20s(&home, &args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        let text = box_text(&stderr);
        assert!(text.contains(not_a_file), "{args:?}:\n{text}");
    }
    assert!(!home.path().join("local-superlink").join("state.db").exists());
}
