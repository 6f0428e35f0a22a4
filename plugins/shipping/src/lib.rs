//! `shipping`: ships an order and cancels a shipment.
use baton_guest::{Context, Failure};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Ship {
    order_id: String,
    customer: String,
}

#[derive(Serialize)]
struct Shipment {
    tracking_number: String,
    carrier: &'static str,
}

#[derive(Deserialize)]
struct Cancel {
    tracking_number: String,
}

#[derive(Serialize)]
struct Cancelled {
    cancelled: String,
}

/// A tracking number derived from the order, so the same order always gets the same one.
fn tracking_number(order_id: &str, customer: &str) -> String {
    // FNV-1a: tiny, stable across builds and platforms.
    let hash = order_id
        .bytes()
        .chain(customer.bytes())
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("TRK{:010}", hash % 10_000_000_000)
}

fn ship(req: Ship, _: &Context) -> Result<Shipment, Failure> {
    Ok(Shipment { tracking_number: tracking_number(&req.order_id, &req.customer), carrier: "baton-post" })
}

fn cancel(req: Cancel, _: &Context) -> Result<Cancelled, Failure> {
    Ok(Cancelled { cancelled: req.tracking_number })
}

baton_guest::worker! {
    "shipping.ship" => ship,
    "shipping.cancel" => cancel,
}
