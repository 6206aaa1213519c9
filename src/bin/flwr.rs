//! `flwr`: Flower's command line, backed by floret. See `floret::cli`.

use clap::Parser;

fn main() {
    let cli = floret::cli::Cli::parse();
    let code = floret::cli::main(cli);
    std::process::exit(code);
}
