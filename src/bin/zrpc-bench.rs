//! `zrpc-bench`: zrpc beside the raw zeromq transport; see `zrpc-bench --help`.

fn main() {
    std::process::exit(zerorpc::bench::main());
}
