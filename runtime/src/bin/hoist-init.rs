//! A minimal init helper binary for the executor's tests: `HoistExecutor::with_init_binary`
//! points at it (the `hoist` binary plays this part in production).

fn main() {
    hoist_runtime::exec::init_if_requested();
    eprintln!("hoist-init: only runs as hoist's container init helper");
    std::process::exit(2);
}
