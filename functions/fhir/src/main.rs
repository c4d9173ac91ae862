//! Lambda entry point: boots the handlers of [`fhir`] and nothing else.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    platform_http::init_telemetry();
    let deps: &'static fhir::Deps = Box::leak(Box::new(fhir::Deps::from_env()?));
    platform_http::run(move |req| fhir::handle(req, deps)).await
}
