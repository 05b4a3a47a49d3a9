//! `pollux devices` (being written).
#[derive(clap::Args, Debug)]
pub struct DevicesArgs {}
pub fn run(_args: &DevicesArgs) -> anyhow::Result<()> {
    anyhow::bail!("pollux devices is not written yet")
}
