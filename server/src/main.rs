use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = trellis_server::cli::Cli::parse();
    let code = tokio::runtime::Runtime::new()?.block_on(trellis_server::cli::run(cli))?;
    std::process::exit(code)
}
