//! The `zrpc` command line; see `zrpc --help`.

fn main() {
    std::process::exit(zerorpc::cli::main());
}
