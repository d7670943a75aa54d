//! `/v1/test_helpers/test_clocks`: create, retrieve, list, advance, delete.
//!
//! Advancing runs all due billing work before the response returns (see `clock.rs`),
//! so the clock answers `ready` rather than `advancing`; the
//! `test_helpers.test_clock.advancing` and `.ready` events are both emitted.

use serde_json::{json, Value};

use super::{newest_first, optional_string, paginate, Ctx};
use crate::clock;
use crate::error::ApiError;
use crate::fixtures::fixture;
use crate::ids::new_id;
use crate::state::{Sim, TestClock};
use crate::time::{wall_now, DAY};

pub fn render(c: &TestClock, status: &str) -> Value {
    let details = if status == "advancing" { json!({ "advancing": { "target_frozen_time": c.frozen_time } }) } else { json!({}) };
    let mut t = fixture("test_helpers.test_clock");
    t.set("id", c.id.clone())
        .set("object", "test_helpers.test_clock")
        .set("created", c.created)
        .set("deletes_after", c.deletes_after)
        .set("frozen_time", c.frozen_time)
        .set("livemode", false)
        .set("name", c.name.clone())
        .set("status", status)
        .set("status_details", details);
    t.into_value()
}

fn get<'a>(sim: &'a Sim, id: &str) -> Result<&'a TestClock, ApiError> {
    sim.test_clocks.get(id).ok_or_else(|| ApiError::no_such("test_helpers.test_clock", id, Some("test_clock")))
}

pub fn create(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let frozen_time = p.i64("frozen_time")?.ok_or_else(|| ApiError::missing_param("frozen_time"))?;
    if frozen_time < 0 {
        return Err(ApiError::invalid_request(Some("frozen_time"), "frozen_time must be a Unix timestamp."));
    }
    let now = wall_now();
    let seq = sim.next_seq();
    let c = TestClock {
        id: new_id("clock"),
        seq,
        created: now,
        frozen_time,
        name: optional_string(p, "name")?.flatten(),
        deletes_after: now + 30 * DAY,
    };
    let obj = render(&c, "ready");
    sim.test_clocks.insert(c.id.clone(), c);
    sim.emit("test_helpers.test_clock.created", obj.clone(), None, now);
    Ok(obj)
}

pub fn retrieve(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    Ok(render(get(sim, ctx.id(0))?, "ready"))
}

pub fn list(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let items = newest_first(sim.test_clocks.values(), |c| c.seq, |c| (c.id.clone(), render(c, "ready")));
    paginate(&ctx.params, items, "/v1/test_helpers/test_clocks")
}

pub fn advance(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let id = ctx.id(0).to_string();
    let current = get(sim, &id)?.clone();
    let target = ctx.params.i64("frozen_time")?.ok_or_else(|| ApiError::missing_param("frozen_time"))?;
    if target <= current.frozen_time {
        return Err(ApiError::invalid_request(
            Some("frozen_time"),
            format!("The frozen_time ({target}) must be after the clock's current frozen_time ({}).", current.frozen_time),
        ));
    }
    let now = wall_now();
    let mut advancing = current.clone();
    advancing.frozen_time = target;
    sim.emit("test_helpers.test_clock.advancing", render(&advancing, "advancing"), None, now);
    // Work triggered by the clock carries no request, as with Stripe.
    let request = std::mem::take(&mut sim.request);
    let result = clock::advance(sim, &id, target);
    sim.request = request;
    result?;
    let obj = render(get(sim, &id)?, "ready");
    sim.emit("test_helpers.test_clock.ready", obj.clone(), None, wall_now());
    Ok(obj)
}

/// Deleting a clock deletes the customers in its world and their subscriptions.
pub fn delete(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let id = get(sim, ctx.id(0))?.id.clone();
    let customers: Vec<String> =
        sim.customers.values().filter(|c| c.test_clock.as_deref() == Some(id.as_str())).map(|c| c.id.clone()).collect();
    for c in &customers {
        if let Some(cus) = sim.customers.get_mut(c) {
            cus.deleted = true;
        }
    }
    sim.subscriptions.retain(|_, s| s.test_clock.as_deref() != Some(id.as_str()));
    let obj = render(&sim.test_clocks[&id], "ready");
    sim.test_clocks.remove(&id);
    sim.emit("test_helpers.test_clock.deleted", obj, None, wall_now());
    let mut t = fixture("deleted_test_helpers.test_clock");
    t.set("id", id).set("object", "test_helpers.test_clock").set("deleted", true);
    Ok(t.into_value())
}
