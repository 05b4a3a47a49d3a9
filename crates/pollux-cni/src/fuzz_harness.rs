//! Entry points shared by the cargo-fuzz targets (crates/pollux-cni/fuzz)
//! and the corpus replay test, so the stable test suite runs every input
//! the fuzzer ever kept. Each asserts invariants beyond "does not panic".
//!
//! Only the decoding half of an invocation is driven: ADD, DEL and CHECK
//! write the cache directory the configuration names, which no fuzzer may
//! be allowed to choose.

use rscni_plugin::types::{Cmd, NetConf};
use serde_json::Value;

use crate::cni::{conf_of, env_of, prev_of, Request};
use crate::config::{mac_from_cni_args, Conf};
use crate::plugin::Env;
use crate::spec::{self, Version};
use crate::state::{check_container_id, check_ifname};

/// One invocation's input: `KEY=VALUE` lines (the `CNI_*` environment)
/// up to the first empty line when the input starts with `CNI_`, then the
/// configuration as stdin; an input that does not start with `CNI_` is
/// all configuration, run as an ADD of `net1` in container `c1`.
///
/// Asserts: an environment that is accepted holds a valid container ID
/// and interface name, and a `CNI_ARGS` MAC prints and parses back to
/// itself; an accepted configuration parses the same twice (no
/// dependence on map order) and again after the configuration is
/// re-serialised, survives a JSON round trip of [`Conf`] and holds only
/// values the kernel can take; a `prevResult` read in any version renders
/// to a document that reads back to the same rendering.
pub fn cni(data: &[u8]) {
    let (head, body) = split(data);
    let vars: Vec<(&str, &str)> = head.lines().filter_map(|l| l.split_once('=')).collect();
    // As main() reads the environment: an empty variable counts as unset.
    let getenv = |k: &str| {
        vars.iter()
            .rev()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
            .filter(|v| !v.is_empty())
    };
    let cmd = getenv("CNI_COMMAND")
        .and_then(|c| c.parse::<Cmd>().ok())
        .filter(|c| *c != Cmd::Version)
        .unwrap_or(Cmd::Add);
    let env = match env_of(&getenv, cmd) {
        Ok(e) => {
            if matches!(cmd, Cmd::Add | Cmd::Del | Cmd::Check) {
                assert!(check_container_id(&e.container_id).is_ok());
                assert!(check_ifname(&e.ifname).is_ok());
                assert!((1..=15).contains(&e.ifname.len()) && !e.ifname.contains('/'));
            }
            e
        }
        Err(_) => Env {
            args: getenv("CNI_ARGS"),
            ..Env::default()
        },
    };
    if let Ok(Some(m)) = mac_from_cni_args(env.args.as_deref()) {
        assert_eq!(m.to_string().parse().ok(), Some(m));
    }
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let declared = match obj.get("cniVersion") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return,
    };
    let Some(version) = Version::declared(declared.as_deref()) else {
        return;
    };
    let prev = obj.remove("prevResult").filter(|p| !p.is_null());
    if let Some(p) = &prev {
        results(p);
    }
    let Ok(nc) = serde_json::from_value::<NetConf>(Value::Object(obj.clone())) else {
        return;
    };
    if nc.validate_name().is_err() {
        return;
    }
    let req = |nc: NetConf| Request {
        cmd,
        version,
        stdin: Value::Object(obj.clone()),
        nc,
        prev: prev.clone(),
        env: env.clone(),
    };
    let r = req(nc.clone());
    let conf = conf_of(&r);
    assert_eq!(
        conf.as_ref().ok(),
        conf_of(&r).as_ref().ok(),
        "parsing twice gives the same"
    );
    if let Ok(c) = &conf {
        check_conf(c, &nc);
        let again = serde_json::to_value(&nc)
            .and_then(serde_json::from_value::<NetConf>)
            .expect("a NetConf re-serialises");
        assert_eq!(
            conf_of(&req(again)).ok().as_ref(),
            Some(c),
            "re-serialised configuration parses the same"
        );
    }
    if let Ok(Some(p)) = prev_of(&r) {
        assert!(spec::check_interface_indices(&p).is_ok());
    }
}

fn split(data: &[u8]) -> (&str, &[u8]) {
    if !data.starts_with(b"CNI_") {
        return (
            "CNI_COMMAND=ADD\nCNI_CONTAINERID=c1\nCNI_NETNS=/run/netns/c1\nCNI_IFNAME=net1",
            data,
        );
    }
    let at = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(data.len());
    let head = std::str::from_utf8(&data[..at]).unwrap_or("");
    (head, data.get(at + 2..).unwrap_or(&[]))
}

fn check_conf(c: &Conf, nc: &NetConf) {
    assert_eq!(c.name, nc.name);
    if let Some(v) = c.vlan {
        assert!(v.id < 4096 && v.qos < 8, "{v:?}");
    }
    if let Some(m) = c.mac {
        assert!(!m.is_zero() && !m.is_multicast(), "{m}");
    }
    let json = serde_json::to_string(c).expect("a Conf serialises");
    let back: Conf = serde_json::from_str(&json).expect("and parses back");
    assert_eq!(&back, c);
}

/// A `prevResult` read as each version: what is accepted renders to a
/// document that reads back, in the same version, to the same rendering.
fn results(p: &Value) {
    for s in Version::all_strings() {
        let v = Version::parse(s).expect("listed");
        let Ok(r) = spec::parse(v, p) else { continue };
        let out = spec::render(v, &r);
        let r2 = spec::parse(v, &out)
            .unwrap_or_else(|e| panic!("{v} cannot read its own rendering {out}: {e}"));
        assert_eq!(spec::render(v, &r2), out, "{v}");
    }
}
