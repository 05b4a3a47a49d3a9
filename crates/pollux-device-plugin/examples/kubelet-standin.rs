//! A kubelet stand-in, to try pollux-device-plugin where there is no
//! kubelet (a lab guest, a workstation). It is the integration tests' stand-in
//! (`tests/common`): it serves `Registration` on `<dir>/kubelet.sock`, dials
//! every plugin that registers, keeps its `ListAndWatch` stream open, and
//! prints each event as one JSON line on stdout:
//!
//! ```text
//! {"event":"registered","resource":"pollux.example/igb_vf_dpdk","endpoint":"pollux.example_igb_vf_dpdk.sock","version":"v1beta1"}
//! {"event":"list","resource":"pollux.example/igb_vf_dpdk","devices":[{"id":"0000:01:10.0","health":"Healthy","numa":0}]}
//! {"event":"preferred","resource":"...","devices":["0000:01:10.0"]}
//! {"event":"allocated","resource":"...","envs":{...},"devices":[...],"cdi_devices":[...]}
//! {"event":"stream-ended","resource":"..."}
//! ```
//!
//! `--prefer RESOURCE=N` and `--allocate RESOURCE=ID,ID` are called once,
//! after the first list of that resource. It exits after `--duration`
//! seconds or on SIGINT/SIGTERM.
//!
//! ```sh
//! kubelet-standin --dir /run/dp --allocate pollux.example/igb_vf_dpdk=0000:01:10.0 &
//! pollux-device-plugin --config-file config.json --kubelet-socket /run/dp/kubelet.sock
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use pollux_device_plugin::api::v1beta1 as api;
use serde_json::json;

#[derive(Debug, Parser)]
struct Args {
    /// The device plugin directory; kubelet.sock is served there.
    #[arg(long)]
    dir: PathBuf,
    /// After the first list of RESOURCE, ask for N preferred devices out of
    /// all listed: RESOURCE=N.
    #[arg(long)]
    prefer: Vec<String>,
    /// After the first list of RESOURCE, allocate these devices to one
    /// container: RESOURCE=ID[,ID...].
    #[arg(long)]
    allocate: Vec<String>,
    /// Exit after this many seconds.
    #[arg(long, default_value_t = 60)]
    duration: u64,
}

fn emit(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn split(arg: &str) -> (String, String) {
    match arg.split_once('=') {
        Some((r, v)) => (r.to_owned(), v.to_owned()),
        None => {
            eprintln!("kubelet-standin: {arg:?} is not RESOURCE=VALUE");
            std::process::exit(2);
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let prefer: Vec<(String, String)> = args.prefer.iter().map(|a| split(a)).collect();
    let allocate: Vec<(String, String)> = args.allocate.iter().map(|a| split(a)).collect();
    let _ = std::fs::remove_file(args.dir.join("kubelet.sock"));
    let kubelet = common::Kubelet::start(&args.dir).await;
    let mut rx = kubelet.subscribe();
    let end = tokio::time::Instant::now() + Duration::from_secs(args.duration);
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    let (mut regs, mut lists, mut errors) = (0, 0, 0);
    let mut ended: std::collections::HashMap<String, usize> = Default::default();
    let mut served: HashSet<String> = HashSet::new();
    loop {
        rx.borrow_and_update();
        let (new_regs, new_lists, new_errors, now_ended) = kubelet.seen(|s| {
            (
                s.registrations[regs..].to_vec(),
                s.lists[lists..].to_vec(),
                s.errors[errors..].to_vec(),
                s.streams_ended.clone(),
            )
        });
        regs += new_regs.len();
        lists += new_lists.len();
        errors += new_errors.len();
        for r in new_regs {
            emit(
                json!({"event": "registered", "resource": r.resource_name, "endpoint": r.endpoint, "version": r.version}),
            );
        }
        for e in new_errors {
            emit(json!({"event": "error", "message": e}));
        }
        for (resource, n) in &now_ended {
            for _ in ended.get(resource).copied().unwrap_or(0)..*n {
                emit(json!({"event": "stream-ended", "resource": resource}));
            }
        }
        ended = now_ended;
        for (resource, _, devices) in new_lists {
            let ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
            emit(
                json!({"event": "list", "resource": resource, "devices": common::devs(&devices)
                .into_iter()
                .map(|(id, health, numa)| json!({"id": id, "health": health, "numa": numa}))
                .collect::<Vec<_>>()}),
            );
            if !served.insert(resource.clone()) {
                continue;
            }
            let mut client = kubelet.client(&resource).await;
            for (_, n) in prefer.iter().filter(|(r, _)| *r == resource) {
                let req = api::PreferredAllocationRequest {
                    container_requests: vec![api::ContainerPreferredAllocationRequest {
                        available_device_i_ds: ids.clone(),
                        must_include_device_i_ds: vec![],
                        allocation_size: n.parse().unwrap_or(1),
                    }],
                };
                match client.get_preferred_allocation(req).await {
                    Ok(r) => emit(json!({"event": "preferred", "resource": resource,
                        "devices": r.into_inner().container_responses.into_iter().flat_map(|c| c.device_i_ds).collect::<Vec<_>>()})),
                    Err(e) => emit(
                        json!({"event": "preferred-failed", "resource": resource, "code": format!("{:?}", e.code()), "message": e.message()}),
                    ),
                }
            }
            for (_, ids) in allocate.iter().filter(|(r, _)| *r == resource) {
                let req = api::AllocateRequest {
                    container_requests: vec![api::ContainerAllocateRequest {
                        devices_ids: ids.split(',').map(str::to_owned).collect(),
                    }],
                };
                match client.allocate(req).await {
                    Ok(r) => {
                        for c in r.into_inner().container_responses {
                            emit(
                                json!({"event": "allocated", "resource": resource, "envs": c.envs,
                                "devices": c.devices.iter().map(|d| json!({"container_path": d.container_path, "host_path": d.host_path, "permissions": d.permissions})).collect::<Vec<_>>(),
                                "cdi_devices": c.cdi_devices.iter().map(|d| d.name.clone()).collect::<Vec<_>>()}),
                            );
                        }
                    }
                    Err(e) => emit(
                        json!({"event": "allocate-failed", "resource": resource, "code": format!("{:?}", e.code()), "message": e.message()}),
                    ),
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(end) => break,
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            r = rx.changed() => if r.is_err() { break },
        }
    }
    let _ = std::fs::remove_file(args.dir.join("kubelet.sock"));
}
