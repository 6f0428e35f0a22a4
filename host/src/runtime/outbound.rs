//! Outbound HTTP for plugins (`wasi:http`), to the origins their manifest allows.
//!
//! Every plugin is linked with `wasi:http`, so a component that imports it loads; what it may
//! reach is decided per request by [`Hooks::send_request`]: an origin (scheme, host and port)
//! on the manifest's `[http] allow` list is sent, with the manifest's per-request timeout and
//! a cap on the response body; anything else is refused with `HTTP-request-denied` before a
//! connection is made, and logged. A plugin without `[http]` reaches nothing.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt as _;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// One origin a manifest allows: `http://127.0.0.1:8080`, `https://api.example.com` (port 443).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// Parse `scheme://host[:port]` (no path). The error says what is wrong.
    pub fn parse(text: &str) -> Result<Origin, String> {
        let wrong = || format!("{text:?} is not an origin: write \"https://host\" or \"http://host:port\" (no path)");
        let (https, rest) = match text.split_once("://") {
            Some(("https", rest)) => (true, rest),
            Some(("http", rest)) => (false, rest),
            _ => return Err(wrong()),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ', '*']) {
            return Err(wrong());
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => {
                (host, port.parse::<u16>().map_err(|_| wrong())?)
            }
            _ => (rest, if https { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(wrong());
        }
        Ok(Origin { https, host: host.to_ascii_lowercase(), port })
    }

    fn shown(&self) -> String {
        format!("{}://{}:{}", if self.https { "https" } else { "http" }, self.host, self.port)
    }
}

/// What a manifest's `[http]` grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub allow: Vec<Origin>,
    /// Per request: to connect, to the first byte, and between two bytes.
    pub timeout: Duration,
    /// Largest response body, in bytes.
    pub max_response: u64,
}

/// The `wasi:http` hooks of one instance: its plugin's grant, if any.
pub struct Hooks {
    pub plugin: String,
    pub grant: Option<Arc<Grant>>,
}

type Sent = Box<
    dyn Future<Output = Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>), Error>>
        + Send,
>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Sent {
        drop(fut);
        let uri = request.uri();
        let https = uri.scheme_str() == Some("https");
        let host = uri.host().unwrap_or("").trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let asked = Origin { https, host, port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }) };
        let grant = self
            .grant
            .clone()
            .filter(|g| g.allow.iter().any(|o| o.https == asked.https && o.host == asked.host && o.port == asked.port));
        let Some(grant) = grant else {
            tracing::info!(plugin = %self.plugin, origin = %asked.shown(), "outbound HTTP refused: not in the plugin's [http] allow list");
            return Box::new(async { Err(Error::HttpRequestDenied) });
        };
        let cap = |d: Option<Duration>| Some(d.map_or(grant.timeout, |d| d.min(grant.timeout)));
        let options = RequestOptions {
            connect_timeout: cap(options.and_then(|o| o.connect_timeout)),
            first_byte_timeout: cap(options.and_then(|o| o.first_byte_timeout)),
            between_bytes_timeout: cap(options.and_then(|o| o.between_bytes_timeout)),
        };
        let max = grant.max_response;
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            let response = response.map(|body| {
                http_body_util::Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX))
                    .map_err(move |e| match e.downcast::<Error>() {
                        Ok(e) => *e,
                        Err(_) => Error::HttpResponseBodySize(Some(max)),
                    })
                    .boxed_unsync()
            });
            Ok((response, Box::new(io) as Box<dyn Future<Output = Result<(), Error>> + Send>))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_with_their_default_ports() {
        let o = |s: &str| Origin::parse(s).map(|o| (o.https, o.host, o.port));
        assert_eq!(o("https://API.example.com"), Ok((true, "api.example.com".into(), 443)));
        assert_eq!(o("http://127.0.0.1:8080"), Ok((false, "127.0.0.1".into(), 8080)));
        assert_eq!(o("http://localhost/"), Ok((false, "localhost".into(), 80)));
        for bad in ["example.com", "ftp://x", "https://x/path", "https://*.example.com", "http://x:99999", "https://"] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }
}
