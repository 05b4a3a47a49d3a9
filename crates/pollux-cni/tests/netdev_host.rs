//! Netdevice-mode link handling on the host's real kernel, with a veth end
//! standing in for a VF netdev: moved into a network namespace, renamed,
//! re-addressed, brought up, then brought home under its old name. iproute2
//! (`ip -j`) is the judge. Needs root (CAP_NET_ADMIN), as the plugin does.

use std::path::Path;
use std::process::Command;

use pollux_cni::host::{Host, IpSetup, RealHost};
use pollux_cni::state::LinkOrig;
use pollux_pci::Sysfs;
use serde_json::Value;

fn ip(args: &str) -> (bool, String) {
    let o = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .expect("iproute2 is installed");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

fn ip_json(args: &str) -> Value {
    let (ok, out) = ip(args);
    assert!(ok, "ip {args}: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ip {args}: {e}: {out}"))
}

/// Removes the veth pair and the namespace whatever happens.
struct Cleanup {
    ns: String,
    a: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = ip(&format!("link del {}", self.a));
        let _ = ip(&format!("-n {} link del net1", self.ns));
        let _ = ip(&format!("netns del {}", self.ns));
    }
}

#[test]
fn veth_end_goes_into_the_pod_and_comes_home() {
    let id = std::process::id() % 100_000;
    let (a, b, ns) = (format!("pxa{id}"), format!("pxb{id}"), format!("pxns{id}"));
    let _c = Cleanup {
        ns: ns.clone(),
        a: a.clone(),
    };
    let (ok, out) = ip(&format!("link add {a} type veth peer name {b}"));
    assert!(ok, "creating a veth pair needs root: {out}");
    let (ok, out) = ip(&format!("netns add {ns}"));
    assert!(ok, "{out}");
    let orig = ip_json(&format!("-j link show dev {a}"));
    let orig_mac = orig[0]["address"].as_str().unwrap().to_owned();
    let nspath = format!("/var/run/netns/{ns}");
    let nspath = Path::new(&nspath);

    let mut host = RealHost::new(Sysfs::default());
    assert!(host.netns_live(nspath));
    let setup = IpSetup {
        addrs: vec![("169.254.9.2".parse().unwrap(), 24)],
        routes: vec![(
            "169.254.10.0".parse().unwrap(),
            24,
            Some("169.254.9.1".parse().unwrap()),
        )],
    };
    let l = host
        .attach_netdev(
            &a,
            nspath,
            "net1",
            Some("02:00:00:00:09:02".parse().unwrap()),
            Some(1400),
            &setup,
        )
        .unwrap();
    assert_eq!(l.name, "net1");
    assert!(l.up);

    // Judged by iproute2 inside the namespace.
    let j = ip_json(&format!("-n {ns} -j addr show dev net1"));
    assert_eq!(j[0]["address"], "02:00:00:00:09:02");
    assert_eq!(j[0]["mtu"], 1400);
    assert!(
        j[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{j}"
    );
    assert!(
        j[0]["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["local"] == "169.254.9.2" && x["prefixlen"] == 24),
        "{j}"
    );
    let r = ip_json(&format!("-n {ns} -j route show 169.254.10.0/24"));
    assert_eq!(r[0]["gateway"], "169.254.9.1", "{r}");
    assert_eq!(r[0]["dev"], "net1");
    let (ok, _) = ip(&format!("link show dev {a}"));
    assert!(!ok, "gone from the host namespace");
    assert_eq!(
        host.netns_link(nspath, "net1").unwrap().unwrap().mtu,
        Some(1400)
    );

    // Home again under its old name, MAC and MTU, down as it was.
    let orig_link = LinkOrig {
        name: a.clone(),
        mac: Some(orig_mac.parse().unwrap()),
        mtu: Some(1500),
        up: false,
    };
    assert!(host.detach_netdev(nspath, "net1", &orig_link).unwrap());
    let j = ip_json(&format!("-j link show dev {a}"));
    assert_eq!(j[0]["address"], orig_mac.as_str());
    assert_eq!(j[0]["mtu"], 1500);
    assert!(
        !j[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{j}"
    );
    let (ok, _) = ip(&format!("-n {ns} link show dev net1"));
    assert!(!ok, "gone from the pod");
    // Not there any more: detach says so instead of failing.
    assert!(!host.detach_netdev(nspath, "net1", &orig_link).unwrap());
    // A name the kernel refuses is an error, not a panic.
    assert!(host.host_link("a-name-far-too-long").is_err());
    assert!(host.host_link(&b).unwrap().is_some());
}
