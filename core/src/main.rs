//! `keygate`: the gateway and its operator commands.

mod cli;

// Built-in plugins are linked here, and only here: the library knows them
// through the SDK registry alone.
use keygate_approval_pin_qr as _;
use keygate_store_fs as _;
use keygate_store_memory as _;
use keygate_store_postgres as _;
use keygate_transport_quic as _;

fn main() -> std::process::ExitCode {
    cli::main()
}
