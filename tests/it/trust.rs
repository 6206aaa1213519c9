//! Local processes that are not the owner ("Trust under fire"). Any local
//! process can reach the loopback APIs; only the process the SuperLink
//! launched (it holds the run's token) writes to a run, only the owner of
//! `FLWR_HOME` (who can read the Local API secret) stops the SuperLink or
//! reads run records, and the Control API stays as open as Flower's.
//!
//! - strangers cannot finish a run, inject log lines, stop the SuperLink or
//!   read a run's record; the owner's commands still work;
//! - a process racing the launched app process for a run never wins it;
//! - every file and directory under `$FLWR_HOME/local-superlink` is private,
//!   even when the CLI runs with umask 000;
//! - inbound messages are bounded, a run's stored log is capped (with a
//!   notice), and reading a run's log or record is paged into messages far
//!   below the transport limit, with more than 64 MiB pushed to the run.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use floret::proto::floret::v1 as ext;
use floret::proto::flwr::proto as pb;
use tonic::transport::Channel;
use tonic::Code;

use crate::support::{quickstart, wait_until, Home};

/// The gRPC metadata that carries a run's token on app-process writes.
const APP_TOKEN: &str = "floret-app-token";
/// The gRPC metadata that carries the Local API secret.
const LOCAL_SECRET: &str = "floret-local-secret";

const MIB: usize = 1024 * 1024;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn channel(port: u16) -> Channel {
    Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn with_metadata<T>(message: T, key: &'static str, value: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(key, value.parse().unwrap());
    request
}

fn finished_completed(run_id: u64) -> pb::UpdateRunStatusRequest {
    pb::UpdateRunStatusRequest {
        run_id,
        run_status: Some(pb::RunStatus {
            status: "finished".into(),
            sub_status: "completed".into(),
            details: String::new(),
        }),
    }
}

fn push_logs(run_id: u64, text: String) -> pb::PushLogsRequest {
    pb::PushLogsRequest {
        node: Some(pb::Node { node_id: 0 }),
        run_id,
        logs: vec![text],
    }
}

#[track_caller]
fn assert_denied<T: std::fmt::Debug>(result: Result<T, tonic::Status>, what: &str) {
    match result {
        Err(status) => assert_eq!(status.code(), Code::PermissionDenied, "{what}: {status:?}"),
        Ok(response) => panic!("{what} was accepted: {response:?}"),
    }
}

#[test]
fn strangers_cannot_write_to_a_run_stop_the_superlink_or_read_records() {
    let home = Home::new();
    let run_id = home.submit("num-server-rounds=100000");
    home.wait_for_status(run_id, |s| s == "running");

    runtime().block_on(async {
        let mut simio = pb::simulation_io_client::SimulationIoClient::new(channel(home.simulationio_port).await);
        assert_denied(
            simio.update_run_status(finished_completed(run_id)).await,
            "UpdateRunStatus without a token",
        );
        let forged = "0".repeat(256);
        assert_denied(
            simio
                .update_run_status(with_metadata(finished_completed(run_id), APP_TOKEN, &forged))
                .await,
            "UpdateRunStatus with a forged token",
        );
        assert_denied(
            simio
                .push_logs(push_logs(run_id, "INJECTED BY A STRANGER\n".into()))
                .await,
            "PushLogs without a token",
        );
        assert_denied(
            simio
                .push_logs(with_metadata(
                    push_logs(run_id, "INJECTED BY A STRANGER\n".into()),
                    APP_TOKEN,
                    &forged,
                ))
                .await,
            "PushLogs with a forged token",
        );

        let mut local = ext::local_client::LocalClient::new(channel(home.control_port).await);
        assert_denied(
            local.shutdown(ext::ShutdownRequest {}).await,
            "Shutdown without the secret",
        );
        assert_denied(
            local
                .shutdown(with_metadata(ext::ShutdownRequest {}, LOCAL_SECRET, &"f".repeat(64)))
                .await,
            "Shutdown with a wrong secret",
        );
        assert_denied(
            local.stream_run_record(ext::RunRecordRequest { run_id }).await,
            "StreamRunRecord without the secret",
        );
        // Identify stays open: the CLI asks who answers before anything else.
        local.identify(ext::IdentifyRequest {}).await.unwrap();
    });

    assert_eq!(home.run_json(run_id)["status"], "running");
    assert_eq!(home.superlink()["running"], true);
    let log = home.flwr(&["log", &run_id.to_string(), "--show"]);
    log.ok();
    assert!(!log.stdout.contains("INJECTED"), "{}", log.stdout);

    // The owner's commands work: stop, replay (reads the record), stop the SuperLink.
    home.flwr(&["stop", &run_id.to_string()]).ok();
    let replay = home.flwr(&["replay", &run_id.to_string(), "--format", "json"]);
    replay.ok();
    assert_eq!(replay.json()["identical"], true);

    // A finished run takes no output.
    runtime().block_on(async {
        let mut simio = pb::simulation_io_client::SimulationIoClient::new(channel(home.simulationio_port).await);
        assert_denied(
            simio.push_logs(push_logs(run_id, "LATE\n".into())).await,
            "PushLogs for a finished run",
        );
    });
    let stopped = home.flwr(&["superlink", "stop", "--format", "json"]);
    stopped.ok();
    assert_eq!(stopped.json()["stopped"], true);
}

#[test]
fn a_process_the_superlink_did_not_launch_cannot_take_over_a_run() {
    let home = Home::new();
    home.flwr(&["ls"]).ok();
    let stop = Arc::new(AtomicBool::new(false));
    // A stranger that claims every pending run it can see, as fast as it can.
    let stranger = std::thread::spawn({
        let stop = Arc::clone(&stop);
        let (control_port, simulationio_port) = (home.control_port, home.simulationio_port);
        move || {
            runtime().block_on(async move {
                let mut simio = pb::simulation_io_client::SimulationIoClient::new(channel(simulationio_port).await);
                let mut control = pb::control_client::ControlClient::new(channel(control_port).await);
                let mut won = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let mut candidates = simio
                        .list_apps_to_launch(pb::ListAppsToLaunchRequest {})
                        .await
                        .unwrap()
                        .into_inner()
                        .run_ids;
                    let runs = control
                        .list_runs(pb::ListRunsRequest {
                            run_id: None,
                            limit: None,
                        })
                        .await
                        .unwrap()
                        .into_inner()
                        .run_dict;
                    candidates.extend(runs.iter().filter_map(|(id, run)| {
                        (run.status.as_ref().is_some_and(|s| s.status == "pending")).then_some(*id)
                    }));
                    for run_id in candidates {
                        let token = simio
                            .request_token(pb::RequestTokenRequest { run_id })
                            .await
                            .unwrap()
                            .into_inner()
                            .token;
                        if !token.is_empty() {
                            won.push(run_id);
                        }
                    }
                }
                won
            })
        }
    });
    let runs: Vec<u64> = (0..3).map(|_| home.submit("num-server-rounds=1")).collect();
    let statuses: Vec<serde_json::Value> = runs
        .iter()
        .map(|run_id| home.wait_for_status(*run_id, |s| s.starts_with("finished")))
        .collect();
    stop.store(true, Ordering::Relaxed);
    let won = stranger.join().unwrap();
    assert!(won.is_empty(), "a stranger claimed runs {won:?}: {statuses:?}");
    for status in statuses {
        assert_eq!(status["status"], "finished:completed", "{status}");
    }
}

/// Every entry under `directory` whose permissions are not owner-only
/// (0700 directories, 0600 files), and the names seen.
fn loose_entries(directory: &Path, loose: &mut Vec<String>, names: &mut Vec<String>) {
    for entry in std::fs::read_dir(directory).unwrap().flatten() {
        let metadata = std::fs::symlink_metadata(entry.path()).unwrap();
        let mode = metadata.permissions().mode() & 0o777;
        let wanted = if metadata.is_dir() { 0o700 } else { 0o600 };
        names.push(entry.file_name().to_string_lossy().into_owned());
        if mode != wanted {
            loose.push(format!("{} has mode {mode:o}", entry.path().display()));
        }
        if metadata.is_dir() {
            loose_entries(&entry.path(), loose, names);
        }
    }
}

#[test]
fn the_superlinks_files_are_private_whatever_the_umask() {
    let home = Home::new();
    // A directory an earlier version left open to everyone.
    let directory = home.path().join("local-superlink");
    std::fs::create_dir_all(directory.join("ffs")).unwrap();
    for path in [&directory, &directory.join("ffs")] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let mut command = home.command("flwr", &["run", &quickstart(), "--stream"]);
    // SAFETY: umask(2) in the child before exec; the SuperLink it starts inherits it.
    unsafe {
        command.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    // The SuperLink still runs: its database's -wal and -shm files exist.
    let (mut loose, mut names) = (Vec::new(), Vec::new());
    let mode = std::fs::metadata(&directory).unwrap().permissions().mode() & 0o777;
    if mode != 0o700 {
        loose.push(format!("{} has mode {mode:o}", directory.display()));
    }
    loose_entries(&directory, &mut loose, &mut names);
    assert!(loose.is_empty(), "not private:\n{}", loose.join("\n"));
    for expected in [
        "state.db",
        "state.db-wal",
        "state.db-shm",
        "state.db.lock",
        "state.db.secret",
        "start.lock",
        "superlink.log",
        "ffs",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
    assert!(names.iter().any(|n| n.ends_with(".META")), "no FAB in {names:?}");
}

/// A `flower-superlink --isolation process` on a file database in `home`:
/// nothing launches app processes, the test plays that part. Killed when
/// dropped.
struct HandStarted {
    child: Child,
    database: PathBuf,
}

impl Drop for HandStarted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hand_started_superlink(home: &Home) -> HandStarted {
    let database = home.path().join("hand").join("state.db");
    std::fs::create_dir_all(database.parent().unwrap()).unwrap();
    let child = home
        .command(
            "flower-superlink",
            &[
                "--insecure",
                "--simulation",
                "--isolation",
                "process",
                "--control-api-address",
                &format!("127.0.0.1:{}", home.control_port),
                "--simulationio-api-address",
                &format!("127.0.0.1:{}", home.simulationio_port),
                "--database",
                database.to_str().unwrap(),
                "--storage-dir",
                home.path().join("hand").join("ffs").to_str().unwrap(),
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the SuperLink listens", || {
        std::net::TcpStream::connect(("127.0.0.1", home.control_port)).is_ok()
            && std::net::TcpStream::connect(("127.0.0.1", home.simulationio_port)).is_ok()
    });
    std::fs::write(
        home.path().join("config.toml"),
        format!(
            "[superlink]\ndefault = \"hand\"\n\n[superlink.hand]\naddress = \"127.0.0.1:{}\"\ninsecure = true\n\
             options.num-supernodes = 10\n",
            home.control_port
        ),
    )
    .unwrap();
    HandStarted { child, database }
}

fn database_bytes(database: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .map(|suffix| {
            std::fs::metadata(format!("{}{suffix}", database.display()))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum()
}

/// Reads a whole log stream with a client that accepts messages up to
/// `limit` bytes; returns the frames' sizes and the text.
async fn read_log(port: u16, run_id: u64, limit: usize) -> (Vec<usize>, String) {
    let mut control = pb::control_client::ControlClient::new(channel(port).await).max_decoding_message_size(limit);
    let mut stream = control
        .stream_logs(pb::StreamLogsRequest {
            run_id,
            after_timestamp: 0.0,
        })
        .await
        .unwrap()
        .into_inner();
    let (mut sizes, mut text) = (Vec::new(), String::new());
    while let Some(frame) = stream.message().await.unwrap() {
        sizes.push(frame.log_output.len());
        text.push_str(&frame.log_output);
    }
    (sizes, text)
}

#[test]
fn logs_are_capped_and_read_in_bounded_pages_however_much_a_run_pushes() {
    let home = Home::new();
    let superlink = hand_started_superlink(&home);
    let submitted = home.flwr(&["run", &quickstart(), "--format", "json"]);
    submitted.ok();
    let run_id: u64 = submitted.json()["run-id"].as_str().unwrap().parse().unwrap();

    let line = format!("{}\n", "x".repeat(1023));
    let token = runtime().block_on(async {
        let mut simio = pb::simulation_io_client::SimulationIoClient::new(channel(home.simulationio_port).await)
            .max_encoding_message_size(usize::MAX);
        let token = simio
            .request_token(pb::RequestTokenRequest { run_id })
            .await
            .unwrap()
            .into_inner()
            .token;
        assert!(!token.is_empty());
        // One 60 MB message is refused whole, with a clear error.
        let refused = simio
            .push_logs(with_metadata(
                push_logs(run_id, "y".repeat(60_000_000)),
                APP_TOKEN,
                &token,
            ))
            .await
            .unwrap_err();
        assert!(refused.message().contains("too large"), "{refused:?}");
        // 65 MiB in 1 MiB messages: more than the transport limit in total.
        for _ in 0..65 {
            simio
                .push_logs(with_metadata(push_logs(run_id, line.repeat(1024)), APP_TOKEN, &token))
                .await
                .unwrap();
        }
        token
    });
    // The SuperLink stored at most the cap of the run's log.
    assert!(
        database_bytes(&superlink.database) < 48 * MIB as u64,
        "state.db grew to {} bytes",
        database_bytes(&superlink.database)
    );

    // The app process, launched with the token (as Flower's SuperExec does).
    let simulation = std::process::Command::new(env!("CARGO_BIN_EXE_flwr-simulation"))
        .args([
            "--insecure",
            "--simulationio-api-address",
            &format!("127.0.0.1:{}", home.simulationio_port),
            "--run-id",
            &run_id.to_string(),
            "--token",
            &token,
        ])
        .output()
        .unwrap();
    assert!(
        simulation.status.success(),
        "{}",
        String::from_utf8_lossy(&simulation.stderr)
    );
    assert_eq!(home.run_json(run_id)["status"], "finished:completed");

    // The log: capped, with a notice, read in pages of at most 1 MiB.
    let (sizes, text) = runtime().block_on(read_log(home.control_port, run_id, 2 * MIB));
    assert!(sizes.len() >= 16, "{sizes:?}");
    assert!(sizes.iter().all(|size| *size <= MIB), "{sizes:?}");
    assert!(text.len() <= 16 * MIB + 1024, "{} bytes", text.len());
    assert!(
        text.contains("log reached its limit of 16 MiB"),
        "{}",
        &text[text.len() - 300..]
    );
    let shown = home.flwr(&["log", &run_id.to_string(), "--show"]);
    shown.ok();
    assert_eq!(shown.stdout.trim_end(), text.trim_end());
    let streamed = home.flwr(&["log", &run_id.to_string()]);
    streamed.ok();
    assert_eq!(streamed.stdout.trim_end(), text.trim_end());

    // The record: pages far below the transport limit, and it replays.
    let secret = std::fs::read_to_string(format!("{}.secret", superlink.database.display())).unwrap();
    let largest = runtime().block_on(async {
        let mut local =
            ext::local_client::LocalClient::new(channel(home.control_port).await).max_decoding_message_size(5 * MIB);
        let mut stream = local
            .stream_run_record(with_metadata(
                ext::RunRecordRequest { run_id },
                LOCAL_SECRET,
                secret.trim(),
            ))
            .await
            .unwrap()
            .into_inner();
        let mut largest = 0;
        while let Some(chunk) = stream.message().await.unwrap() {
            largest = largest.max(prost::Message::encoded_len(&chunk));
        }
        largest
    });
    assert!(largest <= 5 * MIB, "{largest}");
    let replay = home.flwr(&["replay", &run_id.to_string(), "--format", "json"]);
    replay.ok();
    assert_eq!(replay.json()["identical"], true);
}
