//! `sluice-bench`: the load generator. See `sluice_benches::loadgen` and `--help`.

use clap::Parser;

/// The same allocator as the server: the load generator shares the machine's CPUs with it,
/// so what it spends in malloc is taken from the server.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = sluice_benches::loadgen::Args::parse();
    match sluice_benches::loadgen::run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
