//! The `hookd` binary: parse the command line, set up logging, dispatch, and turn
//! errors into a message on stderr and exit code 1 (clap uses 2 for usage errors).

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use clap_complete::Generator;
use hookd::cli::{Cli, Command};
use hookd::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::CheckConfig(args) if args.plan => {
            runtime(false).and_then(|rt| rt.block_on(hookd::admin::client::plan(&args)))
        }
        Command::CheckConfig(args) => check_config(&args.config),
        Command::Admin(args) => {
            runtime(false).and_then(|rt| rt.block_on(hookd::admin::client::run(args)))
        }
        Command::Completions { shell } => completions(shell),
        Command::Man { out_dir } => man(out_dir.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `hookd … | head`: the reader has all it wanted; say nothing, as ripgrep does.
        Err(e) if closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookd: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Whether the error is a write to a pipe whose reader has gone.
fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn serve(serve: hookd::cli::ServeArgs) -> anyhow::Result<()> {
    let on_loss = if serve.accept_data_loss {
        hookd::store::OnLoss::Accept
    } else {
        hookd::store::OnLoss::Refuse
    };
    let args = serve.config;
    let config = Config::load(&args)?;
    let inherited = hookd::systemd::take_listener().context("using the socket systemd passed")?;
    hookd::logging::init(&config.log_level);
    runtime(true)?.block_on(hookd::daemon::run(config, args, inherited, on_loss))
}

/// Validates the config and prints the effective settings as a config file: a
/// comment line, then TOML that can be pasted back.
fn check_config(args: &hookd::cli::ConfigArgs) -> anyhow::Result<()> {
    let config = Config::load(args)?;
    let source = config
        .source
        .as_ref()
        .map_or("(embedded defaults)".to_owned(), |p| {
            p.display().to_string()
        });
    let mut settings = config.to_toml().context("printing the config")?;
    if !settings.ends_with('\n') {
        settings.push('\n');
    }
    hookd::admin::client::print_out(&format!(
        "# config OK: {source}\n# effective settings:\n{settings}"
    ))
}

/// The completion script comes from the same clap definitions as the parser, so it
/// cannot drift from the real flags.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    cmd.set_bin_name("hookd");
    cmd.build();
    shell
        .try_generate(&cmd, &mut std::io::stdout().lock())
        .context("writing the completion script")
}

/// The man pages, generated from the clap definitions like the completions. hookd(1)
/// names a page per subcommand, which `--out-dir` writes too.
fn man(out_dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    // `hookd help` needs no page of its own; leaving it out keeps hookd(1)'s list true.
    let cmd = Cli::command().disable_help_subcommand(true);
    match out_dir {
        Some(dir) => clap_mangen::generate_to(cmd, dir)
            .with_context(|| format!("writing man pages to {}", dir.display())),
        None => clap_mangen::Man::new(cmd)
            .render(&mut std::io::stdout().lock())
            .context("writing the man page"),
    }
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
