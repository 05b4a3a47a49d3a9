//! The CNI protocol: the `CNI_*` environment and the configuration on
//! stdin in, a result or an error result on stdout, in the configuration's
//! own spec version (see [`crate::spec`]).
//!
//! rscni-plugin's `Plugin::run` is not used: it prints every error result
//! in the plugin's newest version, where the spec asks for the
//! configuration's ("`cniVersion`: The same value as provided by the
//! configuration", spec 1.0.0 section 5, Error; "The protocol version in
//! use", spec 1.1.0), and it reads `prevResult` in the 1.0.0 layout only.
//! Its types (the configuration, the result model, the error codes) are
//! used as they are.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use pollux_pci::Sysfs;
use rscni_plugin::types::{CNIResult, Cmd, NetConf};
use serde_json::{json, Value};

use crate::config::Conf;
use crate::host::{Host, RealHost};
use crate::plugin::{self, Env};
use crate::spec::{self, Version};
use crate::state::Cache;
use crate::{CniError, Error, Result};

/// What one invocation prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub exit: i32,
    pub stdout: String,
    pub stderr: String,
}

/// One request, decoded.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) cmd: Cmd,
    pub(crate) version: Version,
    /// The configuration exactly as received (it is what delegated IPAM
    /// plugins get, spec 1.0.0 section 4: "the same environment and
    /// configuration that it received").
    pub(crate) stdin: Value,
    /// The typed view of it, without `prevResult`.
    pub(crate) nc: NetConf,
    /// `prevResult`, still in its own version's layout.
    pub(crate) prev: Option<Value>,
    pub(crate) env: Env,
}

const ABOUT: &str = concat!(
    "pollux-cni ",
    env!("CARGO_PKG_VERSION"),
    ": SR-IOV VFs for pods (DPDK and netdevice mode)"
);

fn error_reply(version: &str, e: &CniError) -> Reply {
    // Spec 1.0.0 section 5, "Error": cniVersion, code, msg, details.
    let v = json!({
        "cniVersion": version,
        "code": u32::from(e),
        "msg": e.msg(),
        "details": e.details(),
    });
    Reply {
        exit: 1,
        stdout: v.to_string(),
        stderr: String::new(),
    }
}

fn ok_reply(stdout: String) -> Reply {
    Reply {
        exit: 0,
        stdout,
        stderr: String::new(),
    }
}

/// Runs one invocation. `env` reads a `CNI_*` variable (an empty one counts
/// as unset); `stdin` reads all of standard input and is called at most
/// once; `interactive` says standard input is a terminal (VERSION then
/// does not wait for it); `host_for` makes the host for a sysfs root.
pub fn dispatch<H: Host>(
    env: &dyn Fn(&str) -> Option<String>,
    stdin: &mut dyn FnMut() -> io::Result<Vec<u8>>,
    interactive: bool,
    host_for: &dyn Fn(PathBuf) -> H,
) -> Reply {
    let Some(cmd_raw) = env("CNI_COMMAND") else {
        // A bare invocation asks what this is.
        return Reply {
            exit: 0,
            stdout: String::new(),
            stderr: format!(
                "{ABOUT}\nCNI protocol versions supported: {}\n",
                Version::all_strings().join(", ")
            ),
        };
    };
    let cmd = cmd_raw.parse::<Cmd>().map_err(|_| {
        CniError::InvalidEnvValue(format!(
            "CNI_COMMAND {cmd_raw:?} is not one of ADD, DEL, CHECK, STATUS, GC, VERSION"
        ))
    });
    if let Ok(Cmd::Version) = cmd {
        return version_reply(stdin, interactive);
    }
    let newest = Version::NEWEST.as_str();
    let bytes = match stdin() {
        Ok(b) => b,
        Err(e) => {
            return error_reply(
                newest,
                &CniError::IOFailure(format!("reading the configuration from stdin: {e}")),
            )
        }
    };
    let mut stdin_v: Value = match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => v,
        Ok(other) => {
            return error_reply(
                newest,
                &CniError::FailedToDecode(format!(
                    "the configuration must be a JSON object, not {}",
                    kind(&other)
                )),
            )
        }
        Err(e) => {
            return error_reply(
                newest,
                &CniError::FailedToDecode(format!("the configuration is not JSON: {e}")),
            )
        }
    };
    // From here on every error is printed in the configuration's version
    // as it was given.
    let declared = match stdin_v.get("cniVersion") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return error_reply(
                newest,
                &CniError::FailedToDecode(format!("cniVersion must be a string, not {other}")),
            )
        }
    };
    let reply_version = match declared.as_deref() {
        None | Some("") => Version::V0_1_0.as_str().to_owned(),
        Some(s) => s.to_owned(),
    };
    let fail = |e: CniError| error_reply(&reply_version, &e);
    let cmd = match cmd {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let Some(version) = Version::declared(declared.as_deref()) else {
        return fail(CniError::IncompatibleVersion(format!(
            "config is {reply_version:?}, plugin supports [{}]",
            Version::all_strings()
                .iter()
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    if !version.allows(cmd) {
        let since = match cmd {
            Cmd::Check => "0.4.0",
            _ => "1.1.0",
        };
        return fail(CniError::IncompatibleVersion(format!(
            "config version {version} does not allow {}: the spec defines it from {since}",
            <&str>::from(cmd)
        )));
    }
    let env = match env_of(env, cmd) {
        Ok(e) => e,
        Err(e) => return fail(e.into_cni()),
    };
    let prev = stdin_v
        .as_object_mut()
        .and_then(|o| o.remove("prevResult"))
        .filter(|p| !p.is_null());
    let nc: NetConf = match serde_json::from_value(stdin_v.clone()) {
        Ok(nc) => nc,
        Err(e) => return fail(CniError::FailedToDecode(format!("configuration: {e}"))),
    };
    if let Err(e) = nc.validate_name() {
        return fail(e);
    }
    if let Some(p) = &prev {
        stdin_v["prevResult"] = p.clone();
    }
    let req = Request {
        cmd,
        version,
        stdin: stdin_v,
        nc,
        prev,
        env,
    };
    let out = match req.cmd {
        Cmd::Add => add(&req, host_for).map(|r| spec::render(req.version, &r).to_string()),
        Cmd::Del => del(&req, host_for).map(|()| String::new()),
        Cmd::Check => check(&req, host_for).map(|()| String::new()),
        Cmd::Gc => gc(&req, host_for).map(|()| String::new()),
        Cmd::Status => status(&req, host_for).map(|()| String::new()),
        // Answered before the configuration was read; kept total.
        Cmd::Version => Ok(version_doc(req.version.as_str())),
    };
    match out {
        Ok(s) => ok_reply(s),
        Err(e) => fail(e.into_cni()),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// VERSION: `cniVersion` is "the value of `cniVersion` specified on
/// input" (spec 1.0.0 and 1.1.0 section 5, Version); without a readable
/// input, the newest version.
fn version_reply(stdin: &mut dyn FnMut() -> io::Result<Vec<u8>>, interactive: bool) -> Reply {
    let input = if interactive {
        None
    } else {
        stdin()
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    };
    let v = input
        .as_ref()
        .and_then(|i| i.get("cniVersion"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(Version::NEWEST.as_str());
    ok_reply(version_doc(v))
}

fn version_doc(v: &str) -> String {
    json!({"cniVersion": v, "supportedVersions": Version::all_strings()}).to_string()
}

/// The `CNI_*` variables a command needs (spec 1.1.0 section 2: ADD and
/// CHECK need CNI_CONTAINERID, CNI_NETNS and CNI_IFNAME, DEL the first and
/// the last, GC CNI_PATH), checked against the spec's character rules
/// before they name any file.
pub(crate) fn env_of(env: &dyn Fn(&str) -> Option<String>, cmd: Cmd) -> Result<Env> {
    let required: &[&str] = match cmd {
        Cmd::Add | Cmd::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
        Cmd::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
        Cmd::Gc => &["CNI_PATH"],
        Cmd::Status | Cmd::Version => &[],
    };
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|k| env(k).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(Error::Cni(CniError::missing_env(&missing)));
    }
    let e = Env {
        container_id: env("CNI_CONTAINERID").unwrap_or_default(),
        netns: env("CNI_NETNS").map(PathBuf::from),
        ifname: env("CNI_IFNAME").unwrap_or_default(),
        args: env("CNI_ARGS"),
        path: env("CNI_PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default(),
    };
    if matches!(cmd, Cmd::Add | Cmd::Del | Cmd::Check) {
        crate::state::check_container_id(&e.container_id)?;
        crate::state::check_ifname(&e.ifname)?;
    }
    Ok(e)
}

pub(crate) fn conf_of(req: &Request) -> Result<Conf> {
    let nc = &req.nc;
    let runtime = nc.runtime_config.as_ref().map(|r| &r.custom);
    let ipam = nc
        .ipam
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| Error::InvalidConfig(format!("ipam: {e}")))?;
    Conf::parse(
        &nc.name,
        req.version.as_str(),
        &nc.custom,
        runtime,
        ipam,
        req.env.args.as_deref(),
    )
}

/// `prevResult` in the model, read in its own version's layout.
pub(crate) fn prev_of(req: &Request) -> Result<Option<CNIResult>> {
    let Some(p) = &req.prev else { return Ok(None) };
    if req.version.layout() == spec::Layout::Ip4Ip6 {
        // Chaining, and `prevResult` with it, came with spec 0.3.0 ("rich
        // result type, plugin chaining"); a 0.2.0 result could not carry
        // the previous plugins' interfaces on.
        return Err(Error::InvalidConfig(format!(
            "prevResult given with cniVersion {}, which has no plugin chaining (spec 0.3.0 \
             introduced it)",
            req.version
        )));
    }
    let v = spec::result_version(p, req.version)
        .map_err(|e| Error::Cni(CniError::IncompatibleVersion(format!("prevResult: {e}"))))?;
    let r = spec::parse(v, p).map_err(|e| {
        Error::Cni(CniError::FailedToDecode(format!(
            "prevResult (cniVersion {v}): {e}"
        )))
    })?;
    spec::check_interface_indices(&r)
        .map_err(|e| Error::InvalidConfig(format!("prevResult: {e}")))?;
    Ok(Some(r))
}

fn custom_map(nc: &NetConf) -> serde_json::Map<String, Value> {
    nc.custom
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn sysfs_root_of(custom: &serde_json::Map<String, Value>) -> PathBuf {
    custom
        .get("sysfsRoot")
        .and_then(Value::as_str)
        .filter(|s| s.starts_with('/'))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/sys"))
}

fn add<H: Host>(req: &Request, host_for: &dyn Fn(PathBuf) -> H) -> Result<CNIResult> {
    let conf = conf_of(req)?;
    let prev = prev_of(req)?;
    let mut host = host_for(conf.sysfs_root.clone());
    plugin::add(&mut host, &conf, &req.stdin, prev.as_ref(), &req.env)
}

fn del<H: Host>(req: &Request, host_for: &dyn Fn(PathBuf) -> H) -> Result<()> {
    // DEL does not need `prevResult` (the attachment record says what to
    // undo), so an unreadable one does not stop it: the spec asks DEL to
    // release as much as it can.
    let custom = custom_map(&req.nc);
    let conf = match conf_of(req) {
        Ok(c) => Some(c),
        Err(e) => {
            plugin::log(
                None,
                crate::config::LogLevel::Info,
                &format!("DEL: configuration does not validate ({e}); using the cache only"),
            );
            None
        }
    };
    let cache = Cache::open(&plugin::cache_dir_of(&custom))?;
    let mut host = host_for(sysfs_root_of(&custom));
    plugin::del(&mut host, &cache, conf.as_ref(), &req.stdin, &req.env)
}

fn check<H: Host>(req: &Request, host_for: &dyn Fn(PathBuf) -> H) -> Result<()> {
    let conf = conf_of(req)?;
    let prev = prev_of(req)?;
    let mut host = host_for(conf.sysfs_root.clone());
    plugin::check(&mut host, &conf, &req.stdin, prev.as_ref(), &req.env)
}

/// Runs `command` on the IPAM plugin only if it says it speaks this
/// configuration's version (GC and STATUS exist from spec 1.1.0; Debian's
/// host-local 1.1.1 does not know them).
fn delegate_if_supported(req: &Request, command: &'static str) -> Result<()> {
    let Some(t) = req.nc.ipam.as_ref().map(|i| i.r#type.clone()) else {
        return Ok(());
    };
    let path = &req.env.path;
    if let Ok(v) = crate::ipam::supported_versions(&t, path, crate::ipam::IPAM_TIMEOUT) {
        if v.iter().any(|s| s == req.version.as_str()) {
            let inv = crate::ipam::Invocation {
                command,
                path: path.clone(),
                ..Default::default()
            };
            crate::ipam::exec(&t, &inv, &req.stdin, crate::ipam::IPAM_TIMEOUT)?;
        }
    }
    Ok(())
}

fn gc<H: Host>(req: &Request, host_for: &dyn Fn(PathBuf) -> H) -> Result<()> {
    let nc = &req.nc;
    let custom = custom_map(nc);
    let cache = Cache::open(&plugin::cache_dir_of(&custom))?;
    let mut host = host_for(sysfs_root_of(&custom));
    let valid: Vec<(String, String)> = nc
        .valid_attachments
        .iter()
        .flatten()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    let r = plugin::gc(&mut host, &cache, &nc.name, &valid, &req.env.path);
    // Stale attachments' addresses were already released by IPAM DEL.
    delegate_if_supported(req, "GC")?;
    r
}

fn status<H: Host>(req: &Request, host_for: &dyn Fn(PathBuf) -> H) -> Result<()> {
    let custom = custom_map(&req.nc);
    let not_ready = |e: Error| Error::Cni(CniError::PluginNotAvailable(format!("{e:#}")));
    Cache::open(&plugin::cache_dir_of(&custom)).map_err(not_ready)?;
    let mut host = host_for(sysfs_root_of(&custom));
    host.sysfs()
        .list()
        .map_err(|e| not_ready(pollux_sriov::Error::from(e).into()))?;
    host.ready().map_err(not_ready)?;
    if let Some(t) = req.nc.ipam.as_ref().map(|i| i.r#type.clone()) {
        crate::ipam::find_plugin(&t, &req.env.path).map_err(not_ready)?;
    }
    delegate_if_supported(req, "STATUS")
}

/// Runs the plugin on the process's environment and stdin; returns the
/// exit code (0 on success; 1 with the error result on stdout otherwise).
pub fn main() -> i32 {
    let env = |k: &str| {
        std::env::var_os(k)
            .map(|v| v.to_string_lossy().into_owned())
            .filter(|v| !v.is_empty())
    };
    // SAFETY: isatty only inspects file descriptor 0; no memory is shared.
    let interactive = unsafe { libc::isatty(0) } == 1;
    let mut read = || {
        let mut b = Vec::new();
        io::stdin().read_to_end(&mut b).map(|_| b)
    };
    let reply = dispatch(&env, &mut read, interactive, &|root| {
        RealHost::new(Sysfs::new(root))
    });
    let _ = io::stderr().write_all(reply.stderr.as_bytes());
    let mut out = io::stdout();
    if out
        .write_all(reply.stdout.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return 1;
    }
    reply.exit
}
