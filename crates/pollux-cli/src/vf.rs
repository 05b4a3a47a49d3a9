//! `pollux vf` (being written).
#[derive(clap::Subcommand, Debug)]
pub enum VfCommand {}
pub fn run(cmd: VfCommand) -> anyhow::Result<()> {
    match cmd {}
}
