//! The cold-start baseline: the smallest `lambda_http` function, built with the same release
//! profile and runtime flavour as the functions (current-thread Tokio), answering every request
//! with a fixed body. No tracing subscriber, no configuration, no clients.

use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(|_req: Request| async {
        Ok::<_, Error>(
            Response::builder()
                .status(200)
                .header("content-type", "text/plain")
                .body(Body::from("Hello, world!"))
                .expect("a static response"),
        )
    }))
    .await
}
