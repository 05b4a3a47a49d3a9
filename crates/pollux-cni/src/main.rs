//! `pollux-cni`: the CNI plugin binary (see the crate docs).

fn main() {
    std::process::exit(pollux_cni::cni::main());
}
