//! Reads the table definition out of `template.yaml`, the one source of truth.

use aws_sdk_dynamodb::{
    types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType, ScalarAttributeType,
        TimeToLiveSpecification,
    },
    Client,
};
use serde_yaml::Value;

use crate::workspace_root;

pub fn template() -> Value {
    let text = std::fs::read_to_string(workspace_root().join("template.yaml")).expect("read template.yaml");
    serde_yaml::from_str(&text).expect("template.yaml parses")
}

/// The `Properties` of the `SubscriptionsTable` resource.
pub fn table_properties() -> Value {
    template()["Resources"]["SubscriptionsTable"]["Properties"].clone()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("template: {key} is not a string in {v:?}"))
}

fn key_schema(v: &Value) -> Vec<KeySchemaElement> {
    v.as_sequence()
        .expect("KeySchema list")
        .iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(str_of(k, "AttributeName"))
                .key_type(KeyType::from(str_of(k, "KeyType")))
                .build()
                .expect("key schema element")
        })
        .collect()
}

/// Creates a table named `name` with the template's keys, GSIs and TTL.
pub async fn create_table(client: &Client, name: &str) {
    let props = table_properties();
    let attributes = props["AttributeDefinitions"]
        .as_sequence()
        .expect("AttributeDefinitions")
        .iter()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(str_of(a, "AttributeName"))
                .attribute_type(ScalarAttributeType::from(str_of(a, "AttributeType")))
                .build()
                .expect("attribute definition")
        })
        .collect();
    let indexes = props["GlobalSecondaryIndexes"]
        .as_sequence()
        .expect("GlobalSecondaryIndexes")
        .iter()
        .map(|g| {
            GlobalSecondaryIndex::builder()
                .index_name(str_of(g, "IndexName"))
                .set_key_schema(Some(key_schema(&g["KeySchema"])))
                .projection(Projection::builder().projection_type(ProjectionType::from(str_of(&g["Projection"], "ProjectionType"))).build())
                .build()
                .expect("gsi")
        })
        .collect();
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::from(str_of(&props, "BillingMode")))
        .set_attribute_definitions(Some(attributes))
        .set_key_schema(Some(key_schema(&props["KeySchema"])))
        .set_global_secondary_indexes(Some(indexes))
        .send()
        .await
        .expect("create table");
    let ttl = &props["TimeToLiveSpecification"];
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(str_of(ttl, "AttributeName"))
                .enabled(ttl["Enabled"].as_bool().expect("TTL Enabled"))
                .build()
                .expect("ttl"),
        )
        .send()
        .await
        .expect("update ttl");
}
