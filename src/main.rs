//! The `rtmpd` binary: command line → config → logging → signals → server.

use std::process::ExitCode;

use log::{error, info};
use rtmpd::cli::{self, Command};
use rtmpd::server::Server;

fn main() -> ExitCode {
    let config = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(config)) => *config,
        Ok(Command::Help(usage)) => {
            println!("{usage}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("{}", rtmpd::build_info::describe());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("rtmpd: {e}\n\n{}", cli::usage());
            return ExitCode::from(2);
        }
    };
    rtmpd::logging::init(config.log_format);
    info!("{} starting", rtmpd::build_info::describe());
    let server = match Server::bind(config) {
        Ok(server) => server,
        Err(e) => {
            error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = rtmpd::signals::handle_signals(server.handle()) {
        error!("cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("server stopped: {e}");
            ExitCode::FAILURE
        }
    }
}
