//! The binary as a runtime sees it: environment and stdin per the CNI spec,
//! results and error results on stdout, exit codes. Each malformed
//! configuration or environment must give its spec error code, a message,
//! a non-zero exit, and leave no state behind.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(env: &[(&str, &str)], stdin: &str) -> Out {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pollux-cni"));
    c.env_clear();
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // VERSION and bare invocations do not read stdin: a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let o = child.wait_with_output().unwrap();
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn no_state(cache: &Path) {
    for d in ["state", "alloc"] {
        let dir = cache.join(d);
        if dir.exists() {
            assert_eq!(
                std::fs::read_dir(&dir).unwrap().count(),
                0,
                "{} not empty",
                dir.display()
            );
        }
    }
}

#[test]
fn version_lists_spec_versions() {
    // "cniVersion: The value of cniVersion specified on input" (spec 1.0.0
    // and 1.1.0, section 5, Version).
    for input in ["0.3.1", "1.0.0", "1.1.0"] {
        let o = run(
            &[("CNI_COMMAND", "VERSION")],
            &format!("{{\"cniVersion\":\"{input}\"}}"),
        );
        assert_eq!(o.code, Some(0), "{}", o.stderr);
        let v: Value = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!(
            v["supportedVersions"],
            json!(["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
        );
        assert_eq!(v["cniVersion"], input);
    }
    // Nothing readable on stdin: the newest.
    let o = run(&[("CNI_COMMAND", "VERSION")], "");
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["cniVersion"], "1.1.0");
}

#[test]
fn every_version_is_accepted_and_answered_in_kind() {
    let t = tempfile::tempdir().unwrap();
    let sys = t.path().join("sys");
    std::fs::create_dir_all(sys.join("bus/pci/devices")).unwrap();
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/proc/self/ns/net"),
        ("CNI_IFNAME", "net1"),
        ("CNI_PATH", "/usr/lib/cni"),
    ];
    // Past the version check every version reaches the device lookup (no
    // such VF here: 103), and the error comes back in its version.
    for v in [
        "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
    ] {
        let conf = json!({"cniVersion": v, "name": "n", "type": "pollux-cni",
            "deviceID": "0000:00:10.0", "cacheDir": t.path().join("cache").to_str().unwrap(),
            "sysfsRoot": sys.to_str().unwrap(), "ipam": {"type": "host-local", "subnet": "169.254.1.0/24"}});
        let o = run(&env, &conf.to_string());
        let e: Value = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!(o.code, Some(1));
        assert_eq!(
            (&e["code"], &e["cniVersion"]),
            (&json!(103), &json!(v)),
            "{e}"
        );
    }
    // The issue's own example: a NetworkAttachmentDefinition at 0.3.1.
    // (cacheDir and sysfsRoot added to keep the test off the host's own.)
    let conf = json!({"cniVersion": "0.3.1", "name": "x", "type": "pollux-cni",
        "deviceID": "0000:00:19.0", "cacheDir": t.path().join("cache").to_str().unwrap(),
        "sysfsRoot": sys.to_str().unwrap()});
    let o = run(&env, &conf.to_string());
    let e: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(
        (&e["code"], &e["cniVersion"]),
        (&json!(103), &json!("0.3.1")),
        "{e}"
    );
}

#[test]
fn malformed_configurations_and_environments() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let cache_s = cache.to_str().unwrap().to_owned();
    let sys = t.path().join("sys");
    std::fs::create_dir_all(sys.join("bus/pci/devices")).unwrap();
    let not_ns = t.path().join("not-a-netns");
    std::fs::write(&not_ns, "").unwrap();
    let conf = |extra: Value| {
        let mut v = json!({"cniVersion": "1.0.0", "name": "sriov-net", "type": "pollux-cni",
            "deviceID": "0000:00:10.0", "cacheDir": cache_s, "sysfsRoot": sys.to_str().unwrap()});
        for (k, x) in extra.as_object().unwrap() {
            if x.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = x.clone();
            }
        }
        v.to_string()
    };
    let add = |over: &[(&'static str, &'static str)]| {
        let mut e: Vec<(&str, &str)> = vec![
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/proc/self/ns/net"),
            ("CNI_IFNAME", "net1"),
            ("CNI_PATH", "/usr/lib/cni"),
        ];
        for (k, v) in over {
            e.retain(|(k2, _)| k2 != k);
            if !v.is_empty() {
                e.push((k, v));
            }
        }
        e
    };
    let not_ns_s: &'static str = Box::leak(not_ns.to_str().unwrap().to_owned().into_boxed_str());
    // (what, environment, stdin, expected code, text the error must contain)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, u64, &'a str);
    let cases: Vec<Case> = vec![
        (
            "unknown command",
            add(&[("CNI_COMMAND", "FROB")]),
            conf(json!({})),
            4,
            "",
        ),
        (
            "no container id",
            add(&[("CNI_CONTAINERID", "")]),
            conf(json!({})),
            4,
            "CNI_CONTAINERID",
        ),
        (
            "no netns",
            add(&[("CNI_NETNS", "")]),
            conf(json!({})),
            4,
            "CNI_NETNS",
        ),
        (
            "no ifname",
            add(&[("CNI_IFNAME", "")]),
            conf(json!({})),
            4,
            "CNI_IFNAME",
        ),
        (
            "container id escapes",
            add(&[("CNI_CONTAINERID", "../../etc")]),
            conf(json!({})),
            4,
            "",
        ),
        (
            "ifname too long",
            add(&[("CNI_IFNAME", "a-very-long-ifname")]),
            conf(json!({})),
            4,
            "",
        ),
        (
            "ifname with slash",
            add(&[("CNI_IFNAME", "a/b")]),
            conf(json!({})),
            4,
            "",
        ),
        (
            "netns is not a namespace",
            add(&[("CNI_NETNS", not_ns_s)]),
            conf(json!({})),
            4,
            "not a network namespace",
        ),
        (
            "bad CNI_ARGS",
            add(&[("CNI_ARGS", "MAC")]),
            conf(json!({})),
            4,
            "CNI_ARGS",
        ),
        (
            "bad CNI_ARGS MAC",
            add(&[("CNI_ARGS", "IgnoreUnknown=1;MAC=nope")]),
            conf(json!({})),
            4,
            "MAC",
        ),
        ("stdin not JSON", add(&[]), "{\"cniVersion\":".into(), 6, ""),
        ("stdin wrong shape", add(&[]), "[1,2]".into(), 6, ""),
        (
            "no deviceID",
            add(&[]),
            conf(json!({"deviceID": null})),
            7,
            "deviceID",
        ),
        (
            "bad deviceID",
            add(&[]),
            conf(json!({"deviceID": "eth0"})),
            7,
            "deviceID",
        ),
        (
            "vlan out of range",
            add(&[]),
            conf(json!({"vlan": 4095})),
            7,
            "0-4094",
        ),
        (
            "qos out of range",
            add(&[]),
            conf(json!({"vlan": 1, "vlanQoS": 9})),
            7,
            "0-7",
        ),
        (
            "qos without vlan",
            add(&[]),
            conf(json!({"vlanQoS": 1})),
            7,
            "VLAN id",
        ),
        (
            "qos on vlan 0",
            add(&[]),
            conf(json!({"vlan": 0, "vlanQoS": 1})),
            7,
            "non-zero",
        ),
        (
            "802.1ad on vlan 0",
            add(&[]),
            conf(json!({"vlan": 0, "vlanProto": "802.1ad"})),
            7,
            "802.1ad",
        ),
        (
            "bad proto",
            add(&[]),
            conf(json!({"vlan": 3, "vlanProto": "802.1x"})),
            7,
            "vlanProto",
        ),
        (
            "bad link_state",
            add(&[]),
            conf(json!({"link_state": "on"})),
            7,
            "link_state",
        ),
        (
            "bad spoofchk",
            add(&[]),
            conf(json!({"spoofchk": "true"})),
            7,
            "spoofchk",
        ),
        (
            "string vlan",
            add(&[]),
            conf(json!({"vlan": "100"})),
            7,
            "integer",
        ),
        (
            "negative rate",
            add(&[]),
            conf(json!({"max_tx_rate": -1})),
            7,
            "max_tx_rate",
        ),
        (
            "bad mac",
            add(&[]),
            conf(json!({"mac": "zz:00:00:00:00:00"})),
            7,
            "mac",
        ),
        (
            "multicast mac",
            add(&[]),
            conf(json!({"mac": "03:00:00:00:00:01"})),
            7,
            "unicast",
        ),
        (
            "bad ipam type",
            add(&[]),
            conf(json!({"ipam": {"type": "../host-local"}})),
            7,
            "ipam",
        ),
        ("bad name", add(&[]), conf(json!({"name": "-x"})), 7, ""),
        (
            "unsupported version",
            add(&[]),
            conf(json!({"cniVersion": "9.9.9"})),
            1,
            "",
        ),
        (
            "no such VF",
            add(&[]),
            conf(json!({})),
            103,
            "no PCI function",
        ),
        (
            "GC on 1.0.0",
            vec![("CNI_COMMAND", "GC"), ("CNI_PATH", "/usr/lib/cni")],
            conf(json!({})),
            1,
            "",
        ),
        (
            "GC without CNI_PATH",
            vec![("CNI_COMMAND", "GC")],
            conf(json!({"cniVersion": "1.1.0"})),
            4,
            "CNI_PATH",
        ),
    ];
    for (what, env, stdin, code, needle) in cases {
        let o = run(&env, &stdin);
        assert_ne!(o.code, Some(0), "{what}: must fail; stdout {}", o.stdout);
        let v: Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "{what}: stdout is not an error result ({e}): {:?}",
                o.stdout
            )
        });
        assert_eq!(v["code"].as_u64(), Some(code), "{what}: {v}");
        assert!(
            v["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {v}"
        );
        let text = format!("{} {}", v["msg"], v["details"]);
        assert!(text.contains(needle), "{what}: {needle:?} not in {text}");
        // In the configuration's version where it can be read, else the
        // newest.
        let want = serde_json::from_str::<Value>(&stdin)
            .ok()
            .and_then(|c| {
                c.get("cniVersion")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "1.1.0".to_owned());
        assert_eq!(v["cniVersion"], want.as_str(), "{what}: {v}");
        no_state(&cache);
    }
}

#[test]
fn del_of_nothing_succeeds_and_status_gc_work() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let sys = t.path().join("sys");
    std::fs::create_dir_all(sys.join("bus/pci/devices")).unwrap();
    let base = json!({"cniVersion": "1.1.0", "name": "sriov-net", "type": "pollux-cni",
        "deviceID": "0000:00:10.0", "cacheDir": cache.to_str().unwrap(), "sysfsRoot": sys.to_str().unwrap()});
    let del = [
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_IFNAME", "net1"),
        ("CNI_PATH", "/usr/lib/cni"),
    ];
    let o = run(&del, &base.to_string());
    assert_eq!(o.code, Some(0), "{} {}", o.stdout, o.stderr);
    assert_eq!(o.stdout.trim(), "");
    // A config that does not validate still lets DEL succeed.
    // (Its cacheDir keeps DEL off the host's own cache.)
    let o = run(
        &del,
        &json!({"cniVersion": "1.1.0", "name": "sriov-net", "type": "pollux-cni", "vlan": 99999,
            "cacheDir": cache.to_str().unwrap()})
        .to_string(),
    );
    assert_eq!(o.code, Some(0), "{} {}", o.stdout, o.stderr);
    let o = run(
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/usr/lib/cni")],
        &base.to_string(),
    );
    assert_eq!(o.code, Some(0), "{} {}", o.stdout, o.stderr);
    let mut gc = base.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c9", "ifname": "net1"}]);
    let o = run(
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/usr/lib/cni")],
        &gc.to_string(),
    );
    assert_eq!(o.code, Some(0), "{} {}", o.stdout, o.stderr);
    // STATUS says "not available" (50) when the cache cannot be created.
    let mut bad = base.clone();
    bad["cacheDir"] = json!("/proc/pollux-cannot-exist");
    let o = run(&[("CNI_COMMAND", "STATUS")], &bad.to_string());
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["code"], 50, "{v}");
}

#[test]
fn bare_invocation_prints_about_text() {
    let o = run(&[], "");
    assert_eq!(o.code, Some(0));
    assert!(
        o.stderr.contains("pollux-cni") && o.stderr.contains("1.1.0"),
        "{}",
        o.stderr
    );
}
