//! The Helm chart, deploy/helm/algorithmia-datadog: `helm lint --strict`, then every values set
//! under its `ci/` rendered by `helm template` and
//! - validated by `kubernetes-validate --strict` against several Kubernetes minor versions;
//! - its pod checked against the restricted Pod Security Standard, rule by rule;
//! - its wiring asserted: probes on the health server's port, the Agent's socket or the node's
//!   IP, the SASL password's Secret, the replicas cap, the autoscalers, static membership.
//!
//! helm and kubernetes-validate are installed by `bash .ci/install-chart-tools.sh` (which
//! `.ci/install-test-deps.sh` runs); without them these tests fail with that command.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;
use serde_yaml::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CHART: &str = "deploy/helm/algorithmia-datadog";
const INSTALL: &str = "bash .ci/install-chart-tools.sh";
/// The oldest minor version the chart declares (kubeVersion >=1.25 is met by all three), one in
/// the middle and the newest the installed kubernetes-validate knows.
const KUBERNETES_VERSIONS: [&str; 3] = ["1.29.0", "1.33.0", "1.37.0"];
/// Custom resources: kubernetes-validate has no schema for them (it warns); their fields are
/// asserted below instead.
const CUSTOM_KINDS: [&str; 3] = ["ScaledObject", "TriggerAuthentication", "DatadogMetric"];
const RELEASE: &str = "fwd";
const NAMESPACE: &str = "insights";
const FULLNAME: &str = "fwd-algorithmia-datadog";

/// The values sets every test goes through; the directory may hold no others.
const VALUES_SETS: [&str; 9] = [
    "autoscaling-hpa-native-values.yaml",
    "autoscaling-hpa-values.yaml",
    "autoscaling-keda-values.yaml",
    "sasl-chart-secret-values.yaml",
    "sasl-existing-secret-values.yaml",
    "socket-csi-values.yaml",
    "socket-values.yaml",
    "static-membership-values.yaml",
    "udp-values.yaml",
];

fn chart() -> PathBuf {
    Path::new(ROOT).join(CHART)
}

/// A tool on PATH or in cargo's bin directory; a missing one fails the test with the command
/// that installs it.
fn tool(name: &str) -> PathBuf {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|p| p.join("bin"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(cargo_bin)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed; install it with: {INSTALL}"))
}

fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(ROOT)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn values_path(set: &str) -> String {
    chart().join("ci").join(set).display().to_string()
}

/// `helm template` of the chart with these values files and `--set` pairs: the manifest, or
/// helm's error.
fn try_render(values: &[&str], sets: &[&str]) -> Result<String, String> {
    let chart = chart().display().to_string();
    let mut args = vec!["template", RELEASE, &chart, "--namespace", NAMESPACE];
    let files: Vec<String> = values.iter().map(|v| values_path(v)).collect();
    for file in &files {
        args.extend(["-f", file]);
    }
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = run(&tool("helm"), &args);
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

fn render(set: &str) -> String {
    try_render(&[set], &[]).unwrap_or_else(|e| panic!("helm template -f {set}: {e}"))
}

fn documents(manifest: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(manifest)
        .map(|d| Value::deserialize(d).expect("helm template printed YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], wanted: &str) -> &'a Value {
    let found = kind(docs, wanted);
    assert_eq!(
        found.len(),
        1,
        "one {wanted} expected, found {}",
        found.len()
    );
    found[0]
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: a string expected, found {v:?}"))
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(|s| s.as_slice()).unwrap_or(&[])
}

/// The rendered algorithmia.yaml, parsed.
fn forwarder_config(docs: &[Value]) -> Value {
    let map = one(docs, "ConfigMap");
    let file = str_of(
        &map["data"]["algorithmia.yaml"],
        "ConfigMap algorithmia.yaml",
    );
    serde_yaml::from_str(file).expect("algorithmia.yaml is YAML")
}

fn pod_spec(docs: &[Value]) -> &Value {
    &one(docs, "Deployment")["spec"]["template"]["spec"]
}

fn container(docs: &[Value]) -> &Value {
    let containers = seq(&pod_spec(docs)["containers"]);
    assert_eq!(containers.len(), 1, "one container expected");
    &containers[0]
}

fn env<'a>(docs: &'a [Value], name: &str) -> Option<&'a Value> {
    seq(&container(docs)["env"])
        .iter()
        .find(|e| e["name"] == name)
}

fn field_ref(docs: &[Value], name: &str) -> Option<String> {
    env(docs, name).and_then(|e| {
        e["valueFrom"]["fieldRef"]["fieldPath"]
            .as_str()
            .map(String::from)
    })
}

fn env_value(docs: &[Value], name: &str) -> Option<String> {
    env(docs, name).and_then(|e| e["value"].as_str().map(String::from))
}

fn volume<'a>(docs: &'a [Value], name: &str) -> Option<&'a Value> {
    seq(&pod_spec(docs)["volumes"])
        .iter()
        .find(|v| v["name"] == name)
}

#[test]
fn the_values_sets_are_the_ones_tested() {
    let mut found: Vec<String> = std::fs::read_dir(chart().join("ci"))
        .expect("the chart's ci directory")
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    found.sort();
    assert_eq!(
        found, VALUES_SETS,
        "a values set under ci/ without its assertions here"
    );
}

#[test]
fn chart_version_is_the_forwarders() {
    let chart: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart().join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml is YAML");
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "Chart.yaml's appVersion (the image tag) is Cargo.toml's version"
    );
}

#[test]
fn helm_lint_strict_passes_with_every_values_set() {
    let helm = tool("helm");
    let chart = chart().display().to_string();
    let out = run(&helm, &["lint", "--strict", &chart]);
    assert!(
        out.status.success(),
        "helm lint --strict {CHART}:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    for set in VALUES_SETS {
        let values = values_path(set);
        let out = run(&helm, &["lint", "--strict", &chart, "-f", &values]);
        assert!(
            out.status.success(),
            "helm lint --strict -f {set}:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

#[test]
fn every_values_set_validates_against_kubernetes() {
    let validate = tool("kubernetes-validate");
    let dir = std::env::temp_dir().join(format!("helm-chart-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    for set in VALUES_SETS {
        let manifest = render(set);
        let file = dir.join(set);
        std::fs::write(&file, &manifest).expect("write the manifest");
        let file = file.display().to_string();
        let mut args = vec!["--strict"];
        for version in KUBERNETES_VERSIONS {
            args.extend(["-k", version]);
        }
        args.push(&file);
        let out = run(&validate, &args);
        let report = text(&out.stdout) + &text(&out.stderr);
        assert!(
            out.status.success(),
            "kubernetes-validate --strict {set}:\n{report}"
        );
        let docs = documents(&manifest);
        let mut validated = Vec::new();
        let mut custom = Vec::new();
        for doc in &docs {
            let kind = str_of(&doc["kind"], "kind");
            let name = str_of(&doc["metadata"]["name"], "metadata.name");
            if CUSTOM_KINDS.contains(&kind) {
                custom.push(kind.to_string());
                continue;
            }
            for version in KUBERNETES_VERSIONS {
                let minor = version.trim_end_matches(".0");
                let line = format!(
                    "passed for resource {}/{name} against version {minor}",
                    kind.to_lowercase()
                );
                assert!(report.contains(&line), "{set}: no `{line}` in:\n{report}");
            }
            validated.push(kind.to_string());
        }
        // Warnings only for the custom resources, which no Kubernetes schema describes.
        for line in report.lines().filter(|l| !l.starts_with("INFO")) {
            assert!(
                CUSTOM_KINDS
                    .iter()
                    .any(|k| line.contains(&format!("Couldn't find schema for kind {k} "))),
                "{set}: unexpected kubernetes-validate output: {line}"
            );
        }
        println!(
            "HELM {set}: {} passed on Kubernetes {}; not validated (custom resources): {}",
            validated.join(", "),
            KUBERNETES_VERSIONS.join(", "),
            if custom.is_empty() {
                "none".to_string()
            } else {
                custom.join(", ")
            }
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The restricted Pod Security Standard (which includes the baseline one), as the Kubernetes
/// documentation lists its controls: every violation found in a pod spec.
fn restricted_violations(pod: &Value) -> Vec<String> {
    let mut violations = Vec::new();
    let mut bad = |v: String| violations.push(v);
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[host] == true {
            bad(format!("{host}: true"));
        }
    }
    let allowed_volumes = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    for vol in seq(&pod["volumes"]) {
        let name = vol["name"].as_str().unwrap_or("?");
        if let Some(map) = vol.as_mapping() {
            for key in map
                .keys()
                .filter_map(|k| k.as_str())
                .filter(|k| *k != "name")
            {
                if !allowed_volumes.contains(&key) {
                    bad(format!("volume {name}: {key}"));
                }
            }
        }
    }
    let pod_sc = &pod["securityContext"];
    let safe_sysctls = [
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    ];
    for sysctl in seq(&pod_sc["sysctls"]) {
        let name = sysctl["name"].as_str().unwrap_or("?");
        if !safe_sysctls.contains(&name) {
            bad(format!("sysctl {name}"));
        }
    }
    if pod_sc["runAsUser"] == 0 {
        bad("pod runAsUser: 0".into());
    }
    let containers = seq(&pod["initContainers"])
        .iter()
        .chain(seq(&pod["containers"]))
        .chain(seq(&pod["ephemeralContainers"]));
    for c in containers {
        let name = c["name"].as_str().unwrap_or("?");
        let sc = &c["securityContext"];
        if sc["privileged"] == true {
            bad(format!("{name}: privileged"));
        }
        if sc["allowPrivilegeEscalation"] != false {
            bad(format!("{name}: allowPrivilegeEscalation is not false"));
        }
        let non_root = match sc["runAsNonRoot"].as_bool() {
            Some(b) => b,
            None => pod_sc["runAsNonRoot"] == true,
        };
        if !non_root {
            bad(format!("{name}: runAsNonRoot is not true"));
        }
        if sc["runAsUser"] == 0 {
            bad(format!("{name}: runAsUser: 0"));
        }
        let seccomp = match sc["seccompProfile"]["type"].as_str() {
            Some(t) => Some(t),
            None => pod_sc["seccompProfile"]["type"].as_str(),
        };
        if !matches!(seccomp, Some("RuntimeDefault") | Some("Localhost")) {
            bad(format!("{name}: seccompProfile is {seccomp:?}"));
        }
        let caps = &sc["capabilities"];
        if !seq(&caps["drop"]).iter().any(|d| d == "ALL") {
            bad(format!("{name}: capabilities do not drop ALL"));
        }
        for add in seq(&caps["add"]) {
            if add != "NET_BIND_SERVICE" {
                bad(format!("{name}: adds capability {add:?}"));
            }
        }
        for port in seq(&c["ports"]) {
            if !port["hostPort"].is_null() && port["hostPort"] != 0 {
                bad(format!("{name}: hostPort {:?}", port["hostPort"]));
            }
        }
        if !sc["procMount"].is_null() && sc["procMount"] != "Default" {
            bad(format!("{name}: procMount {:?}", sc["procMount"]));
        }
        if let Some(t) = sc["seLinuxOptions"]["type"].as_str() {
            if ![
                "container_t",
                "container_init_t",
                "container_kvm_t",
                "container_engine_t",
            ]
            .contains(&t)
            {
                bad(format!("{name}: seLinuxOptions.type {t}"));
            }
        }
        if sc["appArmorProfile"]["type"] == "Unconfined" {
            bad(format!("{name}: appArmorProfile Unconfined"));
        }
        // Not in the standard, but asked of this chart: nothing writable in the image.
        if sc["readOnlyRootFilesystem"] != true {
            bad(format!("{name}: readOnlyRootFilesystem is not true"));
        }
    }
    violations
}

#[test]
fn every_pod_meets_the_restricted_pod_security_standard() {
    for set in VALUES_SETS {
        let docs = documents(&render(set));
        let violations = restricted_violations(pod_spec(&docs));
        // The node's socket through a hostPath volume is the one exception: the namespace must
        // admit hostPath (the README says so; the CSI driver's volume avoids it).
        let expected: Vec<String> =
            if volume(&docs, "dsdsocket").is_some_and(|v| !v["hostPath"].is_null()) {
                vec!["volume dsdsocket: hostPath".into()]
            } else {
                vec![]
            };
        assert_eq!(violations, expected, "{set}: restricted profile");
        println!(
            "HELM {set}: restricted profile: {}",
            if expected.is_empty() {
                "met"
            } else {
                "met but for the hostPath socket volume"
            }
        );
    }
}

#[test]
fn the_checker_catches_what_the_restricted_profile_forbids() {
    let docs = documents(&render("udp-values.yaml"));
    let good = pod_spec(&docs).clone();
    assert!(restricted_violations(&good).is_empty());
    let breakages: [(&str, &str); 6] = [
        (
            "containers: [{name: c, securityContext: {runAsNonRoot: false, allowPrivilegeEscalation: false}}]",
            "c: runAsNonRoot",
        ),
        ("securityContext: {runAsNonRoot: true, seccompProfile: {type: Unconfined}}", "seccompProfile"),
        ("hostNetwork: true", "hostNetwork"),
        ("volumes: [{name: x, hostPath: {path: /}}]", "volume x: hostPath"),
        ("containers: [{name: c, securityContext: {allowPrivilegeEscalation: true}}]", "allowPrivilegeEscalation"),
        ("containers: [{name: c, securityContext: {capabilities: {add: [SYS_ADMIN]}}}]", "SYS_ADMIN"),
    ];
    for (patch, expected) in breakages {
        let mut pod = good.clone();
        let patch: Value = serde_yaml::from_str(patch).expect("a patch");
        for (k, v) in patch.as_mapping().expect("a mapping") {
            pod[k.as_str().expect("a key")] = v.clone();
        }
        let violations = restricted_violations(&pod);
        assert!(
            violations.iter().any(|v| v.contains(expected)),
            "{patch:?} not caught: {violations:?}"
        );
    }
}

/// What every values set renders alike: probes on the health server's port, the configuration
/// mounted where the image's command reads it, the stop deadline, resources, service tags, PDB.
fn assert_common_wiring(set: &str, docs: &[Value]) {
    let config = forwarder_config(docs);
    let init = &config["init_config"];
    assert!(
        init["dogstatsd_url"].is_null(),
        "{set}: the destination is set by the environment"
    );
    let address = str_of(&init["health_address"], "init_config.health_address");
    let port: i64 = address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{set}: health_address {address} has no port"));
    let c = container(docs);
    let named = seq(&c["ports"])
        .iter()
        .find(|p| p["name"] == "health")
        .unwrap_or_else(|| panic!("{set}: no port named health"));
    assert_eq!(
        named["containerPort"].as_i64(),
        Some(port),
        "{set}: health port"
    );
    for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{set}: {probe} path");
        let probe_port = match &get["port"] {
            Value::String(name) => seq(&c["ports"])
                .iter()
                .find(|p| p["name"] == name.as_str())
                .and_then(|p| p["containerPort"].as_i64()),
            other => other.as_i64(),
        };
        assert_eq!(
            probe_port,
            Some(port),
            "{set}: {probe} hits health_address' port"
        );
    }
    let args: Vec<&str> = seq(&c["args"]).iter().filter_map(|a| a.as_str()).collect();
    assert_eq!(
        args,
        [
            "run",
            "--config",
            "/etc/algorithmia-datadog/algorithmia.yaml"
        ],
        "{set}: args"
    );
    let mount = seq(&c["volumeMounts"])
        .iter()
        .find(|m| m["name"] == "config")
        .unwrap_or_else(|| panic!("{set}: config not mounted"));
    assert_eq!(mount["mountPath"], "/etc/algorithmia-datadog", "{set}");
    assert_eq!(
        volume(docs, "config").map(|v| &v["configMap"]["name"]),
        Some(&Value::from(FULLNAME))
    );
    let grace = pod_spec(docs)["terminationGracePeriodSeconds"]
        .as_i64()
        .unwrap_or(30);
    assert!(
        grace > 10,
        "{set}: grace period {grace}s is not above the 10 s stop deadline"
    );
    assert_eq!(c["resources"]["requests"]["memory"], "64Mi", "{set}");
    assert_eq!(c["resources"]["limits"]["memory"], "128Mi", "{set}");
    assert_eq!(c["resources"]["requests"]["cpu"], "100m", "{set}");

    // Unified service tagging: each DD_ variable reads its pod label back.
    let labels = &one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"];
    for (var, tag) in [
        ("DD_ENV", "env"),
        ("DD_SERVICE", "service"),
        ("DD_VERSION", "version"),
    ] {
        let label = format!("tags.datadoghq.com/{tag}");
        match field_ref(docs, var) {
            Some(path) => {
                assert_eq!(path, format!("metadata.labels['{label}']"), "{set}: {var}");
                assert!(
                    labels[label.as_str()].is_string(),
                    "{set}: {var} reads a missing label {label}"
                );
            }
            None => assert!(
                labels[label.as_str()].is_null(),
                "{set}: {label} without {var}"
            ),
        }
    }
    assert!(field_ref(docs, "DD_SERVICE").is_some() && field_ref(docs, "DD_VERSION").is_some());

    let pdb = one(docs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1, "{set}: PDB");
    let selector = pdb["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("PDB selector");
    for (k, v) in selector {
        assert_eq!(
            &labels[k.as_str().expect("a label")],
            v,
            "{set}: the PDB selects the pods"
        );
    }
    let account = one(docs, "ServiceAccount");
    assert_eq!(
        pod_spec(docs)["serviceAccountName"],
        account["metadata"]["name"],
        "{set}"
    );
    assert_eq!(
        pod_spec(docs)["automountServiceAccountToken"],
        false,
        "{set}"
    );
}

fn assert_socket(set: &str, docs: &[Value]) {
    assert_eq!(
        env_value(docs, "DD_DOGSTATSD_URL").as_deref(),
        Some("unix:///var/run/datadog/dsd.socket"),
        "{set}"
    );
    assert!(env(docs, "DD_AGENT_HOST").is_none(), "{set}");
    let mount = seq(&container(docs)["volumeMounts"])
        .iter()
        .find(|m| m["name"] == "dsdsocket")
        .unwrap_or_else(|| panic!("{set}: the socket's directory is not mounted"));
    assert_eq!(mount["mountPath"], "/var/run/datadog", "{set}");
    assert_eq!(mount["readOnly"], true, "{set}");
}

fn assert_udp(set: &str, docs: &[Value]) {
    assert_eq!(
        field_ref(docs, "DD_AGENT_HOST").as_deref(),
        Some("status.hostIP"),
        "{set}"
    );
    assert_eq!(
        env_value(docs, "DD_DOGSTATSD_PORT").as_deref(),
        Some("8125"),
        "{set}"
    );
    assert!(
        env(docs, "DD_DOGSTATSD_URL").is_none(),
        "{set}: DD_DOGSTATSD_URL would win"
    );
    assert!(volume(docs, "dsdsocket").is_none(), "{set}");
}

fn assert_password_from(set: &str, docs: &[Value], secret: &str, key: &str) {
    let from = &env(docs, "KAFKA_PASSWORD").unwrap_or_else(|| panic!("{set}: no KAFKA_PASSWORD"))
        ["valueFrom"]["secretKeyRef"];
    assert_eq!(from["name"], secret, "{set}: secretKeyRef name");
    assert_eq!(from["key"], key, "{set}: secretKeyRef key");
    let config = forwarder_config(docs);
    for instance in seq(&config["instances"]) {
        assert_eq!(instance["sasl_password"], "${KAFKA_PASSWORD}", "{set}");
    }
}

fn replicas(docs: &[Value]) -> Option<i64> {
    one(docs, "Deployment")["spec"]["replicas"].as_i64()
}

#[test]
fn each_values_set_is_wired_as_documented() {
    for set in VALUES_SETS {
        let manifest = render(set);
        let docs = documents(&manifest);
        assert_common_wiring(set, &docs);
        match set {
            "socket-values.yaml" => {
                assert_socket(set, &docs);
                let host = &volume(&docs, "dsdsocket").expect("dsdsocket")["hostPath"];
                assert_eq!(
                    host["path"], "/var/run/datadog/",
                    "{set}: the Datadog chart's hostSocketPath"
                );
                assert_eq!(
                    field_ref(&docs, "DD_ENV").as_deref(),
                    Some("metadata.labels['tags.datadoghq.com/env']")
                );
                assert_eq!(replicas(&docs), Some(1));
            }
            "socket-csi-values.yaml" => {
                assert_socket(set, &docs);
                let csi = &volume(&docs, "dsdsocket").expect("dsdsocket")["csi"];
                assert_eq!(csi["driver"], "k8s.csi.datadoghq.com", "{set}");
                assert_eq!(
                    csi["volumeAttributes"]["type"], "DSDSocketDirectory",
                    "{set}"
                );
            }
            "udp-values.yaml" => {
                assert_udp(set, &docs);
                assert_eq!(replicas(&docs), Some(3));
                let labels = &one(&docs, "Deployment")["spec"]["template"]["metadata"]["labels"];
                assert_eq!(labels["tags.datadoghq.com/env"], "staging");
                assert_eq!(labels["tags.datadoghq.com/version"], "2.0.0-rc1");
                assert!(env(&docs, "KAFKA_PASSWORD").is_none());
            }
            "sasl-existing-secret-values.yaml" => {
                assert_udp(set, &docs);
                assert_password_from(set, &docs, "kafka-credentials", "algorithmia-password");
                assert!(
                    kind(&docs, "Secret").is_empty(),
                    "{set}: the chart creates no Secret"
                );
            }
            "sasl-chart-secret-values.yaml" => {
                let name = format!("{FULLNAME}-kafka");
                assert_password_from(set, &docs, &name, "password");
                let secret = one(&docs, "Secret");
                assert_eq!(secret["metadata"]["name"], name.as_str());
                // base64 of "not-a-real-password"
                assert_eq!(secret["data"]["password"], "bm90LWEtcmVhbC1wYXNzd29yZA==");
                assert!(
                    !manifest.contains("not-a-real-password"),
                    "{set}: the password in clear"
                );
            }
            "autoscaling-keda-values.yaml" => {
                assert_eq!(replicas(&docs), None, "{set}: KEDA owns the replicas");
                assert!(kind(&docs, "HorizontalPodAutoscaler").is_empty());
                let scaled = one(&docs, "ScaledObject");
                assert_eq!(scaled["apiVersion"], "keda.sh/v1alpha1");
                let spec = &scaled["spec"];
                assert_eq!(spec["scaleTargetRef"]["name"], FULLNAME);
                assert_eq!(spec["minReplicaCount"], 2);
                assert_eq!(
                    spec["maxReplicaCount"], 12,
                    "{set}: capped at kafka.partitions"
                );
                let trigger = &seq(&spec["triggers"])[0];
                assert_eq!(trigger["type"], "kafka");
                let meta = &trigger["metadata"];
                assert_eq!(
                    meta["bootstrapServers"],
                    "kafka-0.kafka:9093,kafka-1.kafka:9093"
                );
                assert_eq!(meta["consumerGroup"], "forwarders");
                assert_eq!(meta["topic"], "insights");
                assert_eq!(meta["lagThreshold"], "5000");
                assert_eq!(meta["offsetResetPolicy"], "earliest");
                assert_eq!(meta["allowIdleConsumers"], "false");
                assert_eq!(meta["sasl"], "scram_sha512");
                assert_eq!(meta["tls"], "enable");
                let auth = one(&docs, "TriggerAuthentication");
                assert_eq!(
                    trigger["authenticationRef"]["name"],
                    auth["metadata"]["name"]
                );
                let secret_ref = &seq(&auth["spec"]["secretTargetRef"])[0];
                assert_eq!(secret_ref["parameter"], "password");
                assert_eq!(secret_ref["name"], "kafka-credentials");
                assert_eq!(secret_ref["key"], "password");
                let user = &seq(&auth["spec"]["env"])[0];
                assert_eq!(user["parameter"], "username");
                assert_eq!(
                    env_value(&docs, str_of(&user["name"], "env name")).as_deref(),
                    Some("algorithmia")
                );
                assert_password_from(set, &docs, "kafka-credentials", "password");
            }
            "autoscaling-hpa-values.yaml" | "autoscaling-hpa-native-values.yaml" => {
                assert_eq!(replicas(&docs), None, "{set}: the HPA owns the replicas");
                let hpa = one(&docs, "HorizontalPodAutoscaler");
                assert_eq!(hpa["apiVersion"], "autoscaling/v2");
                let spec = &hpa["spec"];
                assert_eq!(spec["scaleTargetRef"]["name"], FULLNAME);
                let external = &seq(&spec["metrics"])[0]["external"];
                assert_eq!(external["target"]["type"], "AverageValue");
                if set == "autoscaling-hpa-values.yaml" {
                    assert_eq!(
                        spec["maxReplicas"], 6,
                        "{set}: as set, below the 8 partitions"
                    );
                    assert_eq!(external["target"]["averageValue"], "20000");
                    let metric = one(&docs, "DatadogMetric");
                    let name = str_of(&metric["metadata"]["name"], "DatadogMetric name");
                    assert_eq!(
                        external["metric"]["name"],
                        format!("datadogmetric@{NAMESPACE}:{name}").as_str()
                    );
                    assert_eq!(
                        metric["spec"]["query"],
                        "sum:algorithmia.forwarder.consumer_lag{consumer_group:forwarders,topic:insights}.rollup(max, 60)"
                    );
                } else {
                    assert_eq!(
                        spec["maxReplicas"], 8,
                        "{set}: defaults to kafka.partitions"
                    );
                    assert!(kind(&docs, "DatadogMetric").is_empty());
                    assert_eq!(
                        external["metric"]["name"],
                        "algorithmia.forwarder.consumer_lag"
                    );
                    let labels = &external["metric"]["selector"]["matchLabels"];
                    assert_eq!(labels["consumer_group"], "algorithmia-datadog");
                    assert_eq!(labels["topic"], "insights");
                }
            }
            "static-membership-values.yaml" => {
                let config = forwarder_config(&docs);
                let options = &seq(&config["instances"])[0]["kafka_options"];
                assert_eq!(options["group.instance.id"], "${POD_NAME}", "{set}");
                assert_eq!(
                    options["fetch.wait.max.ms"], 100,
                    "{set}: the user's options kept"
                );
                assert_eq!(
                    field_ref(&docs, "POD_NAME").as_deref(),
                    Some("metadata.name")
                );
                assert_eq!(replicas(&docs), Some(2));
            }
            other => panic!("no assertions for {other}"),
        }
        if set != "static-membership-values.yaml" {
            let config = forwarder_config(&docs);
            for instance in seq(&config["instances"]) {
                assert!(
                    instance["kafka_options"]["group.instance.id"].is_null(),
                    "{set}: static membership is off by default"
                );
            }
        }
    }
}

#[test]
fn the_chart_refuses_what_cannot_work() {
    let cases: [(&[&str], &[&str], &str); 7] = [
        (
            &[],
            &["replicaCount=2"],
            "replicaCount (2) is above kafka.partitions (1)",
        ),
        (
            &["autoscaling-hpa-values.yaml"],
            &["autoscaling.maxReplicas=9"],
            "autoscaling.maxReplicas (9) is above kafka.partitions (8)",
        ),
        (
            &["autoscaling-keda-values.yaml"],
            &["kafka.partitions=4", "autoscaling.maxReplicas=5"],
            "autoscaling.maxReplicas (5) is above kafka.partitions (4)",
        ),
        (
            &["sasl-existing-secret-values.yaml"],
            &["kafka.sasl.existingSecret="],
            "uses SASL: set kafka.sasl.existingSecret or kafka.sasl.password",
        ),
        (
            &[],
            &["config.init_config.dogstatsd_url=udp://agent:8125"],
            "config.init_config",
        ),
        (
            &["autoscaling-keda-values.yaml"],
            &["autoscaling.datadog.enabled=true"],
            "enable at most one of autoscaling.keda and autoscaling.datadog",
        ),
        (
            &[],
            &["terminationGracePeriodSeconds=10"],
            "terminationGracePeriodSeconds",
        ),
    ];
    for (values, sets, message) in cases {
        match try_render(values, sets) {
            Ok(_) => panic!("helm template {values:?} --set {sets:?} was accepted"),
            Err(e) => assert!(
                e.contains(message),
                "{values:?} {sets:?}: expected `{message}` in: {e}"
            ),
        }
    }
    // At the cap itself, the chart renders.
    let docs = documents(
        &try_render(&["udp-values.yaml"], &["replicaCount=6"])
            .expect("6 replicas for 6 partitions"),
    );
    assert_eq!(replicas(&docs), Some(6));
}

#[test]
fn static_membership_gives_each_consumer_of_a_group_one_id() {
    let two_in_one_group = [
        "staticMembership.enabled=true",
        "config.instances[0].kafka_broker=k:9092",
        "config.instances[0].kafka_topic=a",
        "config.instances[1].kafka_broker=k:9092",
        "config.instances[1].kafka_topic=b",
    ];
    let e = try_render(&[], &two_in_one_group).expect_err("two instances, one group, one id");
    assert!(
        e.contains("shares consumer group algorithmia-datadog"),
        "{e}"
    );
    let mut two_groups = two_in_one_group.to_vec();
    two_groups.push("config.instances[1].consumer_group=other");
    let docs = documents(&try_render(&[], &two_groups).expect("two groups"));
    let ids: BTreeSet<String> = seq(&forwarder_config(&docs)["instances"])
        .iter()
        .map(|i| {
            str_of(
                &i["kafka_options"]["group.instance.id"],
                "group.instance.id",
            )
            .to_string()
        })
        .collect();
    assert_eq!(ids, BTreeSet::from(["${POD_NAME}".to_string()]));
}
