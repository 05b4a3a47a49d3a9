//! The `DevicePlugin` gRPC service of one resource.
//!
//! Device lists come from a `watch` channel that the scanner updates; each
//! `ListAndWatch` stream sends the whole list at once and again whenever
//! what the kubelet sees of it (IDs, health, NUMA node) changes, and ends
//! when the server it belongs to is stopped (so a restart after the kubelet
//! restarted leaves no stream behind).

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::allocate::{self, Granted};
use crate::api::v1beta1 as api;
use crate::api::v1beta1::device_plugin_server::DevicePlugin;
use crate::config::Config;
use crate::devices::{DeviceState, Host, VFIO_PCI};

/// What every resource's service shares with the scanner.
#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub host: Host,
    pub use_cdi: bool,
    pub devinfo_dir: PathBuf,
    /// Per resource, in configuration order: its devices as last scanned.
    pub states: Vec<watch::Sender<Vec<DeviceState>>>,
}

impl Shared {
    /// The options every resource registers with.
    pub fn options() -> api::DevicePluginOptions {
        api::DevicePluginOptions {
            pre_start_required: false,
            get_preferred_allocation_available: true,
        }
    }

    /// The kubelet's view of resource `index`'s devices.
    pub fn api_devices(&self, index: usize) -> Vec<api::Device> {
        let exclude = self.config.resources[index].exclude_topology;
        self.states[index]
            .borrow()
            .iter()
            .map(|d| d.to_api(exclude))
            .collect()
    }
}

/// The service of one resource, for one run of its server.
#[derive(Debug, Clone)]
pub struct ResourceService {
    shared: Arc<Shared>,
    index: usize,
    /// Cancelled when this server is stopped.
    stop: CancellationToken,
}

impl ResourceService {
    pub fn new(shared: Arc<Shared>, index: usize, stop: CancellationToken) -> Self {
        Self {
            shared,
            index,
            stop,
        }
    }

    fn name(&self) -> String {
        self.shared.config.resources[self.index].full_name()
    }

    /// Reads each device now and checks it can be handed out: known to
    /// this resource, bound to its selector's driver, its `/dev/vfio` group
    /// node present. (The PF link is not asked: a link that flaps does not
    /// make the container's device nodes wrong, and a failed Allocate fails
    /// the pod for good.)
    fn grant(&self, ids: &[String]) -> Result<Vec<Granted>, Status> {
        let res = &self.shared.config.resources[self.index];
        let states = self.shared.states[self.index].borrow().clone();
        let mut out = Vec::new();
        for id in ids {
            let Some(state) = states.iter().find(|d| d.id() == *id) else {
                return Err(Status::invalid_argument(format!(
                    "{id} is not a device of {}",
                    res.full_name()
                )));
            };
            let sel = &res.selectors[state.selector];
            let f = self
                .shared
                .host
                .function(state.function.addr)
                .map_err(|e| Status::internal(format!("reading {id}: {e}")))?
                .ok_or_else(|| Status::failed_precondition(format!("{id} is gone")))?;
            sel.usable(&f, &self.shared.host.dev_root)
                .map_err(|why| Status::failed_precondition(format!("{id}: {why}")))?;
            out.push(Granted {
                addr: f.addr,
                pf: f.pf,
                vfio_group: f
                    .iommu_group
                    .filter(|_| f.driver.as_deref() == Some(VFIO_PCI)),
            });
        }
        Ok(out)
    }
}

#[tonic::async_trait]
impl DevicePlugin for ResourceService {
    async fn get_device_plugin_options(
        &self,
        _: Request<api::Empty>,
    ) -> Result<Response<api::DevicePluginOptions>, Status> {
        Ok(Response::new(Shared::options()))
    }

    type ListAndWatchStream = ReceiverStream<Result<api::ListAndWatchResponse, Status>>;

    async fn list_and_watch(
        &self,
        _: Request<api::Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let mut rx = self.shared.states[self.index].subscribe();
        let (tx, out) = mpsc::channel(4);
        let shared = self.shared.clone();
        let index = self.index;
        let stop = self.stop.clone();
        let name = self.name();
        tracing::info!("{name}: ListAndWatch opened");
        tokio::spawn(async move {
            let mut last: Option<Vec<api::Device>> = None;
            loop {
                rx.borrow_and_update();
                let devices = shared.api_devices(index);
                if last.as_ref() != Some(&devices) {
                    let healthy = devices
                        .iter()
                        .filter(|d| d.health == crate::api::HEALTHY)
                        .count();
                    tracing::info!(
                        "{name}: sending {} devices, {healthy} healthy",
                        devices.len()
                    );
                    let msg = api::ListAndWatchResponse {
                        devices: devices.clone(),
                    };
                    if tx.send(Ok(msg)).await.is_err() {
                        break;
                    }
                    last = Some(devices);
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tx.closed() => break,
                    r = rx.changed() => if r.is_err() { break },
                }
            }
            tracing::info!("{name}: ListAndWatch closed");
        });
        Ok(Response::new(ReceiverStream::new(out)))
    }

    async fn get_preferred_allocation(
        &self,
        request: Request<api::PreferredAllocationRequest>,
    ) -> Result<Response<api::PreferredAllocationResponse>, Status> {
        let states = self.shared.states[self.index].borrow().clone();
        let container_responses = request
            .into_inner()
            .container_requests
            .iter()
            .map(|r| {
                let ids = allocate::preferred(
                    &r.available_device_i_ds,
                    &r.must_include_device_i_ds,
                    r.allocation_size,
                    &states,
                );
                tracing::debug!(
                    "{}: preferred {ids:?} of {:?} (must {:?}, size {})",
                    self.name(),
                    r.available_device_i_ds,
                    r.must_include_device_i_ds,
                    r.allocation_size
                );
                api::ContainerPreferredAllocationResponse { device_i_ds: ids }
            })
            .collect();
        Ok(Response::new(api::PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        request: Request<api::AllocateRequest>,
    ) -> Result<Response<api::AllocateResponse>, Status> {
        let res = &self.shared.config.resources[self.index];
        let full = res.full_name();
        let mut container_responses = Vec::new();
        for c in request.into_inner().container_requests {
            tracing::info!("{full}: Allocate {:?}", c.devices_ids);
            let granted = self.grant(&c.devices_ids).inspect_err(|s| {
                tracing::warn!(
                    "{full}: Allocate {:?} refused: {}",
                    c.devices_ids,
                    s.message()
                );
            })?;
            for g in &granted {
                let id = g.addr.to_string();
                let path = allocate::device_info_path(&self.shared.devinfo_dir, &full, &id);
                let di = pollux_sriov::pod::DeviceInfo::pci(g.addr, g.pf);
                pollux_sriov::pod::write_device_info(&path, &di).map_err(|e| {
                    tracing::error!("{full}: {e}");
                    Status::internal(format!("writing the device-info file of {id}: {e}"))
                })?;
            }
            container_responses.push(allocate::container_response(
                res,
                &granted,
                &self.shared.host,
                self.shared.use_cdi,
            ));
        }
        Ok(Response::new(api::AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _: Request<api::PreStartContainerRequest>,
    ) -> Result<Response<api::PreStartContainerResponse>, Status> {
        Ok(Response::new(api::PreStartContainerResponse {}))
    }
}
