//! [`DynamoStore`]: the [`Store`] port over one DynamoDB table (key schema in the module docs).

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    error::SdkError,
    operation::{transact_write_items::TransactWriteItemsError, update_item::builders::UpdateItemFluentBuilder},
    types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem},
    Client,
};
use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use tracing::instrument;

use super::{
    items, items::Item, keys, AddressFeedback, Change, Erased, EventContext, ExpiryCursor, ExpiryPage, ExpiryRange, PendingPage, Store,
    StoreError, StripeMapping, UserRecords,
};
use crate::domain::{Erasure, HistoryEntry, OutboxItem, OutboxState, StripeCustomerId, Subscription, UserId, UserProfile};

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

const MAX_OUTBOX_RETRIES: usize = 3;

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn get(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let started = std::time::Instant::now();
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .consistent_read(true)
            .send()
            .await;
        dynamo_call("GetItem", if out.is_ok() { "ok" } else { "error" }, started);
        Ok(out.map_err(unavailable)?.item)
    }

    /// The cold start's read ([`crate::warm`]): a key that never holds an item, eventually
    /// consistent (half a read unit), on the table the handlers use.
    async fn warm_up(&self) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(keys::WARM_UP_KEY.to_owned()))
            .key("sk", AttributeValue::S(keys::WARM_UP_KEY.to_owned()))
            .send()
            .await;
        dynamo_call("GetItem", if out.is_ok() { "ok" } else { "error" }, started);
        out.map(|_| ()).map_err(unavailable)
    }

    /// The items of `wanted` (pk, sk) that exist, by key: one `BatchGetItem`, strongly
    /// consistent, plus bounded re-asks of what DynamoDB leaves unprocessed.
    async fn batch_get(&self, wanted: &[(String, String)]) -> Result<HashMap<(String, String), Item>, StoreError> {
        const ATTEMPTS: u32 = 4;
        let backoff = crate::backoff::Backoff { base: Duration::from_millis(25), factor: 4, max: Duration::from_secs(1) };
        let mut found = HashMap::new();
        // DynamoDB refuses a batch that names one key twice.
        let unique: std::collections::BTreeSet<&(String, String)> = wanted.iter().collect();
        let mut keys: Vec<HashMap<String, AttributeValue>> = unique
            .into_iter()
            .map(|(pk, sk)| {
                HashMap::from([("pk".to_owned(), AttributeValue::S(pk.clone())), ("sk".to_owned(), AttributeValue::S(sk.clone()))])
            })
            .collect();
        for attempt in 1..=ATTEMPTS {
            if keys.is_empty() {
                break;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut keys)))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            let started = std::time::Instant::now();
            let out = self.client.batch_get_item().request_items(&self.table, request).send().await;
            dynamo_call("BatchGetItem", if out.is_ok() { "ok" } else { "error" }, started);
            let mut out = out.map_err(unavailable)?;
            for item in out.responses.take().and_then(|mut r| r.remove(&self.table)).unwrap_or_default() {
                let key = (string_attr(&item, "pk")?, string_attr(&item, "sk")?);
                found.insert(key, item);
            }
            keys = out.unprocessed_keys.take().and_then(|mut u| u.remove(&self.table)).map(|k| k.keys).unwrap_or_default();
            if !keys.is_empty() && attempt < ATTEMPTS {
                tokio::time::sleep(backoff.random(attempt)).await;
            }
        }
        if !keys.is_empty() {
            return Err(StoreError::Unavailable(format!("{} keys left unprocessed by BatchGetItem", keys.len())));
        }
        Ok(found)
    }

    /// Every item under `USER#<user>`, strongly consistent, page after page.
    async fn user_items(&self, user: &UserId) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(keys::user_pk(user)))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            out.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    fn update(&self, pk: &str, sk: &str) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .key("sk", AttributeValue::S(sk.to_owned()))
    }

    /// Sends a conditional update: the item as written, `None` when its condition did not hold.
    async fn updated(&self, update: UpdateItemFluentBuilder) -> Result<Option<Item>, StoreError> {
        match update.return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew).send().await {
            Ok(out) => Ok(Some(out.attributes.unwrap_or_default())),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(None),
            Err(err) => Err(unavailable(err)),
        }
    }

    /// Writes outbox item `id` as erased (see [`OutboxItem::erased`]), unless a delivery
    /// attempt records its outcome first: then it is read again and erased as it is now.
    /// `None` when there is nothing to change (gone, an event, already erased); else
    /// whether a pending e-mail was stopped.
    async fn erase_outbox_item(&self, id: &str, at: DateTime<Utc>) -> Result<Option<bool>, StoreError> {
        for _ in 0..=MAX_OUTBOX_RETRIES {
            let Some(item) = self.outbox_item(id).await? else { return Ok(None) };
            let erased = item.clone().erased(at);
            if erased == item {
                return Ok(None);
            }
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(items::outbox(&erased)?))
                .condition_expression("#state = :state AND attempts = :attempts")
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":state", items::to_attr(&item.state)?)
                .expression_attribute_values(":attempts", AttributeValue::N(item.attempts.to_string()))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(Some(item.state == OutboxState::Pending && erased.state == OutboxState::Erased)),
                Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => continue,
                Err(err) => return Err(unavailable(err)),
            }
        }
        Err(StoreError::Conflict(format!("outbox item {id} kept changing while it was erased")))
    }

    fn transaction(&self, change: &Change) -> Result<(Vec<TransactWriteItem>, Vec<Role>), StoreError> {
        let mut writes = Vec::new();
        let mut roles = Vec::new();
        let user = change.user_id.as_ref().map(UserId::as_str).unwrap_or_default();
        if let Some(event) = &change.stripe_event {
            writes.push(self.put(
                items::ledger(&event.event_id, &event.event_type, event.received_at),
                Some("attribute_not_exists(pk)"),
                &[],
            )?);
            roles.push(Role::Ledger);
        }
        if let Some(write) = &change.subscription {
            let item = items::subscription(&write.record)?;
            writes.push(match write.expected_version {
                None => self.put(item, Some("attribute_not_exists(pk)"), &[])?,
                Some(v) => self.put(item, Some("version = :expected"), &[(":expected", AttributeValue::N(v.to_string()))])?,
            });
            roles.push(Role::Subscription);
        }
        for entry in &change.history {
            writes.push(self.put(items::history(entry)?, Some("attribute_not_exists(pk)"), &[])?);
            roles.push(Role::History);
        }
        for mapping in &change.mappings {
            let pk = match mapping {
                StripeMapping::Customer(id) => keys::customer_pk(id),
                StripeMapping::Subscription(id) => keys::stripe_subscription_pk(id),
            };
            let values = [(":user", AttributeValue::S(user.to_owned()))];
            writes.push(self.put(items::mapping(pk, user), Some("attribute_not_exists(pk) OR user_id = :user"), &values)?);
            roles.push(Role::Mapping);
        }
        for item in &change.outbox {
            writes.push(self.put(items::outbox(item)?, Some("attribute_not_exists(pk)"), &[])?);
            roles.push(Role::Outbox(item.id.clone()));
            // Unconditional: a duplicate item's reference is rewritten as it was.
            if let Some(user) = item.user_id() {
                writes.push(self.put(items::outbox_ref(user, item), None, &[])?);
                roles.push(Role::OutboxRef);
            }
        }
        if let (Some(op_id), Some(user)) = (&change.closes_operation, &change.user_id) {
            writes.push(self.put(closed_operation(user, op_id)?, Some("op_id = :op"), &[(":op", AttributeValue::S(op_id.clone()))])?);
            roles.push(Role::Operation);
        }
        Ok((writes, roles))
    }

    fn put(&self, item: Item, condition: Option<&str>, values: &[(&str, AttributeValue)]) -> Result<TransactWriteItem, StoreError> {
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item)).set_condition_expression(condition.map(str::to_owned));
        for (name, value) in values {
            put = put.expression_attribute_values(*name, value.clone());
        }
        let put = put.build().map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

#[async_trait]
impl Store for DynamoStore {
    #[instrument(skip(self), fields(user_id = %user))]
    async fn profile(&self, user: &UserId) -> Result<Option<UserProfile>, StoreError> {
        let item = self.get(keys::user_pk(user), keys::PROFILE_SK).await?;
        item.filter(|item| erasure_of(item).is_none()).map(items::from_item).transpose()
    }

    #[instrument(skip_all, fields(user_id = %profile.user_id))]
    async fn put_profile(&self, profile: &UserProfile) -> Result<(), StoreError> {
        // An update of every profile attribute but the Stripe customer, which only
        // `set_customer` writes: a profile edit racing a subscribe cannot erase it.
        let item = items::profile(profile)?;
        let mut update = self.update(&keys::user_pk(&profile.user_id), keys::PROFILE_SK);
        let mut sets = Vec::new();
        for (i, (name, value)) in item.into_iter().enumerate() {
            if !matches!(name.as_str(), "pk" | "sk" | "stripe_customer_id" | "undeliverable" | "last_delivery") {
                sets.push(format!("#a{i} = :v{i}"));
                update = update.expression_attribute_names(format!("#a{i}"), name).expression_attribute_values(format!(":v{i}"), value);
            }
        }
        // An erased user's tombstone is never written back into a profile.
        let update =
            update.update_expression(format!("SET {}", sets.join(", "))).condition_expression("attribute_not_exists(erasure_started_at)");
        let Some(written) = self.updated(update).await? else {
            return Err(StoreError::Conflict(format!("user {} is erased", profile.user_id)));
        };
        // SES's feedback is about the address it names: a new address starts clean. Each
        // removal is conditional on the mark still naming another address, so feedback
        // about the new one recorded meanwhile stays.
        for attribute in FEEDBACK_ATTRIBUTES {
            let named = written.get(attribute).and_then(|v| v.as_m().ok()).and_then(|m| m.get("address")).and_then(|v| v.as_s().ok());
            if named.is_some_and(|address| address != profile.email.as_str()) {
                let clear = self
                    .update(&keys::user_pk(&profile.user_id), keys::PROFILE_SK)
                    .update_expression("REMOVE #f")
                    .condition_expression("#f.address <> :email")
                    .expression_attribute_names("#f", attribute)
                    .expression_attribute_values(":email", AttributeValue::S(profile.email.to_string()));
                self.updated(clear).await?;
            }
        }
        Ok(())
    }

    #[instrument(skip_all, fields(user_id = %user))]
    async fn record_address_feedback(&self, user: &UserId, feedback: &AddressFeedback) -> Result<bool, StoreError> {
        // The first mark of an address wins (later bounces change nothing); a delivery is
        // recorded unless it is the one already recorded.
        let (attribute, value, fresh) = match feedback {
            AddressFeedback::Undeliverable(mark) => {
                ("undeliverable", items::to_attr(mark)?, "(attribute_not_exists(#f) OR #f.address <> :addr)")
            }
            AddressFeedback::Delivered(delivered) => {
                ("last_delivery", items::to_attr(delivered)?, "(attribute_not_exists(#f) OR #f.address <> :addr OR #f.event_id <> :event)")
            }
        };
        let event_id = match feedback {
            AddressFeedback::Undeliverable(mark) => &mark.event_id,
            AddressFeedback::Delivered(delivered) => &delivered.event_id,
        };
        let mut update = self
            .update(&keys::user_pk(user), keys::PROFILE_SK)
            .update_expression("SET #f = :value")
            .condition_expression(format!("email = :addr AND attribute_not_exists(erasure_started_at) AND {fresh}"))
            .expression_attribute_names("#f", attribute)
            .expression_attribute_values(":value", value)
            .expression_attribute_values(":addr", AttributeValue::S(feedback.address().to_string()));
        if matches!(feedback, AddressFeedback::Delivered(_)) {
            update = update.expression_attribute_values(":event", AttributeValue::S(event_id.clone()));
        }
        Ok(self.updated(update).await?.is_some())
    }

    #[instrument(skip(self), fields(user_id = %user))]
    async fn erasure(&self, user: &UserId) -> Result<Option<Erasure>, StoreError> {
        Ok(self.get(keys::user_pk(user), keys::PROFILE_SK).await?.as_ref().and_then(erasure_of))
    }

    #[instrument(skip(self), fields(user_id = %user))]
    async fn begin_erasure(&self, user: &UserId, at: DateTime<Utc>) -> Result<Erasure, StoreError> {
        let update = self
            .update(&keys::user_pk(user), keys::PROFILE_SK)
            .update_expression("SET erasure_started_at = if_not_exists(erasure_started_at, :at)")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":at", AttributeValue::S(keys::timestamp(at)));
        let written = self.updated(update).await?.ok_or_else(|| StoreError::Conflict(format!("user {user} has no profile to erase")))?;
        erasure_of(&written).ok_or_else(|| StoreError::Corrupt("the profile has no erasure after starting one".into()))
    }

    /// Item by item, each write idempotent: the profile's personal attributes, each
    /// comment, each referenced e-mail; `erased_at` last, so an unfinished erasure reads
    /// as unfinished until everything before it is done.
    #[instrument(skip(self), fields(user_id = %user))]
    async fn erase_user(&self, user: &UserId, at: DateTime<Utc>) -> Result<Erased, StoreError> {
        let pk = keys::user_pk(user);
        let mut erased = Erased::default();
        for item in self.user_items(user).await? {
            let sk = item.get("sk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            if sk == keys::PROFILE_SK {
                let update = self.update(&pk, &sk).update_expression(format!("REMOVE {}", PERSONAL_PROFILE_ATTRIBUTES.join(", ")));
                if self.updated(update.condition_expression("attribute_exists(erasure_started_at)")).await?.is_none() {
                    return Err(StoreError::Conflict(format!("user {user} has no erasure started")));
                }
            } else if sk == keys::SUBSCRIPTION_SK && item.contains_key("comment") {
                // The version moves, so a writer that read the record with its comment
                // cannot put it back (its version check fails and it reads again).
                let update = self
                    .update(&pk, &sk)
                    .update_expression("REMOVE #comment SET version = version + :one")
                    .expression_attribute_names("#comment", "comment")
                    .expression_attribute_values(":one", AttributeValue::N("1".into()))
                    .condition_expression("attribute_exists(pk)");
                erased.comments += u32::from(self.updated(update).await?.is_some());
            } else if sk.starts_with(keys::HISTORY_PREFIX) && item.contains_key("comment") {
                let update = self
                    .update(&pk, &sk)
                    .update_expression("REMOVE #comment")
                    .expression_attribute_names("#comment", "comment")
                    .condition_expression("attribute_exists(pk)");
                erased.comments += u32::from(self.updated(update).await?.is_some());
            } else if let Some(id) = sk.strip_prefix(keys::OUTBOX_REF_PREFIX) {
                if let Some(stopped) = self.erase_outbox_item(id, at).await? {
                    erased.outbox_items += 1;
                    erased.mails_stopped += u32::from(stopped);
                }
            }
        }
        let finish = self
            .update(&pk, keys::PROFILE_SK)
            .update_expression("SET erased_at = if_not_exists(erased_at, :at)")
            .expression_attribute_values(":at", AttributeValue::S(keys::timestamp(at)))
            .condition_expression("attribute_exists(erasure_started_at)");
        if self.updated(finish).await?.is_none() {
            return Err(StoreError::Conflict(format!("user {user} has no erasure to finish")));
        }
        Ok(erased)
    }

    #[instrument(skip(self), fields(user_id = %user))]
    async fn user_records(&self, user: &UserId) -> Result<UserRecords, StoreError> {
        let mut records = UserRecords::default();
        for item in self.user_items(user).await? {
            let sk = item.get("sk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            if sk == keys::PROFILE_SK {
                records.erasure = erasure_of(&item);
                records.stripe_customer_id = match item.get("stripe_customer_id").and_then(|v| v.as_s().ok()) {
                    Some(raw) => Some(StripeCustomerId::parse(raw).map_err(|e| StoreError::Corrupt(e.to_string()))?),
                    None => None,
                };
                // A tombstone (or an erasure half-way) does not read as a profile.
                records.profile = if records.erasure.is_some() { None } else { Some(items::from_item(item)?) };
            } else if sk == keys::SUBSCRIPTION_SK {
                records.subscription = Some(items::from_item(item)?);
            } else if sk == keys::OPERATION_SK {
                records.operation = Some(items::from_item(item)?);
            } else if sk.starts_with(keys::HISTORY_PREFIX) {
                records.history.push(items::from_item(item)?);
            } else if let Some(id) = sk.strip_prefix(keys::OUTBOX_REF_PREFIX) {
                if let Some(outbox) = self.outbox_item(id).await? {
                    records.outbox.push(outbox);
                }
            }
        }
        // The query reads keys in ascending order: history oldest first.
        records.history.reverse();
        records.outbox.sort_by_key(|o| o.created_at);
        Ok(records)
    }

    async fn cursor(&self, job: &str) -> Result<Option<String>, StoreError> {
        let Some(item) = self.get(keys::job_pk(job), keys::CURSOR_SK).await? else { return Ok(None) };
        Ok(item.get("position").and_then(|v| v.as_s().ok()).cloned())
    }

    async fn put_cursor(&self, job: &str, position: &str) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(keys::job_pk(job)))
            .item("sk", AttributeValue::S(keys::CURSOR_SK.to_owned()))
            .item("entity", AttributeValue::S("job_cursor".into()))
            .item("position", AttributeValue::S(position.to_owned()))
            .item("updated_at", AttributeValue::S(keys::timestamp(Utc::now())))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    #[instrument(skip(self), fields(user_id = %user))]
    async fn set_customer(&self, user: &UserId, customer: &StripeCustomerId) -> Result<(), StoreError> {
        let update = self
            .update(&keys::user_pk(user), keys::PROFILE_SK)
            .update_expression("SET stripe_customer_id = :c")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":c", AttributeValue::S(customer.to_string()));
        match self.updated(update).await? {
            Some(_) => Ok(()),
            None => Err(StoreError::Conflict(format!("user {user} has no profile to record customer {customer} on"))),
        }
    }

    #[instrument(skip(self), fields(user_id = %user))]
    async fn subscription(&self, user: &UserId) -> Result<Option<Subscription>, StoreError> {
        self.get(keys::user_pk(user), keys::SUBSCRIPTION_SK).await?.map(items::from_item).transpose()
    }

    /// One strongly consistent `BatchGetItem` (ledger entry and mapping items; a handful of
    /// keys, far below its 100). Keys DynamoDB leaves unprocessed (throttling) are asked
    /// again, a bounded number of times, with the one backoff.
    #[instrument(skip_all, fields(mappings = mappings.len()))]
    async fn event_context(&self, event_id: Option<&str>, mappings: &[StripeMapping]) -> Result<EventContext, StoreError> {
        let ledger = event_id.map(|id| (keys::event_pk(id), keys::LEDGER_SK.to_owned()));
        let wanted: Vec<(String, String)> =
            ledger.iter().cloned().chain(mappings.iter().map(|m| (mapping_pk(m), keys::MAP_SK.to_owned()))).collect();
        let found = self.batch_get(&wanted).await?;
        let owners = mappings
            .iter()
            .map(|m| found.get(&(mapping_pk(m), keys::MAP_SK.to_owned())).map(mapping_owner).transpose())
            .collect::<Result<_, _>>()?;
        Ok(EventContext { seen: ledger.is_some_and(|key| found.contains_key(&key)), owners })
    }

    async fn outbox_item(&self, id: &str) -> Result<Option<OutboxItem>, StoreError> {
        self.get(keys::outbox_pk(id), keys::OUTBOX_SK).await?.as_ref().map(items::outbox_from).transpose()
    }

    /// The user's history, newest first.
    #[instrument(skip(self), fields(user_id = %user))]
    async fn history(&self, user: &UserId, limit: i32) -> Result<Vec<HistoryEntry>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", AttributeValue::S(keys::user_pk(user)))
            .expression_attribute_values(":prefix", AttributeValue::S(keys::HISTORY_PREFIX.into()))
            .scan_index_forward(false)
            .limit(limit)
            .send()
            .await
            .map_err(unavailable)?;
        out.items.unwrap_or_default().into_iter().map(items::from_item).collect()
    }

    /// Commits a [`Change`] atomically. Outbox items that already exist (the same logical
    /// notification queued by an earlier cause) are dropped and the rest is retried, so a
    /// notification is queued once however many causes it has.
    #[instrument(skip_all, fields(user_id = ?change.user_id, event_id = ?change.stripe_event.as_ref().map(|e| &e.event_id)))]
    async fn commit(&self, mut change: Change) -> Result<(), StoreError> {
        for _ in 0..=MAX_OUTBOX_RETRIES {
            let (writes, roles) = self.transaction(&change)?;
            if writes.is_empty() {
                return Ok(());
            }
            let started = std::time::Instant::now();
            let result = self.client.transact_write_items().set_transact_items(Some(writes)).send().await;
            let err = match result {
                Ok(_) => {
                    dynamo_call("TransactWriteItems", "ok", started);
                    return Ok(());
                }
                Err(err) => err,
            };
            let reasons = match cancellation_codes(&err) {
                Some(reasons) => reasons,
                None => {
                    dynamo_call("TransactWriteItems", "error", started);
                    return Err(unavailable(err));
                }
            };
            dynamo_call("TransactWriteItems", "conditional", started);
            let mut existing_outbox = Vec::new();
            for (role, code) in roles.iter().zip(reasons.iter()) {
                if code.as_deref() != Some("ConditionalCheckFailed") {
                    continue;
                }
                match role {
                    Role::Ledger => return Err(StoreError::DuplicateEvent),
                    Role::Subscription => return Err(StoreError::Conflict("subscription version changed".into())),
                    Role::Mapping => return Err(StoreError::Conflict("stripe id belongs to another user".into())),
                    Role::Outbox(id) => existing_outbox.push(id.clone()),
                    Role::History => return Err(StoreError::Conflict("history entry exists".into())),
                    Role::Operation => return Err(StoreError::Conflict("the operation was taken over by another request".into())),
                    Role::OutboxRef => {}
                }
            }
            if existing_outbox.is_empty() {
                // Cancelled for another reason (e.g. a concurrent transaction on the same item).
                return Err(StoreError::Conflict(format!("transaction cancelled: {reasons:?}")));
            }
            tracing::info!(duplicates = ?existing_outbox, "outbox items already queued; committing without them");
            change.outbox.retain(|o| !existing_outbox.contains(&o.id));
        }
        Err(StoreError::Conflict("outbox kept conflicting".into()))
    }

    /// One conditional `PutItem`: taken when there is no operation, a closed one, the same
    /// operation (a retry), or an open one whose lease ran out (then returned, from
    /// `ALL_OLD`, for the caller to finish).
    #[instrument(skip_all, fields(user_id = %op.user_id, op_id = %op.op_id))]
    async fn begin_operation(&self, op: &super::Operation) -> Result<Option<super::Operation>, StoreError> {
        let started = std::time::Instant::now();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(items::operation(op)?))
            .condition_expression("attribute_not_exists(pk) OR #open = :closed OR lease_ms < :now OR op_id = :op")
            .expression_attribute_names("#open", "open")
            .expression_attribute_values(":closed", AttributeValue::Bool(false))
            .expression_attribute_values(":op", AttributeValue::S(op.op_id.clone()))
            .expression_attribute_values(":now", AttributeValue::N(op.started_at.timestamp_millis().to_string()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                dynamo_call("PutItem", "ok", started);
                let old: Option<super::Operation> = out.attributes.map(items::from_item).transpose()?;
                Ok(old.filter(|o| o.open && o.op_id != op.op_id))
            }
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                dynamo_call("PutItem", "conditional", started);
                Err(StoreError::Conflict("another operation is in progress for this user".into()))
            }
            Err(err) => {
                dynamo_call("PutItem", "error", started);
                Err(unavailable(err))
            }
        }
    }

    /// Deletes the operation item, so an operation that ended with nothing to record (a
    /// declined card, Stripe down before the create) leaves nothing behind.
    #[instrument(skip(self), fields(user_id = %user))]
    async fn close_operation(&self, user: &UserId, op_id: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(keys::user_pk(user)))
            .key("sk", AttributeValue::S(keys::OPERATION_SK.to_owned()))
            .condition_expression("op_id = :op")
            .expression_attribute_values(":op", AttributeValue::S(op_id.to_owned()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
            Err(err) => Err(unavailable(err)),
        }
    }

    /// One page of live subscriptions in `range`, walking the expiry index shard by
    /// shard. Reads only index entries inside the range: `scanned` equals the number of
    /// subscriptions returned (plus nothing: key conditions, no filter).
    #[instrument(skip(self))]
    async fn expiring(&self, range: ExpiryRange, cursor: Option<ExpiryCursor>, page_size: i32) -> Result<ExpiryPage, StoreError> {
        let mut cursor = cursor.unwrap_or(ExpiryCursor { shard: 0, after: None });
        let mut subscriptions = Vec::new();
        let mut scanned = 0u64;
        while cursor.shard < keys::EXPIRY_SHARDS {
            let remaining = page_size - subscriptions.len() as i32;
            if remaining <= 0 {
                return Ok(ExpiryPage { subscriptions, scanned, next: Some(cursor) });
            }
            let pk = keys::expiry_pk_for_shard(cursor.shard);
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(keys::GSI_EXPIRY)
                .expression_attribute_values(":pk", AttributeValue::S(pk))
                .limit(remaining);
            query = match range {
                ExpiryRange::EndingBetween(from, to) => query
                    .key_condition_expression("exp_pk = :pk AND exp_sk BETWEEN :from AND :to")
                    .expression_attribute_values(":from", AttributeValue::S(keys::timestamp(from)))
                    // `~` sorts after every character of a user id, so `to#<any user>` is included.
                    .expression_attribute_values(":to", AttributeValue::S(format!("{}#~", keys::timestamp(to)))),
                ExpiryRange::EndedBefore(before) => query
                    .key_condition_expression("exp_pk = :pk AND exp_sk < :before")
                    .expression_attribute_values(":before", AttributeValue::S(keys::timestamp(before))),
            };
            if let Some(after) = &cursor.after {
                let key = after.iter().map(|(k, v)| (k.clone(), AttributeValue::S(v.clone()))).collect();
                query = query.set_exclusive_start_key(Some(key));
            }
            let out = query.send().await.map_err(unavailable)?;
            scanned += out.scanned_count.max(0) as u64;
            for item in out.items.unwrap_or_default() {
                subscriptions.push(items::from_item(item)?);
            }
            cursor = match out.last_evaluated_key {
                Some(key) => ExpiryCursor {
                    shard: cursor.shard,
                    after: Some(key.into_iter().filter_map(|(k, v)| v.as_s().ok().map(|s| (k, s.clone()))).collect()),
                },
                None => ExpiryCursor { shard: cursor.shard + 1, after: None },
            };
        }
        Ok(ExpiryPage { subscriptions, scanned, next: None })
    }

    /// Pending outbox items due at `now`, oldest first per shard, at most `limit`.
    #[instrument(skip(self))]
    async fn pending_outbox(&self, now: DateTime<Utc>, limit: i32) -> Result<PendingPage, StoreError> {
        let mut items_out = Vec::new();
        let mut scanned = 0;
        for shard in 0..keys::PENDING_SHARDS {
            let remaining = limit - items_out.len() as i32;
            if remaining <= 0 {
                break;
            }
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(keys::GSI_PENDING)
                .key_condition_expression("pend_pk = :pk AND pend_sk <= :now")
                .expression_attribute_values(":pk", AttributeValue::S(keys::pending_pk_for_shard(shard)))
                .expression_attribute_values(":now", AttributeValue::S(format!("{}#~", keys::timestamp(now))))
                .limit(remaining)
                .send()
                .await
                .map_err(unavailable)?;
            scanned += out.scanned_count.max(0) as u64;
            for item in out.items.unwrap_or_default() {
                items_out.push(items::outbox_from(&item)?);
            }
        }
        Ok(PendingPage { items: items_out, scanned })
    }

    #[instrument(skip(self))]
    async fn claim_send_slot(&self, second: i64, rate: u32) -> Result<bool, StoreError> {
        let started = std::time::Instant::now();
        let update = self
            .update(&format!("SEND_SLOT#{second}"), "SLOT")
            .update_expression("ADD used :one SET expires_at = :ttl")
            .condition_expression("attribute_not_exists(used) OR used < :rate")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":rate", AttributeValue::N(rate.to_string()))
            .expression_attribute_values(":ttl", AttributeValue::N(second.saturating_add(86_400).to_string()));
        let claimed = self.updated(update).await;
        dynamo_call("UpdateItem", if claimed.is_ok() { "ok" } else { "error" }, started);
        Ok(claimed?.is_some())
    }

    /// Records a delivery attempt's outcome. The write is conditional on the item still
    /// being pending with the attempt count the caller saw, so two concurrent sweepers
    /// cannot both record a send. Returns `false` when another worker got there first.
    #[instrument(skip(self, item), fields(outbox_id = %item.id, state = ?item.state))]
    async fn update_outbox(&self, item: &OutboxItem, seen_attempts: u32) -> Result<bool, StoreError> {
        let started = std::time::Instant::now();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(items::outbox(item)?))
            .condition_expression("#state = :pending AND attempts = :attempts")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":pending", items::to_attr(&OutboxState::Pending)?)
            .expression_attribute_values(":attempts", AttributeValue::N(seen_attempts.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => {
                dynamo_call("PutItem", "ok", started);
                Ok(true)
            }
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                dynamo_call("PutItem", "conditional", started);
                Ok(false)
            }
            Err(err) => {
                dynamo_call("PutItem", "error", started);
                Err(unavailable(err))
            }
        }
    }
}

#[derive(Debug)]
enum Role {
    Ledger,
    Subscription,
    History,
    Mapping,
    Outbox(String),
    OutboxRef,
    Operation,
}

/// The profile attributes that identify the person; an erasure removes them.
const PERSONAL_PROFILE_ATTRIBUTES: [&str; 6] = ["email", "full_name", "username", "user_type", "undeliverable", "last_delivery"];

/// The profile attributes holding SES's feedback about an address (each names its address).
const FEEDBACK_ATTRIBUTES: [&str; 2] = ["undeliverable", "last_delivery"];

/// The erasure a profile item records, if any.
fn erasure_of(item: &Item) -> Option<Erasure> {
    let time = |name: &str| {
        let text = item.get(name)?.as_s().ok()?;
        DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
    };
    Some(Erasure { started_at: time("erasure_started_at")?, finished_at: time("erased_at") })
}

/// The operation item once closed: nothing in flight for the user.
fn closed_operation(user: &UserId, op_id: &str) -> Result<Item, StoreError> {
    let now = Utc::now();
    items::operation(&super::Operation { user_id: user.clone(), op_id: op_id.to_owned(), started_at: now, lease_until: now, open: false })
}

fn cancellation_codes<R>(err: &SdkError<TransactWriteItemsError, R>) -> Option<Vec<Option<String>>> {
    match err.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(e) => {
            Some(e.cancellation_reasons().iter().map(|r| r.code().map(str::to_owned)).collect())
        }
        _ => None,
    }
}

/// `DynamoCalls`/`DynamoLatency{Operation,Outcome}` for one request (see `crate::metrics`).
fn dynamo_call(operation: &'static str, outcome: &'static str, started: std::time::Instant) {
    crate::metrics::dependency_call("DynamoCalls", "DynamoLatency", operation, outcome, started.elapsed());
}

fn unavailable<E: std::error::Error + 'static>(err: E) -> StoreError {
    StoreError::Unavailable(super::error_chain(&err))
}

/// The mapping item's partition key.
fn mapping_pk(mapping: &StripeMapping) -> String {
    match mapping {
        StripeMapping::Customer(id) => keys::customer_pk(id),
        StripeMapping::Subscription(id) => keys::stripe_subscription_pk(id),
    }
}

/// The user a mapping item names.
fn mapping_owner(item: &Item) -> Result<UserId, StoreError> {
    let raw = item.get("user_id").and_then(|v| v.as_s().ok()).ok_or_else(|| StoreError::Corrupt("mapping without user_id".into()))?;
    UserId::parse(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn string_attr(item: &Item, name: &str) -> Result<String, StoreError> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned().ok_or_else(|| StoreError::Corrupt(format!("item without {name}")))
}

#[async_trait]
impl crate::warm::Warm for DynamoStore {
    async fn warm(&self) -> Result<(), String> {
        self.warm_up().await.map_err(|e| e.to_string())
    }
}
