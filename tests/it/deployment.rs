//! Deployment mode: our `flower-superlink` without `--simulation` serves
//! Flower 1.27's Fleet API, and real `flower-supernode` 1.27 processes
//! (PyPI, the cached virtual environment of `support::python_env`)
//! register, activate, heartbeat, go offline when killed, deactivate and
//! unregister when stopped, and reconnect on their own after the SuperLink
//! restarts on the same database. Every step is read back from the node
//! events in `state.db` (read-only), and the `nodes` projection is checked
//! against their fold.
//!
//! The Fleet API's answers to calls a SuperNode makes when something is
//! wrong (a key in use, an unknown node, a bad interval, a run that does
//! not exist or is not running) are checked with a gRPC client.
//!
//! Flower's SuperNode heartbeats every ~20 s with an interval of 30 s and
//! has no flag to change it, so a killed node is offline after up to 60 s
//! (Flower's patience of 2 intervals): the kill test takes about a minute.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use floret::domain::event::{Event, NODE_EVENTS_RUN_ID};
use floret::proto::flwr::proto as pb;
use tonic::Code;

use crate::support::{free_port, python_env, temp_dir, wait_until_within};

/// A child process in its own process group, killed (the whole group, with
/// SIGKILL) when dropped, so that a failing test leaves nothing behind.
struct Group {
    child: Child,
    output: PathBuf,
}

impl Group {
    fn spawn(mut command: Command, output: PathBuf) -> Group {
        let file = std::fs::File::create(&output).unwrap();
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .process_group(0);
        let child = command.spawn().unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
        Group { child, output }
    }

    fn signal_group(&self, signal: i32) {
        // SAFETY: kill(2) on our child's process group.
        unsafe { libc::kill(-(self.child.id() as i32), signal) };
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Everything the process wrote so far.
    fn output(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.output) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// Waits for the process to exit (after a signal), up to `seconds`.
    #[track_caller]
    fn wait_exit(&mut self, seconds: u64) {
        let child = &mut self.child;
        let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
        while child.try_wait().unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "the process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal_group(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A deployment-mode SuperLink's ports and files.
struct Deployment {
    dir: tempfile::TempDir,
    control_port: u16,
    simulationio_port: u16,
    serverappio_port: u16,
    fleet_port: u16,
}

impl Deployment {
    fn new() -> Deployment {
        Deployment {
            dir: temp_dir(),
            control_port: free_port(),
            simulationio_port: free_port(),
            serverappio_port: free_port(),
            fleet_port: free_port(),
        }
    }

    fn database(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }

    /// Starts our `flower-superlink` in deployment mode; its output goes to
    /// `superlink-<name>.log`. Returns once the Fleet API accepts connections.
    fn start_superlink(&self, name: &str) -> Group {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flower-superlink"));
        command
            .args(["--insecure", "--fleet-api-type", "grpc-rere"])
            .args(["--fleet-api-address", &format!("127.0.0.1:{}", self.fleet_port)])
            .args(["--control-api-address", &format!("127.0.0.1:{}", self.control_port)])
            .args([
                "--simulationio-api-address",
                &format!("127.0.0.1:{}", self.simulationio_port),
            ])
            .args([
                "--serverappio-api-address",
                &format!("127.0.0.1:{}", self.serverappio_port),
            ])
            .arg("--database")
            .arg(self.database())
            .arg("--storage-dir")
            .arg(self.dir.path().join("ffs"))
            .env("FLWR_HOME", self.dir.path().join("home"))
            .env("NO_COLOR", "1");
        let superlink = Group::spawn(command, self.dir.path().join(format!("superlink-{name}.log")));
        wait_until_within("the Fleet API listens", 30, || {
            std::net::TcpStream::connect(("127.0.0.1", self.fleet_port)).is_ok()
        });
        superlink
    }

    /// Starts a real `flower-supernode` 1.27 against the Fleet API.
    fn start_supernode(&self, venv: &Path, partition: u32) -> Group {
        let home = self.dir.path().join(format!("supernode-{partition}"));
        std::fs::create_dir_all(&home).unwrap();
        let path = format!(
            "{}:{}",
            venv.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new(venv.join("bin/flower-supernode"));
        command
            .args(["--insecure", "--superlink", &format!("127.0.0.1:{}", self.fleet_port)])
            .args(["--clientappio-api-address", &format!("127.0.0.1:{}", free_port())])
            .args(["--node-config", &format!("partition-id={partition} num-partitions=2")])
            .env("PATH", path)
            .env("HOME", &home)
            .env("FLWR_HOME", home.join(".flwr"))
            .env("PYTHONUNBUFFERED", "1");
        Group::spawn(command, self.dir.path().join(format!("supernode-{partition}.log")))
    }

    /// The node events recorded so far (read-only, beside the SuperLink).
    fn node_events(&self) -> Vec<Event> {
        let Ok(reader) = floret::store::Reader::open(&self.database()) else {
            return Vec::new();
        };
        reader
            .view()
            .run_events(NODE_EVENTS_RUN_ID)
            .map(|events| events.into_iter().map(|stored| stored.event).collect())
            .unwrap_or_default()
    }

    /// The kinds of the node events about `node_id`, in order.
    fn kinds_of(&self, node_id: u64) -> Vec<&'static str> {
        self.node_events()
            .iter()
            .filter(|event| event.node_id() == Some(node_id))
            .map(Event::kind)
            .collect()
    }
}

/// The node id a SuperNode printed ("SuperNode ID: N"), once it did.
fn supernode_id(supernode: &Group) -> Option<u64> {
    let output = supernode.output();
    let (_, rest) = output.split_once("SuperNode ID: ")?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[track_caller]
fn wait_for_node_id(supernode: &Group) -> u64 {
    wait_until_within("the SuperNode prints its id", 90, || supernode_id(supernode).is_some());
    supernode_id(supernode).unwrap()
}

#[test]
fn real_supernodes_connect_go_offline_leave_and_reconnect_after_a_restart() {
    let venv = python_env("1.27.0");
    let deployment = Deployment::new();
    let mut superlink = deployment.start_superlink("first");
    let killed = deployment.start_supernode(&venv, 0);
    let mut stopped = deployment.start_supernode(&venv, 1);

    let killed_id = wait_for_node_id(&killed);
    let stopped_id = wait_for_node_id(&stopped);
    assert_ne!(killed_id, stopped_id);
    for node_id in [killed_id, stopped_id] {
        assert_eq!(
            deployment.kinds_of(node_id),
            ["NodeRegistered", "NodeActivated"],
            "{}",
            superlink.output()
        );
    }
    match &deployment.node_events()[..2] {
        [Event::NodeRegistered(registered), _] => assert!(!registered.public_key.is_empty()),
        other => panic!("{other:?}"),
    }

    // A SuperNode killed with SIGKILL sends nothing more: after Flower's
    // patience (2 × its 30 s interval) the SuperLink marks it offline.
    killed.signal_group(libc::SIGKILL);
    wait_until_within("the killed SuperNode is marked offline", 120, || {
        deployment.kinds_of(killed_id).last() == Some(&"NodeWentOffline")
    });
    assert!(superlink.output().contains("no heartbeat from the SuperNode in time"));
    // Its partner heartbeats meanwhile and stays online.
    assert_eq!(deployment.kinds_of(stopped_id), ["NodeRegistered", "NodeActivated"]);

    // The SuperLink dies and restarts on the same database: the node table
    // is rebuilt from the events, and the live SuperNode, which retries
    // its calls, reconnects by itself under the same id.
    superlink.signal_group(libc::SIGKILL);
    superlink.wait_exit(10);
    drop(superlink);
    let mut superlink = deployment.start_superlink("second");
    wait_until_within("the SuperNode reconnects", 90, || {
        let output = superlink.output();
        output
            .lines()
            .any(|line| line.contains("SuperNode connected") && line.contains(&format!("node_id={stopped_id}")))
    });
    assert_eq!(deployment.kinds_of(stopped_id), ["NodeRegistered", "NodeActivated"]);

    // SIGTERM: the SuperNode deactivates and unregisters before it exits.
    stopped.signal(libc::SIGTERM);
    wait_until_within("the stopped SuperNode leaves", 60, || {
        deployment.kinds_of(stopped_id).len() == 4
    });
    assert_eq!(
        deployment.kinds_of(stopped_id),
        ["NodeRegistered", "NodeActivated", "NodeDeactivated", "NodeUnregistered"]
    );
    assert_eq!(
        deployment.kinds_of(killed_id),
        ["NodeRegistered", "NodeActivated", "NodeWentOffline"]
    );
    stopped.wait_exit(30);

    // The projection equals the fold of the events.
    superlink.signal(libc::SIGTERM);
    superlink.wait_exit(30);
    let store = floret::store::Store::open(&deployment.database()).unwrap();
    store.verify().unwrap();
    let nodes = &store.nodes().nodes;
    assert_eq!(nodes[&killed_id].status.as_str(), "offline");
    assert_eq!(nodes[&stopped_id].status.as_str(), "unregistered");
    assert_eq!(nodes[&stopped_id].heartbeat_interval, 30.0);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[track_caller]
fn assert_code<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, message: &str) {
    match result {
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            assert!(status.message().contains(message), "{status:?}, expected {message:?}");
        }
        Ok(response) => panic!("accepted: {response:?}"),
    }
}

#[test]
fn the_fleet_api_answers_as_flowers_does() {
    let deployment = Deployment::new();
    let _superlink = deployment.start_superlink("errors");
    runtime().block_on(async {
        let address = format!("http://127.0.0.1:{}", deployment.fleet_port);
        let mut fleet = pb::fleet_client::FleetClient::connect(address).await.unwrap();
        let key = b"-----BEGIN PUBLIC KEY-----\ntest\n".to_vec();
        let activate = |interval: f64| pb::ActivateNodeRequest {
            public_key: key.clone(),
            heartbeat_interval: interval,
        };
        let heartbeat = |node_id: u64, interval: f64| pb::SendNodeHeartbeatRequest {
            node: Some(pb::Node { node_id }),
            heartbeat_interval: interval,
        };

        assert_code(
            fleet.activate_node(activate(30.0)).await,
            Code::FailedPrecondition,
            "No SuperNode found with the given public key.",
        );
        let register = pb::RegisterNodeFleetRequest {
            public_key: key.clone(),
        };
        let node_id = fleet
            .register_node(register.clone())
            .await
            .unwrap()
            .into_inner()
            .node_id;
        assert!(node_id > 1);
        assert_code(
            fleet.register_node(register.clone()).await,
            Code::FailedPrecondition,
            "Public key already in use",
        );
        assert_code(
            fleet.activate_node(activate(5.0)).await,
            Code::InvalidArgument,
            "Invalid heartbeat interval",
        );
        let activated = fleet.activate_node(activate(30.0)).await.unwrap().into_inner();
        assert_eq!(activated.node_id, node_id);
        assert_code(
            fleet.activate_node(activate(30.0)).await,
            Code::FailedPrecondition,
            &format!("SuperNode with node ID {node_id} could not be activated."),
        );
        let beat = fleet.send_node_heartbeat(heartbeat(node_id, 30.0)).await.unwrap();
        assert!(beat.into_inner().success);
        let unknown = fleet.send_node_heartbeat(heartbeat(node_id ^ 1, 30.0)).await.unwrap();
        assert!(!unknown.into_inner().success);
        assert_code(
            fleet.send_node_heartbeat(heartbeat(node_id, 1e9)).await,
            Code::InvalidArgument,
            "Invalid heartbeat interval",
        );

        let node = Some(pb::Node { node_id });
        let pulled = fleet
            .pull_messages(pb::PullMessagesRequest {
                node,
                message_ids: Vec::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(pulled.messages_list.is_empty() && pulled.message_object_trees.is_empty());
        assert_code(
            fleet.push_messages(pb::PushMessagesRequest::default()).await,
            Code::InvalidArgument,
            "PushMessages carries no message",
        );
        // Objects of a run that does not run: Flower's PERMISSION_DENIED.
        assert_code(
            fleet
                .pull_object(pb::PullObjectRequest {
                    node,
                    run_id: 42,
                    object_id: "00".repeat(32),
                })
                .await,
            Code::PermissionDenied,
            "Run ID not found: 42",
        );
        let get_run = pb::GetRunRequest { node, run_id: 42 };
        assert_code(
            fleet.get_run(get_run).await,
            Code::PermissionDenied,
            "Run ID not found: 42",
        );
        let get_fab = pb::GetFabRequest {
            node,
            hash_str: "00".repeat(32),
            run_id: 42,
        };
        assert_code(
            fleet.get_fab(get_fab).await,
            Code::PermissionDenied,
            "Run ID not found: 42",
        );

        // A public key is stored in an event: it is bounded.
        let large_key = pb::RegisterNodeFleetRequest {
            public_key: vec![b'k'; 17 << 10],
        };
        assert_code(
            fleet.register_node(large_key).await,
            Code::InvalidArgument,
            "a SuperNode's public key has at most 16384",
        );
        // Messages beyond the Fleet API's bound are refused unread.
        let huge = pb::RegisterNodeFleetRequest {
            public_key: vec![b'k'; 65 << 20],
        };
        let mut unbounded = fleet.clone().max_encoding_message_size(128 << 20);
        let refused = unbounded.register_node(huge).await.unwrap_err();
        assert!(refused.message().contains("too large"), "{refused:?}");

        fleet
            .deactivate_node(pb::DeactivateNodeRequest { node_id })
            .await
            .unwrap();
        assert_code(
            fleet.deactivate_node(pb::DeactivateNodeRequest { node_id }).await,
            Code::FailedPrecondition,
            &format!("SuperNode with node ID {node_id} could not be deactivated."),
        );
        // A heartbeat brings an offline node back online (Flower's rule).
        let beat = fleet.send_node_heartbeat(heartbeat(node_id, 30.0)).await.unwrap();
        assert!(beat.into_inner().success);
        // Control's ListNodes (`flwr supernode list`) shows it online.
        let address = format!("http://127.0.0.1:{}", deployment.control_port);
        let mut control = pb::control_client::ControlClient::connect(address).await.unwrap();
        let listed = control.list_nodes(pb::ListNodesRequest {}).await.unwrap().into_inner();
        let [info] = &listed.nodes_info[..] else {
            panic!("{listed:?}")
        };
        assert_eq!((info.node_id, info.status.as_str()), (node_id, "online"));
        assert_eq!((info.owner_aid.as_str(), info.heartbeat_interval), ("<id:none>", 30.0));
        assert_eq!(info.public_key, key);
        assert!(info.last_activated_at.is_some() && info.last_deactivated_at.is_some());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let until = info.online_until.unwrap();
        assert!(until > now + 50.0 && until < now + 61.0, "{until} vs {now}");
        fleet
            .unregister_node(pb::UnregisterNodeFleetRequest { node_id })
            .await
            .unwrap();
        assert_code(
            fleet.unregister_node(pb::UnregisterNodeFleetRequest { node_id }).await,
            Code::FailedPrecondition,
            &format!("Node ID {node_id} already unregistered"),
        );
        let gone = fleet.send_node_heartbeat(heartbeat(node_id, 30.0)).await.unwrap();
        assert!(!gone.into_inner().success);
        // An unregistered node's key stays taken.
        assert_code(
            fleet.register_node(register).await,
            Code::FailedPrecondition,
            "Public key already in use",
        );
    });
    assert_eq!(
        deployment.kinds_of(deployment_node(&deployment)),
        [
            "NodeRegistered",
            "NodeActivated",
            "NodeDeactivated",
            "NodeActivated",
            "NodeUnregistered"
        ]
    );
}

/// The one node registered in `deployment`.
fn deployment_node(deployment: &Deployment) -> u64 {
    match deployment.node_events().first() {
        Some(Event::NodeRegistered(registered)) => registered.node_id,
        other => panic!("{other:?}"),
    }
}

#[test]
fn other_fleet_api_types_are_refused_plainly() {
    let deployment = Deployment::new();
    let output = Command::new(env!("CARGO_BIN_EXE_flower-superlink"))
        .args(["--insecure", "--fleet-api-type", "rest"])
        .args(["--fleet-api-address", &format!("127.0.0.1:{}", deployment.fleet_port)])
        .args([
            "--control-api-address",
            &format!("127.0.0.1:{}", deployment.control_port),
        ])
        .args([
            "--simulationio-api-address",
            &format!("127.0.0.1:{}", deployment.simulationio_port),
        ])
        .env("FLWR_HOME", deployment.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--fleet-api-type rest is not supported"), "{stderr}");
}
