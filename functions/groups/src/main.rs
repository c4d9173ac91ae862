//! Lambda entry point: boots the handlers of [`groups`] and nothing else.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    platform_http::init_telemetry();
    let deps: &'static groups::Deps = Box::leak(Box::new(groups::Deps::from_env()?));
    platform_http::run(move |req| groups::handle(req, deps)).await
}
