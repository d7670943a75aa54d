//! The local stack (`make dev`) builds its table from template.yaml exactly as the tests do,
//! and puts the Stripe secrets into moto's Secrets Manager where the functions read them.

use harness::{template, workspace_root, TestEnv};

fn python() -> String {
    let venv = workspace_root().join(".venv/bin/python");
    if venv.exists() {
        venv.display().to_string()
    } else {
        "python3".into()
    }
}

/// An index as compared: name, key schema, projection.
type IndexShape = (String, Vec<(String, String)>, String);

fn normalised(description: &aws_sdk_dynamodb::types::TableDescription) -> serde_json::Value {
    let keys = |ks: &[aws_sdk_dynamodb::types::KeySchemaElement]| -> Vec<(String, String)> {
        ks.iter().map(|k| (k.attribute_name().to_owned(), k.key_type().as_str().to_owned())).collect()
    };
    let mut attrs: Vec<(String, String)> = description
        .attribute_definitions()
        .iter()
        .map(|a| (a.attribute_name().to_owned(), a.attribute_type().as_str().to_owned()))
        .collect();
    attrs.sort();
    let mut gsis: Vec<IndexShape> = description
        .global_secondary_indexes()
        .iter()
        .map(|g| {
            let projection = g.projection().and_then(|p| p.projection_type()).map(|p| p.as_str().to_owned()).unwrap_or_default();
            (g.index_name().unwrap_or_default().to_owned(), keys(g.key_schema()), projection)
        })
        .collect();
    gsis.sort();
    serde_json::json!({ "keys": keys(description.key_schema()), "attributes": attrs, "gsis": gsis })
}

#[tokio::test]
async fn dev_bootstrap_creates_the_templates_table() {
    let env = TestEnv::new().await;
    let dev_table = format!("{}-dev", env.table);
    let status = std::process::Command::new(python())
        .arg(workspace_root().join("scripts/local_stack.py"))
        .args(["bootstrap", "--endpoint", env.moto.endpoint(), "--table", &dev_table, "--bus", &format!("{}-dev", env.bus)])
        .args(["--mail-from", "dev@logiscore.test"])
        .status()
        .expect("run local_stack.py");
    assert!(status.success());

    let describe = |name: String| {
        let ddb = env.ddb.clone();
        async move { ddb.describe_table().table_name(name).send().await.expect("describe").table.expect("table") }
    };
    let dev = describe(dev_table.clone()).await;
    let harness_table = describe(env.table.clone()).await;
    assert_eq!(normalised(&dev), normalised(&harness_table));

    // And both equal what the template says, attribute by attribute.
    let props = template::table_properties();
    let gsi_names: Vec<&str> =
        props["GlobalSecondaryIndexes"].as_sequence().unwrap().iter().map(|g| g["IndexName"].as_str().unwrap()).collect();
    let described = normalised(&dev);
    let dev_gsis: Vec<&str> = described["gsis"].as_array().unwrap().iter().map(|g| g[0].as_str().unwrap()).collect();
    let mut expected = gsi_names.clone();
    expected.sort();
    assert_eq!(dev_gsis, expected);
    let ttl = env.ddb.describe_time_to_live().table_name(&dev_table).send().await.unwrap().time_to_live_description.unwrap();
    assert_eq!(ttl.attribute_name(), props["TimeToLiveSpecification"]["AttributeName"].as_str());
    assert_eq!(ttl.time_to_live_status().map(|s| s.as_str()), Some("ENABLED"));
}

#[tokio::test]
async fn dev_bootstrap_stores_the_secrets_the_functions_read() {
    let env = TestEnv::new().await;
    let name = format!("logiscore/dev-test/stripe-secret-key-{}", env.table);
    let bootstrap = |value: &str| {
        std::process::Command::new(python())
            .arg(workspace_root().join("scripts/local_stack.py"))
            .args(["bootstrap", "--endpoint", env.moto.endpoint(), "--table", &format!("{}-dev", env.table)])
            .args(["--bus", &format!("{}-dev", env.bus), "--bus", &format!("{}-jobs-dev", env.bus)])
            .args(["--mail-from", "dev@logiscore.test", "--secret", &format!("LOCAL_STACK_STRIPE_KEY={name}")])
            // The value comes from the environment, as dev.sh passes it, not the command line.
            .env("LOCAL_STACK_STRIPE_KEY", value)
            .status()
            .expect("run local_stack.py")
    };
    assert!(bootstrap("sk_test_dev_first").success());
    let secrets = shared::secrets::SecretStore::new(&env.config);
    let read = secrets.read("STRIPE_SECRET_ARN", &name).await.expect("the function's read finds the secret by name");
    assert_eq!(read.expose(), "sk_test_dev_first");
    // A second `make dev` against the same moto with another key replaces the value.
    assert!(bootstrap("sk_test_dev_second").success());
    assert_eq!(secrets.read("STRIPE_SECRET_ARN", &name).await.unwrap().expose(), "sk_test_dev_second");
    // Asked by name: ListEventBuses pages, and the suite's moto holds many buses.
    let jobs_bus = format!("{}-jobs-dev", env.bus);
    let described = env.events.describe_event_bus().name(&jobs_bus).send().await.expect("the continuation bus exists");
    assert_eq!(described.name(), Some(jobs_bus.as_str()));
}
