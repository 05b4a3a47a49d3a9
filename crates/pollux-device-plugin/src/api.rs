//! The kubelet device plugin API v1beta1: the types and gRPC services
//! generated from `proto/api.proto` (by `build.rs`), and the constants the
//! published API defines beside it (kubernetes/kubelet
//! pkg/apis/deviceplugin/v1beta1/constants.go).

/// Generated from `proto/api.proto`: messages, the `Registration` and
/// `DevicePlugin` servers and clients.
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic,
    rustdoc::all
)]
pub mod v1beta1 {
    tonic::include_proto!("v1beta1");
}

/// The API version a plugin registers with.
pub const VERSION: &str = "v1beta1";

/// The directory of the kubelet's and the plugins' sockets.
pub const DEVICE_PLUGIN_PATH: &str = "/var/lib/kubelet/device-plugins/";

/// The kubelet's registration socket.
pub const KUBELET_SOCKET: &str = "/var/lib/kubelet/device-plugins/kubelet.sock";

/// `Device.health` of a usable device.
pub const HEALTHY: &str = "Healthy";

/// `Device.health` of a device the kubelet must not allocate.
pub const UNHEALTHY: &str = "Unhealthy";
