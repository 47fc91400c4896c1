//! The ready-made service entry point: a command line (`--config`, `--profile`, `--set`,
//! `--print-config`, `--check`), logging, a runtime, and graceful shutdown on SIGTERM / Ctrl-C.
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     kafka_runtime::run()
//! }
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use crate::app::KafkaApplication;
use crate::config::{Config, ConfigError, Layers, LogFormat, LoggingSettings};
use crate::log::WithRecord;

/// The service's command line.
#[derive(Debug, Clone, Parser)]
#[command(about = "A Kafka consumer service built on kafka-runtime")]
pub struct Cli {
    /// Configuration file: TOML, or a Spring Boot application.yml / .yaml
    /// [default: application.toml, application.yml or application.yaml, the first that exists]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Layer application-NAME.ext (ext: the configuration file's) over it, from its directory
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Override one key, above every other source, e.g. --set kafka.listener.concurrency=3
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_override)]
    pub overrides: Vec<(String, String)>,
    /// Print the effective configuration (secrets redacted) and where each value came from, then exit
    #[arg(long)]
    pub print_config: bool,
    /// With --print-config: also every unset key's default, and whether the embedded cluster runs
    #[arg(long, requires = "print_config")]
    pub all: bool,
    /// Validate the configuration and the listener registrations, then exit
    #[arg(long)]
    pub check: bool,
}

fn parse_override(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.trim().to_owned(), value.to_owned()))
        .filter(|(key, _)| !key.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, found `{text}`"))
}

impl Cli {
    /// Parses the process's arguments (exits with usage on an error, as command lines do).
    pub fn parse_args() -> Self {
        Cli::parse()
    }

    /// The configuration: the file (given, or the first default that exists; else `bundled`,
    /// a `(text, name)` the binary carries), the profile, the environment and `--set`.
    pub fn load_config(&self, bundled: Option<(&str, &str)>) -> Result<Config, ConfigError> {
        let found = self.config.clone().or_else(|| {
            ["application.toml", "application.yml", "application.yaml"]
                .into_iter()
                .map(PathBuf::from)
                .find(|path| path.exists())
        });
        Config::load_layers(&Layers {
            base_required: self.config.is_some(),
            base: Some(found.unwrap_or_else(|| Path::new("application.toml").to_owned())),
            profile: self.profile.clone(),
            overrides: self.overrides.clone(),
            text: bundled.map(|(text, name)| (text.to_owned(), name.to_owned())),
            ignore_environment: false,
        })
    }
}

/// Logs to stdout through `tracing` per `[logging]`: text or JSON lines, a handler's lines with
/// the record it handles (`listener`, `topic`, `partition`, `offset`, and `attempt` and
/// `correlation_id` when there are; in JSON, a `record` object), filtered by `RUST_LOG`, else
/// `logging.level`, else `info,librdkafka=warn`. Does nothing if the program set up its own
/// subscriber.
pub fn init_logging(settings: &LoggingSettings) {
    use tracing_subscriber::EnvFilter;
    let configured = || {
        let level = settings.level.as_deref().unwrap_or("info,librdkafka=warn");
        EnvFilter::try_new(level).unwrap_or_else(|error| {
            eprintln!(
                "warning: logging.level `{level}` is not a valid filter ({error}); using info"
            );
            EnvFilter::new("info")
        })
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| configured());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match settings.format {
        LogFormat::Json => builder.json().event_format(WithRecord::json()).try_init(),
        LogFormat::Text => builder.event_format(WithRecord::text()).try_init(),
    };
}

/// Runs the service: every `#[kafka_listener]` in the binary, configured by the command line,
/// files and environment, until SIGTERM / Ctrl-C.
pub fn run() -> ExitCode {
    run_with(|app| app)
}

/// [`run`], with a chance to register state (`with_state`) or properties on the application.
pub fn run_with(customize: impl FnOnce(KafkaApplication) -> KafkaApplication) -> ExitCode {
    run_bundled(None, customize, KafkaApplication::run)
}

/// [`run_with`] for a binary that carries its configuration (`bundled`: the text and the name
/// errors give it, used when no file is found) and serves in its own way: `serve` gets the
/// application and runs it (e.g. `start()`, produce sample records, `run_until_signal()`).
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     kafka_runtime::cli::run_bundled(
///         Some(("[kafka.consumer]\ngroup-id = \"orders\"\n", "bundled application.toml")),
///         |app| app,
///         |app| async move {
///             let running = app.start().await?;
///             running.run_until_signal().await
///         },
///     )
/// }
/// ```
pub fn run_bundled<F, E>(
    bundled: Option<(&str, &str)>,
    customize: impl FnOnce(KafkaApplication) -> KafkaApplication,
    serve: impl FnOnce(KafkaApplication) -> F,
) -> ExitCode
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let cli = Cli::parse_args();
    let config = match cli.load_config(bundled) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config.logging);
    let app = match serve_flags(&cli, customize(KafkaApplication::new(config))) {
        Ok(app) => app,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(app)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// Serves `--print-config` and `--check` (`Err` with the exit code); `Ok` gives the application
/// back when the service should run.
pub fn serve_flags(cli: &Cli, app: KafkaApplication) -> Result<KafkaApplication, ExitCode> {
    if cli.print_config || cli.check {
        for warning in app.config().warnings() {
            eprintln!("warning: {warning}");
        }
    }
    if cli.print_config {
        let config = app.config();
        let keys = if cli.all {
            config.effective_all()
        } else {
            config.effective()
        };
        for (key, value, source) in keys {
            println!("{key} = {value}    # {source}");
        }
        if cli.all && config.uses_embedded_broker() {
            let at = config.kafka.embedded.port.map_or_else(
                || "on a free port, logged at startup".to_owned(),
                |port| format!("at 127.0.0.1:{port}"),
            );
            println!("# no kafka.bootstrap-servers: an embedded Kafka cluster starts {at}");
        }
        return Err(ExitCode::SUCCESS);
    }
    if !cli.check {
        return Ok(app);
    }
    Err(match app.check() {
        Ok(listeners) => {
            for line in listeners {
                println!("{line}");
            }
            println!("configuration OK");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    })
}
