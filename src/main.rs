//! The `hookd` binary: parse the command line, set up logging, dispatch, and turn
//! errors into a message on stderr and exit code 1 (clap uses 2 for usage errors).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use hookd::cli::{Cli, Command};
use hookd::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args.config),
        Command::CheckConfig(args) => check_config(&args),
        Command::Admin(args) => {
            runtime(false).and_then(|rt| rt.block_on(hookd::admin::client::run(args)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookd: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn serve(args: hookd::cli::ConfigArgs) -> anyhow::Result<()> {
    let config = Config::load(&args)?;
    hookd::logging::init(&config.log_level);
    runtime(true)?.block_on(hookd::daemon::run(config, args))
}

fn check_config(args: &hookd::cli::ConfigArgs) -> anyhow::Result<()> {
    let config = Config::load(args)?;
    let source = config
        .source
        .as_ref()
        .map_or("(embedded defaults)".to_owned(), |p| {
            p.display().to_string()
        });
    println!("config OK: {source}");
    println!(
        "{}",
        serde_json::to_string_pretty(&config).context("printing the config")?
    );
    Ok(())
}

fn runtime(multi_thread: bool) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder
        .enable_all()
        .build()
        .context("starting the async runtime")
}
