//! The sidecar manifests in `deploy/` (Kubernetes, ECS, systemd) parse, and
//! every rdsconn command line and `RDSCONN_PROXY_*` variable in them is one
//! rdsconn takes: a manifest that rots fails here.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{TestEnv, python};

fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel)
}

/// `rdsconn ARGS --help` exits 0 only if every flag before `--help` exists.
fn assert_takes(env: &TestEnv, args: &[String], from: &str) {
    assert_eq!(
        args.first().map(String::as_str),
        Some("proxy"),
        "{from}: {args:?}"
    );
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.push("--help");
    let run = env.run(&all);
    assert_eq!(run.code, 0, "{from}: rdsconn {args:?}: {}", run.stderr);
}

/// Every `RDSCONN_PROXY_*` name is one `proxy --help` lists.
fn assert_variables(env: &TestEnv, names: &[String], from: &str) {
    let help = env.run(&["proxy", "--help"]).stdout;
    for name in names.iter().filter(|n| n.starts_with("RDSCONN_PROXY_")) {
        assert!(
            help.contains(&format!("[env: {name}=")),
            "{from}: {name} is no proxy setting"
        );
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_kubernetes_sidecar_manifest_uses_real_flags() {
    let env = TestEnv::new();
    let file = deploy("kubernetes/sidecar.yaml");
    let out = Command::new(python())
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pod: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sidecar = &pod["spec"]["initContainers"][0];
    assert_eq!(sidecar["restartPolicy"], "Always", "a native sidecar");
    assert_eq!(sidecar["startupProbe"]["httpGet"]["path"], "/startup");
    assert_eq!(sidecar["livenessProbe"]["httpGet"]["path"], "/liveness");
    assert_eq!(sidecar["readinessProbe"]["httpGet"]["path"], "/readiness");
    assert_takes(&env, &strings(&sidecar["args"]), "args");
    let pre_stop = strings(&sidecar["lifecycle"]["preStop"]["exec"]["command"]);
    assert_eq!(pre_stop[..3], ["rdsconn", "proxy", "shutdown"]);
    assert_takes(&env, &pre_stop[1..], "preStop");
    let names: Vec<String> = sidecar["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_variables(&env, &names, "env");
}

#[test]
fn the_ecs_task_definition_uses_real_flags() {
    let env = TestEnv::new();
    let text = std::fs::read_to_string(deploy("ecs/task-definition.json")).unwrap();
    let task: Value = serde_json::from_str(&text).unwrap();
    let proxy = &task["containerDefinitions"][0];
    assert_takes(&env, &strings(&proxy["command"]), "command");
    let check = strings(&proxy["healthCheck"]["command"]);
    assert_eq!(check[..2], ["CMD", "rdsconn"]);
    assert_takes(&env, &check[2..], "healthCheck");
    let names: Vec<String> = proxy["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_variables(&env, &names, "environment");
    assert_eq!(
        task["containerDefinitions"][1]["dependsOn"][0]["condition"],
        "HEALTHY"
    );
}

#[test]
fn the_systemd_unit_uses_real_flags() {
    let env = TestEnv::new();
    let unit = std::fs::read_to_string(deploy("systemd/rdsconn-proxy@.service")).unwrap();
    let key = |k: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k}= in the unit"))
            .to_string()
    };
    assert_eq!(key("Type"), "notify");
    let exec = key("ExecStart");
    let words: Vec<String> = exec.split_whitespace().skip(1).map(String::from).collect();
    assert!(exec.starts_with("/usr/bin/rdsconn proxy"), "{exec}");
    assert_takes(&env, &words, "ExecStart");
    let vars = std::fs::read_to_string(deploy("systemd/proxy.env.example")).unwrap();
    let names: Vec<String> = vars
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_string()))
        .collect();
    assert!(names.len() >= 5, "{names:?}");
    assert_variables(&env, &names, "proxy.env.example");
}
