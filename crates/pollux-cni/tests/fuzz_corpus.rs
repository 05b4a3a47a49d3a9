//! Replays the cargo-fuzz corpus (crates/pollux-cni/fuzz/corpus) through
//! the fuzz harness on the stable toolchain, so every invocation the
//! fuzzer found interesting, and the sriov-cni style configurations it
//! started from, stay regression tests.

use pollux_cni::fuzz_harness;
use proptest::prelude::*;
use serde_json::{json, Value};

#[path = "../../../tests/support/fuzz_corpus.rs"]
mod corpus;
use corpus::replay;

#[test]
fn corpus_replays_cleanly() {
    assert!(replay("cni", fuzz_harness::cni) > 0, "no corpus for cni");
}

/// Values of the kinds a configuration key may be given, right or wrong.
fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (0i64..5000).prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "",
            "on",
            "off",
            "auto",
            "enable",
            "disable",
            "802.1Q",
            "802.1AD",
            "debug",
            "02:00:00:00:00:01",
            "ff:ff:ff:ff:ff:ff",
            "0000:03:02.0",
            "/var/log/x",
            "relative",
        ])
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]
    /// sriov-cni's keys with values of every kind: the parse refuses or
    /// holds the harness's invariants.
    #[test]
    fn harness_holds_on_random_sriov_configs(
        version in prop::sample::select(vec!["0.1.0", "0.2.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]),
        keys in prop::collection::vec((prop::sample::select(vec![
            "deviceID", "vlan", "vlanQoS", "vlanProto", "mac", "spoofchk", "trust",
            "link_state", "min_tx_rate", "max_tx_rate", "mtu", "logLevel", "logFile",
            "cacheDir", "sysfsRoot", "lockTimeoutMs",
        ]), value()), 0..8),
        runtime in prop::collection::vec((prop::sample::select(vec![
            "mac", "CNIDeviceInfoFile", "ips",
        ]), value()), 0..3),
        args in prop::sample::select(vec![None, Some("MAC=02:00:00:00:00:09"), Some("MAC=zz"), Some("x")]),
    ) {
        let mut c = json!({"cniVersion": version, "name": "n", "type": "pollux-cni",
                           "deviceID": "0000:03:02.0"});
        for (k, v) in keys {
            c[k] = v;
        }
        if !runtime.is_empty() {
            c["runtimeConfig"] = Value::Object(runtime.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
        }
        let mut input = String::from("CNI_COMMAND=ADD\nCNI_CONTAINERID=c1\nCNI_NETNS=/n\nCNI_IFNAME=net1\n");
        if let Some(a) = args {
            input.push_str("CNI_ARGS=");
            input.push_str(a);
            input.push('\n');
        }
        input.push('\n');
        input.push_str(&c.to_string());
        fuzz_harness::cni(input.as_bytes());
    }

    /// prevResult documents with addresses, routes and interface indices
    /// of either family and any index.
    #[test]
    fn harness_holds_on_random_prev_results(
        version in prop::sample::select(vec!["0.2.0", "0.3.0", "0.4.0", "1.0.0", "1.1.0"]),
        ips in prop::collection::vec((prop::sample::select(vec!["10.1.0.5/24", "fd00::5/64", "10.1.0.5", "x"]),
                                      prop::option::of(prop::sample::select(vec!["10.1.0.1", "fd00::1"])),
                                      prop::option::of(-2i64..4)), 0..4),
        routes in prop::collection::vec(prop::sample::select(vec!["0.0.0.0/0", "::/0", "10.0.0.0/8"]), 0..3),
    ) {
        let ips: Vec<Value> = ips.into_iter().map(|(a, gw, i)| {
            let mut m = json!({"address": a});
            if let Some(g) = gw { m["gateway"] = json!(g); }
            if let Some(i) = i { m["interface"] = json!(i); }
            m
        }).collect();
        let routes: Vec<Value> = routes.into_iter().map(|d| json!({"dst": d})).collect();
        let prev = json!({"cniVersion": version, "interfaces": [{"name": "eth0"}], "ips": ips.clone(),
                          "routes": routes.clone(),
                          "ip4": {"ip": "10.1.0.5/24", "routes": routes}});
        let c = json!({"cniVersion": version, "name": "n", "type": "pollux-cni",
                       "deviceID": "0000:03:02.0", "prevResult": prev});
        fuzz_harness::cni(c.to_string().as_bytes());
    }
}
