//! One test's own AWS resources on the shared moto server.

use std::sync::Arc;

use aws_config::SdkConfig;
use shared::{
    config::{AwsClients, AwsResources},
    delivery::DeliveryPolicy,
    email::{EmailConfig, RetryPolicy},
    store::{DynamoStore, Store},
};

use crate::{
    mail::{MailSink, SentMail},
    moto::Moto,
    proxy::Proxy,
    template,
};

pub const MAIL_FROM: &str = "billing@logiscore.test";

/// The functions' e-mail configuration in tests.
pub fn email_config() -> EmailConfig {
    EmailConfig { mail_from: MAIL_FROM.into(), app_base_url: "https://app.logiscore.test".into(), configuration_set: None }
}

/// One quick SES attempt per delivery, so an outage shows at once (the outbox retries).
pub fn quick_mail_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 1,
        attempt_timeout: std::time::Duration::from_secs(3),
        base_backoff: std::time::Duration::from_millis(10),
        max_backoff: std::time::Duration::from_millis(10),
    }
}

/// Delivery without SES pacing and with three attempts before dead-lettering.
pub fn test_delivery_policy() -> DeliveryPolicy {
    DeliveryPolicy { max_attempts: 3, sends_per_second: None, ..DeliveryPolicy::default() }
}

#[derive(Clone)]
pub struct TestEnv {
    pub moto: &'static Moto,
    /// Every client but SES: straight to moto.
    pub config: SdkConfig,
    /// For SES clients: through this test's [`MailSink`] to the same moto.
    pub ses_config: SdkConfig,
    /// What this test sent (`None` in a child process attached to a parent's env).
    pub mail: Option<Arc<MailSink>>,
    /// The serial proxy `config` reaches moto through (`None` in a child process).
    pub serial: Option<Arc<Proxy>>,
    pub table: String,
    pub bus: String,
    pub queue_url: String,
    pub ddb: aws_sdk_dynamodb::Client,
    pub ses: aws_sdk_sesv2::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub store: Arc<dyn Store>,
}

impl TestEnv {
    /// A unique table (from template.yaml), SES identity, event bus, an SQS queue
    /// subscribed to everything on that bus, and a [`MailSink`] for this test's SES calls.
    pub async fn new() -> TestEnv {
        let moto = Moto::shared().await;
        // One request at a time to moto, as a real (isolated) DynamoDB would behave for
        // this test's concurrent code; see `proxy`.
        let serial = Proxy::serial(moto.endpoint()).await;
        let config = crate::moto::sdk_config_for(&serial.url).await;
        let mail = MailSink::start(moto).await;
        let ses_config = mail.sdk_config().await;
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let table = format!("subs-{suffix}");
        let bus = format!("bus-{suffix}");
        let ddb = aws_sdk_dynamodb::Client::new(&config);
        let ses = aws_sdk_sesv2::Client::new(&ses_config);
        let events = aws_sdk_eventbridge::Client::new(&config);
        let sqs = aws_sdk_sqs::Client::new(&config);
        template::create_table(&ddb, &table).await;
        ses.create_email_identity().email_identity(MAIL_FROM).send().await.expect("ses identity");
        events.create_event_bus().name(&bus).send().await.expect("event bus");
        let queue_url = sqs.create_queue().queue_name(format!("q-{suffix}")).send().await.expect("queue").queue_url.expect("queue url");
        let queue_arn = format!("arn:aws:sqs:us-east-1:123456789012:q-{suffix}");
        events
            .put_rule()
            .name(format!("all-{suffix}"))
            .event_bus_name(&bus)
            .event_pattern(r#"{"source":[{"prefix":""}]}"#)
            .send()
            .await
            .expect("rule");
        events
            .put_targets()
            .rule(format!("all-{suffix}"))
            .event_bus_name(&bus)
            .targets(aws_sdk_eventbridge::types::Target::builder().id("q").arn(queue_arn).build().expect("target"))
            .send()
            .await
            .expect("targets");
        let store: Arc<dyn Store> = Arc::new(DynamoStore::new(ddb.clone(), &table));
        TestEnv {
            moto,
            config,
            ses_config,
            mail: Some(Arc::new(mail)),
            serial: Some(Arc::new(serial)),
            table,
            bus,
            queue_url,
            ddb,
            ses,
            events,
            sqs,
            store,
        }
    }

    /// The resources a parent process created, seen from a child process: SES at
    /// `ses_endpoint` (the parent's sink), everything else at `moto`.
    pub async fn attach(moto: &'static Moto, table: String, bus: String, queue_url: String, ses_endpoint: &str) -> TestEnv {
        let config = moto.sdk_config().await;
        let ses_config = crate::moto::sdk_config_for(ses_endpoint).await;
        let ddb = aws_sdk_dynamodb::Client::new(&config);
        TestEnv {
            moto,
            ses: aws_sdk_sesv2::Client::new(&ses_config),
            events: aws_sdk_eventbridge::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            store: Arc::new(DynamoStore::new(ddb.clone(), &table)),
            ddb,
            config,
            ses_config,
            mail: None,
            serial: None,
            table,
            bus,
            queue_url,
        }
    }

    /// The table and bus, as the functions' configuration names them.
    pub fn resources(&self) -> AwsResources {
        AwsResources { table_name: self.table.clone(), event_bus_name: self.bus.clone() }
    }

    /// The clients the functions are built with: SES through the mail sink.
    pub fn aws_clients(&self) -> AwsClients {
        AwsClients::with_ses(&self.config, &self.ses_config)
    }

    /// This test's [`MailSink`].
    pub fn mail(&self) -> &MailSink {
        self.mail.as_deref().expect("this TestEnv was attached from a child process and records no mail")
    }

    /// The messages SES accepted for `address` from this test.
    pub fn mail_to(&self, address: &str) -> Vec<SentMail> {
        self.mail().sent_to(address)
    }

    /// Items in this test's table whose `pk` starts with `prefix` (`""`: every item), by a
    /// paginated `Select::Count` scan — a test-only check of what was written.
    pub async fn count_items(&self, prefix: &str) -> i32 {
        let mut total = 0;
        let mut start = None;
        loop {
            let page = self
                .ddb
                .scan()
                .table_name(&self.table)
                .select(aws_sdk_dynamodb::types::Select::Count)
                .filter_expression("begins_with(pk, :p)")
                .expression_attribute_values(":p", aws_sdk_dynamodb::types::AttributeValue::S(prefix.to_owned()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("scan count");
            total += page.count;
            match page.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return total,
            }
        }
    }

    /// Every outbox item in this test's table as `(id, state)`, in scan order (a `Vec`, so a
    /// duplicate id would show), by a consistent paginated scan.
    pub async fn outbox_items(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .ddb
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .filter_expression("entity = :e")
                .expression_attribute_values(":e", aws_sdk_dynamodb::types::AttributeValue::S("outbox".into()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("scan outbox");
            for item in page.items() {
                let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                out.push((text("id"), text("state")));
            }
            match page.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return out,
            }
        }
    }

    /// Every event delivered to the bus so far (the `detail-type`s and bodies), via SQS.
    pub async fn bus_events(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        loop {
            let received = self.sqs.receive_message().queue_url(&self.queue_url).max_number_of_messages(10).send().await.expect("receive");
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                return out;
            }
            for m in messages {
                out.push(serde_json::from_str(m.body().unwrap_or("null")).unwrap_or(serde_json::Value::Null));
                if let Some(handle) = m.receipt_handle() {
                    let _ = self.sqs.delete_message().queue_url(&self.queue_url).receipt_handle(handle).send().await;
                }
            }
        }
    }
}
