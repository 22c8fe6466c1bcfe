//! The `eod` binary: the command line only (`cli/`), over the library crates.

mod cli;

fn main() -> anyhow::Result<()> {
    cli::main()
}
