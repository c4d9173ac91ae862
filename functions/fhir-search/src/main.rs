//! Lambda entry point: boots the handlers of [`fhir_search`] and nothing else.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    platform_http::init_telemetry();
    let deps: &'static fhir_search::Deps = Box::leak(Box::new(fhir_search::Deps::from_env()?));
    platform_http::run(move |req| fhir_search::handle(req, deps)).await
}
