//! Secrets in moto's Secrets Manager, as the functions read them in AWS: a function is
//! given a secret's ARN (`STRIPE_SECRET_ARN`, `STRIPE_WEBHOOK_SECRET_ARN`), never its value.

use std::collections::BTreeMap;

use crate::TestEnv;

/// Stores `value` as a new secret (named after `purpose`, unique to this call) in the
/// env's Secrets Manager; returns its ARN.
pub async fn store(env: &TestEnv, purpose: &str, value: &str) -> String {
    let client = aws_sdk_secretsmanager::Client::new(&env.config);
    let name = format!("logiscore/test/{purpose}-{}", uuid::Uuid::new_v4().simple());
    let created = client.create_secret().name(&name).secret_string(value).send().await.unwrap_or_else(|e| panic!("create {name}: {e:?}"));
    created.arn.unwrap_or_else(|| panic!("{name}: moto returned no ARN"))
}

/// The variables naming a function's Stripe secrets, with `stripe_key` (and, for the
/// webhook, `webhook_secret`) stored under them: what template.yaml gives each function.
pub async fn stripe_vars(env: &TestEnv, stripe_key: &str, webhook_secret: Option<&str>) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    vars.insert("STRIPE_SECRET_ARN".to_owned(), store(env, "stripe-key", stripe_key).await);
    if let Some(secret) = webhook_secret {
        vars.insert("STRIPE_WEBHOOK_SECRET_ARN".to_owned(), store(env, "stripe-webhook-signing", secret).await);
    }
    vars
}
