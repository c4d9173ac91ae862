//! Logging (JSON lines in Lambda, human-readable text elsewhere) and the switch of the metrics
//! lines.

use tracing_subscriber::filter::LevelFilter;

/// Installs the global subscriber once and turns on the per-request metrics lines (`serve`
/// writes none until then: tests and the benchmark's in-process calls neither time nor print
/// them). The level comes from `LOG_LEVEL` (error, warn, info, debug, trace; default info).
/// Logs are JSON when running in Lambda.
pub fn init_telemetry() {
    crate::metrics::enable();
    let level = std::env::var("LOG_LEVEL")
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_writer(std::io::stderr);
    let result = if in_lambda {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .without_time()
            .try_init()
    } else {
        // Colour codes only on a terminal: a redirected log (the local server's, a test's)
        // stays plain text.
        use std::io::IsTerminal;
        builder
            .compact()
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
    // A second call (tests, local server) keeps the first subscriber.
    let _ = result;
}
