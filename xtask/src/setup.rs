//! `cargo xtask setup`: installs what the whole project needs, from Debian,
//! Debian backports and PyPI only. Idempotent: each part is checked first and
//! skipped when present, so a second run takes about a second.
//!
//! - Debian packages ([`APT_PACKAGES`]): DPDK as a reference, packet tools,
//!   and everything the lab guest runs (the guest uses the host's binaries).
//! - QEMU 11 (igb, virtio-net SR-IOV, the vfio-user client): Debian's
//!   `qemu-system-x86` from trixie-backports. It needs trixie's libc, so it is
//!   installed into a minimal trixie tree made with `debootstrap` under the
//!   lab cache (`<cache>/qemu/tree`) and run through that tree's own loader by
//!   a wrapper script (see [`pollux_lab::env::qemu_dir`]). Nothing of trixie
//!   is installed on the host.
//! - The guest kernel: on bookworm from bookworm-backports (added for the
//!   mirror the machine already uses): the newest `linux-image-*-amd64` that backports'
//!   `linux-image-amd64` depends on, fetched with `apt-get download` and
//!   extracted into the lab cache with `dpkg-deb -x` (never installed), then
//!   `depmod -b`.
//! - virtme-ng from PyPI in a venv in the lab cache.
//!
//! As root it installs; otherwise it prints exactly what is missing and the
//! commands that install it, and fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use pollux_lab::env;

use crate::cmd;

/// Debian packages the project needs on the host (and so in the lab guest).
pub const APT_PACKAGES: &[&str] = &[
    "dpdk-dev",
    "librte-net-null23",
    "librte-net-ring23",
    "tshark",
    "tcpdump",
    "iproute2",
    "ethtool",
    "iputils-ping",
    "busybox-static",
    "kmod",
    "python3-venv",
    "golang-go",
    "golang-github-appc-cni-dev",
    "containernetworking-plugins",
    // The lab's DPDK-mode container: Debian 12's podman 4.3 with crun, its
    // CNI backend calling pollux-cni, the VF through the device plugin's
    // CDI spec.
    "podman",
    "crun",
    // `lspci` for the demo and tests; `file` is how virtme-ng reads a kernel
    // image's version.
    "pciutils",
    "file",
    // Makes the trixie tree that holds the lab's QEMU 11.
    "debootstrap",
];

/// The QEMU package, from trixie-backports inside the trixie tree.
const QEMU_PACKAGE: &str = "qemu-system-x86";
/// The Debian release whose backports carry QEMU 11 (1:11.1.3+ds-2~bpo13+1
/// when this was written), and that release's backports suite.
const QEMU_RELEASE: &str = "trixie";
const QEMU_SUITE: &str = "trixie-backports";

/// virtme-ng, pinned to the version LAB.md verified.
const VIRTME_NG: &str = "virtme-ng==1.42";
const VIRTME_NG_VERSION: &str = "1.42";

const BACKPORTS_FILE: &str = "/etc/apt/sources.list.d/pollux-bookworm-backports.sources";

fn is_root() -> bool {
    // Effective uid, the second field of "Uid:" in /proc/self/status.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn os_codename() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_default()
}

/// On bookworm QEMU >= 8 and the 6.12 kernel come from backports.
fn backports_suite() -> Option<String> {
    (os_codename() == "bookworm").then(|| "bookworm-backports".to_owned())
}

/// Packages of `names` that are not installed.
fn missing_packages(names: &[&str]) -> Result<Vec<String>> {
    // dpkg-query exits 1 when some name is unknown; its stdout still lists
    // the known ones.
    let out = Command::new("dpkg-query")
        .arg("-W")
        .arg("-f=${Package} ${db:Status-Abbrev}\n")
        .args(names)
        .output()
        .context("cannot run dpkg-query (is this a Debian machine?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next()?;
            (it.next()? == "ii").then_some(name)
        })
        .collect();
    Ok(names
        .iter()
        .filter(|n| !installed.contains(n))
        .map(|n| (*n).to_owned())
        .collect())
}

fn apt_sources_mention(suite: &str) -> bool {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(d) = std::fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources")),
        );
    }
    files.iter().any(|f| {
        std::fs::read_to_string(f)
            .map(|s| {
                s.lines()
                    .any(|l| !l.trim_start().starts_with('#') && l.contains(suite))
            })
            .unwrap_or(false)
    })
}

/// The Debian mirror the machine already uses (deb.debian.org if none found).
fn debian_mirror() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    for line in read("/etc/apt/sources.list.d/debian.sources").lines() {
        if let Some(u) = line.strip_prefix("URIs:") {
            if let Some(u) = u.split_whitespace().find(|u| !u.contains("security")) {
                return u.to_owned();
            }
        }
    }
    for line in read("/etc/apt/sources.list").lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.first() == Some(&"deb") && f.len() > 2 && !f[1].contains("security") {
            return f[1].to_owned();
        }
    }
    "http://deb.debian.org/debian".to_owned()
}

/// Adds bookworm-backports for the machine's own mirror, if no source has it.
fn ensure_backports(suite: &str) -> Result<bool> {
    if apt_sources_mention(suite) {
        return Ok(false);
    }
    let text = format!(
        "# Added by `cargo xtask setup` (Pollux): QEMU >= 8 and the lab's guest kernel.\n\
         Types: deb\nURIs: {}\nSuites: {suite}\nComponents: main\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        debian_mirror()
    );
    println!("writing {BACKPORTS_FILE} ({suite})");
    std::fs::write(BACKPORTS_FILE, text)
        .with_context(|| format!("cannot write {BACKPORTS_FILE}"))?;
    Ok(true)
}

fn apt_get() -> Command {
    let mut c = Command::new("apt-get");
    c.env("DEBIAN_FRONTEND", "noninteractive");
    c
}

/// Installs everything; see the module docs.
pub fn setup() -> Result<()> {
    let root = is_root();
    let suite = backports_suite();
    let mut manual: Vec<String> = Vec::new();
    let mut apt_updated = false;

    // Debian packages.
    let missing = missing_packages(APT_PACKAGES)?;
    if missing.is_empty() {
        println!("setup: {} Debian packages present", APT_PACKAGES.len());
    } else if root {
        cmd::run(apt_get().arg("update"))?;
        apt_updated = true;
        cmd::run(
            apt_get()
                .args(["install", "-y", "--no-install-recommends"])
                .args(&missing),
        )?;
    } else {
        manual.push(format!(
            "missing Debian packages: {}\n    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y {}",
            missing.join(" "),
            missing.join(" ")
        ));
    }

    // QEMU 11 in its trixie tree (making it needs root: debootstrap, chroot).
    if std::env::var_os("POLLUX_LAB_QEMU").is_some() || env::qemu_wrapper().is_file() {
        match env::find_qemu() {
            Ok((path, (a, b, c))) => println!("setup: QEMU {a}.{b}.{c} at {}", path.display()),
            Err(e) => manual.push(format!("{e}")),
        }
    } else if root {
        provision_qemu()?;
    } else {
        manual.push(format!(
            "the lab's QEMU 11 ({QEMU_SUITE}'s {QEMU_PACKAGE} in a {QEMU_RELEASE} tree at {}): making that tree needs root (debootstrap, chroot)",
            env::qemu_tree().display()
        ));
    }

    // The guest kernel (no root needed once apt knows the backports suite).
    match env::find_kernel() {
        Ok((image, release)) => println!("setup: guest kernel {release} at {}", image.display()),
        Err(_) => {
            if root {
                if let Some(s) = &suite {
                    if ensure_backports(s)? || !apt_updated {
                        cmd::run(apt_get().arg("update"))?;
                    }
                }
            }
            match provision_kernel(suite.as_deref()) {
                Ok(()) => {}
                Err(e) if !root => manual.push(format!(
                    "the lab's guest kernel: {e:#}\n    (as root: add {} to apt's sources and `apt-get update`, then rerun `cargo xtask setup`)",
                    suite.as_deref().unwrap_or("your release's suite")
                )),
                Err(e) => return Err(e),
            }
        }
    }

    // virtme-ng.
    match virtme_ng_version() {
        Some(v) if v == VIRTME_NG_VERSION => {
            println!("setup: virtme-ng {v} in {}", env::venv_dir().display())
        }
        _ => {
            if let Err(e) = install_virtme_ng() {
                if root {
                    return Err(e);
                }
                manual.push(format!("virtme-ng: {e:#}"));
            }
        }
    }

    if !manual.is_empty() {
        eprintln!("setup: not running as root, and these are missing:");
        for m in &manual {
            eprintln!("  - {m}");
        }
        bail!(
            "the project's requirements are not installed; run the commands above as root, or `cargo xtask setup` as root"
        );
    }
    Ok(())
}

/// Makes `<cache>/qemu`: debootstraps a minimal trixie tree, installs
/// trixie-backports' QEMU into it and writes the wrapper. Works in a
/// `.partial` folder renamed at the end, so an interrupted run leaves nothing
/// that looks finished.
fn provision_qemu() -> Result<()> {
    let started = std::time::Instant::now();
    let dir = env::qemu_dir();
    let partial = env::cache_dir().join("qemu.partial");
    let _ = std::fs::remove_dir_all(&partial);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let tree = partial.join("tree");
    let mirror = debian_mirror();
    println!(
        "setup: making a {QEMU_RELEASE} tree for QEMU 11 in {} (from {mirror})",
        tree.display()
    );
    cmd::run(
        Command::new(sbin("debootstrap"))
            .args(["--variant=minbase", QEMU_RELEASE])
            .arg(&tree)
            .arg(&mirror),
    )
    .context("debootstrap of the QEMU tree failed (is the mirror reachable, and is debian-archive-keyring new enough to know trixie's key?)")?;
    std::fs::write(
        tree.join(format!("etc/apt/sources.list.d/{QEMU_SUITE}.sources")),
        format!(
            "Types: deb\nURIs: {mirror}\nSuites: {QEMU_SUITE}\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        ),
    )?;
    let chroot_apt = |args: &[&str]| {
        let mut c = Command::new(sbin("chroot"));
        c.env("DEBIAN_FRONTEND", "noninteractive")
            .arg(&tree)
            .arg("apt-get")
            .args(args);
        c
    };
    cmd::run(&mut chroot_apt(&["update"]))?;
    cmd::run(&mut chroot_apt(&[
        "install",
        "-y",
        "--no-install-recommends",
        "-t",
        QEMU_SUITE,
        QEMU_PACKAGE,
    ]))
    .with_context(|| {
        format!(
            "installing {QEMU_PACKAGE} from {QEMU_SUITE} into {} failed",
            tree.display()
        )
    })?;
    cmd::run(&mut chroot_apt(&["clean"]))?;
    // The wrapper names the tree's final path; it is written last, and its
    // presence is what says the tree is complete.
    std::fs::rename(&partial, &dir)
        .with_context(|| format!("cannot move {} to {}", partial.display(), dir.display()))?;
    let wrapper = env::qemu_wrapper();
    let tmp = wrapper.with_extension("tmp");
    std::fs::write(&tmp, env::qemu_wrapper_script(&env::qemu_tree()))?;
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    std::fs::rename(&tmp, &wrapper)?;
    let (path, (a, b, c)) = env::find_qemu().map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "setup: QEMU {a}.{b}.{c} at {} (tree made in {:.0} s)",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A program from /usr/sbin or /sbin, which a non-root PATH may lack.
fn sbin(name: &str) -> PathBuf {
    env::which(name)
        .or_else(|| {
            ["/usr/sbin", "/sbin"]
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Reads `Package`/`Version`/`Depends` stanzas of `apt-cache show`.
fn stanzas(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let field = |name: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
        };
        if let (Some(v), Some(d)) = (field("Version:"), field("Depends:")) {
            if let Some(dep) = d.split([',', ' ']).find(|p| p.starts_with("linux-image-")) {
                out.push((v, dep.to_owned()));
            }
        }
    }
    out
}

/// The kernel image package `linux-image-amd64` depends on: from backports
/// when `suite` is given (its versions carry `~bpo`), else the newest.
fn resolve_kernel_package(suite: Option<&str>) -> Result<String> {
    let text = cmd::output(Command::new("apt-cache").args(["show", "linux-image-amd64"]))?;
    let mut candidates: Vec<(String, String)> = stanzas(&text)
        .into_iter()
        .filter(|(v, _)| suite.is_none() || v.contains("bpo"))
        .collect();
    candidates.sort_by(|a, b| {
        let newer = Command::new("dpkg")
            .args(["--compare-versions", &a.0, "gt", &b.0])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if newer {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Less
        }
    });
    match candidates.pop() {
        Some((_, pkg)) => Ok(pkg),
        None => bail!(
            "apt knows no {} linux-image-amd64 (is {} in apt's sources, and apt-get update done?)",
            suite.unwrap_or("suitable"),
            suite.unwrap_or("the release")
        ),
    }
}

/// Downloads, extracts and indexes the guest kernel into the lab cache.
fn provision_kernel(suite: Option<&str>) -> Result<()> {
    let pkg = resolve_kernel_package(suite)?;
    let release = pkg
        .strip_prefix("linux-image-")
        .context("odd kernel package name")?
        .to_owned();
    let dir = env::kernel_cache_dir().join(&release);
    let downloads = env::cache_dir().join("downloads");
    std::fs::create_dir_all(&downloads)
        .with_context(|| format!("cannot create {}", downloads.display()))?;
    println!("setup: fetching the guest kernel {pkg} (not installed on the host)");
    let mut c = apt_get();
    c.current_dir(&downloads).arg("download");
    if let Some(s) = suite {
        c.args(["-t", s]);
    }
    cmd::run(c.arg(&pkg))?;
    let deb = std::fs::read_dir(&downloads)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{pkg}_")))
        })
        .with_context(|| {
            format!(
                "apt-get download left no {pkg}_*.deb in {}",
                downloads.display()
            )
        })?;
    // Not with_extension: the release itself has dots.
    let partial = env::kernel_cache_dir().join(format!("{release}.partial"));
    std::fs::create_dir_all(env::kernel_cache_dir())?;
    let _ = std::fs::remove_dir_all(&partial);
    let _ = std::fs::remove_dir_all(&dir);
    cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&partial))?;
    cmd::run(Command::new(depmod()).arg("-b").arg(&partial).arg(&release))?;
    std::fs::rename(&partial, &dir)
        .with_context(|| format!("cannot move {} to {}", partial.display(), dir.display()))?;
    std::fs::write(dir.join(".complete"), format!("{pkg}\n"))?;
    let _ = std::fs::remove_file(&deb);
    println!("setup: guest kernel {release} in {}", dir.display());
    Ok(())
}

fn depmod() -> PathBuf {
    sbin("depmod")
}

fn virtme_ng_version() -> Option<String> {
    let vng = env::find_vng().ok()?;
    let out = Command::new(vng).arg("--version").output().ok()?;
    // "virtme-ng 1.42"
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .map(str::to_owned)
}

fn install_virtme_ng() -> Result<()> {
    let venv = env::venv_dir();
    // Debian's python3 (python3-venv is in APT_PACKAGES); any python3 else.
    let python = if Path::new("/usr/bin/python3").is_file() {
        PathBuf::from("/usr/bin/python3")
    } else {
        PathBuf::from("python3")
    };
    if !venv.join("bin/pip").is_file() {
        let _ = std::fs::remove_dir_all(&venv);
        cmd::run(Command::new(&python).arg("-m").arg("venv").arg(&venv))?;
    }
    cmd::run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--disable-pip-version-check", "-q"])
            .arg(VIRTME_NG),
    )?;
    match virtme_ng_version() {
        Some(v) if v == VIRTME_NG_VERSION => {
            println!("setup: virtme-ng {v} in {}", venv.display());
            Ok(())
        }
        other => bail!("virtme-ng installed, but `vng --version` says {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_stanzas_give_the_image_package() {
        let text = "Package: linux-image-amd64\nVersion: 6.12.95-1~bpo12+1\nDepends: linux-image-6.12.95+deb12-amd64 (= 6.12.95-1~bpo12+1)\n\n\
                    Package: linux-image-amd64\nVersion: 6.1.192-2\nDepends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)\n";
        assert_eq!(
            stanzas(text),
            vec![
                (
                    "6.12.95-1~bpo12+1".to_owned(),
                    "linux-image-6.12.95+deb12-amd64".to_owned()
                ),
                (
                    "6.1.192-2".to_owned(),
                    "linux-image-6.1.0-56-amd64".to_owned()
                ),
            ]
        );
    }
}
