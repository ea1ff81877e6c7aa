//! The `beacon` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

/// mimalloc: the loader and the view builders allocate many small objects;
/// it is markedly faster than the system allocator at that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use beacon::cli::{Command, LogFormat};
use beacon::server::ServeError;
use beacon::supervise::{self, EXIT_DIED};
use tokio_util::sync::CancellationToken;
use tracing::error;
use tracing_subscriber::EnvFilter;

/// Logging when RUST_LOG is unset: our INFO audit trail, and only warnings
/// from hickory, whose server logs every request at INFO.
const DEFAULT_LOG: &str = "info,hickory_server=warn,hickory_net=warn,hickory_proto=warn";

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

/// Cancels `token` on the first Ctrl-C or SIGTERM.
fn cancel_on_signal(token: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        token.cancel();
    });
    Ok(())
}

/// `beacon check`: load the folder as the server would and report.
fn check(args: &beacon::cli::CheckArgs) -> ExitCode {
    if !args.dir.is_dir() {
        eprintln!("error: {} is not a folder", args.dir.display());
        return ExitCode::from(2);
    }
    let mut loader = beacon::fragments::Loader::new(args.dir.clone(), args.zone.clone());
    let rescan = loader.rescan(
        &beacon::fragments::RescanRequest::everything(),
        &beacon::fragments::NoLiveNames,
    );
    for problem in &rescan.problems {
        println!("{problem}");
    }
    let set = loader.set();
    let summary = format!(
        "{}: {} files, {} records, {} names loaded for {}",
        args.dir.display(),
        set.file_count(),
        set.record_count(),
        loader.statics().name_count(),
        args.zone
    );
    if rescan.problems.is_empty() {
        println!("{summary}; no problems");
        ExitCode::SUCCESS
    } else {
        println!("{summary}; {} problems", rescan.problems.len());
        ExitCode::FAILURE
    }
}

/// A configuration error, with the file position of the setting it names
/// when that setting came from `--config`.
fn located(
    error: &beacon::config::ConfigError,
    settings: &[beacon::config_file::Setting],
) -> String {
    if let beacon::config::ConfigError::Invalid { flag, .. } = error {
        let id = flag.trim_start_matches('-').replace('-', "_");
        if let Some(setting) = settings.iter().find(|s| s.id == id) {
            return format!("{}: {error}", setting.location);
        }
    }
    error.to_string()
}

/// `beacon check --config FILE`: every key, value and key file, as
/// `serve` would take them, without starting anything.
fn check_config(path: &std::path::Path) -> ExitCode {
    let args = vec![
        "beacon".into(),
        "serve".into(),
        "--config".into(),
        path.as_os_str().to_owned(),
    ];
    let (cli, settings) = match beacon::cli::with_config_file(args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{}", message.trim_end());
            return ExitCode::from(2);
        }
    };
    let Command::Serve(serve) = cli.command else {
        return ExitCode::from(2);
    };
    match serve.into_config() {
        Ok(config) => {
            println!(
                "{}: {} settings; serves {} on {}; no problems",
                path.display(),
                settings.len(),
                config.zone,
                config.dns
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", located(&e, &settings));
            ExitCode::from(2)
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let (cli, settings) = match beacon::cli::with_config_file(std::env::args_os().collect()) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    init_logging(cli.log_format);
    supervise::install_panic_hook();
    match cli.command {
        Command::Serve(args) => {
            let config = match args.into_config() {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("error: {}", located(&e, &settings));
                    return ExitCode::from(2);
                }
            };
            let shutdown = CancellationToken::new();
            if let Err(e) = cancel_on_signal(shutdown.clone()) {
                error!("cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
            match beacon::server::run(config, shutdown).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e @ ServeError::Died(_)) => {
                    error!("{e}");
                    // Now, without waiting for the other parts: a supervisor
                    // restarts a dead server; a half-alive one serves stale data.
                    std::process::exit(i32::from(EXIT_DIED));
                }
                Err(e) => {
                    error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check(args) => match &args.config {
            Some(path) => check_config(path),
            None => check(&args),
        },
        Command::Keygen(args) => match beacon::keys::generate(&args.name, args.algorithm.into()) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Status(args) => {
            match tokio::task::spawn_blocking(move || beacon::http::client::table(args.http)).await
            {
                Ok(Ok(table)) => {
                    print!("{table}");
                    ExitCode::SUCCESS
                }
                Ok(Err(e)) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Beat(args) => {
            let config = match args.into_config() {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            match beacon::beat::run(config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
