//! The `lp-host` command.

fn main() {
    std::process::exit(lp_host::cli::main());
}
