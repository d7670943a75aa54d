//! template.yaml against the code: every function's binary exists, every variable the
//! code requires is set, every AWS action the code can call is granted, and nothing is
//! granted with a wildcard action. The code is read as source: store methods are traced
//! to the DynamoDB operations in their bodies, and shared components (outbox delivery,
//! the SES mailer, the EventBridge publisher) to the operations they make.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use harness::{template, workspace_root};
use serde_yaml::Value;
use shared::usecase::mail_feedback;

/// Actions without resource-level permissions: their only resource is `*`.
const ACCOUNT_LEVEL_ACTIONS: [&str; 1] = ["ses:GetAccount"];

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
        let next: Vec<&str> = ["admin", "catch_up", "lifecycle", "mail_feedback", "stripe_event", "sync"]
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
    let calls: [(&str, &[&str]); 7] = [
        (".get_item()", &["dynamodb:GetItem"]),
        (".batch_get_item()", &["dynamodb:BatchGetItem"]),
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
    assert!(out["event_context"].contains("dynamodb:BatchGetItem"), "{:?}", out["event_context"]);
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
    if text.contains("SendQuota") || text.contains(".get_account()") {
        ops.insert("ses:GetAccount".into());
    }
    if text.contains("SecretStore") || text.contains(".get_secret_value()") {
        ops.insert("secretsmanager:GetSecretValue".into());
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
                // Only an action IAM has no resource type for may (must) name `*`.
                if strings(&statement["Resource"]).iter().any(|r| r == "*") {
                    let actions = strings(&statement["Action"]);
                    assert!(
                        actions.iter().all(|a| ACCOUNT_LEVEL_ACTIONS.contains(&a.as_str())),
                        "{name}: wildcard resource for {actions:?}"
                    );
                }
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

// ------------------------------------------------------------------ secrets and continuations

/// `(tag, value)` of a CloudFormation short-form intrinsic (`!Ref Name` is `("Ref",
/// "Name")`, `!GetAtt Bus.Arn` is `("GetAtt", "Bus.Arn")`); `None` for anything else.
fn intrinsic(v: &Value) -> Option<(String, String)> {
    match v {
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string().trim_start_matches('!').to_owned();
            tagged.value.as_str().map(|value| (tag, value.to_owned()))
        }
        _ => None,
    }
}

/// A list or a single item, as IAM and SAM allow both.
fn items(v: &Value) -> Vec<Value> {
    match v {
        Value::Sequence(items) => items.clone(),
        Value::Null => vec![],
        other => vec![other.clone()],
    }
}

/// Variables naming a Secrets Manager secret: `….from_env("NAME_ARN", …)` in `text`.
fn secret_vars(text: &str) -> BTreeSet<String> {
    text.split(".from_env(\"")
        .skip(1)
        .filter_map(|part| part.split('"').next())
        .filter(|name| name.ends_with("_ARN") && name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(str::to_owned)
        .collect()
}

/// Every `Allow` statement of a function resource.
fn statements(resource: &Value) -> Vec<Value> {
    items(&resource["Properties"]["Policies"]).iter().flat_map(|policy| items(&policy["Statement"])).collect()
}

fn functions(t: &Value) -> Vec<(String, Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(name, r)| (name.as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

fn binary_of(resource: &Value) -> String {
    resource["Metadata"]["BuildProperties"]["Binary"].as_str().expect("Binary").to_owned()
}

/// `pattern` (a parameter's `AllowedPattern`, which CloudFormation anchors at both ends)
/// admits a complete secret ARN and nothing IAM would read as several secrets.
fn assert_allows_one_secret_arn(parameter: &str, pattern: &str) {
    let re = regex::Regex::new(&format!("^(?:{pattern})$")).unwrap_or_else(|e| panic!("{parameter}: {e}"));
    let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:logiscore/prod/stripe-webhook-key-AbC12z";
    assert!(re.is_match(arn), "{parameter} refuses a real secret ARN: {pattern}");
    for wide in [
        "*",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:*",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:logiscore/prod/*-AbC12z",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:logiscore/prod/stripe-key-??????",
        "arn:aws:secretsmanager:*:123456789012:secret:logiscore/prod/stripe-key-AbC12z",
        "arn:aws:secretsmanager:eu-west-1:*:secret:logiscore/prod/stripe-key-AbC12z",
        // A name without the six-character suffix: not one secret's ARN.
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:logiscore/prod/stripe-key",
        "logiscore/prod/stripe-key-AbC12z",
        "arn:aws:ssm:eu-west-1:123456789012:parameter/stripe-key-AbC12z",
    ] {
        assert!(!re.is_match(wide), "{parameter} admits `{wide}`: {pattern}");
    }
}

#[test]
fn each_function_reads_exactly_its_own_secrets_and_no_secret_is_an_environment_variable() {
    let text = std::fs::read_to_string(workspace_root().join("template.yaml")).unwrap();
    // Dynamic references resolve into the function configuration in plain text.
    assert!(!text.contains("{{resolve:"), "template.yaml resolves a secret into a property");
    let t = template::template();
    let global_env = t["Globals"]["Function"]["Environment"]["Variables"].as_mapping().unwrap().clone();
    let shared_secrets = secret_vars(&sources(&workspace_root().join("shared/src")));
    assert!(shared_secrets.contains("STRIPE_SECRET_ARN"), "the scan finds no secret read in shared: {shared_secrets:?}");

    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    for (name, resource) in functions(&t) {
        let code = function_sources(&workspace_root().join("functions").join(binary_of(&resource)).join("src"));
        let needed: BTreeSet<String> = secret_vars(&code).union(&shared_secrets).cloned().collect();
        let env = resource["Properties"]["Environment"]["Variables"].as_mapping().cloned().unwrap_or_default();
        for (var, _) in global_env.iter().chain(env.iter()) {
            let var = var.as_str().unwrap();
            assert!(!var.contains("SECRET") || var.ends_with("_ARN"), "{name}: {var} would hold a secret's value");
        }
        // Each variable the code reads a secret from is one of the function's own, naming a
        // template parameter that can only hold one complete secret ARN.
        let mut expected = BTreeSet::new();
        for var in &needed {
            assert!(!global_env.contains_key(var.as_str()), "{var} is global: every function would read the same secret");
            let value = env.get(var.as_str()).unwrap_or_else(|| panic!("{name} reads {var}, which it is not given"));
            let (tag, parameter) = intrinsic(value).unwrap_or_else(|| panic!("{name}: {var} is not a !Ref to a parameter"));
            assert_eq!(tag, "Ref", "{name}: {var}");
            let pattern = t["Parameters"][parameter.as_str()]["AllowedPattern"]
                .as_str()
                .unwrap_or_else(|| panic!("{parameter}: no AllowedPattern, so any ARN (or `*`) would be granted"));
            assert_allows_one_secret_arn(&parameter, pattern);
            if let Some(previous) = owners.insert(parameter.clone(), name.clone()) {
                panic!("{parameter} is read by both {previous} and {name}: each function has its own key");
            }
            expected.insert(parameter);
        }

        let mut granted = BTreeSet::new();
        for statement in statements(&resource) {
            let actions = strings(&statement["Action"]);
            let secrets_actions: Vec<&String> = actions.iter().filter(|a| a.starts_with("secretsmanager:")).collect();
            if secrets_actions.is_empty() {
                continue;
            }
            assert_eq!(actions, ["secretsmanager:GetSecretValue"], "{name}: a secrets statement grants exactly GetSecretValue");
            assert!(statement.get("Condition").is_none(), "{name}: the grant is by resource, not by condition");
            for resource in items(&statement["Resource"]) {
                let (tag, parameter) =
                    intrinsic(&resource).unwrap_or_else(|| panic!("{name}: secret resource {resource:?} is not a !Ref to its parameter"));
                assert_eq!(tag, "Ref", "{name}: {resource:?}");
                assert!(granted.insert(parameter.clone()), "{name}: {parameter} granted twice");
            }
        }
        assert_eq!(granted, expected, "{name}: GetSecretValue must be granted on exactly the secrets it reads");
    }
    assert_eq!(owners.len(), 4, "one Stripe key per function, and the webhook's signing secrets: {owners:?}");
}

#[test]
fn only_the_jobs_put_continuations_and_only_on_a_bus_of_their_own() {
    use expiry_jobs::{CONTINUATION_DETAIL_TYPE, CONTINUATION_SOURCE};
    use shared::domain::events::EVENT_SOURCE;

    let t = template::template();
    let mut continuation_publishers = Vec::new();
    for (name, resource) in functions(&t) {
        for statement in statements(&resource) {
            if !strings(&statement["Action"]).iter().any(|a| a == "events:PutEvents") {
                continue;
            }
            // Without a source condition a function could publish as anyone, the jobs included.
            let sources = strings(&statement["Condition"]["StringEquals"]["events:source"]);
            assert!(!sources.is_empty(), "{name}: PutEvents without an events:source condition");
            assert!(sources.iter().all(|s| !s.contains('*') && !s.contains('?')), "{name}: {sources:?}");
            let buses: Vec<String> = items(&statement["Resource"])
                .iter()
                .map(|r| intrinsic(r).unwrap_or_else(|| panic!("{name}: PutEvents on {r:?}, not on one of the stack's buses")).1)
                .collect();
            match buses.as_slice() {
                [bus] if bus == "JobContinuationBus.Arn" => {
                    assert_eq!(sources, [CONTINUATION_SOURCE], "{name}");
                    continuation_publishers.push(name.clone());
                }
                [bus] if bus == "DomainEventBus.Arn" => assert_eq!(sources, [EVENT_SOURCE], "{name}: domain events only"),
                other => panic!("{name}: PutEvents on {other:?}"),
            }
        }
    }
    assert_eq!(continuation_publishers, ["ExpiryJobsFunction"]);

    let jobs = &t["Resources"]["ExpiryJobsFunction"];
    let env = &jobs["Properties"]["Environment"]["Variables"];
    assert_eq!(intrinsic(&env["JOB_CONTINUATION_BUS_NAME"]), Some(("Ref".into(), "JobContinuationBus".into())));
    assert_eq!(t["Resources"]["JobContinuationBus"]["Type"].as_str(), Some("AWS::Events::EventBus"));
    // Two rules invoke the jobs from a bus, each handing over the whole event (its source,
    // type and time are what the function checks): continuations on the jobs' own bus, and
    // SES's feedback on the default bus (the only one SES delivers to).
    let rules: Vec<(String, Value)> = jobs["Properties"]["Events"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, e)| e["Type"].as_str() == Some("EventBridgeRule"))
        .map(|(n, e)| (n.as_str().unwrap().to_owned(), e["Properties"].clone()))
        .collect();
    assert_eq!(rules.len(), 2, "{rules:?}");
    let on_own_bus: Vec<&Value> = rules
        .iter()
        .map(|(_, r)| r)
        .filter(|r| intrinsic(&r["EventBusName"]) == Some(("Ref".into(), "JobContinuationBus".into())))
        .collect();
    assert_eq!(on_own_bus.len(), 1, "{rules:?}");
    let rule = on_own_bus[0];
    assert_eq!(strings(&rule["Pattern"]["source"]), [CONTINUATION_SOURCE]);
    assert_eq!(strings(&rule["Pattern"]["detail-type"]), [CONTINUATION_DETAIL_TYPE]);
    let feedback = rules.iter().map(|(_, r)| r).find(|r| r.get("EventBusName").is_none()).expect("the SES feedback rule");
    assert_eq!(strings(&feedback["Pattern"]["source"]), [mail_feedback::SES_SOURCE]);
    assert_eq!(strings(&feedback["Pattern"]["detail-type"]), mail_feedback::DETAIL_TYPES);
    for rule in [rule, feedback] {
        for key in ["InputPath", "InputTransformer", "Input"] {
            assert!(rule.get(key).is_none(), "a rule rewrites the event ({key}): the function could not check it");
        }
    }
}

/// Every route the admin router serves is an HttpApi event of the admin function, and the
/// function has no event for a route the router does not serve: a route missing here
/// answers 404 at API Gateway however well the function handles it.
#[test]
fn the_api_routes_are_exactly_the_routers() {
    let t = template::template();
    let (_, admin) = functions(&t).into_iter().find(|(_, r)| binary_of(r) == "admin-api").expect("the admin function");
    let deployed: BTreeSet<(String, String)> = admin["Properties"]["Events"]
        .as_mapping()
        .expect("admin-api events")
        .values()
        .filter(|e| e["Type"].as_str() == Some("HttpApi"))
        .map(|e| (e["Properties"]["Method"].as_str().unwrap().to_owned(), e["Properties"]["Path"].as_str().unwrap().to_owned()))
        .collect();
    let served: BTreeSet<(String, String)> = admin_api::ROUTES.iter().map(|r| (r.method.to_owned(), r.path.to_owned())).collect();
    assert_eq!(deployed, served);
}
