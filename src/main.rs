use std::io::IsTerminal;
use std::process::ExitCode;

use clap::error::ErrorKind;
use tracing_subscriber::EnvFilter;

use authgate::config::{Cli, ConfigError, LogFormat};
use authgate::telemetry::export::Exporter;

fn main() -> ExitCode {
    let cli = match Cli::parse_with_file(std::env::args_os()) {
        Ok(cli) => cli,
        Err(ConfigError::Cli(err))
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            err.exit()
        }
        Err(err) => return fail(err.to_string().lines().next().unwrap_or_default()),
    };
    let filter = match EnvFilter::try_new(&cli.config.log) {
        Ok(filter) => filter,
        Err(err) => return fail(&format!("AUTHGATE_LOG: {err}")),
    };
    // Before the runtime: the exporter's HTTP client runs one of its own.
    let exporter = match cli.config.otlp_endpoint.as_deref().map(Exporter::start) {
        None => None,
        Some(Ok(exporter)) => Some(exporter),
        Some(Err(err)) => return fail(&format!("AUTHGATE_OTLP_ENDPOINT: {err}")),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.config.log_format == LogFormat::Json {
        // The request span's fields (`request_id`, `route`) go under `span`; the list
        // keeps them in reach once a request has spans of its own beneath that one.
        logs.json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => return fail(&format!("cannot start the async runtime: {err}")),
    };
    let outcome = runtime.block_on(authgate::execute(cli));
    drop(runtime);
    if let Some(exporter) = exporter {
        exporter.shutdown();
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&format!("{err:#}")),
    }
}

/// One line on stderr, as the contract wants for configuration and start-up errors.
fn fail(message: &str) -> ExitCode {
    let message = message.trim_start_matches("error: ").replace('\n', " ");
    eprintln!("authgate: {message}");
    ExitCode::FAILURE
}
