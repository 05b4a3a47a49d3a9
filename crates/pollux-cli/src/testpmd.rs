//! `pollux testpmd` (being written).
#[derive(clap::Args, Debug)]
pub struct TestpmdArgs {}
pub fn run(_args: TestpmdArgs) -> anyhow::Result<()> {
    anyhow::bail!("pollux testpmd is not written yet")
}
