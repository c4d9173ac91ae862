//! Lambda entry point: boots the handlers of [`documents`] and nothing else.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    platform_http::init_telemetry();
    let deps: &'static documents::Deps = Box::leak(Box::new(documents::Deps::from_env()?));
    platform_http::run(move |req| documents::handle(req, deps)).await
}
