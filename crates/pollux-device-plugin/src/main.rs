//! `pollux-device-plugin`: the kubelet device plugin daemon (see the crate
//! docs and README.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pollux_device_plugin::config::{Config, DEFAULT_CONFIG_FILE, DEFAULT_RESOURCE_PREFIX};
use pollux_device_plugin::plugin::{self, Options};
use pollux_device_plugin::{allocate, api, cdi};
use tokio_util::sync::CancellationToken;

/// A kubelet device plugin for SR-IOV VFs bound to vfio-pci, configured by
/// the SR-IOV network device plugin's config.json.
#[derive(Debug, Parser)]
#[command(name = "pollux-device-plugin", version)]
struct Args {
    /// The SR-IOV network device plugin's resource configuration.
    #[arg(long, default_value = DEFAULT_CONFIG_FILE)]
    config_file: PathBuf,
    /// Prefix of resources that set no resourcePrefix.
    #[arg(long, default_value = DEFAULT_RESOURCE_PREFIX)]
    resource_prefix: String,
    /// The kubelet's registration socket.
    #[arg(long, default_value = api::KUBELET_SOCKET)]
    kubelet_socket: PathBuf,
    /// Where the plugin's sockets go [default: the kubelet socket's directory].
    #[arg(long)]
    plugin_dir: Option<PathBuf>,
    /// Write CDI specs and name CDI devices in Allocate.
    #[arg(long)]
    use_cdi: bool,
    /// Where CDI specs are written.
    #[arg(long, default_value = cdi::DEFAULT_CDI_DIR)]
    cdi_dir: PathBuf,
    /// Root of the sysfs tree to read.
    #[arg(long, default_value = "/sys")]
    sysfs_root: PathBuf,
    /// Root of the device nodes (/dev/vfio/...) to check and hand out.
    #[arg(long, default_value = "/dev")]
    dev_root: PathBuf,
    /// Where device-info files are written at Allocate.
    #[arg(long, default_value = allocate::DEFAULT_DEVINFO_DIR)]
    devinfo_dir: PathBuf,
    /// How often sysfs is read for health changes and new devices
    /// (500ms, 2s, 2).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    poll_interval: Duration,
    /// How often the sockets are checked for a kubelet restart and an
    /// unanswered registration is retried.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    watch_interval: Duration,
}

/// `500ms`, `2s`, or seconds as a plain number (`0.5`, `2`); at least 10 ms.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, scale) = if let Some(ms) = s.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(sec) = s.strip_suffix('s') {
        (sec, 1.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (like 500ms, 2s or 2)"))?;
    let d = Duration::try_from_secs_f64(v * scale).map_err(|e| format!("{s:?}: {e}"))?;
    if d < Duration::from_millis(10) {
        return Err(format!("{s:?} is shorter than 10ms"));
    }
    Ok(d)
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&*e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("pollux-device-plugin: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::load(&args.config_file, &args.resource_prefix)?;
    let kubelet_dir = args
        .kubelet_socket
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let plugin_dir = match args.plugin_dir {
        Some(d) => {
            if d != kubelet_dir {
                tracing::warn!(
                    "--plugin-dir {} is not the kubelet socket's directory {}: the kubelet looks for the registered endpoint in its own directory",
                    d.display(),
                    kubelet_dir.display()
                );
            }
            d
        }
        None => kubelet_dir,
    };
    let opts = Options {
        kubelet_socket: args.kubelet_socket,
        plugin_dir,
        sysfs_root: args.sysfs_root,
        dev_root: args.dev_root,
        devinfo_dir: args.devinfo_dir,
        use_cdi: args.use_cdi,
        cdi_dir: args.cdi_dir,
        poll_interval: args.poll_interval,
        watch_interval: args.watch_interval,
        ..Options::new(config)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
            }
            signals.cancel();
        });
        plugin::run(opts, shutdown).await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("0.25").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("1ms").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
