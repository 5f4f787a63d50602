//! The `rtmpd` binary: command line → config → logging → signals → server.

use std::process::ExitCode;

use log::{error, info};
use rtmpd::admission::token;
use rtmpd::cli::{self, Command, SignArgs};
use rtmpd::config::policy::Secret;
use rtmpd::config::{self, Verb};
use rtmpd::server::Server;

fn main() -> ExitCode {
    let source = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(source)) => source,
        Ok(Command::CheckConfig(path)) => {
            return match config::file::check(&path) {
                Ok(_) => {
                    println!("{}: OK", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("rtmpd: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Ok(Command::Sign(args)) => {
            return match sign(&args) {
                Ok(url) => {
                    println!("{url}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("rtmpd sign: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Ok(Command::Help(usage)) => {
            println!("{usage}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("{}", rtmpd::build_info::describe());
            return ExitCode::SUCCESS;
        }
        // The error alone, not the usage: fifty lines of usage scroll it away.
        Err(e) => {
            eprintln!("rtmpd: {e}\ntry 'rtmpd --help'");
            return ExitCode::from(2);
        }
    };
    let config = match source.load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("rtmpd: {e}");
            return ExitCode::FAILURE;
        }
    };
    rtmpd::logging::init(config.log_format);
    let server = match Server::bind(config) {
        Ok(server) => server,
        // One line on stderr, whatever RUST_LOG says: the server never ran.
        Err(e) => {
            rtmpd::logging::fatal(&e);
            return ExitCode::FAILURE;
        }
    };
    info!("{} starting", rtmpd::build_info::describe());
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

/// `rtmpd sign`: the URL with a token, signed with `--secret` or with the
/// secret the config file sets for the URL's app.
fn sign(args: &SignArgs) -> Result<String, String> {
    let verb = if args.play { Verb::Play } else { Verb::Publish };
    let secret = match (&args.secret, &args.config) {
        (Some(secret), _) => Secret::new(secret)?,
        (None, Some(path)) => {
            let config = config::file::check(path).map_err(|e| e.to_string())?;
            let target = token::target(&args.url)?;
            let verb = if target.play_only { Verb::Play } else { verb };
            let app = config.policy.app(&target.key.app);
            app.secret(verb).cloned().ok_or_else(|| {
                format!(
                    "{} sets no {}_secret for app {:?}",
                    path.display(),
                    verb.as_str(),
                    target.key.app
                )
            })?
        }
        (None, None) => return Err("needs --secret or --config".into()),
    };
    token::sign_url(
        &args.url,
        &secret,
        verb,
        token::unix_now() + args.expires_in,
    )
}
