//! `notification`: tells the customer about their order.
use baton_guest::{Context, Failure};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Notify {
    customer: String,
    message: String,
}

#[derive(Serialize)]
struct Sent {
    to: String,
    message: String,
}

fn send(req: Notify, _: &Context) -> Result<Sent, Failure> {
    if req.customer.is_empty() {
        return Err(Failure::permanent("no_recipient", "the order has no customer to notify"));
    }
    Ok(Sent { to: req.customer, message: req.message })
}

baton_guest::worker! {
    "notification.send" => send,
}
