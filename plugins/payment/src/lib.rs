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

#[cfg(test)]
mod tests {
    use baton_guest::Context;
    use baton_guest::testing::{Worker, context};
    use serde_json::json;

    fn order(price: f64, flaky_payment: u32) -> serde_json::Value {
        json!({ "order_id": "o-1", "customer": "ada", "items": [{ "qty": 2, "price": price }], "flaky_payment": flaky_payment })
    }

    #[test]
    fn a_charge_is_the_total_and_a_refund_names_the_payment() {
        let worker = Worker::new(super::baton_commands);
        let receipt = worker.call("payment.charge", &order(5.0, 0)).unwrap();
        assert_eq!(receipt, json!({ "payment_id": "pay-o-1", "amount": 10.0, "customer": "ada" }));
        let refunded = worker.call("payment.refund", &json!({ "payment_id": "pay-o-1" })).unwrap();
        assert_eq!(refunded["refunded"], "pay-o-1");
    }

    #[test]
    fn over_the_limit_is_declined_for_good() {
        let f = Worker::new(super::baton_commands).call("payment.charge", &order(6_000.0, 0)).unwrap_err();
        assert_eq!((f.code.as_str(), f.retryable), ("card_declined", false));
        assert!(f.message.contains("12000.00 is over the limit"), "{f}");
    }

    #[test]
    fn the_gateway_times_out_until_the_attempt_after_flaky_payment() {
        let worker = Worker::new(super::baton_commands);
        let attempt = |n| Context { attempt: n, ..context("payment.charge") };
        let f = worker.call_with(&attempt(2), &order(1.0, 2)).unwrap_err();
        assert_eq!((f.code.as_str(), f.retryable), ("gateway_timeout", true));
        assert!(worker.call_with(&attempt(3), &order(1.0, 2)).is_ok());
    }

    #[test]
    fn the_schemas_come_from_the_types() {
        let worker = Worker::new(super::baton_commands);
        let schema = worker.input_schema("payment.charge").unwrap();
        assert_eq!(schema["required"], json!(["order_id", "customer", "items"]));
        assert!(worker.output_schema("payment.refund").is_some());
    }
}
