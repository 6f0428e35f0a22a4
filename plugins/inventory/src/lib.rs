//! `inventory`: reserves and releases stock for an order.
//!
//! Stateless and deterministic so that tests and demos can steer it from the input:
//! an item with `qty > 100` is out of stock.
use baton_guest::{Context, Failure};
use serde::{Deserialize, Serialize};

/// Larger quantities than this are never in stock.
const MAX_QTY: u32 = 100;

#[derive(Deserialize)]
struct Item {
    sku: String,
    qty: u32,
}

#[derive(Deserialize)]
struct Order {
    order_id: String,
    items: Vec<Item>,
}

#[derive(Serialize)]
struct Reservation {
    reservation_id: String,
    skus: Vec<String>,
}

#[derive(Deserialize)]
struct Release {
    reservation_id: String,
}

#[derive(Serialize)]
struct Released {
    released: String,
}

fn reserve(order: Order, _: &Context) -> Result<Reservation, Failure> {
    if order.items.is_empty() {
        return Err(Failure::permanent("empty_order", format!("order {} has no items", order.order_id)));
    }
    if let Some(item) = order.items.iter().find(|i| i.qty > MAX_QTY) {
        return Err(Failure::permanent(
            "out_of_stock",
            format!("sku {} is out of stock: {} requested, at most {MAX_QTY} available", item.sku, item.qty),
        ));
    }
    Ok(Reservation {
        reservation_id: format!("res-{}", order.order_id),
        skus: order.items.into_iter().map(|i| i.sku).collect(),
    })
}

fn release(req: Release, _: &Context) -> Result<Released, Failure> {
    Ok(Released { released: req.reservation_id })
}

baton_guest::worker! {
    "inventory.reserve" => reserve,
    "inventory.release" => release,
}
