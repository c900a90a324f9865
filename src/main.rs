use clap::Parser;

fn main() {
    let _args = fdclose::cli::Args::parse();
}
