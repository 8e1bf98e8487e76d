//! Endpoints (`endpoints:`) and the endpoint half of a rule: `endpoint`, `requests`, `queries`,
//! `up` and `latency`.
//!
//! A rule names a `database` or an `endpoint`, never both: one rule, one source, so that it succeeds
//! or fails as a whole. Files named in an endpoint (CA, client certificate, key, password, token)
//! are read at load, so a missing file is reported at its line rather than at the first fetch; an
//! empty value (`${DTR_CERT:-}`) means "not set", which is how an optional file is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::database::resolve_relative;
use super::diagnostic::Diagnostic;
use super::limits::DEFAULT_TIMEOUT;
use super::loader::Ctx;
use super::model::*;
use super::server::{Flavour, ServerIdentity};
use super::spec::{DescriptorSpec, EndpointSpec, OnEndpointSpec};
use crate::secret::Secret;

/// Largest response body accepted when `max_body_bytes` is not set.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;

/// A rule being loaded: its file, JSON pointer and name, for messages.
#[derive(Clone, Copy)]
pub(super) struct RuleAt<'a> {
    pub path: &'a Path,
    pub base: &'a str,
    pub name: &'a str,
}

/// What a rule says about where it runs, as written.
pub(super) struct SourceSpec {
    /// The rule names a `database`.
    pub database_named: bool,
    pub on_endpoint: OnEndpointSpec,
    /// The single `query`.
    pub query: Option<String>,
    /// A metric rule's named `queries`.
    pub queries: Option<BTreeMap<String, String>>,
}

/// The JSON pointer of a rule's query `name` below the rule at `base`: its `query` key, or its entry
/// under `queries`.
pub fn query_pointer(base: &str, name: &str) -> String {
    if name == MAIN_QUERY {
        format!("{base}/query")
    } else {
        format!("{base}/queries/{name}")
    }
}

impl Ctx<'_> {
    pub(super) fn endpoint(&mut self, path: &Path, name: String, spec: EndpointSpec) {
        let ptr = |k: &str| format!("/endpoints/{name}/{k}");
        if self.set.endpoints.contains_key(&name) || self.set.databases.contains_key(&name) {
            let msg = format!("'{name}' is declared more than once (endpoint and database names share one namespace)");
            self.error(path, format!("/endpoints/{name}"), msg);
            return;
        }
        let url = self.expand_env(path, ptr("url"), &spec.url);
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            self.error(path, ptr("url"), "url must start with http:// or https://");
        }
        let headers = spec
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Secret::new(self.expand_env(path, ptr(&format!("headers/{k}")), v))))
            .collect();
        let auth = self.endpoint_auth(path, &name, &spec);
        let tls = self.endpoint_tls(path, &name, &spec);
        let proxy = match spec.proxy.as_deref() {
            None | Some("") => Proxy::None,
            Some("from_env") => Proxy::FromEnv,
            Some(p) => Proxy::Url(Secret::new(self.expand_env(path, ptr("proxy"), p))),
        };
        let timeout = self.duration(path, ptr("timeout"), spec.timeout.as_deref(), DEFAULT_TIMEOUT);
        let endpoint = Endpoint {
            name: name.clone(),
            url,
            headers,
            auth,
            tls,
            proxy,
            timeout,
            max_body_bytes: spec.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        };
        self.set.endpoints.insert(name, Arc::new(endpoint));
    }

    /// An endpoint's credentials: basic auth or a bearer token, read now.
    fn endpoint_auth(&mut self, path: &Path, name: &str, spec: &EndpointSpec) -> Option<Auth> {
        let ptr = |k: &str| format!("/endpoints/{name}/{k}");
        match (&spec.basic_auth, &spec.bearer_token_file) {
            (Some(_), Some(_)) => {
                self.error(path, ptr("bearer_token_file"), "give basic_auth or bearer_token_file, not both");
                None
            }
            (Some(b), None) => {
                let username = self.expand_env(path, ptr("basic_auth/username"), &b.username);
                let password = match (&b.password, &b.password_file) {
                    (Some(p), None) => self.expand_env(path, ptr("basic_auth/password"), p),
                    (None, Some(f)) => self.read_file(path, ptr("basic_auth/password_file"), f).unwrap_or_default(),
                    _ => {
                        self.error(path, ptr("basic_auth"), "basic_auth needs password or password_file, not both");
                        String::new()
                    }
                };
                Some(Auth::Basic { username, password: Secret::new(password) })
            }
            (None, Some(f)) => {
                let token = self.read_file(path, ptr("bearer_token_file"), f).unwrap_or_default();
                Some(Auth::Bearer(Secret::new(token)))
            }
            (None, None) => None,
        }
    }

    /// How an endpoint's certificate is checked and which one the exporter presents.
    fn endpoint_tls(&mut self, path: &Path, name: &str, spec: &EndpointSpec) -> Tls {
        let ptr = |k: &str| format!("/endpoints/{name}/{k}");
        match &spec.tls {
            None => Tls::default(),
            Some(t) => {
                let mut file = |key: &str, value: &Option<String>| {
                    let expanded = value.as_ref().map(|v| self.expand_env(path, ptr(&format!("tls/{key}")), v));
                    let file = expanded.filter(|v| !v.is_empty()).map(|v| resolve_relative(path, &v));
                    if let Some(f) = &file {
                        if let Err(e) = std::fs::metadata(f) {
                            self.error(path, ptr(&format!("tls/{key}")), format!("cannot read {}: {e}", f.display()));
                        }
                    }
                    file
                };
                let ca_file = file("ca_file", &t.ca_file);
                let client = match (file("cert_file", &t.cert_file), file("key_file", &t.key_file)) {
                    (Some(c), Some(k)) => Some((c, k)),
                    (None, None) => None,
                    _ => {
                        self.error(path, ptr("tls"), "a client certificate needs both cert_file and key_file");
                        None
                    }
                };
                if t.insecure_skip_verify {
                    let msg = "insecure_skip_verify: the server's certificate is not checked, so anyone on the path can read the credentials and forge the responses";
                    self.warning(path, ptr("tls/insecure_skip_verify"), msg);
                }
                let server_name = t.server_name.as_ref().map(|s| self.expand_env(path, ptr("tls/server_name"), s));
                Tls { ca_file, client, server_name, insecure_skip_verify: t.insecure_skip_verify }
            }
        }
    }

    /// Every template of a rule's requests must render now: their paths, query values and bodies.
    pub(super) fn request_templates(&mut self, path: &Path, base: &str, rule: &Rule) {
        let Placement::Endpoint(e) = &rule.placement else { return };
        let mut texts: Vec<(String, &str)> = Vec::new();
        for r in &e.requests {
            let at = format!("{base}/requests/{}", r.name);
            texts.push((format!("{at}/path"), &r.path));
            texts.extend(r.query.iter().map(|(k, v)| (format!("{at}/query/{k}"), v.as_str())));
            texts.extend(r.body.iter().map(|b| (format!("{at}/body"), b.as_str())));
        }
        self.templates_render(path, rule, texts);
    }

    /// Every named query of a rule on an endpoint must render now (a rule on a database renders its
    /// one `query` with the server's version, checked by the caller).
    pub(super) fn query_templates(&mut self, path: &Path, base: &str, rule: &Rule) {
        let Placement::Endpoint(e) = &rule.placement else { return };
        let texts = e.queries.iter().map(|(name, q)| (query_pointer(base, name), q.as_str())).collect();
        self.templates_render(path, rule, texts);
    }

    fn templates_render(&mut self, path: &Path, rule: &Rule, texts: Vec<(String, &str)>) {
        let sqlite = ServerIdentity::assumed(Flavour::Sqlite);
        for (at, text) in texts {
            if let Err(msg) = super::template::render_text(rule, text, &sqlite) {
                self.error(path, at, format!("the template does not render: {msg}"));
            }
        }
    }

    /// A rule on an endpoint must name one that a rules file declares.
    pub(super) fn endpoint_declared(&mut self, rule: &Rule, e: &EndpointRule, base: &str) {
        if self.set.endpoints.contains_key(&e.endpoint) {
            return;
        }
        let declared: Vec<&str> = self.set.endpoints.keys().map(String::as_str).collect();
        let msg = format!(
            "rule '{}' uses endpoint '{}', which no rules file declares under `endpoints` (declared: {})",
            rule.name,
            e.endpoint,
            if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
        );
        let (file, pointer) = (rule.file.clone(), format!("{base}/endpoint"));
        if !self.schema_reported(&file, &pointer) {
            self.diags.push(Diagnostic::error(&file, pointer, msg));
        }
    }

    fn read_file(&mut self, path: &Path, pointer: String, file: &str) -> Option<String> {
        let f: PathBuf = resolve_relative(path, &self.expand_env(path, pointer.clone(), file));
        match std::fs::read_to_string(&f) {
            Ok(text) => Some(text.trim().to_string()),
            Err(e) => {
                self.error(path, pointer, format!("cannot read {}: {e}", f.display()));
                None
            }
        }
    }

    /// The source a rule names (`database` or `endpoint`) and, for an endpoint, what it fetches and
    /// runs. `queries` is the single `query` and a metric rule's named `queries`, as written.
    pub(super) fn rule_source(&mut self, at: RuleAt<'_>, spec: SourceSpec) -> Option<(Arc<EndpointRule>, RuleHealth)> {
        let RuleAt { path, base, name: rule } = at;
        let SourceSpec { database_named: has_database, on_endpoint, query, queries } = spec;
        let ptr = |k: &str| format!("{base}/{k}");
        let OnEndpointSpec { endpoint, requests, up, latency } = on_endpoint;
        let Some(endpoint) = endpoint else {
            if !has_database {
                self.error(path, base.to_string(), "a rule needs `database` (PostgreSQL) or `endpoint` (HTTP JSON)");
            }
            for (key, given) in [("requests", requests.is_some()), ("up", up.is_some()), ("latency", latency.is_some())]
            {
                if given {
                    self.error(
                        path,
                        ptr(key),
                        format!("`{key}` is for rules on an endpoint; this rule names a database"),
                    );
                }
            }
            if queries.is_some() {
                self.error(
                    path,
                    ptr("queries"),
                    "`queries` is for rules on an endpoint; a PostgreSQL rule has one `query`",
                );
            }
            return None;
        };
        if has_database {
            self.error(path, ptr("endpoint"), "a rule names a database or an endpoint, never both");
        }
        let requests: Vec<Request> = requests
            .unwrap_or_default()
            .into_iter()
            .map(|(name, r)| Request {
                name,
                method: r.method.unwrap_or_else(|| "GET".into()).to_ascii_uppercase(),
                path: self.expand_env(path, ptr("requests"), &r.path),
                query: r.query.iter().map(|(k, v)| (k.clone(), self.expand_env(path, ptr("requests"), v))).collect(),
                body: r.body,
            })
            .collect();
        if requests.is_empty() {
            self.error(path, ptr("requests"), "a rule on an endpoint needs at least one request");
        }
        let queries: Vec<(String, String)> = match (query, queries) {
            (Some(q), None) => vec![(MAIN_QUERY.to_string(), q)],
            (None, Some(qs)) if !qs.is_empty() => qs.into_iter().collect(),
            (Some(_), Some(_)) => {
                self.error(path, ptr("queries"), "give `query` or `queries`, not both");
                Vec::new()
            }
            _ => {
                self.error(path, base.to_string(), "the rule needs `query` (or, on an endpoint, `queries`)");
                Vec::new()
            }
        };
        let mut descriptor = |key: &str, d: Option<DescriptorSpec>| {
            d.map(|d| {
                self.claim_metric_name(path, ptr(&format!("{key}/name")), &d.name, rule);
                MetricDescriptor { name: d.name, help: d.help }
            })
        };
        let health = RuleHealth { up: descriptor("up", up), latency: descriptor("latency", latency) };
        Some((Arc::new(EndpointRule { endpoint, requests, queries }), health))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use crate::rules::model::*;
    use crate::rules::{load_sources, Diagnostics, LoadOptions, Loaded};

    const HEAD: &str = "version: 1\ndatabases:\n  pg: {dsn: 'host=a'}\nendpoints:\n  api: {url: '${API:-http://127.0.0.1:9}', headers: {X-Token: '${TOKEN}'}}\nmetrics:\n";

    fn load(metrics: &str) -> Result<Loaded, Diagnostics> {
        let env = |k: &str| match k {
            "TOKEN" => Some("t0ken".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let opts = LoadOptions { env: Arc::new(env), unset_env_is_error: true };
        load_sources(&[(PathBuf::from("t.yaml"), format!("{HEAD}{metrics}"))], &opts)
    }

    fn errors(metrics: &str) -> String {
        match load(metrics) {
            Ok(_) => panic!("loaded without errors:\n{metrics}"),
            Err(d) => d.0.iter().map(|d| format!("at {}: {}\n", d.pointer, d.message)).collect(),
        }
    }

    const FAMILY: &str = "families: [{name: x, help: h, value: v}]";

    #[test]
    fn an_endpoint_rule_loads_with_defaults_from_the_environment() {
        let l = load(&format!("  - {{name: r, endpoint: api, requests: {{a: {{path: '/x/${{EMPTY:-dflt}}'}}}}, query: 'select 1 as v', {FAMILY}}}\n")).unwrap();
        let ep = &l.rules.endpoints["api"];
        assert_eq!(ep.url, "http://127.0.0.1:9");
        assert_eq!(ep.headers[0].1.expose(), "t0ken");
        let rule = &l.rules.rules[0];
        let Placement::Endpoint(e) = &rule.placement else { panic!("on an endpoint: {:?}", rule.placement) };
        assert_eq!(rule.placement.sources().collect::<Vec<_>>(), ["api"]);
        assert_eq!(e.requests[0].path, "/x/dflt", "an empty variable takes the default, as in the shell");
        assert_eq!(e.queries, vec![("query".to_string(), "select 1 as v".to_string())]);
    }

    #[test]
    fn a_rule_names_one_source() {
        let e = errors(&format!(
            "  - {{name: r, database: pg, endpoint: api, requests: {{a: {{}}}}, query: 'select 1', {FAMILY}}}\n"
        ));
        assert!(e.contains("at /metrics/0/endpoint: a rule names a database or an endpoint, never both"), "{e}");
        let e = errors(&format!("  - {{name: r, query: 'select 1', {FAMILY}}}\n"));
        assert!(e.contains("a rule needs `database` (PostgreSQL) or `endpoint` (HTTP JSON)"), "{e}");
        let e =
            errors(&format!("  - {{name: r, endpoint: nope, requests: {{a: {{}}}}, query: 'select 1', {FAMILY}}}\n"));
        assert!(
            e.contains("uses endpoint 'nope', which no rules file declares under `endpoints` (declared: api)"),
            "{e}"
        );
        let e = errors(&format!("  - {{name: r, database: pg, queries: {{a: 'select 1'}}, {FAMILY}}}\n"));
        assert!(e.contains("`queries` is for rules on an endpoint"), "{e}");
    }

    #[test]
    fn families_name_their_query() {
        let two = "endpoint: api, requests: {a: {}}, queries: {one: 'select 1 as v', two: 'select 2 as v'}";
        let e = errors(&format!("  - {{name: r, {two}, {FAMILY}}}\n"));
        assert!(
            e.contains("at /metrics/0/families/0: the rule has several queries; name the one this family reads"),
            "{e}"
        );
        let e = errors(&format!("  - {{name: r, {two}, families: [{{query: three, name: x, help: h, value: v}}]}}\n"));
        assert!(e.contains("the rule has no query 'three' (it has: one, two)"), "{e}");
        let l = load(&format!(
            "  - {{name: r, {two}, on_empty: fail, families: [{{query: two, name: x, help: h, value: v}}]}}\n"
        ))
        .unwrap();
        let RuleKind::Metric(m) = &l.rules.rules[0].kind else { panic!() };
        assert_eq!(m.families[0].query.as_deref(), Some("two"));
        assert_eq!(m.families[0].on_empty, OnEmpty::Fail, "the rule's on_empty is the default");
    }
}
