//! The `imsg-gateway` binary: everything, down to parsing its arguments, is in the library
//! (`imsg_gateway::cli`), so tests drive the same code.

fn main() {
    std::process::exit(imsg_gateway::cli::main());
}
