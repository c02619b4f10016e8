//! `wick models` (being written).

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> crate::Result<()> {
    Err(crate::Error::Usage(
        "'models' is not implemented yet".into(),
    ))
}
