//! `chat`: the talking half of a conversational booking agent.
//!
//! Deterministic, with no model behind it: keyword rules over the user's message, so tests and
//! demos steer it with the text they send.
//!
//! - `chat.say` `{"text", "to"?}` -> `{"said"}`: the agent's utterance, echoed back so it is
//!   recorded in the saga. Empty (or blank) text fails permanently with `empty_text`.
//! - `chat.extract` `{"text", "known"?}` -> `{"destination", "date", "nights", "guests",
//!   "answer", "missing", "reply"}` (every key always present, `null` when not known):
//!   what the conversation has told us so far. `known` is the previous output of
//!   `chat.extract` (absent or `{}` on the first turn). A field found in this message
//!   replaces the known one, any other is kept; `answer` is about this message only and is
//!   never carried over. Text over 4096 bytes fails permanently with `text_too_long`; a
//!   missing or non-string `text` is the SDK's `invalid_input`.
//!
//! # Rules
//!
//! Words are runs of letters, digits and apostrophes; matching ignores case and only ever
//! compares whole words (so "notebook" is not "no"). The first match of each rule wins.
//!
//! - `destination`: the word after "to" or "in" when it starts with a capital letter in the
//!   original text ("a hotel in Lisbon" -> "Lisbon"; month and weekday names do not count, so
//!   "in March" is not a place); failing that, one of the built-in cities anywhere, in any
//!   case: Lisbon, Paris, Rome, Tokyo, Berlin, Madrid, London, Oslo.
//! - `date`: the first valid ISO date `YYYY-MM-DD` (month 1-12, day 1-31). Its digits are
//!   never read as numbers by the other rules.
//! - `nights`: a number followed by "night" or "nights" ("3 nights", "a 3-night stay").
//! - `guests`: a number followed by "guest(s)", "people", "person" or "adult(s)" (so also
//!   "for 2 people"); "alone" or "just me" is 1.
//! - Numbers are positive integers in digits or the words one to ten ("two nights").
//! - `answer`: "yes", "yep", "sure", "ok", "okay", "confirm", "please do" mean `"yes"`; "no",
//!   "nope", "cancel", "stop", "don't" mean `"no"`. Words of both kinds in one message, or
//!   of neither, give `null`: an ambiguous reply never books.
//! - `missing`: which of destination, date, nights, guests are still `null`, in that order.
//! - `reply`: what the agent could say next: a question for the first missing field
//!   ("Where would you like to go?", "On which date (YYYY-MM-DD)?", "For how many nights?",
//!   "For how many guests?"), or once nothing is missing a summary to confirm:
//!   "Booking 3 nights in Lisbon from 2025-06-01 for 2 guests. Shall I book it? (yes/no)".
//!
//! # Example conversation
//!
//! Each turn passes the previous output as `known`:
//!
//! | user says                                  | understood                           | reply                                 |
//! |--------------------------------------------|--------------------------------------|---------------------------------------|
//! | "I need a hotel in Lisbon"                 | destination Lisbon                   | "On which date (YYYY-MM-DD)?"         |
//! | "From 2025-06-01, for three nights please" | + date 2025-06-01, nights 3          | "For how many guests?"                |
//! | "Just me"                                  | + guests 1                           | "Booking 3 nights in Lisbon from 2025-06-01 for 1 guest. Shall I book it? (yes/no)" |
//! | "Yes, confirm"                             | all of the above, answer `"yes"`     | the same summary                      |
use baton_guest::{Context, Failure};
use serde::{Deserialize, Serialize};

/// Longer messages are refused (bytes of UTF-8).
const MAX_TEXT: usize = 4096;

/// Cities recognised anywhere in a message, whatever their case.
const CITIES: [&str; 8] = ["Lisbon", "Paris", "Rome", "Tokyo", "Berlin", "Madrid", "London", "Oslo"];

/// Capitalised words after "to"/"in" that are times, not places.
const NOT_PLACES: [&str; 19] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

const NUMBER_WORDS: [&str; 10] = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"];
const NIGHT_WORDS: [&str; 2] = ["night", "nights"];
const GUEST_WORDS: [&str; 6] = ["guest", "guests", "people", "person", "adult", "adults"];
const YES_WORDS: [&str; 6] = ["yes", "yep", "sure", "ok", "okay", "confirm"];
const NO_WORDS: [&str; 5] = ["no", "nope", "cancel", "stop", "don't"];

/// The fields a booking needs, in the order they are asked for.
const FIELDS: [&str; 4] = ["destination", "date", "nights", "guests"];

#[derive(Deserialize)]
struct Say {
    text: String,
    /// Who the agent speaks to; informational only.
    #[serde(default)]
    #[allow(dead_code)]
    to: Option<String>,
}

#[derive(Serialize)]
struct Said {
    said: String,
}

#[derive(Deserialize)]
struct Extract {
    text: String,
    #[serde(default)]
    known: Option<Known>,
}

/// What earlier messages told us: the previous output of `chat.extract` (its other keys are
/// ignored).
#[derive(Deserialize, Default, Debug, Clone, PartialEq)]
struct Known {
    destination: Option<String>,
    date: Option<String>,
    nights: Option<u32>,
    guests: Option<u32>,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Answer {
    Yes,
    No,
}

#[derive(Serialize, Debug, PartialEq)]
struct Understood {
    destination: Option<String>,
    date: Option<String>,
    nights: Option<u32>,
    guests: Option<u32>,
    answer: Option<Answer>,
    missing: Vec<&'static str>,
    reply: String,
}

fn say(req: Say, _: &Context) -> Result<Said, Failure> {
    if req.text.trim().is_empty() {
        return Err(Failure::permanent("empty_text", "the agent has nothing to say: text is empty"));
    }
    Ok(Said { said: req.text })
}

fn extract(req: Extract, _: &Context) -> Result<Understood, Failure> {
    if req.text.len() > MAX_TEXT {
        return Err(Failure::permanent(
            "text_too_long",
            format!("message of {} bytes is over the limit of {MAX_TEXT} bytes", req.text.len()),
        ));
    }
    Ok(understand(&req.text, req.known.unwrap_or_default()))
}

/// Read `text` and merge what it says over `known`.
fn understand(text: &str, known: Known) -> Understood {
    let (date, masked) = find_date(text);
    let words = words(&masked);
    let destination = find_destination(&words).or(known.destination);
    let date = date.or(known.date);
    let nights = find_nights(&words).or(known.nights);
    let guests = find_guests(&words).or(known.guests);
    let answer = find_answer(&words);

    let present = [destination.is_some(), date.is_some(), nights.is_some(), guests.is_some()];
    let missing: Vec<&'static str> = FIELDS.iter().zip(present).filter(|(_, p)| !p).map(|(f, _)| *f).collect();
    let reply = match (&destination, &date, nights, guests) {
        (Some(dest), Some(date), Some(n), Some(g)) => format!(
            "Booking {n} {} in {dest} from {date} for {g} {}. Shall I book it? (yes/no)",
            plural(n, "night", "nights"),
            plural(g, "guest", "guests"),
        ),
        _ => missing.first().map_or("", |field| question(field)).to_owned(),
    };
    Understood { destination, date, nights, guests, answer, missing, reply }
}

fn question(field: &str) -> &'static str {
    match field {
        "destination" => "Where would you like to go?",
        "date" => "On which date (YYYY-MM-DD)?",
        "nights" => "For how many nights?",
        _ => "For how many guests?",
    }
}

fn plural(n: u32, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

/// A word of the message: as written, and lowercased for matching.
struct Word<'a> {
    original: &'a str,
    lower: String,
}

/// Split `text` into words: runs of letters, digits and apostrophes (typographic ones count
/// as `'`), without apostrophes at either end.
fn words(text: &str) -> Vec<Word<'_>> {
    let is_apostrophe = |c: char| c == '\'' || c == '\u{2019}';
    text.split(|c: char| !(c.is_alphanumeric() || is_apostrophe(c)))
        .map(|w| w.trim_matches(is_apostrophe))
        .filter(|w| !w.is_empty())
        .map(|w| Word { original: w, lower: w.to_lowercase().replace('\u{2019}', "'") })
        .collect()
}

/// The first valid `YYYY-MM-DD` in `text`, and `text` with every date-shaped run (valid or
/// not) blanked out so that its digits are not taken for numbers.
fn find_date(text: &str) -> (Option<String>, String) {
    let bytes = text.as_bytes();
    let mut masked = bytes.to_vec();
    let mut found = None;
    let digit = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
    let mut i = 0;
    while i + 10 <= bytes.len() {
        let shaped = (0..10).all(|k| if k == 4 || k == 7 { bytes[i + k] == b'-' } else { digit(i + k) });
        let bounded = (i == 0 || !digit(i - 1)) && !digit(i + 10);
        if !(shaped && bounded) {
            i += 1;
            continue;
        }
        // All ASCII, so these are char boundaries.
        let candidate = &text[i..i + 10];
        let month: u32 = candidate[5..7].parse().unwrap_or(0);
        let day: u32 = candidate[8..10].parse().unwrap_or(0);
        if found.is_none() && (1..=12).contains(&month) && (1..=31).contains(&day) {
            found = Some(candidate.to_owned());
        }
        masked[i..i + 10].fill(b' ');
        i += 10;
    }
    // Only ASCII bytes were replaced by ASCII bytes: still UTF-8.
    let masked = String::from_utf8(masked).unwrap_or_else(|_| text.to_owned());
    (found, masked)
}

/// A positive whole number in digits, or one of the words one to ten.
fn number(word: &str) -> Option<u32> {
    if let Some(i) = NUMBER_WORDS.iter().position(|w| *w == word) {
        return u32::try_from(i + 1).ok();
    }
    if !word.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    word.parse().ok().filter(|n| *n > 0)
}

/// The first number directly followed by one of `units`.
fn number_before(words: &[Word<'_>], units: &[&str]) -> Option<u32> {
    words.windows(2).find_map(|w| if units.contains(&w[1].lower.as_str()) { number(&w[0].lower) } else { None })
}

fn find_destination(words: &[Word<'_>]) -> Option<String> {
    let after_preposition = words.windows(2).find_map(|w| {
        let starts_upper = w[1].original.chars().next().is_some_and(char::is_uppercase);
        let place = starts_upper && !NOT_PLACES.contains(&w[1].lower.as_str());
        (matches!(w[0].lower.as_str(), "to" | "in") && place).then(|| w[1].original.to_owned())
    });
    after_preposition.or_else(|| {
        words.iter().find_map(|w| CITIES.iter().find(|c| c.to_lowercase() == w.lower).map(|c| (*c).to_owned()))
    })
}

fn find_nights(words: &[Word<'_>]) -> Option<u32> {
    number_before(words, &NIGHT_WORDS)
}

fn find_guests(words: &[Word<'_>]) -> Option<u32> {
    words.iter().enumerate().find_map(|(i, w)| {
        let next = words.get(i + 1).map(|n| n.lower.as_str());
        if w.lower == "alone" || (w.lower == "just" && next == Some("me")) {
            return Some(1);
        }
        next.filter(|n| GUEST_WORDS.contains(n)).and_then(|_| number(&w.lower))
    })
}

fn find_answer(words: &[Word<'_>]) -> Option<Answer> {
    let yes = words.iter().any(|w| YES_WORDS.contains(&w.lower.as_str()))
        || words.windows(2).any(|w| w[0].lower == "please" && w[1].lower == "do");
    let no = words.iter().any(|w| NO_WORDS.contains(&w.lower.as_str()));
    match (yes, no) {
        (true, false) => Some(Answer::Yes),
        (false, true) => Some(Answer::No),
        _ => None,
    }
}

baton_guest::worker! {
    "chat.say" => say,
    "chat.extract" => extract,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Run a command as the host would, JSON in and JSON out (`baton_guest::testing`).
    fn call(name: &str, payload: Value) -> Result<Value, (String, bool)> {
        baton_guest::testing::Worker::new(baton_commands).call(name, &payload).map_err(|f| (f.code, f.retryable))
    }

    fn fresh(text: &str) -> Understood {
        understand(text, Known::default())
    }

    fn known(destination: Option<&str>, date: Option<&str>, nights: Option<u32>, guests: Option<u32>) -> Known {
        Known { destination: destination.map(Into::into), date: date.map(Into::into), nights, guests }
    }

    // chat.say

    #[test]
    fn say_echoes_the_text() {
        assert_eq!(call("chat.say", json!({"text": "Hello!", "to": "ana"})), Ok(json!({"said": "Hello!"})));
        assert_eq!(call("chat.say", json!({"text": "Hi"})), Ok(json!({"said": "Hi"})));
    }

    #[test]
    fn say_refuses_empty_text() {
        assert_eq!(call("chat.say", json!({"text": ""})), Err(("empty_text".into(), false)));
        assert_eq!(call("chat.say", json!({"text": "  \n"})), Err(("empty_text".into(), false)));
    }

    // destination

    #[test]
    fn destination_is_the_capitalised_word_after_to_or_in() {
        assert_eq!(fresh("a hotel in Lisbon").destination.as_deref(), Some("Lisbon"));
        assert_eq!(fresh("I want to go to Reykjavik.").destination.as_deref(), Some("Reykjavik"));
        assert_eq!(fresh("IN Kyoto please").destination.as_deref(), Some("Kyoto"));
        assert_eq!(fresh("a room in Zürich").destination.as_deref(), Some("Zürich"));
    }

    #[test]
    fn a_lowercase_word_after_to_is_not_a_destination() {
        assert_eq!(fresh("I want to travel").destination, None);
        assert_eq!(fresh("in a hotel").destination, None);
        assert_eq!(fresh("take me to reykjavik").destination, None);
    }

    #[test]
    fn months_and_weekdays_are_not_places() {
        assert_eq!(fresh("a trip in March").destination, None);
        assert_eq!(fresh("a trip in May to Porto").destination.as_deref(), Some("Porto"));
        assert_eq!(fresh("from Friday to Sunday").destination, None);
    }

    #[test]
    fn built_in_cities_match_anywhere_in_any_case() {
        assert_eq!(fresh("paris sounds nice").destination.as_deref(), Some("Paris"));
        assert_eq!(fresh("TOKYO!").destination.as_deref(), Some("Tokyo"));
        for city in CITIES {
            assert_eq!(fresh(&format!("what about {}?", city.to_lowercase())).destination.as_deref(), Some(city));
        }
        // Whole words only.
        assert_eq!(fresh("parisian food").destination, None);
        assert_eq!(fresh("romeo").destination, None);
    }

    #[test]
    fn the_word_after_to_wins_over_a_city_named_earlier() {
        assert_eq!(fresh("from Paris to Rome").destination.as_deref(), Some("Rome"));
        assert_eq!(fresh("from Paris to Gdansk").destination.as_deref(), Some("Gdansk"));
    }

    // date

    #[test]
    fn date_is_an_iso_date_anywhere() {
        assert_eq!(fresh("arriving 2025-06-01").date.as_deref(), Some("2025-06-01"));
        assert_eq!(fresh("on 2025-12-31, please").date.as_deref(), Some("2025-12-31"));
        assert_eq!(fresh("(2026-01-09)").date.as_deref(), Some("2026-01-09"));
    }

    #[test]
    fn invalid_or_malformed_dates_are_ignored() {
        assert_eq!(fresh("2025-13-01").date, None);
        assert_eq!(fresh("2025-00-10").date, None);
        assert_eq!(fresh("2025-06-32").date, None);
        assert_eq!(fresh("2025-06-00").date, None);
        assert_eq!(fresh("2025-6-1").date, None);
        assert_eq!(fresh("12025-06-01").date, None);
        assert_eq!(fresh("2025-06-011").date, None);
        assert_eq!(fresh("01/06/2025").date, None);
        // The first valid one counts.
        assert_eq!(fresh("not 2025-13-01 but 2025-07-02 or 2025-08-03").date.as_deref(), Some("2025-07-02"));
    }

    #[test]
    fn the_digits_of_a_date_are_not_numbers() {
        let u = fresh("2025-06-02 nights");
        assert_eq!(u.nights, None);
        assert_eq!(fresh("2025-06-02 2 nights").nights, Some(2));
    }

    // nights

    #[test]
    fn nights_is_a_number_before_night() {
        assert_eq!(fresh("3 nights").nights, Some(3));
        assert_eq!(fresh("just 1 night").nights, Some(1));
        assert_eq!(fresh("a 4-night stay").nights, Some(4));
        assert_eq!(fresh("14 Nights").nights, Some(14));
        assert_eq!(fresh("nights: 3").nights, None);
        assert_eq!(fresh("3 long nights").nights, None);
        assert_eq!(fresh("0 nights").nights, None);
        assert_eq!(fresh("99999999999 nights").nights, None);
    }

    // guests

    #[test]
    fn guests_is_a_number_before_a_people_word() {
        for (text, n) in [
            ("2 guests", 2),
            ("1 guest", 1),
            ("for 4 people", 4),
            ("1 person", 1),
            ("2 adults", 2),
            ("1 adult", 1),
            ("FOR 3 PEOPLE", 3),
        ] {
            assert_eq!(fresh(text).guests, Some(n), "{text}");
        }
        assert_eq!(fresh("for 4").guests, None);
        assert_eq!(fresh("people: 4").guests, None);
    }

    #[test]
    fn alone_or_just_me_is_one_guest() {
        assert_eq!(fresh("I travel alone").guests, Some(1));
        assert_eq!(fresh("Just me.").guests, Some(1));
        assert_eq!(fresh("just for me").guests, None);
        // Whichever comes first.
        assert_eq!(fresh("just me, no wait, 3 people").guests, Some(1));
        assert_eq!(fresh("3 people, not alone").guests, Some(3));
    }

    #[test]
    fn number_words_count_everywhere() {
        assert_eq!(fresh("two nights").nights, Some(2));
        assert_eq!(fresh("for Three guests").guests, Some(3));
        assert_eq!(fresh("ten people, one night").guests, Some(10));
        assert_eq!(fresh("ten people, one night").nights, Some(1));
        let all: Vec<u32> =
            NUMBER_WORDS.iter().map(|w| fresh(&format!("{w} nights")).nights.expect("a number")).collect();
        assert_eq!(all, (1..=10).collect::<Vec<_>>());
        assert_eq!(fresh("eleven nights").nights, None);
        assert_eq!(fresh("someone nights").nights, None);
    }

    // answer

    #[test]
    fn yes_words() {
        for text in ["yes", "Yep!", "sure", "OK", "okay then", "I confirm", "please do", "Please do it"] {
            assert_eq!(fresh(text).answer, Some(Answer::Yes), "{text}");
        }
    }

    #[test]
    fn no_words() {
        for text in ["no", "Nope.", "cancel it", "STOP", "don't", "please don\u{2019}t"] {
            assert_eq!(fresh(text).answer, Some(Answer::No), "{text}");
        }
    }

    #[test]
    fn answers_are_whole_words_only() {
        for text in ["my notebook", "nobody knows", "bookkeeping", "yesterday", "stopover", "oklahoma", "please doit"] {
            assert_eq!(fresh(text).answer, None, "{text}");
        }
        assert_eq!(fresh("a hotel in Lisbon").answer, None);
    }

    #[test]
    fn both_kinds_of_answer_words_are_no_answer() {
        assert_eq!(fresh("yes... no, wait").answer, None);
        assert_eq!(fresh("sure, but cancel the flight").answer, None);
    }

    // merging

    #[test]
    fn known_fields_are_kept_and_new_ones_override() {
        let before = known(Some("Paris"), Some("2025-06-01"), Some(2), None);
        let u = understand("make it 4 nights in Rome, for 2 people", before.clone());
        assert_eq!(u.destination.as_deref(), Some("Rome"));
        assert_eq!(u.date.as_deref(), Some("2025-06-01"));
        assert_eq!(u.nights, Some(4));
        assert_eq!(u.guests, Some(2));

        let same = understand("hmm", before);
        assert_eq!(
            (same.destination.as_deref(), same.date.as_deref(), same.nights, same.guests),
            (Some("Paris"), Some("2025-06-01"), Some(2), None)
        );
    }

    #[test]
    fn answer_is_not_carried_over() {
        let first = call("chat.extract", json!({"text": "yes"})).unwrap();
        assert_eq!(first["answer"], "yes");
        let second = call("chat.extract", json!({"text": "hmm", "known": first})).unwrap();
        assert_eq!(second["answer"], Value::Null);
    }

    #[test]
    fn known_may_be_absent_empty_or_null() {
        for payload in [json!({"text": "x"}), json!({"text": "x", "known": {}}), json!({"text": "x", "known": null})] {
            let out = call("chat.extract", payload).unwrap();
            assert_eq!(out["missing"], json!(["destination", "date", "nights", "guests"]));
        }
    }

    // missing and reply

    #[test]
    fn missing_lists_the_null_fields_in_order() {
        assert_eq!(fresh("").missing, ["destination", "date", "nights", "guests"]);
        assert_eq!(fresh("3 nights").missing, ["destination", "date", "guests"]);
        assert_eq!(fresh("2025-06-01 alone").missing, ["destination", "nights"]);
        assert!(fresh("Oslo 2025-06-01 1 night alone").missing.is_empty());
    }

    #[test]
    fn the_reply_asks_for_the_first_missing_field() {
        assert_eq!(fresh("hello").reply, "Where would you like to go?");
        assert_eq!(fresh("Oslo").reply, "On which date (YYYY-MM-DD)?");
        assert_eq!(fresh("Oslo 2025-06-01").reply, "For how many nights?");
        assert_eq!(fresh("Oslo 2025-06-01 2 nights").reply, "For how many guests?");
        assert_eq!(fresh("2 nights for 2 guests").reply, "Where would you like to go?");
    }

    #[test]
    fn the_reply_summarises_a_complete_booking() {
        assert_eq!(
            fresh("Oslo 2025-06-01 2 nights 3 guests").reply,
            "Booking 2 nights in Oslo from 2025-06-01 for 3 guests. Shall I book it? (yes/no)"
        );
        assert_eq!(
            fresh("Oslo 2025-06-01 1 night alone").reply,
            "Booking 1 night in Oslo from 2025-06-01 for 1 guest. Shall I book it? (yes/no)"
        );
    }

    #[test]
    fn the_example_conversation() {
        let turns = [
            ("I need a hotel in Lisbon", "On which date (YYYY-MM-DD)?"),
            ("From 2025-06-01, for three nights please", "For how many guests?"),
            ("Just me", "Booking 3 nights in Lisbon from 2025-06-01 for 1 guest. Shall I book it? (yes/no)"),
            ("Yes, confirm", "Booking 3 nights in Lisbon from 2025-06-01 for 1 guest. Shall I book it? (yes/no)"),
        ];
        let mut known = json!({});
        for (text, reply) in turns {
            let out = call("chat.extract", json!({"text": text, "known": known})).unwrap();
            assert_eq!(out["reply"], reply, "{text}");
            known = out;
        }
        assert_eq!(
            known,
            json!({
                "destination": "Lisbon", "date": "2025-06-01", "nights": 3, "guests": 1,
                "answer": "yes", "missing": [],
                "reply": "Booking 3 nights in Lisbon from 2025-06-01 for 1 guest. Shall I book it? (yes/no)",
            })
        );
    }

    #[test]
    fn every_key_is_always_present() {
        let out = call("chat.extract", json!({"text": "hi"})).unwrap();
        assert_eq!(
            out,
            json!({
                "destination": null, "date": null, "nights": null, "guests": null, "answer": null,
                "missing": ["destination", "date", "nights", "guests"], "reply": "Where would you like to go?",
            })
        );
    }

    // limits and bad input

    #[test]
    fn text_over_4096_bytes_is_refused() {
        let at_limit = "a".repeat(MAX_TEXT);
        assert!(call("chat.extract", json!({"text": at_limit})).is_ok());
        let over = "a".repeat(MAX_TEXT + 1);
        assert_eq!(call("chat.extract", json!({"text": over})), Err(("text_too_long".into(), false)));
        // Bytes, not characters: 2049 two-byte characters are 4098 bytes.
        let wide = "é".repeat(2049);
        assert_eq!(call("chat.extract", json!({"text": wide})), Err(("text_too_long".into(), false)));
    }

    #[test]
    fn missing_or_non_string_text_is_invalid_input() {
        let invalid = Err(("invalid_input".to_owned(), false));
        assert_eq!(call("chat.extract", json!({})), invalid);
        assert_eq!(call("chat.extract", json!({"text": 3})), invalid);
        assert_eq!(call("chat.extract", json!({"text": "x", "known": "Paris"})), invalid);
        assert_eq!(call("chat.extract", json!({"text": "x", "known": {"nights": "3"}})), invalid);
        assert_eq!(call("chat.say", json!({"text": null})), invalid);
    }

    #[test]
    fn non_ascii_text_is_fine() {
        let u = fresh("Olá! Quero ir to Lisbon — 2025-06-01 — dois? no: two nights, ünd 2 Gäste");
        assert_eq!(u.destination.as_deref(), Some("Lisbon"));
        assert_eq!(u.date.as_deref(), Some("2025-06-01"));
        assert_eq!(u.nights, Some(2));
        assert_eq!(u.guests, None);
    }
}
