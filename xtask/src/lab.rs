//! `cargo xtask lab demo|shell|test|bench`.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use pollux_lab::{Lab, LabEnv, LabOptions, Peer, Pf, Topology};

use crate::cmd;

fn lab_err(e: pollux_lab::Error) -> anyhow::Error {
    anyhow!("{e}")
}

/// Builds the guest agent, the one host binary every boot needs.
fn build_agent() -> Result<()> {
    cmd::run(cmd::cargo().args(["build", "-p", "pollux-lab", "--bins"]))
}

/// Checks that the lab can start at all, saying why not.
fn preflight() -> Result<LabEnv> {
    let env = LabEnv::discover().map_err(lab_err)?;
    let (a, b, c) = env.qemu_version;
    println!(
        "lab: QEMU {a}.{b}.{c} ({}), guest kernel {} ({}), vng {}",
        env.qemu.display(),
        env.kernel_release,
        env.kernel.display(),
        env.vng.display()
    );
    Ok(env)
}

/// Names of the `[[test]]` targets declared in pollux-lab's Cargo.toml.
fn lab_test_targets() -> Vec<String> {
    let manifest = std::fs::read_to_string(cmd::root().join("crates/pollux-lab/Cargo.toml"))
        .unwrap_or_default();
    manifest
        .split("[[test]]")
        .skip(1)
        .filter_map(|block| {
            block.lines().find_map(|l| {
                let v = l.trim().strip_prefix("name")?.trim().strip_prefix('=')?;
                Some(v.trim().trim_matches('"').to_owned())
            })
        })
        .collect()
}

/// Builds every binary and example a lab test may start in the guest. If
/// another crate does not build, says so and still builds the lab's own
/// agent, so the lab's tests run; the error is returned for the caller to
/// report after them.
fn build_for_lab() -> Result<Result<()>> {
    let built = cmd::run(cmd::cargo().args(["build", "--workspace", "--bins", "--examples"]))
        // The igbvf tests measure against DPDK with the release `pollux` and
        // run the VF throughput bench once.
        .and_then(|()| cmd::run(cmd::cargo().args(["build", "--release", "-p", "pollux-cli"])))
        // The fault-injection examples the models' violation logs are
        // checked with live behind the PMD crates' `testing` features.
        .and_then(|()| {
            cmd::run(cmd::cargo().args([
                "build",
                "-p",
                "pollux-ixgbevf",
                "--features",
                "testing",
                "--example",
                "ixgbevf_misbehave",
            ]))
        })
        .and_then(|()| {
            cmd::run(cmd::cargo().args([
                "build",
                "-p",
                "pollux-iavf",
                "--features",
                "testing",
                "--example",
                "iavf_misbehave",
            ]))
        })
        .and_then(|()| {
            cmd::run(cmd::cargo().args([
                "bench",
                "-p",
                "pollux-igbvf",
                "--bench",
                "vf_throughput",
                "--no-run",
            ]))
        });
    if let Err(e) = &built {
        eprintln!("lab: the workspace's binaries did not all build ({e:#}); lab tests that need them will fail");
        build_agent()?;
    }
    // The test executables themselves, before any clock starts.
    cmd::run(lab_cargo_test().args(["--no-run"]))?;
    Ok(built)
}

/// `cargo test -p pollux-lab --features lab --tests`, without the `--`.
fn lab_cargo_test() -> std::process::Command {
    let mut c = cmd::cargo();
    c.args(["test", "-p", "pollux-lab", "--features", "lab", "--tests"]);
    c
}

/// The tests of lab test file `target`, by name.
fn list_tests(target: &str) -> Result<Vec<String>> {
    let mut c = cmd::cargo();
    c.args([
        "test",
        "-q",
        "-p",
        "pollux-lab",
        "--features",
        "lab",
        "--test",
        target,
        "--",
        "--list",
        "--format",
        "terse",
    ]);
    let out = cmd::output(&mut c)?;
    Ok(out
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_owned)
        .collect())
}

/// One lab test's outcome.
struct Timed {
    file: String,
    name: String,
    secs: f64,
    ok: bool,
}

/// Runs the selected lab tests one at a time, each in its own `cargo test
/// --exact` process (one guest at a time: two TCG guests on 2 cores starve
/// each other), and prints each test's wall time, the suite's total and the
/// failures. `bench` sets `POLLUX_LAB_BENCH=1`, which tests that measure
/// read to run their long form.
fn run_lab_tests(select: &dyn Fn(&str, &str) -> bool, bench: bool) -> Result<()> {
    let mut plan = Vec::new();
    for target in lab_test_targets() {
        for name in list_tests(&target)? {
            if select(&target, &name) {
                plan.push((target.clone(), name));
            }
        }
    }
    if plan.is_empty() {
        bail!("no lab test matches");
    }
    let t0 = Instant::now();
    let mut done: Vec<Timed> = Vec::new();
    for (file, name) in plan {
        let mut c = cmd::cargo();
        c.args([
            "test",
            "-p",
            "pollux-lab",
            "--features",
            "lab",
            "--test",
            &file,
            "--",
            "--exact",
            &name,
            "--test-threads=1",
            "--nocapture",
        ]);
        if bench {
            c.env("POLLUX_LAB_BENCH", "1");
        }
        let t = Instant::now();
        let ok = cmd::run(&mut c).is_ok();
        let secs = t.elapsed().as_secs_f64();
        println!(
            "lab: {file}::{name} {} in {secs:.0} s",
            if ok { "passed" } else { "FAILED" }
        );
        done.push(Timed {
            file,
            name,
            secs,
            ok,
        });
    }
    let total = t0.elapsed().as_secs_f64();
    println!("\nlab: wall time per test");
    for d in &done {
        println!(
            "lab: {:>6.0} s  {:<6}  {}::{}",
            d.secs,
            if d.ok { "ok" } else { "FAILED" },
            d.file,
            d.name
        );
    }
    let failed: Vec<String> = done
        .iter()
        .filter(|d| !d.ok)
        .map(|d| format!("{}::{}", d.file, d.name))
        .collect();
    println!(
        "lab: {} tests, {} failed, suite took {total:.0} s",
        done.len(),
        failed.len()
    );
    if !failed.is_empty() {
        bail!("lab tests failed: {}", failed.join(", "));
    }
    Ok(())
}

/// `cargo xtask lab test [FILTER]`: builds the host binaries lab tests run in
/// the guest, then every lab test, one at a time, each timed. A FILTER that
/// names a test file (`lab`, `igbvf`, `virtio`, `model`, `ixgbevf`, `bond`,
/// `sriov`) runs that file; any other FILTER selects tests whose name
/// contains it.
pub fn test(filter: Option<&str>) -> Result<()> {
    let built = build_for_lab()?;
    preflight()?;
    let targets = lab_test_targets();
    let r = match filter {
        Some(f) if targets.iter().any(|t| t == f) => run_lab_tests(&|file, _| file == f, false),
        Some(f) => run_lab_tests(&|_, name| name.contains(f), false),
        None => run_lab_tests(&|_, _| true, false),
    };
    r?;
    built
}

/// The lab tests that measure against DPDK; `cargo xtask lab bench` runs
/// them in their long form (`POLLUX_LAB_BENCH=1`), the suite in a short one.
/// The virtio, ixgbevf and iavf files' comparisons are checks of their one
/// boot, so those whole files run.
const BENCH_TESTS: &[&str] = &[
    "side_by_side_with_dpdk_igbvf",
    "virtio_checks_in_one_boot",
    "ixgbevf_checks_in_one_boot",
    "iavf_checks_in_one_boot",
];

/// `cargo xtask lab bench`: the long side-by-side measurements against DPDK
/// (several interleaved rounds, the ratio asserted), for docs/performance.md.
pub fn bench() -> Result<()> {
    let built = build_for_lab()?;
    preflight()?;
    run_lab_tests(&|_, name| BENCH_TESTS.contains(&name), true)?;
    built
}

fn show(lab: &Lab, title: &str, command: &str) -> Result<String> {
    println!("\n--- {title}\n# {command}");
    let out = lab.run(command, Duration::from_secs(60)).map_err(lab_err)?;
    print!("{}", out.stdout);
    if !out.stderr.is_empty() {
        print!("{}", out.stderr);
    }
    if !out.success() {
        bail!("`{command}` failed in the guest ({})", out.status);
    }
    Ok(out.stdout)
}

/// `cargo xtask lab demo`: boots the default topology and runs [`demo_steps`].
pub fn demo() -> Result<()> {
    // The README's one command for the main job: provision on a fresh
    // machine too (idempotent; half a second when everything is there).
    crate::setup::setup()?;
    build_agent()?;
    cmd::run(cmd::cargo().args(["build", "-p", "pollux-cli"]))?;
    preflight()?;
    let topo = Topology::default_demo();
    println!("lab demo: booting 1 igb PF with 2 VFs and a virtio-net peer (TCG, 15-40 s)...");
    let lab = Lab::boot_with(
        &topo,
        LabOptions {
            name: "demo".into(),
            ..LabOptions::default()
        },
    )
    .map_err(lab_err)?;
    println!(
        "lab demo: guest {} answered after {:.1} s, ready after {:.1} s",
        lab.guest_kernel(),
        lab.boot_time().as_secs_f64(),
        lab.ready_time().as_secs_f64()
    );
    let r = demo_steps(&lab);
    if r.is_err() {
        lab.keep_run_dir();
    }
    lab.shutdown().map_err(lab_err)?;
    r
}

/// What the demo does with a booted guest. Extend it here: when the igbvf
/// PMD lands, start `pollux` on the vfio-bound VF with `lab.spawn`, ping it
/// from the peer, and print its stats with `GuestProcess::poll`.
pub fn demo_steps(lab: &Lab) -> Result<()> {
    let pf = lab.pf(0).map_err(lab_err)?.clone();
    let peer = lab.peer(0, 0).map_err(lab_err)?.clone();
    println!(
        "\nPF 0: {} ({}), QEMU netdev {}; peer {} ({:?}) in netns {}",
        pf.pci,
        pf.ifname,
        pf.netdev,
        peer.ifname,
        peer.model,
        peer.netns.as_deref().unwrap_or("(root)")
    );
    show(
        lab,
        "the igb PF (8086:10c9) and its SR-IOV VFs (8086:10ca)",
        "lspci -nn -d 8086:10c9; lspci -nn -d 8086:10ca",
    )?;
    show(
        lab,
        "VFs made by the PF",
        &format!("cat /sys/bus/pci/devices/{}/sriov_numvfs; ls -l /sys/bus/pci/devices/{}/ | grep virtfn", pf.pci, pf.pci),
    )?;

    let vf = lab.vf(0, 0).map_err(lab_err)?.clone();
    println!("\n--- binding VF 0 ({}) to vfio-pci", vf.pci);
    let dev = lab.bind_vfio(&vf).map_err(lab_err)?;
    show(
        lab,
        "VF 0's driver and its VFIO group",
        &format!(
            "readlink /sys/bus/pci/devices/{}/driver; ls -l /dev/vfio/",
            vf.pci
        ),
    )?;
    println!("VF 0 is ready for a userspace driver at {}", dev.display());

    show(
        lab,
        "addresses on the wire (PF in the root namespace, peer in its own)",
        &format!(
            "ip addr add 169.254.10.1/24 dev {} && {}",
            pf.ifname,
            peer.wrap(&format!("ip addr add 169.254.10.2/24 dev {}", peer.ifname))
        ),
    )?;
    let ping = peer.wrap("ping -c 3 -i 0.5 -W 2 169.254.10.1");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match show(
            lab,
            "kernel-to-kernel ping over the wire (peer -> PF)",
            &ping,
        ) {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                println!("(link still coming up: {e}; retrying)");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }

    igbvf_demo(lab, &vf, &peer)
}

/// The main job: `pollux testpmd` on VF 0 with the igbvf PMD, macswap
/// forwarding, while the peer's kernel (pktgen) sends it frames; live stats
/// every second, then the summary and what the peer got back.
fn igbvf_demo(lab: &Lab, vf: &pollux_lab::VfInfo, peer: &pollux_lab::PeerInfo) -> Result<()> {
    let pollux = pollux_lab::host_binary("pollux").map_err(lab_err)?;
    println!(
        "\n--- pollux testpmd on VF 0 ({}) with the igbvf PMD, macswap forwarding",
        vf.pci
    );
    let mut tp = lab
        .spawn(&format!(
            "exec {} testpmd -a {} --fwd macswap --stats-period 1",
            pollux.display(),
            vf.pci
        ))
        .map_err(lab_err)?;
    tp.wait_for_output("forwarding:", Duration::from_secs(60))
        .map_err(lab_err)?;
    let mac = tp
        .stdout()
        .lines()
        .find_map(|l| l.split("MAC ").nth(1).map(|r| r[..17].to_string()))
        .ok_or_else(|| anyhow!("testpmd printed no MAC:\n{}", tp.stdout()))?;
    print!("{}", tp.stdout());
    let rx_before = peer_counter(lab, peer, "rx_packets")?;
    let pktgen = format!(
        "modprobe pktgen && PG=/proc/net/pktgen && echo rem_device_all > $PG/kpktgend_0 && \
         echo 'add_device {if}' > $PG/kpktgend_0 && echo 'count 50000' > $PG/{if} && \
         echo 'pkt_size 60' > $PG/{if} && echo 'delay 20000' > $PG/{if} && \
         echo 'dst 169.254.10.1' > $PG/{if} && echo 'dst_mac {mac}' > $PG/{if} && \
         echo start > $PG/pgctrl && grep Result $PG/{if}",
        if = peer.ifname
    );
    println!("--- the peer's kernel sends 50000 frames to {mac} with pktgen; testpmd swaps the MACs and sends them back");
    let mut gen = lab.spawn(&peer.wrap(&pktgen)).map_err(lab_err)?;
    let mut shown = tp.stdout().len();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        tp.poll().map_err(lab_err)?;
        let out = tp.stdout();
        if out.len() > shown {
            print!("{}", &out[shown..]);
            shown = out.len();
        }
        if gen.poll().map_err(lab_err)?.is_some() || Instant::now() > deadline {
            break;
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let g = gen.wait(Duration::from_secs(10)).map_err(lab_err)?;
    println!("pktgen: {}", g.stdout.trim());
    let out = tp.stop_with(2, Duration::from_secs(20)).map_err(lab_err)?;
    print!("{}", &out.stdout[shown.min(out.stdout.len())..]);
    let back = peer_counter(lab, peer, "rx_packets")? - rx_before;
    println!("the peer's kernel received {back} frames back from the VF");
    if !out.status.success() {
        bail!("pollux testpmd failed ({}):\n{}", out.status, out.stderr);
    }
    Ok(())
}

fn peer_counter(lab: &Lab, peer: &pollux_lab::PeerInfo, name: &str) -> Result<u64> {
    let cmd = peer.wrap(&format!(
        "cat /sys/class/net/{}/statistics/{name}",
        peer.ifname
    ));
    let out = lab.run(&cmd, Duration::from_secs(60)).map_err(lab_err)?;
    out.stdout
        .trim()
        .parse()
        .with_context(|| format!("{name}: {}", out.stdout))
}

/// Options of `cargo xtask lab shell`.
#[derive(Debug, clap::Args)]
pub struct ShellArgs {
    /// Number of igb PFs.
    #[arg(long, default_value_t = 1)]
    pfs: u8,
    /// VFs per PF (at most 7).
    #[arg(long, default_value_t = 2)]
    vfs: u8,
    /// Use e1000e peers instead of virtio-net.
    #[arg(long)]
    e1000e: bool,
    /// Bind every VF to vfio-pci at boot.
    #[arg(long)]
    vfio: bool,
    /// Kill a command after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

const SHELL_HELP: &str = "\
Each line runs with /bin/sh -c in the guest (as root; no terminal, so no
full-screen programs). Output streams back; Ctrl-D or :quit ends the guest.
  :info                     PFs, VFs, peers, netdev ids, run folder
  :link NETDEV on|off       QEMU set_link on one wire end (e.g. pf0, pf0-peer0)
  :wire PF on|off           both ends of PF's wire (unplug/replug the cable)
  :hmp COMMAND              QEMU monitor command (e.g. info network)
  :quit                     shut the guest down";

fn print_info(lab: &Lab) {
    for pf in lab.pfs() {
        println!(
            "PF {}: {} {} mac {} (netdev {})",
            pf.index, pf.pci, pf.ifname, pf.mac, pf.netdev
        );
        for vf in &pf.vfs {
            println!(
                "  VF {}: {} iommu group {}",
                vf.index,
                vf.pci,
                vf.iommu_group.map_or("-".into(), |g| g.to_string())
            );
        }
        for p in &pf.peers {
            println!(
                "  peer {} {:?} {} mac {} netns {} (netdev {})",
                p.ifname,
                p.model,
                p.pci,
                p.mac,
                p.netns.as_deref().unwrap_or("(root)"),
                p.netdev
            );
        }
    }
    println!(
        "run folder: {} (console.log, transcript.log)",
        lab.run_dir().display()
    );
}

fn on_off(word: Option<&str>) -> Result<bool> {
    match word {
        Some("on" | "up") => Ok(true),
        Some("off" | "down") => Ok(false),
        other => bail!("expected on or off, got {other:?}"),
    }
}

fn shell_line(lab: &Lab, line: &str, timeout: Duration) -> Result<bool> {
    let mut words = line.split_whitespace();
    match words.next() {
        Some(":quit" | ":q" | ":exit") => return Ok(false),
        Some(":help" | ":h") => println!("{SHELL_HELP}"),
        Some(":info") => print_info(lab),
        Some(":link") => {
            let netdev = words.next().context("usage: :link NETDEV on|off")?;
            lab.set_link(netdev, on_off(words.next())?)
                .map_err(lab_err)?;
        }
        Some(":wire") => {
            let pf: usize = words.next().context("usage: :wire PF on|off")?.parse()?;
            lab.set_wire_link(pf, on_off(words.next())?)
                .map_err(lab_err)?;
        }
        Some(":hmp") => {
            let rest = line.trim_start().trim_start_matches(":hmp").trim();
            print!("{}", lab.hmp(rest).map_err(lab_err)?);
        }
        Some(w) if w.starts_with(':') => bail!("unknown lab command {w}; :help lists them"),
        _ => {
            let mut p = lab.spawn(line).map_err(lab_err)?;
            p.close_stdin().map_err(lab_err)?;
            let deadline = Instant::now() + timeout;
            let (mut out_seen, mut err_seen) = (0, 0);
            loop {
                let status = p.poll().map_err(lab_err)?;
                print!("{}", &p.stdout()[out_seen..]);
                eprint!("{}", &p.stderr()[err_seen..]);
                out_seen = p.stdout().len();
                err_seen = p.stderr().len();
                std::io::stdout().flush()?;
                if let Some(st) = status {
                    if !st.success() {
                        println!("[{st}]");
                    }
                    break;
                }
                if Instant::now() >= deadline {
                    println!("[still running after {} s: killed]", timeout.as_secs());
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    Ok(true)
}

/// `cargo xtask lab shell`: a guest to poke at, with the lab's set-up done.
pub fn shell(args: &ShellArgs) -> Result<()> {
    build_agent()?;
    preflight()?;
    let mut topo = Topology::new();
    for _ in 0..args.pfs {
        let peer = if args.e1000e {
            Peer::e1000e()
        } else {
            Peer::virtio()
        };
        topo = topo.pf(Pf::new(args.vfs)
            .peer(peer)
            .bind_vfs_to_vfio(args.vfio && args.vfs > 0));
    }
    println!("lab shell: booting (TCG, 15-40 s)...");
    let lab = Lab::boot_with(
        &topo,
        LabOptions {
            name: "shell".into(),
            ..LabOptions::default()
        },
    )
    .map_err(lab_err)?;
    print_info(&lab);
    println!("{SHELL_HELP}");
    let timeout = Duration::from_secs(args.timeout);
    let stdin = std::io::stdin();
    loop {
        print!("lab# ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            println!();
            break;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match shell_line(&lab, line, timeout) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => println!("error: {e:#}"),
        }
    }
    lab.shutdown().map_err(lab_err)
}
