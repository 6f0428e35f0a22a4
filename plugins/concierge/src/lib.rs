//! `concierge`: books a whole trip for a traveller by running the `trip` workflow as a
//! sub-saga from inside its handler: a worker that is itself a team (teams of teams).
//!
//! - `concierge.book` `{"traveller", "from", "to", "date"?, "nights"?, "guests"?}` ->
//!   `{"summary", "trip"}`:
//!   checks and tidies the request, runs [`TRIP_WORKFLOW`] with a [`TripInput`] built from
//!   it, waits for the trip to end, and returns a one-line summary and the trip's output
//!   (its bookings) as the trip workflow gives it. `nights` defaults to [`DEFAULT_NIGHTS`],
//!   `guests` to 1, `date` to `flexible`; the trip's id (its bookings' reference) is the
//!   saga's that sent the command.
//!
//! A trip that compensated (a leg could not be booked, so what was booked was undone) fails
//! the command with the trip's error code, permanent. A request that does not make sense
//! fails with the permanent `invalid_request` before any saga starts. The trip runs under an
//! id derived from this command's idempotency key, so a redelivered `concierge.book`
//! re-attaches to the trip its first delivery started rather than booking twice.
//!
//! The step that sends `concierge.book` waits for the whole trip: give it a `timeout` long
//! enough for one (the plugin's CPU time does not run while it waits).
use baton_guest::{Context, Failure, Registry, saga};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The workflow `concierge.book` runs, `workflows/trip.toml`. Its input is a [`TripInput`]
/// (what its `input_schema` requires: `trip_id`, `destination`, `date`, `nights`, `guests`;
/// and who travels from where, for the record); its output, the bookings, is passed back as
/// the command's `trip` untouched.
pub const TRIP_WORKFLOW: &str = "trip";

/// Nights booked when the request names none.
pub const DEFAULT_NIGHTS: u32 = 2;

/// The most nights one trip books.
pub const MAX_NIGHTS: u32 = 30;

/// What `concierge.book` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Who travels: a name.
    pub traveller: String,
    /// Where the trip starts.
    pub from: String,
    /// Where it goes.
    pub to: String,
    /// When it starts (text, e.g. `2026-12-24`).
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub nights: Option<u32>,
    #[serde(default)]
    pub guests: Option<u32>,
}

/// The input of [`TRIP_WORKFLOW`]: `{"trip_id": "o-9", "destination": "Lisbon", "date":
/// "flexible", "nights": 2, "guests": 1, "traveller": "Ada Lovelace", "from": "London"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TripInput {
    pub trip_id: String,
    #[serde(rename = "destination")]
    pub to: String,
    pub date: String,
    pub nights: u32,
    pub guests: u32,
    pub traveller: String,
    pub from: String,
}

/// What `concierge.book` returns.
#[derive(Debug, PartialEq, Serialize)]
pub struct Booked {
    /// One line for a person: who goes where, for how long.
    pub summary: String,
    /// The trip workflow's output (its bookings), as it gave it.
    pub trip: Value,
}

const INPUT_SCHEMA: &str = r#"{
  "type": "object",
  "required": ["traveller", "from", "to"],
  "additionalProperties": false,
  "properties": {
    "traveller": {"type": "string", "minLength": 1},
    "from": {"type": "string", "minLength": 1},
    "to": {"type": "string", "minLength": 1},
    "date": {"type": "string", "minLength": 1},
    "nights": {"type": "integer", "minimum": 1, "maximum": 30},
    "guests": {"type": "integer", "minimum": 1}
  }
}"#;

const OUTPUT_SCHEMA: &str = r#"{
  "type": "object",
  "required": ["summary", "trip"],
  "properties": {"summary": {"type": "string"}, "trip": {}}
}"#;

fn invalid(message: String) -> Failure {
    Failure::permanent("invalid_request", message)
}

/// Whitespace trimmed and runs of it made one space: `"  Ada   Lovelace "` -> `"Ada Lovelace"`.
fn tidy(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The trip `trip_id` to run for `req`, or why the request makes no sense.
pub fn trip_input(trip_id: &str, req: &Request) -> Result<TripInput, Failure> {
    let (traveller, from, to) = (tidy(&req.traveller), tidy(&req.from), tidy(&req.to));
    for (field, value) in [("traveller", &traveller), ("from", &from), ("to", &to)] {
        if value.is_empty() {
            return Err(invalid(format!("`{field}` is empty: say who travels, from where and to where")));
        }
    }
    if from.to_lowercase() == to.to_lowercase() {
        return Err(invalid(format!("the trip goes from {from} to {to}: nowhere to go")));
    }
    let nights = req.nights.unwrap_or(DEFAULT_NIGHTS);
    if !(1..=MAX_NIGHTS).contains(&nights) {
        return Err(invalid(format!("{nights} nights: a trip is 1 to {MAX_NIGHTS} nights")));
    }
    let guests = req.guests.unwrap_or(1);
    if guests == 0 {
        return Err(invalid("0 guests: someone must travel".to_owned()));
    }
    let date = req.date.as_deref().map(tidy).filter(|d| !d.is_empty()).unwrap_or_else(|| "flexible".to_owned());
    Ok(TripInput { trip_id: trip_id.to_owned(), to, date, nights, guests, traveller, from })
}

/// `Ada Lovelace travels from London to Lisbon for 2 nights: booked.`
pub fn summary(trip: &TripInput) -> String {
    let nights = if trip.nights == 1 { "1 night".to_owned() } else { format!("{} nights", trip.nights) };
    format!("{} travels from {} to {} for {nights}: booked.", trip.traveller, trip.from, trip.to)
}

/// A trip that did not complete, as this command's failure: its code and whether a retry
/// helps are the trip's; the message says it was the trip.
pub fn trip_failed(trip: &TripInput, f: Failure) -> Failure {
    Failure { message: format!("the trip from {} to {} could not be booked: {}", trip.from, trip.to, f.message), ..f }
}

fn book(req: Request, ctx: &Context) -> Result<Booked, Failure> {
    let input = trip_input(&ctx.transaction_id, &req)?;
    let trip: Value = saga::run(TRIP_WORKFLOW, &input).map_err(|f| trip_failed(&input, f))?;
    Ok(Booked { summary: summary(&input), trip })
}

fn register(r: &mut Registry) {
    r.command_with_schema("concierge.book", book, Some(INPUT_SCHEMA), Some(OUTPUT_SCHEMA));
}

baton_guest::worker!(register);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(v: Value) -> Request {
        serde_json::from_value(v).expect("a request")
    }

    #[test]
    fn the_trip_input_is_the_request_tidied_with_default_nights() {
        let req = request(json!({"traveller": "  Ada   Lovelace ", "from": "London", "to": " Lisbon"}));
        let trip = trip_input("o-1", &req).unwrap();
        assert_eq!(
            serde_json::to_value(&trip).unwrap(),
            json!({"trip_id": "o-1", "destination": "Lisbon", "date": "flexible", "nights": DEFAULT_NIGHTS,
                   "guests": 1, "traveller": "Ada Lovelace", "from": "London"})
        );
        let req = request(
            json!({"traveller": "Ada", "from": "London", "to": "Lisbon", "nights": 5, "date": "2027-01-02", "guests": 2}),
        );
        let trip = trip_input("o-1", &req).unwrap();
        assert_eq!((trip.nights, trip.guests, trip.date.as_str()), (5, 2, "2027-01-02"));
    }

    #[test]
    fn a_request_that_makes_no_sense_is_refused_for_good() {
        for (v, says) in [
            (json!({"traveller": " ", "from": "London", "to": "Lisbon"}), "`traveller` is empty"),
            (json!({"traveller": "Ada", "from": "Lisbon", "to": "lisbon"}), "nowhere to go"),
            (json!({"traveller": "Ada", "from": "London", "to": "Lisbon", "nights": 0}), "1 to 30 nights"),
            (json!({"traveller": "Ada", "from": "London", "to": "Lisbon", "nights": 31}), "1 to 30 nights"),
        ] {
            let f = trip_input("o-1", &request(v)).unwrap_err();
            assert_eq!((f.code.as_str(), f.retryable), ("invalid_request", false));
            assert!(f.message.contains(says), "{}", f.message);
        }
        assert!(
            serde_json::from_value::<Request>(json!({"traveller": "Ada", "from": "a", "to": "b", "x": 1})).is_err()
        );
    }

    #[test]
    fn the_summary_says_who_goes_where_and_for_how_long() {
        let mut trip =
            trip_input("o-1", &request(json!({"traveller": "Ada", "from": "London", "to": "Lisbon", "nights": 1})))
                .unwrap();
        assert_eq!(summary(&trip), "Ada travels from London to Lisbon for 1 night: booked.");
        trip.nights = 3;
        assert_eq!(summary(&trip), "Ada travels from London to Lisbon for 3 nights: booked.");
    }

    #[test]
    fn a_failed_trip_keeps_its_code_and_kind() {
        let trip =
            trip_input("o-1", &request(json!({"traveller": "Ada", "from": "London", "to": "Atlantis"}))).unwrap();
        let f = trip_failed(&trip, Failure::permanent("no_hotel", "no hotel available in Atlantis"));
        assert_eq!((f.code.as_str(), f.retryable), ("no_hotel", false));
        assert_eq!(f.message, "the trip from London to Atlantis could not be booked: no hotel available in Atlantis");
        assert!(trip_failed(&trip, Failure::retryable("busy", "later")).retryable);
    }

    #[test]
    fn book_runs_the_trip_as_a_sub_saga_and_returns_its_output() {
        use baton_guest::testing::{Call, Worker};
        let mut worker = Worker::new(register);
        worker.saga(TRIP_WORKFLOW, |input| Ok(json!({ "hotel": format!("hotel in {}", input["destination"]) })));
        let booked = worker.call("concierge.book", &json!({"traveller": "Ada", "from": "London", "to": "Lisbon"}));
        assert_eq!(
            booked.unwrap(),
            json!({"summary": "Ada travels from London to Lisbon for 2 nights: booked.", "trip": {"hotel": "hotel in \"Lisbon\""}})
        );
        let [Call::RunSaga { workflow, input }] = &worker.calls()[..] else { panic!("{:?}", worker.calls()) };
        assert_eq!((workflow.as_str(), &input["trip_id"]), (TRIP_WORKFLOW, &json!("test-saga")));

        // A trip that compensated fails the command with its code.
        worker.saga(TRIP_WORKFLOW, |_| Err(Failure::permanent("no_car", "no car in Venice")));
        let f =
            worker.call("concierge.book", &json!({"traveller": "Ada", "from": "Rome", "to": "Venice"})).unwrap_err();
        assert_eq!((f.code.as_str(), f.retryable), ("no_car", false));
        assert_eq!(f.message, "the trip from Rome to Venice could not be booked: no car in Venice");
    }

    #[test]
    fn the_schemas_are_json_and_match_the_limits() {
        let input: Value = serde_json::from_str(INPUT_SCHEMA).unwrap();
        assert_eq!(input["properties"]["nights"]["maximum"], MAX_NIGHTS);
        let _: Value = serde_json::from_str(OUTPUT_SCHEMA).unwrap();
    }
}
