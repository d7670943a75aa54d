//! Conformance against references the project did not write: Stripe's own Node client
//! (npm `stripe`, pinned in `conformance/package.json` to the release that pins this sim's API
//! version) and Python client (`stripe` in requirements-dev.txt, likewise) drive ordinary
//! Billing flows against the sim, and every object the sim sends —
//! responses and webhook deliveries, nested and expanded objects included — is checked
//! against the response types that package declares (read from its `.d.ts` files by the
//! TypeScript compiler; see `conformance/schema.mjs`). Any drift fails the test.
//!
//! Needs `node`, the packages `make venv` installs into `conformance/node_modules`, and the
//! project's venv (`.venv`, also `make venv`) with `stripe` installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

/// Fails (never skips) when the client or the reference is not installed.
fn require_node_packages(dir: &Path) {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "the stripe-sim conformance test needs Node.js (`node` on PATH) and its npm packages: install Node, then run `make venv`"
    );
    for package in ["stripe", "typescript"] {
        assert!(
            dir.join("node_modules").join(package).join("package.json").is_file(),
            "npm package `{package}` is missing from {}: run `make venv` (it runs `npm ci` there)",
            dir.join("node_modules").display()
        );
    }
}

/// The project's venv interpreter, with the pinned Python client importable.
fn require_python_client() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    let probe = Command::new(&python).args(["-c", "import stripe; print(stripe.VERSION)"]).output();
    let version = probe.as_ref().ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let wanted = include_str!("../../../requirements-dev.txt")
        .lines()
        .find_map(|l| l.strip_prefix("stripe=="))
        .expect("requirements-dev.txt pins stripe")
        .trim()
        .to_string();
    assert_eq!(
        version.as_deref(),
        Some(wanted.as_str()),
        "the stripe-sim conformance test needs Stripe's Python client {wanted} in {}: run `make venv`",
        python.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_node_client_flows_conform_to_the_published_types() {
    let dir = conformance_dir();
    require_node_packages(&dir);
    let python = require_python_client();
    let tmp = std::env::temp_dir();
    let summary_path = tmp.join(format!("stripe-sim-conformance-{}.json", std::process::id()));
    let python_path = tmp.join(format!("stripe-sim-conformance-python-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&summary_path);
    let _ = std::fs::remove_file(&python_path);

    // The Python client on a sim of its own (its flows and the Node ones count objects
    // independently), then the Node client, which checks both clients' bodies.
    let py_sim = stripe_sim::start(stripe_sim::SimConfig::default()).await.expect("sim starts");
    let (base, dir2, out_path) = (py_sim.base_url().to_string(), dir.clone(), python_path.clone());
    let py = tokio::task::spawn_blocking(move || {
        Command::new(python).arg("python_flows.py").arg(&base).arg(&out_path).current_dir(&dir2).output()
    })
    .await
    .expect("runner thread")
    .expect("python runs");
    print!("{}", String::from_utf8_lossy(&py.stdout));
    eprint!("{}", String::from_utf8_lossy(&py.stderr));
    assert!(python_path.is_file(), "python_flows.py wrote no results");

    let sim = stripe_sim::start(stripe_sim::SimConfig::default()).await.expect("sim starts");
    let base = sim.base_url().to_string();
    let (dir2, summary2, py_results) = (dir.clone(), summary_path.clone(), python_path.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("run.mjs")
            .arg(&base)
            .arg("--json")
            .arg(&summary2)
            .arg("--python")
            .arg(&py_results)
            .current_dir(&dir2)
            .output()
    })
    .await
    .expect("runner thread")
    .expect("node runs");
    let _ = std::fs::remove_file(&python_path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));

    let summary: Value =
        serde_json::from_slice(&std::fs::read(&summary_path).expect("the runner wrote its summary")).expect("summary is JSON");
    let _ = std::fs::remove_file(&summary_path);

    assert_eq!(summary["api_version"], stripe_sim::API_VERSION, "the client package pins another API version than the sim speaks");
    let (passed, total) = (summary["steps"]["passed"].as_u64().unwrap(), summary["steps"]["total"].as_u64().unwrap());
    let (conforming, checked) = (summary["objects"]["conforming"].as_u64().unwrap(), summary["objects"]["checked"].as_u64().unwrap());
    // Every type the flows touch must have been seen, so a flow that silently stopped
    // producing an object type cannot make the figures look better.
    for t in [
        "customer",
        "event",
        "invoice",
        "invoice_payment",
        "invoiceitem",
        "line_item",
        "payment_intent",
        "payment_method",
        "price",
        "product",
        "subscription",
        "subscription_item",
        "test_helpers.test_clock",
        "webhook_endpoint",
    ] {
        assert!(summary["per_type"][t]["checked"].as_u64().unwrap_or(0) > 0, "no `{t}` object was checked");
    }
    let (detected, planted) = (summary["controls"]["detected"].as_u64().unwrap_or(0), summary["controls"]["total"].as_u64().unwrap_or(0));
    assert!(planted >= 6 && detected == planted, "the checker missed planted drift ({detected} of {planted}): the reference is broken");
    assert!(total >= 40 && checked >= 1000, "the run covered too little: {total} steps, {checked} objects");
    assert_eq!(passed, total, "client flow steps failed (see the output above)");
    assert_eq!(conforming, checked, "objects drift from the published types: {}", summary["drift"]);
    assert!(py.status.success(), "a Python client flow failed (see the output above)");
    assert!(out.status.success(), "the conformance runner failed (see the output above)");
}
