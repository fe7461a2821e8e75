fn main() {
    std::process::exit(imsg_gateway::cli::main());
}
