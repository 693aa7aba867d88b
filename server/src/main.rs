use clap::Parser;

fn main() {
    let cli = trellis_server::cli::Cli::parse();
    let run = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(trellis_server::cli::run(cli)));
    match run {
        Ok(code) => std::process::exit(code),
        // The causes on one line, never a backtrace: the message is for the operator.
        Err(e) => {
            eprintln!("trellis: {e:#}");
            std::process::exit(1)
        }
    }
}
