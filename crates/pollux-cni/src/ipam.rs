//! IPAM delegation (CNI spec, "Delegated plugins (IPAM)"): the plugin
//! named by `ipam.type` is looked up in the `CNI_PATH` directories and run
//! with the same environment (CNI_COMMAND set to the operation) and the
//! same network configuration on stdin; its stdout is a result or an error.
//!
//! Every run has a timeout; a plugin that overruns it is killed (it is our
//! own child) and reported as "try again later".

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::is_plugin_name;
use crate::{codes, Error, Result};

/// How long an IPAM plugin may run.
pub const IPAM_TIMEOUT: Duration = Duration::from_secs(30);

/// The CNI_* variables of one delegated call.
#[derive(Clone, Debug, Default)]
pub struct Invocation {
    pub command: &'static str,
    pub container_id: Option<String>,
    pub netns: Option<String>,
    pub ifname: Option<String>,
    pub args: Option<String>,
    pub path: Vec<PathBuf>,
}

/// Finds `name` in the `CNI_PATH` directories.
pub fn find_plugin(name: &str, path: &[PathBuf]) -> Result<PathBuf> {
    if !is_plugin_name(name) {
        return Err(Error::InvalidConfig(format!(
            "ipam.type {name:?} is not a plugin name"
        )));
    }
    for dir in path {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::Ipam {
        plugin: name.to_owned(),
        code: codes::IPAM,
        msg: format!(
            "not found in CNI_PATH ({})",
            path.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":")
        ),
        details: String::new(),
    })
}

/// Runs IPAM plugin `name` for `inv` with `stdin`; returns its stdout parsed
/// as JSON (`None` when it printed nothing, as DEL does).
pub fn exec(
    name: &str,
    inv: &Invocation,
    stdin: &Value,
    timeout: Duration,
) -> Result<Option<Value>> {
    let bin = find_plugin(name, &inv.path)?;
    run(name, &bin, inv, stdin, timeout)
}

fn ipam_err(name: &str, msg: impl Into<String>, details: impl Into<String>) -> Error {
    Error::Ipam {
        plugin: name.to_owned(),
        code: codes::IPAM,
        msg: msg.into(),
        details: details.into(),
    }
}

fn run(
    name: &str,
    bin: &Path,
    inv: &Invocation,
    stdin: &Value,
    timeout: Duration,
) -> Result<Option<Value>> {
    let mut cmd = Command::new(bin);
    cmd.env("CNI_COMMAND", inv.command);
    let mut set = |k: &str, v: &Option<String>| match v {
        Some(v) => {
            cmd.env(k, v);
        }
        None => {
            cmd.env_remove(k);
        }
    };
    set("CNI_CONTAINERID", &inv.container_id);
    set("CNI_NETNS", &inv.netns);
    set("CNI_IFNAME", &inv.ifname);
    set("CNI_ARGS", &inv.args);
    let path = std::env::join_paths(&inv.path)
        .map_err(|e| ipam_err(name, "bad CNI_PATH", e.to_string()))?;
    cmd.env("CNI_PATH", path);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| ipam_err(name, format!("cannot run {}", bin.display()), e.to_string()))?;
    let input = serde_json::to_vec(stdin)
        .map_err(|e| ipam_err(name, "encoding its stdin", e.to_string()))?;
    let mut cin = child.stdin.take();
    let mut cout = child.stdout.take();
    let mut cerr = child.stderr.take();
    // Pipes are drained on threads so a chatty plugin cannot block on a
    // full pipe while we wait for it.
    let writer = thread::spawn(move || {
        if let Some(c) = cin.as_mut() {
            let _ = c.write_all(&input);
        }
        drop(cin);
    });
    let out_t = thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(c) = cout.as_mut() {
            let _ = c.read_to_end(&mut v);
        }
        v
    });
    let err_t = thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(c) = cerr.as_mut() {
            let _ = c.read_to_end(&mut v);
        }
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = writer.join();
                return Err(Error::Ipam {
                    plugin: name.to_owned(),
                    code: codes::TRY_AGAIN_LATER,
                    msg: format!(
                        "{} {} did not finish within {timeout:?}; killed",
                        name, inv.command
                    ),
                    details: String::new(),
                });
            }
            Err(e) => return Err(ipam_err(name, "waiting for it", e.to_string())),
        }
    };
    let _ = writer.join();
    let out = out_t.join().unwrap_or_default();
    let err = err_t.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err).trim().to_owned();
    if status.success() {
        if out.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(None);
        }
        return serde_json::from_slice(&out).map(Some).map_err(|e| {
            ipam_err(
                name,
                format!("{} printed no JSON result: {e}", inv.command),
                stderr,
            )
        });
    }
    // An error result: {"code": N, "msg": ..., "details": ...}.
    match serde_json::from_slice::<Value>(&out) {
        Ok(v) if v.get("code").and_then(Value::as_u64).is_some() => Err(Error::Ipam {
            plugin: name.to_owned(),
            code: v["code"].as_u64().unwrap_or(codes::IPAM as u64) as u32,
            msg: v
                .get("msg")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            details: v
                .get("details")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        }),
        _ => Err(ipam_err(
            name,
            format!("{} failed ({status}) without an error result", inv.command),
            stderr,
        )),
    }
}

/// The versions the plugin supports (its VERSION answer), for deciding
/// whether GC and STATUS may be delegated to it.
pub fn supported_versions(name: &str, path: &[PathBuf], timeout: Duration) -> Result<Vec<String>> {
    let inv = Invocation {
        command: "VERSION",
        path: path.to_vec(),
        ..Default::default()
    };
    let v = exec(
        name,
        &inv,
        &serde_json::json!({"cniVersion": "1.0.0"}),
        timeout,
    )?;
    Ok(v.and_then(|v| v.get("supportedVersions").cloned())
        .and_then(|s| serde_json::from_value(s).ok())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, name: &str, body: &str) {
        crate::tests::write_test_script(&dir.join(name), &format!("#!/bin/sh\n{body}\n"));
    }

    fn inv(dir: &Path, cmd: &'static str) -> Invocation {
        Invocation {
            command: cmd,
            container_id: Some("c1".into()),
            netns: Some("/run/netns/x".into()),
            ifname: Some("net1".into()),
            args: None,
            path: vec![PathBuf::from("/nonexistent"), dir.to_owned()],
        }
    }

    #[test]
    fn passes_env_and_stdin_and_reads_result() {
        let t = tempfile::tempdir().unwrap();
        // Echo back what the plugin saw, as JSON.
        script(
            t.path(),
            "echoer",
            r#"in=$(cat); printf '{"cmd":"%s","cid":"%s","if":"%s","stdin":%s}' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_IFNAME" "$in""#,
        );
        let v = exec(
            "echoer",
            &inv(t.path(), "ADD"),
            &serde_json::json!({"a": 1}),
            Duration::from_secs(10),
        )
        .unwrap()
        .unwrap();
        assert_eq!(v["cmd"], "ADD");
        assert_eq!(v["cid"], "c1");
        assert_eq!(v["if"], "net1");
        assert_eq!(v["stdin"]["a"], 1);
    }

    #[test]
    fn error_results_pass_through_and_failures_are_clear() {
        let t = tempfile::tempdir().unwrap();
        script(
            t.path(),
            "full",
            r#"cat >/dev/null; echo '{"cniVersion":"1.0.0","code":11,"msg":"no addresses","details":"range full"}'; exit 1"#,
        );
        let e = exec(
            "full",
            &inv(t.path(), "ADD"),
            &Value::Null,
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert_eq!(e.code(), 11);
        assert!(e.to_string().contains("no addresses"), "{e}");
        script(t.path(), "crash", "echo oops >&2; exit 2");
        let e = exec(
            "crash",
            &inv(t.path(), "ADD"),
            &Value::Null,
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert_eq!(e.code(), codes::IPAM);
        assert!(format!("{e:?}").contains("oops"), "{e:?}");
        script(t.path(), "garbage", "echo not-json");
        let e = exec(
            "garbage",
            &inv(t.path(), "ADD"),
            &Value::Null,
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no JSON"), "{e}");
        let e = exec(
            "missing",
            &inv(t.path(), "ADD"),
            &Value::Null,
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not found in CNI_PATH"), "{e}");
        let e = exec(
            "../bin/sh",
            &inv(t.path(), "ADD"),
            &Value::Null,
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert_eq!(e.code(), 7);
        script(t.path(), "quiet", "cat >/dev/null");
        assert_eq!(
            exec(
                "quiet",
                &inv(t.path(), "DEL"),
                &Value::Null,
                Duration::from_secs(10)
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn hung_plugin_is_killed_after_timeout() {
        let t = tempfile::tempdir().unwrap();
        script(t.path(), "hang", "exec sleep 30");
        let start = Instant::now();
        let e = exec(
            "hang",
            &inv(t.path(), "ADD"),
            &Value::Null,
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert_eq!(e.code(), 11, "{e}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
