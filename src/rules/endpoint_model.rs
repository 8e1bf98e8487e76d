//! The typed model of HTTP JSON endpoints (`endpoints:`) and of the rules that read them.
//!
//! An endpoint is where JSON comes from and how to reach it (URL, credentials, TLS, proxy, limits);
//! a rule on an endpoint names the requests it makes there and the SQL it runs over the responses
//! (see `crate::source::http`). Credentials are [`Secret`]s: no message or log shows them.

use std::path::PathBuf;
use std::time::Duration;

use super::model::MetricDescriptor;
use crate::secret::Secret;

/// One HTTP JSON API, as declared under `endpoints:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub name: String,
    /// Scheme, host, port and optional path prefix (`${VAR}` expanded); request paths are appended.
    pub url: String,
    /// Headers sent with every request (values may hold tokens: secret).
    pub headers: Vec<(String, Secret)>,
    pub auth: Option<Auth>,
    pub tls: Tls,
    pub proxy: Proxy,
    /// Longest a request may take, connecting included (a rule's own timeout bounds it as well).
    pub timeout: Duration,
    /// Largest body accepted, after decompression.
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    Basic { username: String, password: Secret },
    Bearer(Secret),
}

/// How the server's certificate is checked and which certificate the exporter presents.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tls {
    /// PEM roots to trust instead of the built-in Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and its key.
    pub client: Option<(PathBuf, PathBuf)>,
    /// The name the certificate must carry, when it differs from the URL's host.
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub enum Proxy {
    /// Direct connections; proxy environment variables are ignored.
    #[default]
    None,
    /// Through this proxy URL (may hold credentials: secret).
    Url(Secret),
    /// As `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` say.
    FromEnv,
}

/// What a rule on an endpoint fetches and computes.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointRule {
    /// Fetched concurrently; each response is bound to the SQL as `:name`.
    pub requests: Vec<Request>,
    /// Named SQL statements over the responses, in declaration order. A signal has one.
    pub queries: Vec<(String, String)>,
    /// A gauge that reads 1 when every request and query succeeded, else 0.
    pub up: Option<MetricDescriptor>,
    /// A gauge of the seconds the evaluation took, served when it succeeded.
    pub latency: Option<MetricDescriptor>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub name: String,
    pub method: String,
    /// Appended to the endpoint's URL; a minijinja template over `vars`.
    pub path: String,
    /// Query string pairs (values are templates), appended URL-encoded.
    pub query: Vec<(String, String)>,
    /// Sent as is, with `Content-Type: application/json`; a template.
    pub body: Option<String>,
}
