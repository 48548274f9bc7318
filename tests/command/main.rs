//! The `zrpc` command in one test binary (it needs the `cli` feature): the
//! binary started as operators start it, against zrpc, zerorpc-python,
//! zerorpc-node and libzmq peers. (One binary links once; a file per theme.)
//!
//! | file | theme |
//! |---|---|
//! | `cli.rs` | the command as an operator uses it |
//! | `broker.rs` | the broker: every client kind to zrpc and Python workers, workers killed and joining, its queue, its memory |
//! | `cli_flags.rs` | each flag doing what it says, seen from outside |
//! | `interop_python.rs` | zerorpc-python 0.6.3, both directions |
//! | `interop_node.rs` | zerorpc-node 0.9.8, both directions |
//! | `conformance.rs` | `zrpc --conformance` against all six peers |
//! | `curve_interop.rs` | CURVE against libzmq (pyzmq, zerorpc-python) |
//! | `resilience.rs` | hostile and unusual peers at the transport level |
//! | `hostile_server.rs` | the client facing a hostile server |
//! | `scale_out.rs` | many servers per client, DNS discovery |

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/dns.rs"]
mod dns;
#[path = "../common/pool.rs"]
mod pool;

mod broker;
mod cli;
mod cli_flags;
mod conformance;
mod curve_interop;
mod hostile_server;
mod interop_node;
mod interop_python;
mod resilience;
mod scale_out;
