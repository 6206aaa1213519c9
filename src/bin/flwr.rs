//! `flwr`: Flower's command line, backed by floret. See `floret::cli`.
//!
//! It holds no command logic of its own.

use clap::Parser;

fn main() {
    let cli = floret::cli::Cli::parse();
    let code = floret::cli::main(cli);
    std::process::exit(code);
}
