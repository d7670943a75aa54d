//! template.yaml against the code: every function's binary exists, every variable the
//! code requires is set, every AWS action the code can call is granted, and nothing is
//! granted with a wildcard action. The code is read as source: store methods are traced
//! to the DynamoDB operations in their bodies, and shared components (outbox delivery,
//! the SES mailer, the EventBridge publisher) to the operations they make.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use harness::{template, workspace_root};
use serde_yaml::Value;

fn sources(dir: &Path) -> String {
    let mut text = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                text.push_str(&std::fs::read_to_string(&path).unwrap());
                text.push('\n');
            }
        }
    }
    text
}

/// Names passed to `required("…")` in `text`: variables without which the code won't start.
/// A function's code: its crate's sources plus the library use cases it calls (they
/// hold the store calls now), followed through the use cases that call each other.
fn function_sources(crate_src: &Path) -> String {
    let mut text = sources(crate_src);
    let usecases = workspace_root().join("shared/src/usecase");
    let mut included = BTreeSet::new();
    loop {
        let next: Vec<&str> = ["admin", "stripe_event", "sync"]
            .into_iter()
            .filter(|m| !included.contains(m) && text.contains(&format!("usecase::{m}")))
            .collect();
        if next.is_empty() {
            return text;
        }
        for module in next {
            included.insert(module);
            let dir = usecases.join(module);
            if dir.is_dir() {
                text.push_str(&sources(&dir));
            } else {
                text.push_str(&std::fs::read_to_string(usecases.join(format!("{module}.rs"))).unwrap());
            }
        }
    }
}

fn required_vars(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for part in text.split("required(\"").skip(1) {
        if let Some(name) = part.split('"').next() {
            if name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                out.insert(name.to_owned());
            }
        }
    }
    out
}

/// DynamoDB operations each `Store` method performs in the DynamoDB adapter, read from
/// its body and from the bodies of the adapter's private helpers it calls (`self.get(`,
/// `self.user_items(`, …), followed through helpers that call helpers.
fn store_operations() -> BTreeMap<String, BTreeSet<&'static str>> {
    let text = std::fs::read_to_string(workspace_root().join("shared/src/store/dynamo.rs")).unwrap();
    let (helpers, port) = text.split_once("impl Store for DynamoStore").expect("the adapter implements the Store port");
    let calls: [(&str, &[&str]); 6] = [
        (".get_item()", &["dynamodb:GetItem"]),
        (".put_item()", &["dynamodb:PutItem"]),
        (".update_item()", &["dynamodb:UpdateItem"]),
        (".delete_item()", &["dynamodb:DeleteItem"]),
        (".query()", &["dynamodb:Query"]),
        // Transactions are authorised per contained action: ours are conditional Puts.
        (".transact_write_items()", &["dynamodb:PutItem", "dynamodb:ConditionCheckItem"]),
    ];
    // Every function of the file (helpers and port methods): name → body.
    let bodies = |text: &str| -> Vec<(String, String)> {
        text.split("\n    async fn ")
            .flat_map(|chunk| chunk.split("\n    fn "))
            .skip(1)
            .map(|chunk| (chunk.split(['(', '<']).next().unwrap().to_owned(), chunk.split("\n    }\n").next().unwrap().to_owned()))
            .collect()
    };
    let helper_bodies = bodies(helpers);
    let direct = |body: &str| -> BTreeSet<&'static str> {
        calls.iter().filter(|(c, _)| body.contains(c)).flat_map(|(_, ops)| ops.iter().copied()).collect()
    };
    let reach = |body: &str| -> BTreeSet<&'static str> {
        let mut ops = direct(body);
        let mut seen = BTreeSet::new();
        let mut todo = vec![body.to_owned()];
        while let Some(text) = todo.pop() {
            for (name, helper) in &helper_bodies {
                if text.contains(&format!("self.{name}(")) && seen.insert(name.clone()) {
                    ops.extend(direct(helper));
                    todo.push(helper.clone());
                }
            }
        }
        ops
    };
    let out: BTreeMap<String, BTreeSet<&'static str>> = bodies(port).into_iter().map(|(name, body)| (name, reach(&body))).collect();
    assert!(out.contains_key("commit") && out.contains_key("expiring"), "store methods not found: {:?}", out.keys());
    // Guards the guard: a method that works only through helpers is still traced.
    assert!(out["erase_user"].contains("dynamodb:Query") && out["erase_user"].contains("dynamodb:UpdateItem"), "{:?}", out["erase_user"]);
    assert!(out["profile"].contains("dynamodb:GetItem"), "{:?}", out["profile"]);
    out
}

/// Every AWS operation reachable from code that mentions these store methods and components.
fn operations_in(text: &str, store: &BTreeMap<String, BTreeSet<&'static str>>) -> BTreeSet<String> {
    let mut ops = BTreeSet::new();
    for (method, method_ops) in store {
        if text.contains(&format!(".{method}(")) {
            ops.extend(method_ops.iter().map(|s| s.to_string()));
        }
    }
    if text.contains("OutboxDelivery") {
        let delivery = std::fs::read_to_string(workspace_root().join("shared/src/delivery/outbox.rs")).unwrap();
        ops.extend(operations_in(&delivery.replace("OutboxDelivery", "Delivery"), store));
        ops.insert("ses:SendEmail".into());
        ops.insert("events:PutEvents".into());
    }
    if text.contains("SesMailer") || text.contains(".send_email()") {
        ops.insert("ses:SendEmail".into());
    }
    if text.contains("EventBridgePublisher") || text.contains(".put_events()") {
        ops.insert("events:PutEvents".into());
    }
    ops
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(items) => items.iter().flat_map(strings).collect(),
        _ => vec![],
    }
}

#[test]
fn template_matches_the_code() {
    let t = template::template();
    let globals = &t["Globals"]["Function"];
    let global_env: BTreeSet<String> =
        globals["Environment"]["Variables"].as_mapping().unwrap().keys().filter_map(|k| k.as_str().map(str::to_owned)).collect();
    assert_eq!(globals["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(strings(&globals["Architectures"]), ["arm64"]);
    let shared_required = required_vars(&sources(&workspace_root().join("shared/src")));
    let store = store_operations();

    let mut functions = 0;
    for (name, resource) in t["Resources"].as_mapping().unwrap() {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        functions += 1;
        let name = name.as_str().unwrap();
        assert_eq!(resource["Metadata"]["BuildMethod"].as_str(), Some("rust-cargolambda"), "{name}");
        let binary = resource["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap_or_else(|| panic!("{name}: no Binary"));
        let crate_dir = workspace_root().join("functions").join(binary);
        let manifest =
            std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap_or_else(|_| panic!("{name}: no crate for binary {binary}"));
        assert!(manifest.contains(&format!("name = \"{binary}\"")), "{name}: {binary} is not a binary of its crate");
        assert!(crate_dir.join("src/main.rs").exists(), "{name}: no main.rs");

        let code = function_sources(&crate_dir.join("src"));
        let mut env = global_env.clone();
        if let Some(vars) = resource["Properties"]["Environment"]["Variables"].as_mapping() {
            env.extend(vars.keys().filter_map(|k| k.as_str().map(str::to_owned)));
        }
        let needed: BTreeSet<String> = required_vars(&code).union(&shared_required).cloned().collect();
        let missing: Vec<_> = needed.difference(&env).collect();
        assert!(missing.is_empty(), "{name} requires {missing:?}, which template.yaml does not set");

        let mut granted = BTreeSet::new();
        for policy in resource["Properties"]["Policies"].as_sequence().into_iter().flatten() {
            for statement in policy["Statement"].as_sequence().into_iter().flatten() {
                assert_eq!(statement["Effect"].as_str(), Some("Allow"));
                for action in strings(&statement["Action"]) {
                    assert!(!action.contains('*'), "{name}: wildcard action {action}");
                    granted.insert(action);
                }
                assert!(!strings(&statement["Resource"]).iter().any(|r| r == "*"), "{name}: wildcard resource");
            }
        }
        let used = operations_in(&code, &store);
        assert!(!used.is_empty(), "{name}: found no AWS calls, the scan is broken");
        let ungranted: Vec<_> = used.difference(&granted).collect();
        assert!(ungranted.is_empty(), "{name} calls {ungranted:?} without a grant (granted: {granted:?})");
    }
    assert_eq!(functions, 3);
}

#[test]
fn the_scan_sees_what_each_function_calls() {
    // Guards the guard: the webhook writes through transactions and never queries.
    let store = store_operations();
    let webhook = operations_in(&function_sources(&workspace_root().join("functions/stripe-webhook/src")), &store);
    assert!(webhook.contains("dynamodb:GetItem") && webhook.contains("dynamodb:PutItem"), "{webhook:?}");
    assert!(!webhook.contains("dynamodb:Query"), "{webhook:?}");
    let jobs = operations_in(&function_sources(&workspace_root().join("functions/expiry-jobs/src")), &store);
    assert!(jobs.contains("dynamodb:Query") && jobs.contains("ses:SendEmail") && jobs.contains("events:PutEvents"), "{jobs:?}");
}
