//! `wick generate` (being written).

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> crate::Result<()> {
    Err(crate::Error::Usage(
        "'generate' is not implemented yet".into(),
    ))
}
