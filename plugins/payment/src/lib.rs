//! `payment`: charges and refunds an order.
//!
//! Deterministic, steered by the input: a total over 10000 is declined (fatal), and while the
//! attempt number is at most the optional `flaky_payment` count the gateway "times out"
//! (retryable), so tests can exercise retries.
//!
//! Its commands are `typed`: their JSON Schemas come from the types below, so the host
//! refuses a charge without a customer, or with a negative quantity, before it runs.
use baton_guest::{Context, Failure};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Orders above this total are declined.
const CARD_LIMIT: f64 = 10_000.0;

#[derive(Deserialize, JsonSchema)]
struct Item {
    qty: u32,
    price: f64,
}

#[derive(Deserialize, JsonSchema)]
struct Charge {
    order_id: String,
    customer: String,
    items: Vec<Item>,
    #[serde(default)]
    flaky_payment: u32,
}

#[derive(Serialize, JsonSchema)]
struct Receipt {
    payment_id: String,
    amount: f64,
    customer: String,
}

#[derive(Deserialize, JsonSchema)]
struct Refund {
    payment_id: String,
}

#[derive(Serialize, JsonSchema)]
struct Refunded {
    refunded: String,
}

fn charge(req: Charge, ctx: &Context) -> Result<Receipt, Failure> {
    if ctx.attempt <= req.flaky_payment {
        return Err(Failure::retryable(
            "gateway_timeout",
            format!("payment gateway did not answer (attempt {})", ctx.attempt),
        ));
    }
    let amount: f64 = req.items.iter().map(|i| f64::from(i.qty) * i.price).sum();
    if amount > CARD_LIMIT {
        return Err(Failure::permanent(
            "card_declined",
            format!("card of {} declined: {amount:.2} is over the limit of {CARD_LIMIT:.2}", req.customer),
        ));
    }
    Ok(Receipt { payment_id: format!("pay-{}", req.order_id), amount, customer: req.customer })
}

fn refund(req: Refund, _: &Context) -> Result<Refunded, Failure> {
    Ok(Refunded { refunded: req.payment_id })
}

baton_guest::worker! {
    typed "payment.charge" => charge,
    typed "payment.refund" => refund,
}
