//! The `stripe-sim` binary as `make dev` runs it: seeded prices and a pre-registered
//! webhook endpoint signed with a given secret.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Receiver;

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        // Only the process this test started.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_serves_seeds_and_signs_with_the_given_secret() {
    let hook = Receiver::start().await;
    hook.set_secret("whsec_cli_test");
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_stripe-sim"))
            .args(["--port", "0", "--seed-prices", "--webhook-url", &hook.url, "--webhook-secret", "whsec_cli_test"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary starts"),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(i) = line.find("base_url=http://") {
                let url: String = line[i + "base_url=".len()..].chars().take_while(|c| !c.is_whitespace() && *c != '"').collect();
                let _ = tx.send(url);
            }
        }
    });
    let base = rx.recv_timeout(Duration::from_secs(20)).expect("the binary logs its address");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let price: serde_json::Value = http
        .get(format!("{base}/v1/prices/price_premium_monthly"))
        .bearer_auth("sk_test_anything")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(price["unit_amount"], 999);
    let resp = http
        .post(format!("{base}/v1/customers"))
        .bearer_auth("sk_test_anything")
        .form(&[("email", "cli@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    let deadline = Instant::now() + Duration::from_secs(20);
    while hook.received().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = hook.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].type_(), "customer.created");
    assert!(got[0].signature_ok, "signed with --webhook-secret");
}

#[test]
fn help_and_bad_arguments() {
    let help = Command::new(env!("CARGO_BIN_EXE_stripe-sim")).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--webhook-secret"));
    let bad = Command::new(env!("CARGO_BIN_EXE_stripe-sim")).args(["--port", "nope"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
