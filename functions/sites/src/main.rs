//! Lambda entry point: boots the handlers of [`sites`] and nothing else.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    platform_http::init_telemetry();
    let deps: &'static sites::Deps = Box::leak(Box::new(sites::Deps::from_env()?));
    platform_http::run(move |req| sites::handle(req, deps)).await
}
