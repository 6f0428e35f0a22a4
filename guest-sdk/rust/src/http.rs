//! Outbound HTTP from a handler, through `wasi:http`, to the hosts the plugin's manifest
//! allows (`[http] allow = ["https://api.example.com"]` in `<plugin>.toml`).
//!
//! Blocking calls: the instance waits on the host, which runs the request and holds the
//! step's deadline; a host outside the allow-list is refused before anything is sent. Every
//! error is a [`Failure`], ready to return with `?`: `http_denied` (not allowed: permanent),
//! `http_timeout` and `http_unreachable` (retryable), `http_response_too_large` (permanent).
//!
//! ```no_run
//! use baton_guest::{Context, Failure, http};
//!
//! fn score(order: serde_json::Value, ctx: &Context) -> Result<serde_json::Value, Failure> {
//!     let r = http::Request::post("https://fraud.example.com/v1/score")
//!         .header("idempotency-key", &ctx.idempotency_key)
//!         .json(&order)?
//!         .send()?;
//!     if r.status != 200 {
//!         return Err(Failure::retryable("fraud_service", format!("the fraud service answered {}", r.status)));
//!     }
//!     r.json()
//! }
//! # fn main() {}
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;
#[cfg(target_arch = "wasm32")]
use wasip2::http::outgoing_handler;
#[cfg(target_arch = "wasm32")]
use wasip2::http::types::{ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme};
#[cfg(target_arch = "wasm32")]
use wasip2::io::streams::StreamError;

use crate::Failure;

/// A request to send.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// What the server answered.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, Failure> {
    Request::get(url).send()
}

impl Request {
    /// A request with `method` (`GET`, `POST`, ...).
    pub fn new(method: &str, url: &str) -> Request {
        Request { method: method.to_ascii_uppercase(), url: url.to_owned(), headers: Vec::new(), body: Vec::new() }
    }

    /// A `GET`.
    pub fn get(url: &str) -> Request {
        Request::new("GET", url)
    }

    /// A `POST`.
    pub fn post(url: &str) -> Request {
        Request::new("POST", url)
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The body, as it is.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// A JSON body, with its `content-type`.
    pub fn json<T: Serialize>(self, value: &T) -> Result<Request, Failure> {
        let body = serde_json::to_vec(value)
            .map_err(|e| Failure::permanent("invalid_input", format!("the request body is not JSON: {e}")))?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// The method, in upper case.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The headers added, in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body set.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// Send it and read the whole answer. In a native test, [`crate::testing::Worker::http`]
    /// answers it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn send(self) -> Result<Response, Failure> {
        crate::testing::fake::http(&self)
    }

    /// Send it and read the whole answer.
    #[cfg(target_arch = "wasm32")]
    pub fn send(self) -> Result<Response, Failure> {
        let url = &self.url;
        let (scheme, rest) = match url.split_once("://") {
            Some(("https", rest)) => (Scheme::Https, rest),
            Some(("http", rest)) => (Scheme::Http, rest),
            _ => return Err(Failure::permanent("invalid_input", format!("{url}: not an http:// or https:// URL"))),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let fields = Fields::new();
        for (name, value) in &self.headers {
            fields
                .append(name, value.as_bytes())
                .map_err(|e| Failure::permanent("invalid_input", format!("{url}: header {name:?}: {e:?}")))?;
        }
        let request = OutgoingRequest::new(fields);
        let method = match self.method.as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "HEAD" => Method::Head,
            other => Method::Other(other.to_owned()),
        };
        let invalid = |what: &str| Failure::permanent("invalid_input", format!("{url}: invalid {what}"));
        request.set_method(&method).map_err(|()| invalid("method"))?;
        request.set_scheme(Some(&scheme)).map_err(|()| invalid("scheme"))?;
        request.set_authority(Some(authority)).map_err(|()| invalid("host"))?;
        request.set_path_with_query(Some(path)).map_err(|()| invalid("path"))?;
        let body = request.body().map_err(|()| invalid("body"))?;
        {
            let out = body.write().map_err(|()| invalid("body"))?;
            // A stream takes at most 4096 bytes per blocking write.
            for chunk in self.body.chunks(4096) {
                out.blocking_write_and_flush(chunk).map_err(|e| stream_failure(url, e))?;
            }
        }
        let pending = outgoing_handler::handle(request, None).map_err(|e| failure(url, e))?;
        OutgoingBody::finish(body, None).map_err(|e| failure(url, e))?;
        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(r))) => r,
            Some(Ok(Err(e))) => return Err(failure(url, e)),
            _ => return Err(Failure::retryable("http_unreachable", format!("{url}: no response"))),
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let incoming = response.consume().map_err(|()| invalid("response"))?;
        let mut bytes = Vec::new();
        {
            let stream = incoming.stream().map_err(|()| invalid("response"))?;
            loop {
                match stream.blocking_read(64 << 10) {
                    Ok(chunk) => bytes.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(e) => return Err(stream_failure(url, e)),
                }
            }
        }
        drop(IncomingBody::finish(incoming));
        Ok(Response { status, headers, body: bytes })
    }
}

impl Response {
    /// A response with `status` and `body` and no headers: what a test's
    /// [`crate::testing::Worker::http`] answers.
    ///
    /// ```
    /// let r = baton_guest::http::Response::new(200, r#"{"score": 3}"#);
    /// assert_eq!(r.json::<serde_json::Value>().unwrap()["score"], 3);
    /// ```
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response { status, headers: Vec::new(), body: body.into() }
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Failure::permanent("invalid_output", format!("the response is not the JSON expected: {e}")))
    }
}

#[cfg(target_arch = "wasm32")]
fn stream_failure(url: &str, e: StreamError) -> Failure {
    match e {
        StreamError::LastOperationFailed(e) => match wasip2::http::types::http_error_code(&e) {
            Some(code) => failure(url, code),
            None => {
                // The host's body errors come as text (its first line; a backtrace may follow).
                let text = e.to_debug_string();
                let first = text.lines().next().unwrap_or("").to_owned();
                if first.contains("body size exceeds limit") {
                    Failure::permanent(
                        "http_response_too_large",
                        format!("{url}: {first} ([http] max_response_kb in the plugin's manifest)"),
                    )
                } else {
                    Failure::retryable("http_unreachable", format!("{url}: {first}"))
                }
            }
        },
        StreamError::Closed => Failure::retryable("http_unreachable", format!("{url}: the connection closed")),
    }
}

/// The failure of an HTTP error code.
#[cfg(target_arch = "wasm32")]
fn failure(url: &str, e: ErrorCode) -> Failure {
    match e {
        ErrorCode::HttpRequestDenied => Failure::permanent(
            "http_denied",
            format!("{url}: not allowed by the plugin's manifest: add its origin to [http] allow in <plugin>.toml"),
        ),
        ErrorCode::HttpResponseBodySize(limit) => Failure::permanent(
            "http_response_too_large",
            format!("{url}: the response is over the limit ({limit:?} bytes; [http] max_response_kb in the manifest)"),
        ),
        ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => {
            Failure::retryable("http_timeout", format!("{url}: no answer in time ({e:?})"))
        }
        other => Failure::retryable("http_unreachable", format!("{url}: {other:?}")),
    }
}
