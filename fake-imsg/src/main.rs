fn main() {
    std::process::exit(fake_imsg::cli::main());
}
