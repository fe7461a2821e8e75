//! The `fake-imsg` binary: everything, down to parsing its arguments, is in the library
//! (`fake_imsg::cli`), so the gateway's tests and the simulator run the same code in process.

fn main() {
    std::process::exit(fake_imsg::cli::main(std::process::exit));
}
