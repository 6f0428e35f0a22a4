//! `travel`: books and cancels the hotel, the flight and the car of a trip.
//!
//! - `hotel.book` `{"destination", "date", "nights", "guests", "booking_id"}` ->
//!   `{"hotel_booking": "htl-<booking_id>", "destination", "nights"}`
//! - `flight.book` (the same input) -> `{"flight_booking": "flt-<booking_id>", "destination"}`
//! - `hotel.cancel` `{"hotel_booking", ...}` (the output of `hotel.book`) -> `{"cancelled"}`
//! - `flight.cancel` `{"flight_booking", ...}` (the output of `flight.book`) -> `{"cancelled"}`
//! - `car.rent` (the same input) -> `{"car_booking": "car-<booking_id>", "destination", "days"}`
//! - `car.cancel` `{"car_booking", ...}` (the output of `car.rent`) -> `{"cancelled"}`
//!
//! Stateless and deterministic, steered by the input so tests can make a step fail: there is
//! no hotel in "Atlantis" (`no_hotel`), no hotel room takes more than 8 guests
//! (`too_many_guests`), no flight goes to "Nowhere" (`no_flight`) and no car is rented in
//! "Venice" (`no_car`), all permanent, so the
//! saga compensates what it booked before. Destinations compare without regard to case.
use baton_guest::{Context, Failure};
use serde::{Deserialize, Serialize};

/// The destination without a hotel.
const NO_HOTEL: &str = "Atlantis";
/// The destination without a flight.
const NO_FLIGHT: &str = "Nowhere";
/// The destination without a car.
const NO_CAR: &str = "Venice";
/// The most guests one hotel booking takes.
const MAX_GUESTS: u32 = 8;

#[derive(Deserialize)]
struct Trip {
    destination: String,
    /// Part of a complete request; the bookings do not depend on it.
    #[allow(dead_code)]
    date: String,
    nights: u32,
    guests: u32,
    booking_id: String,
}

#[derive(Serialize)]
struct HotelBooking {
    hotel_booking: String,
    destination: String,
    nights: u32,
}

#[derive(Serialize)]
struct FlightBooking {
    flight_booking: String,
    destination: String,
}

#[derive(Serialize)]
struct CarBooking {
    car_booking: String,
    destination: String,
    days: u32,
}

#[derive(Deserialize)]
struct CarCancel {
    car_booking: String,
}

#[derive(Deserialize)]
struct HotelCancel {
    hotel_booking: String,
}

#[derive(Deserialize)]
struct FlightCancel {
    flight_booking: String,
}

#[derive(Serialize)]
struct Cancelled {
    cancelled: String,
}

fn book_hotel(trip: Trip, _: &Context) -> Result<HotelBooking, Failure> {
    if trip.destination.eq_ignore_ascii_case(NO_HOTEL) {
        return Err(Failure::permanent("no_hotel", format!("no hotel available in {}", trip.destination)));
    }
    if trip.guests > MAX_GUESTS {
        return Err(Failure::permanent(
            "too_many_guests",
            format!("{} guests is more than the {MAX_GUESTS} a booking takes", trip.guests),
        ));
    }
    Ok(HotelBooking {
        hotel_booking: format!("htl-{}", trip.booking_id),
        destination: trip.destination,
        nights: trip.nights,
    })
}

fn book_flight(trip: Trip, _: &Context) -> Result<FlightBooking, Failure> {
    if trip.destination.eq_ignore_ascii_case(NO_FLIGHT) {
        return Err(Failure::permanent("no_flight", format!("no flight goes to {}", trip.destination)));
    }
    Ok(FlightBooking { flight_booking: format!("flt-{}", trip.booking_id), destination: trip.destination })
}

fn rent_car(trip: Trip, _: &Context) -> Result<CarBooking, Failure> {
    if trip.destination.eq_ignore_ascii_case(NO_CAR) {
        return Err(Failure::permanent("no_car", format!("no car can be rented in {}", trip.destination)));
    }
    Ok(CarBooking {
        car_booking: format!("car-{}", trip.booking_id),
        destination: trip.destination,
        days: trip.nights + 1,
    })
}

fn cancel_car(req: CarCancel, _: &Context) -> Result<Cancelled, Failure> {
    Ok(Cancelled { cancelled: req.car_booking })
}

fn cancel_hotel(req: HotelCancel, _: &Context) -> Result<Cancelled, Failure> {
    Ok(Cancelled { cancelled: req.hotel_booking })
}

fn cancel_flight(req: FlightCancel, _: &Context) -> Result<Cancelled, Failure> {
    Ok(Cancelled { cancelled: req.flight_booking })
}

baton_guest::worker! {
    "hotel.book" => book_hotel,
    "hotel.cancel" => cancel_hotel,
    "flight.book" => book_flight,
    "flight.cancel" => cancel_flight,
    "car.rent" => rent_car,
    "car.cancel" => cancel_car,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    /// Run a command as the host would, JSON in and JSON out (`baton_guest::testing`).
    fn call(name: &str, payload: &Value) -> Result<Value, (String, String, bool)> {
        baton_guest::testing::Worker::new(super::baton_commands)
            .call(name, payload)
            .map_err(|f| (f.code, f.message, f.retryable))
    }

    fn trip(destination: &str, guests: u32) -> Value {
        json!({"destination": destination, "date": "2025-06-01", "nights": 3, "guests": guests, "booking_id": "b7"})
    }

    fn code(r: Result<Value, (String, String, bool)>) -> (String, bool) {
        let (code, _, retryable) = r.expect_err("a failure");
        (code, retryable)
    }

    #[test]
    fn hotel_book_and_cancel() {
        let booked = call("hotel.book", &trip("Lisbon", 2)).unwrap();
        assert_eq!(booked, json!({"hotel_booking": "htl-b7", "destination": "Lisbon", "nights": 3}));
        assert_eq!(call("hotel.cancel", &booked), Ok(json!({"cancelled": "htl-b7"})));
    }

    #[test]
    fn flight_book_and_cancel() {
        let booked = call("flight.book", &trip("Lisbon", 2)).unwrap();
        assert_eq!(booked, json!({"flight_booking": "flt-b7", "destination": "Lisbon"}));
        assert_eq!(call("flight.cancel", &booked), Ok(json!({"cancelled": "flt-b7"})));
    }

    #[test]
    fn there_is_no_hotel_in_atlantis() {
        let (code, message, retryable) = call("hotel.book", &trip("Atlantis", 2)).unwrap_err();
        assert_eq!((code.as_str(), message.as_str(), retryable), ("no_hotel", "no hotel available in Atlantis", false));
        assert_eq!(self::code(call("hotel.book", &trip("atlantis", 2))), ("no_hotel".into(), false));
        // Flights to Atlantis are fine: only the hotel step fails.
        assert!(call("flight.book", &trip("Atlantis", 2)).is_ok());
    }

    #[test]
    fn a_hotel_takes_at_most_eight_guests() {
        assert!(call("hotel.book", &trip("Lisbon", 8)).is_ok());
        assert_eq!(code(call("hotel.book", &trip("Lisbon", 9))), ("too_many_guests".into(), false));
        // The flight does not care.
        assert!(call("flight.book", &trip("Lisbon", 9)).is_ok());
    }

    #[test]
    fn car_rent_and_cancel() {
        let booked = call("car.rent", &trip("Lisbon", 2)).unwrap();
        assert_eq!(booked, json!({"car_booking": "car-b7", "destination": "Lisbon", "days": 4}));
        assert_eq!(call("car.cancel", &booked), Ok(json!({"cancelled": "car-b7"})));
        assert_eq!(code(call("car.rent", &trip("venice", 2))), ("no_car".to_owned(), false));
    }

    #[test]
    fn no_flight_goes_to_nowhere() {
        assert_eq!(code(call("flight.book", &trip("Nowhere", 2))), ("no_flight".into(), false));
        assert_eq!(code(call("flight.book", &trip("NOWHERE", 2))), ("no_flight".into(), false));
        assert!(call("hotel.book", &trip("Nowhere", 2)).is_ok());
    }

    #[test]
    fn incomplete_requests_are_invalid_input() {
        let invalid = ("invalid_input".to_owned(), false);
        let mut no_id = trip("Lisbon", 2);
        no_id.as_object_mut().unwrap().remove("booking_id");
        assert_eq!(code(call("hotel.book", &no_id)), invalid);
        assert_eq!(code(call("flight.book", &no_id)), invalid);
        let mut negative = trip("Lisbon", 2);
        negative["guests"] = json!(-1);
        assert_eq!(code(call("hotel.book", &negative)), invalid);
        // A flight booking is not a hotel booking.
        assert_eq!(code(call("hotel.cancel", &json!({"flight_booking": "flt-b7"}))), invalid);
        assert_eq!(code(call("flight.cancel", &json!({"hotel_booking": "htl-b7"}))), invalid);
    }
}
