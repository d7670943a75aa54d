//! The floor of a Rust Lambda's init: tokio and `lambda_runtime`, an echo handler, nothing
//! else. `make bench` measures its exec → first `invocation/next` beside each function's.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move { Ok::<Value, Error>(event.payload) })).await
}
