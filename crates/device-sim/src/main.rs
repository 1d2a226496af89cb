//! `device-sim`: simulated CoAP devices for the gateway. The work is in the
//! `device_sim` library; this file parses the command line and runs it on one thread.

use std::process::ExitCode;

use clap::Parser;
use device_sim::SimOptions;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let opts = SimOptions::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("device-sim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(device_sim::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("device-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
