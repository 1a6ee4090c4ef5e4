//! deploy/kubernetes/: the DaemonSet (with its Namespace, ConfigMap and metrics Service) and the
//! ServiceMonitor, checked three ways:
//!
//! - against the Kubernetes API's own schemas, strictly (unknown fields refused), with
//!   `kubernetes-validate` from PyPI (it carries the OpenAPI schemas of each Kubernetes
//!   release): the oldest supported release we name and the newest it knows;
//! - the ServiceMonitor against the Prometheus Operator's CRD schema, as the npm package
//!   `@kubernetes-models/prometheus-operator` carries it (the API server would prune unknown
//!   fields of a custom resource, so types and required fields are what matter there);
//! - against strata itself: the ConfigMap's strata.toml is a configuration strata accepts, the
//!   container's capabilities are the systemd unit's plus IPC_LOCK (Kubernetes has no
//!   LimitMEMLOCK), and the probes run `strata status --check`.
//!
//! Each validator is also shown a broken copy, which it must refuse: a check that passes
//! anything proves nothing. `make k8s-tools` installs both validators into
//! ~/.cache/strata-k8s (STRATA_K8S_TOOLS); without them the validator tests say SKIPPED, unless
//! STRATA_REQUIRE_INTEROP=1 (`make test`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use strata::daemon::config::{Overrides, ServerConfig};
use strata_test_support::*;

/// The oldest Kubernetes release the manifests are checked against (its API for DaemonSets,
/// probes and capabilities is what the manifests use).
const OLDEST_KUBERNETES: &str = "1.29.0";

fn manifest(name: &str) -> PathBuf {
    workspace_root().join("deploy/kubernetes").join(name)
}

fn tools() -> PathBuf {
    match std::env::var_os("STRATA_K8S_TOOLS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/strata-k8s"),
    }
}

fn validator() -> Option<PathBuf> {
    let path = tools().join("venv/bin/kubernetes-validate");
    available("kubernetes-validate (make k8s-tools)", path.exists()).then_some(path)
}

/// The documents of a YAML file as JSON (through the validator's own PyYAML).
fn documents(path: &Path) -> Vec<Value> {
    let python = tools().join("venv/bin/python3");
    let out = Command::new(&python)
        .args([
            "-c",
            "import json,sys,yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(path)
        .output()
        .expect("run the validator's python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// Writes `docs` as a YAML file (JSON is YAML) for the validators.
fn write_yaml(docs: &[Value], name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strata-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let text: Vec<String> = docs.iter().map(|d| d.to_string()).collect();
    std::fs::write(&path, text.join("\n---\n")).unwrap();
    path
}

fn kubernetes_validate(tool: &Path, file: &Path, version: &str) -> (bool, String) {
    let out = Command::new(tool)
        .args(["--strict", "-k", version])
        .arg(file)
        .output()
        .expect("run kubernetes-validate");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in the manifests"))
}

#[test]
fn the_manifests_pass_the_kubernetes_schemas_strictly() {
    let Some(tool) = validator() else { return };
    let file = manifest("strata.yaml");
    for version in [OLDEST_KUBERNETES, "1.37.0"] {
        let (ok, said) = kubernetes_validate(&tool, &file, version);
        assert!(ok, "Kubernetes {version}:\n{said}");
        for kind in ["namespace", "configmap", "daemonset", "service"] {
            assert!(
                said.contains(&format!("passed for resource {kind}/")),
                "{kind} not checked:\n{said}"
            );
        }
    }
    // Broken copies are refused: a field the API does not have, and a port that is not a number.
    let docs = documents(&file);
    let mut unknown = docs.clone();
    let ds = unknown.iter_mut().find(|d| d["kind"] == "DaemonSet").unwrap();
    ds["spec"]["template"]["spec"]["hostNetwrk"] = Value::Bool(true);
    let (ok, said) = kubernetes_validate(&tool, &write_yaml(&unknown, "unknown.yaml"), OLDEST_KUBERNETES);
    assert!(!ok, "an unknown field passed:\n{said}");
    let mut port = docs;
    let ds = port.iter_mut().find(|d| d["kind"] == "DaemonSet").unwrap();
    ds["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "ntp".into();
    let (ok, said) = kubernetes_validate(&tool, &write_yaml(&port, "port.yaml"), OLDEST_KUBERNETES);
    assert!(!ok, "a port that is not a number passed:\n{said}");
}

fn validate_servicemonitor(docs: &[Value]) -> (bool, String) {
    let script = workspace_root().join("tests/data/validate-servicemonitor.mjs");
    let mut child = Command::new("node")
        .arg(script)
        .arg(tools())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(Value::Array(docs.to_vec()).to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_service_monitor_passes_the_prometheus_operator_schema() {
    let package = tools().join("node_modules/@kubernetes-models/prometheus-operator");
    if validator().is_none()
        || !available(
            "node and @kubernetes-models/prometheus-operator (make k8s-tools)",
            have_command("node") && package.exists(),
        )
    {
        return;
    }
    let docs = documents(&manifest("servicemonitor.yaml"));
    let (ok, said) = validate_servicemonitor(&docs);
    assert!(ok && said.contains("ServiceMonitor/strata: valid"), "{said}");
    // It scrapes the metrics Service's named port, which selects the DaemonSet's pods.
    let ours = documents(&manifest("strata.yaml"));
    let service = find(&ours, "Service");
    let monitor = &docs[0];
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        service["metadata"]["labels"]
    );
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"],
        service["spec"]["ports"][0]["name"]
    );
    // A broken copy is refused.
    let mut broken = docs.clone();
    broken[0]["spec"]["endpoints"][0]["port"] = 9123.into();
    let (ok, said) = validate_servicemonitor(&broken);
    assert!(!ok, "a numeric port name passed:\n{said}");
}

#[test]
fn the_daemonset_runs_strata_as_the_service_does() {
    if validator().is_none() {
        return;
    }
    let docs = documents(&manifest("strata.yaml"));
    let ds = find(&docs, "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    let container = &pod["containers"][0];

    // The capabilities: the unit's bounding set, plus IPC_LOCK for the AF_XDP UMEM.
    let unit = std::fs::read_to_string(workspace_root().join("deploy/strata.service")).unwrap();
    let mut from_unit: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit's CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_string())
        .collect();
    from_unit.push("IPC_LOCK".into());
    from_unit.sort();
    let caps = &container["securityContext"]["capabilities"];
    let mut added: Vec<String> = caps["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    added.sort();
    assert_eq!(added, from_unit);
    assert_eq!(caps["drop"], serde_json::json!(["ALL"]));
    assert_eq!(container["securityContext"]["privileged"], false);

    // The probes are the health check the anycast setup uses.
    let ready = container["readinessProbe"]["exec"]["command"].to_string();
    assert_eq!(ready, r#"["strata","status","--check"]"#);
    let live = container["livenessProbe"]["exec"]["command"].to_string();
    assert!(
        live.contains("strata status --check") && live.contains("-ne 2"),
        "{live}"
    );

    // The config strata is given is one it accepts, with the control socket on the volume the
    // probes share and the metrics port the container declares.
    let config_map = find(&docs, "ConfigMap");
    let toml = config_map["data"]["strata.toml"].as_str().unwrap();
    let dir = std::env::temp_dir().join(format!("strata-k8s-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("strata.toml");
    std::fs::write(&path, toml).unwrap();
    let config = ServerConfig::load(Some(&path), &Overrides::default())
        .unwrap_or_else(|e| panic!("strata refuses the ConfigMap's strata.toml: {}", e.message()));
    let control = config.control.get().expect("a control socket").clone();
    let run = pod["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "run")
        .expect("the run volume")["mountPath"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        control.starts_with(&run),
        "control socket {control:?} not under {run}"
    );
    let metrics = config.metrics.get().expect("metrics on");
    let declared = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "metrics")
        .unwrap()["containerPort"]
        .as_u64()
        .unwrap();
    assert_eq!(metrics.port() as u64, declared);
    let _ = std::fs::remove_dir_all(&dir);
}
