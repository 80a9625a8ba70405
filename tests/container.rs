//! The container image under a real runtime (podman), as users and Kubernetes run it: built by
//! `deploy/image/build.sh` (the README's command), run non-root with a read-only root file
//! system, every capability dropped and `no-new-privileges`, against a tansu broker on the host
//! (`--network host`), forwarding to a Unix socket bind-mounted from the host (the Agent's
//! hostPath).
//!
//! podman is required: without it every test fails with the install command. The image is built
//! once per run, in a target directory of its own (`cargo test` holds the lock of its own). Each
//! test prints one `CONTAINER` line with its figures; run with
//! `cargo test --test container -- --nocapture` to read them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::agent::*;
use common::process::{scratch_dir, write};
use common::tansu::*;
use common::*;

/// The tag the tests build and run.
const IMAGE: &str = "localhost/algorithmia-datadog:test";
/// Where the configuration and the Agent's socket are mounted in the container.
const CONFIG_DIR: &str = "/etc/algorithmia-datadog";
const SOCKET_DIR: &str = "/var/run/datadog";
/// The grace period `podman stop` gives (Kubernetes' default terminationGracePeriodSeconds).
const GRACE: Duration = Duration::from_secs(30);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// podman with the repository's containers.conf (runc, ulimits root may set).
fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.env(
        "CONTAINERS_CONF",
        repo().join("deploy/image/containers.conf"),
    );
    cmd
}

fn podman_output(args: &[&str]) -> Output {
    podman().args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run podman ({e}): the container tests need podman and runc; install them \
             with `bash .ci/install-podman.sh`"
        )
    })
}

/// Builds the image with the README's command, once per test run, and how long that took.
fn image() -> Duration {
    static BUILT: OnceLock<Result<Duration, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        if Command::new("podman").arg("--version").output().is_err() {
            return Err(
                "podman is missing: the container tests need podman and runc; install \
                        them with `bash .ci/install-podman.sh`"
                    .to_string(),
            );
        }
        let started = Instant::now();
        let output = Command::new("bash")
            .arg(repo().join("deploy/image/build.sh"))
            .arg(IMAGE)
            .current_dir(repo())
            // The workspace's target directory, as the README's command uses: the release
            // profile's build lock is not the test profile's, and a later `cargo build
            // --release` (the install test, the benchmark) finds the build done.
            .output()
            .map_err(|e| format!("cannot run deploy/image/build.sh: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "deploy/image/build.sh failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        eprintln!("{}", String::from_utf8_lossy(&output.stdout));
        Ok(started.elapsed())
    });
    match built {
        Ok(took) => *took,
        Err(e) => panic!("{e}"),
    }
}

/// The hardening every container runs with: what Kubernetes' restricted profile asks for.
const HARDENING: &[&str] = &[
    "--read-only",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--network",
    "host",
];

/// The host side of a container: its configuration directory and the Agent's socket.
struct Host {
    broker: Tansu,
    topic: String,
    group: String,
}

impl Host {
    fn new(partitions: i32) -> Host {
        image();
        let broker = Tansu::start();
        let topic = unique("insights");
        broker.create_topic(&topic, partitions);
        Host {
            broker,
            topic,
            group: unique("group"),
        }
    }

    /// A configuration directory for a member of the group sending to the mounted socket, in
    /// windows of 1 s (the first datagram comes a second after the first message, not ten).
    fn config_dir(&self, extra: &str) -> PathBuf {
        let dir = scratch_dir();
        write(
            &dir,
            "algorithmia.yaml",
            &format!(
                "init_config:\n  dogstatsd_url: unix://{SOCKET_DIR}/dsd.socket\ninstances:\n  - kafka_broker: \"{}\"\n    kafka_topic: {}\n    consumer_group: {}\n    start_offset: earliest\n    distribution_metrics: [seq]\n    aggregation_interval: 1\n{extra}",
                self.broker.bootstrap(),
                self.topic,
                self.group
            ),
        );
        dir
    }

    fn preload(&self, count: u64) -> u64 {
        produce(
            &self.broker.bootstrap(),
            &self.topic,
            (0..count).map(insights_message),
            &[],
        ) as u64
    }
}

/// A Unix socket the Agent would create in its hostPath directory, writable by the container's
/// user (the Agent makes its socket writable by all: 0722).
fn agent_socket() -> Agent {
    use std::os::unix::fs::PermissionsExt;
    let agent = Agent::unix();
    let path = agent.unix_path.clone().expect("a Unix socket");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o722)).unwrap();
    let dir = path.parent().expect("the socket's directory");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    agent
}

/// A container of the image, removed when dropped.
struct Container {
    name: String,
}

impl Container {
    /// `podman run -d` with the hardening, `config` mounted read-only at the image's
    /// configuration directory and `agent`'s directory as the Agent's hostPath; the image's own
    /// command (`run --config /etc/algorithmia-datadog/algorithmia.yaml`).
    fn run(config: &Path, agent: &Agent) -> Container {
        let name = unique("algorithmia-datadog");
        let socket_dir = agent
            .unix_path
            .as_ref()
            .and_then(|p| p.parent())
            .expect("a Unix socket agent");
        let output = podman()
            .args(["run", "--detach", "--name", &name])
            .args(HARDENING)
            .args(["--env", "RUST_LOG=info"])
            .arg(format!("--volume={}:{CONFIG_DIR}:ro", config.display()))
            .arg(format!("--volume={}:{SOCKET_DIR}", socket_dir.display()))
            .arg(IMAGE)
            .output()
            .expect("podman run");
        assert!(
            output.status.success(),
            "podman run failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Container { name }
    }

    fn inspect(&self, format: &str) -> String {
        let output = podman_output(&["inspect", "--format", format, &self.name]);
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// The forwarder's log (its standard error).
    fn logs(&self) -> String {
        let output = podman_output(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    /// SIGKILL, as an OOM kill or a node failure would.
    fn kill(&self) {
        let output = podman_output(&["kill", "--signal", "KILL", &self.name]);
        assert!(output.status.success(), "podman kill: {output:?}");
    }

    /// `podman stop` with the grace period (SIGTERM, SIGKILL after it): how long it took and
    /// the exit code.
    fn stop(&self) -> (Duration, i32) {
        let started = Instant::now();
        let grace = GRACE.as_secs().to_string();
        let output = podman_output(&["stop", "--time", &grace, &self.name]);
        let took = started.elapsed();
        assert!(output.status.success(), "podman stop: {output:?}");
        let code = self.inspect("{{.State.ExitCode}}");
        (took, code.parse().expect("an exit code"))
    }

    /// `podman start`: the same container again, as Kubernetes restarts a pod's container.
    fn start(&self) {
        let output = podman_output(&["start", &self.name]);
        assert!(output.status.success(), "podman start: {output:?}");
    }

    /// A field of `/proc/PID/status` of the forwarder, read on the host.
    fn process_status(&self, field: &str) -> String {
        let pid = self.inspect("{{.State.Pid}}");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}; log:\n{}", self.logs()));
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman()
            .args(["rm", "--force", "--time", "0", &self.name])
            .output();
    }
}

/// A one-off container (`podman run --rm`) with the hardening and `config` mounted: its output
/// and how long it took.
fn run_once(config: &Path, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let output = podman()
        .args(["run", "--rm"])
        .args(HARDENING)
        .arg(format!("--volume={}:{CONFIG_DIR}:ro", config.display()))
        .arg(IMAGE)
        .args(args)
        .output()
        .expect("podman run");
    (output, started.elapsed())
}

fn report(test: &str, figures: &str) {
    eprintln!("CONTAINER {test}: {figures}");
}

/// Waits until every seq of `0..produced` reached one of `agents` (2 minutes at most), then
/// fails on a lost one and returns the duplicates.
fn all_forwarded(test: &str, produced: u64, agents: &[&Agent], logs: &dyn Fn() -> String) -> u64 {
    let seqs = || -> Vec<u64> { agents.iter().flat_map(|a| a.seqs()).collect() };
    let deadline = Instant::now() + Duration::from_secs(120);
    while distinct(&seqs()) < produced && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if distinct(&seqs()) < produced {
        eprintln!("{test}: logs:\n{}", logs());
    }
    tally(test, produced, &seqs())
}

// ---- the tests -----------------------------------------------------------------------------------

#[test]
fn the_image_checks_config_and_forwards_to_a_host_socket_as_non_root_on_a_read_only_root() {
    let built = image();
    let host = Host::new(4);
    let agent = agent_socket();
    let config = host.config_dir("");

    let (output, check_took) = run_once(
        &config,
        &[
            "check-config",
            "--config",
            "/etc/algorithmia-datadog/algorithmia.yaml",
        ],
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && printed.contains(&host.topic),
        "check-config in the container: {output:?}"
    );
    let bad = scratch_dir();
    write(&bad, "algorithmia.yaml", "instances:\n  - kafka_topic: t\n");
    let (output, _) = run_once(&bad, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "a bad configuration: {output:?}"
    );
    assert!(
        stderr.contains("/etc/algorithmia-datadog/algorithmia.yaml")
            && stderr.contains("kafka_broker"),
        "the error names the file and the key: {stderr}"
    );

    let produced = host.preload(2_000);
    let started = Instant::now();
    let container = Container::run(&config, &agent);
    assert!(
        agent.wait_until(Duration::from_secs(60), |a| !a.seqs().is_empty()),
        "nothing forwarded; log:\n{}",
        container.logs()
    );
    let first = started.elapsed();
    let duplicates = all_forwarded("hardened", produced, &[&agent], &|| container.logs());
    let all = started.elapsed();

    // What the kernel says about the forwarder, read on the host.
    let uid = container.process_status("Uid");
    let gid = container.process_status("Gid");
    let caps = container.process_status("CapEff");
    let no_new_privs = container.process_status("NoNewPrivs");
    let read_only = container.inspect("{{.HostConfig.ReadonlyRootfs}}");
    let user = container.inspect("{{.Config.User}}");
    assert_eq!(uid, "65532 65532 65532 65532", "the forwarder's user ids");
    assert_eq!(gid, "65532 65532 65532 65532", "the forwarder's group ids");
    assert_eq!(caps, "0000000000000000", "effective capabilities");
    assert_eq!(no_new_privs, "1", "no_new_privs");
    assert_eq!(read_only, "true", "a read-only root file system");
    assert_eq!(user, "65532:65532", "the image's user");

    let (took, code) = container.stop();
    assert_eq!(
        code,
        0,
        "exit code after podman stop; log:\n{}",
        container.logs()
    );
    let size = podman_output(&["image", "inspect", "--format", "{{.Size}}", IMAGE]);
    report(
        "hardened, host Unix socket",
        &format!(
            "image {} bytes (built in {:.0} s), check-config exit 0 in {:.2} s (podman run \
             --rm), produced {produced}, forwarded {produced}, duplicates {duplicates}, first \
             datagram {:.2} s after podman run, all {:.2} s after it, uid {uid}, CapEff {caps}, \
             NoNewPrivs {no_new_privs}, podman stop: exit {code} in {:.2} s",
            String::from_utf8_lossy(&size.stdout).trim(),
            built.as_secs_f64(),
            check_took.as_secs_f64(),
            first.as_secs_f64(),
            all.as_secs_f64(),
            took.as_secs_f64()
        ),
    );
    assert_eq!(duplicates, 0, "one forwarder, no fault: nothing twice");
}

#[test]
fn three_containers_in_one_group_lose_nothing_when_one_is_killed() {
    let rate = 1_000;
    let host = Host::new(12);
    let agents = [agent_socket(), agent_socket(), agent_socket()];
    let traffic = Traffic::start(&host.broker.bootstrap(), &host.topic, rate, &[]);
    let containers: Vec<Container> = agents
        .iter()
        .map(|agent| Container::run(&host.config_dir(""), agent))
        .collect();
    let logs = || {
        containers
            .iter()
            .map(Container::logs)
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    for (i, agent) in agents.iter().enumerate() {
        assert!(
            agent.wait_until(Duration::from_secs(90), |a| !a.seqs().is_empty()),
            "container {i} got no partition; logs:\n{}",
            logs()
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    containers[0].kill();
    let killed = Instant::now();
    let newest = agents.iter().flat_map(|a| a.seqs()).max().unwrap_or(0);
    std::thread::sleep(Duration::from_secs(20));
    let produced = traffic.stop();
    let refs: Vec<&Agent> = agents.iter().collect();
    let duplicates = all_forwarded("three containers", produced, &refs, &logs);
    // When every message produced until a second after the kill had arrived: the killed
    // member's partitions had been taken over by then.
    let taken_over = all_arrived_after(&refs, newest + rate, killed);
    let per_container: Vec<usize> = agents.iter().map(|a| a.seqs().len()).collect();
    for survivor in &containers[1..] {
        let (_, code) = survivor.stop();
        assert_eq!(code, 0, "a survivor's exit code; log:\n{}", survivor.logs());
    }
    report(
        "three containers, one podman kill'ed",
        &format!(
            "produced {produced} at {rate}/s on 12 partitions, forwarded {produced} \
             (per container {per_container:?}), duplicates {duplicates}, every message \
             produced until 1 s after the kill forwarded {taken_over:.1} s after it"
        ),
    );
}

#[test]
fn podman_stop_exits_0_within_the_grace_period_and_a_restart_replays_nothing() {
    let rate = 1_000;
    let host = Host::new(4);
    let agent = agent_socket();
    let traffic = Traffic::start(&host.broker.bootstrap(), &host.topic, rate, &[]);
    let container = Container::run(&host.config_dir(""), &agent);
    assert!(
        agent.wait_until(Duration::from_secs(60), |a| a.seqs().len() >= 3_000),
        "forwarded {} of 3000; log:\n{}",
        agent.seqs().len(),
        container.logs()
    );
    let (took, code) = container.stop();
    let log = container.logs();
    assert_eq!(code, 0, "exit code after podman stop; log:\n{log}");
    assert!(
        took < GRACE,
        "podman stop took {took:?}, the whole grace period"
    );
    let forwarded_before = agent.seqs().len();

    std::thread::sleep(Duration::from_secs(2));
    let restarted = Instant::now();
    container.start();
    let newest = agent.seqs().into_iter().max().unwrap_or(0);
    assert!(
        agent.wait_until(Duration::from_secs(60), |a| a
            .seqs()
            .iter()
            .any(|s| *s > newest)),
        "nothing forwarded after the restart; log:\n{}",
        container.logs()
    );
    let resumed = restarted.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let produced = traffic.stop();
    let duplicates = all_forwarded("stop and restart", produced, &[&agent], &|| {
        container.logs()
    });
    let (took_again, code_again) = container.stop();
    assert_eq!(code_again, 0, "log:\n{}", container.logs());
    report(
        "podman stop, podman start",
        &format!(
            "produced {produced} at {rate}/s, forwarded {produced}, duplicates {duplicates}, \
             podman stop: exit {code} in {:.2} s (grace {} s) with {forwarded_before} \
             forwarded, restarted container forwarding again {:.1} s after podman start, \
             second stop {:.2} s",
            took.as_secs_f64(),
            GRACE.as_secs(),
            resumed.as_secs_f64(),
            took_again.as_secs_f64()
        ),
    );
    assert_eq!(duplicates, 0, "a clean stop must not replay anything");
}
