//! The REST API described as OpenAPI 3.1, by the very calls that route it: each endpoint is
//! added with its method, path, summary and the types it takes and answers, so the document
//! can neither forget an endpoint nor say something else than the code. Schemas come from the
//! types themselves (schemars). `GET /api/v1/openapi.json` serves the document; `openapi.json`
//! at the repository's root is the committed copy a test keeps equal to it.

use crate::state::AppState;
use axum::handler::Handler;
use axum::routing::{MethodFilter, MethodRouter, on};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// A reference to `T`'s schema among the document's components.
fn refer<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// `T`'s own schema, inline: a query's parameters are its properties.
fn inline<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    T::json_schema(g)
}

/// What an endpoint answers with when it succeeds.
enum Answer {
    Json(SchemaFn),
    /// Another media type, described in words.
    Other(&'static str),
}

/// One endpoint as the document describes it.
pub struct Op {
    summary: &'static str,
    answer: Answer,
    query: Option<SchemaFn>,
    body: Option<SchemaFn>,
    operator: bool,
}

impl Op {
    /// Answers `T` as JSON.
    pub fn json<T: JsonSchema>(summary: &'static str) -> Op {
        Op { summary, answer: Answer::Json(refer::<T>), query: None, body: None, operator: false }
    }

    /// Answers something else: `media` is its content type (`text/plain`, `text/event-stream`).
    pub fn other(summary: &'static str, media: &'static str) -> Op {
        Op { summary, answer: Answer::Other(media), query: None, body: None, operator: false }
    }

    /// Takes the query parameters `Q` has as fields.
    pub fn query<Q: JsonSchema>(self) -> Op {
        Op { query: Some(inline::<Q>), ..self }
    }

    /// Takes `B` as its JSON body.
    pub fn body<B: JsonSchema>(self) -> Op {
        Op { body: Some(refer::<B>), ..self }
    }

    /// Changes something: an operator's token (or session cookie with its CSRF token) only.
    pub fn operator(self) -> Op {
        Op { operator: true, ..self }
    }
}

/// Routes and their descriptions, built together.
#[derive(Default)]
pub struct Api {
    routes: BTreeMap<&'static str, MethodRouter<AppState>>,
    ops: Vec<(&'static str, &'static str, Op)>,
}

impl Api {
    pub fn get<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, op: Op, handler: H) -> Self {
        self.add("get", path, op, on(MethodFilter::GET, handler))
    }

    pub fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, op: Op, handler: H) -> Self {
        self.add("post", path, op, on(MethodFilter::POST, handler))
    }

    pub fn delete<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, op: Op, handler: H) -> Self {
        self.add("delete", path, op, on(MethodFilter::DELETE, handler))
    }

    fn add(mut self, method: &'static str, path: &'static str, op: Op, route: MethodRouter<AppState>) -> Self {
        let merged = match self.routes.remove(path) {
            Some(earlier) => earlier.merge(route),
            None => route,
        };
        self.routes.insert(path, merged);
        self.ops.push((method, path, op));
        self
    }

    pub fn into_router(self) -> axum::Router<AppState> {
        self.routes.into_iter().fold(axum::Router::new(), |router, (path, route)| router.route(path, route))
    }

    /// The OpenAPI 3.1 document.
    pub fn document(&self) -> Value {
        let settings = SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = "#/components/schemas/".into();
            s.meta_schema = None;
        });
        let mut g = settings.into_generator();
        let problem = refer::<Problem>(&mut g);
        let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
        for (method, path, op) in &self.ops {
            let mut parameters: Vec<Value> = path_parameters(path);
            if let Some(query) = op.query {
                parameters.extend(query_parameters(&query(&mut g)));
            }
            let ok = match &op.answer {
                Answer::Json(schema) => {
                    json!({ "description": "OK", "content": { "application/json": { "schema": schema(&mut g) } } })
                }
                Answer::Other(media) => json!({ "description": "OK", "content": { *media: {} } }),
            };
            let mut operation = json!({
                "summary": op.summary,
                "operationId": operation_id(method, path),
                "tags": [tag(path)],
                "responses": {
                    "200": ok,
                    "default": {
                        "description": "An error, as RFC 9457 problem details",
                        "content": { "application/problem+json": { "schema": problem } },
                    },
                },
            });
            if !parameters.is_empty() {
                operation["parameters"] = Value::Array(parameters);
            }
            if let Some(body) = op.body {
                operation["requestBody"] =
                    json!({ "required": true, "content": { "application/json": { "schema": body(&mut g) } } });
            }
            if op.operator {
                operation["security"] = json!([{ "bearer": [] }, { "session": [] }]);
            }
            paths.entry(path).or_default().insert(method.to_string(), operation);
        }
        let schemas: Map<String, Value> = g.take_definitions(true).into_iter().collect();
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": "Trellis",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "The control plane's REST API: the mesh as the dashboard shows it, rollouts and \
                                the actions on them, revisions, the audit log. Lists answer \
                                {\"items\": [...], \"next\": cursor}; errors are RFC 9457 problem details.",
            },
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "bearer": { "type": "http", "scheme": "bearer", "description": "An operator's token (TRELLIS_TOKENS)." },
                    "session": {
                        "type": "apiKey", "in": "cookie", "name": "trellis_session",
                        "description": "The dashboard's session cookie, with its CSRF token in X-CSRF-Token.",
                    },
                },
            },
        })
    }
}

/// `{name}` segments of a path, as required string parameters.
fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect()
}

/// A query type's fields as query parameters.
fn query_parameters(schema: &Schema) -> Vec<Value> {
    let required: Vec<&str> =
        schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let properties = schema.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    properties
        .into_iter()
        .map(|(name, mut schema)| {
            let description = schema.as_object_mut().and_then(|s| s.remove("description"));
            let mut p =
                json!({ "name": name, "in": "query", "required": required.contains(&name.as_str()), "schema": schema });
            if let Some(d) = description {
                p["description"] = d;
            }
            p
        })
        .collect()
}

/// `get /api/v1/rollouts/{name}` → `getRolloutsName`.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_string();
    let words = path.trim_start_matches("/api/v1").split(['/', '-', '.']).filter(|w| !w.is_empty());
    for word in words.map(|w| w.trim_start_matches('{').trim_end_matches('}')) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            id.extend(first.to_uppercase());
            id.push_str(chars.as_str());
        }
    }
    id
}

/// The first word after `/api/v1/`: the group an endpoint is listed under.
fn tag(path: &str) -> &str {
    path.trim_start_matches("/api/v1/").trim_start_matches('/').split(['/', '.']).next().unwrap_or("api")
}

/// RFC 9457 problem details: the one shape of every error the API answers.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, JsonSchema)]
pub struct Problem {
    /// What kind of problem: `urn:trellis:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP status's reason phrase: the same for every problem of a kind.
    pub title: String,
    pub status: u16,
    /// What went wrong this time, for a person to read.
    pub detail: String,
    /// The stable code (`not_found`, `forbidden`, `conflict`...), for a program to branch on.
    pub code: String,
}

impl Problem {
    pub fn new(status: http::StatusCode, code: &str, detail: String) -> Self {
        Problem {
            kind: format!("urn:trellis:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail,
            code: code.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_parameters_and_operations() {
        assert_eq!(operation_id("get", "/api/v1/rollouts/{name}"), "getRolloutsName");
        assert_eq!(operation_id("post", "/api/v1/revisions/{rev}/revert"), "postRevisionsRevRevert");
        assert_eq!(operation_id("get", "/api/v1/prometheus/targets"), "getPrometheusTargets");
        assert_eq!(tag("/api/v1/revisions/{from}/compare/{to}"), "revisions");
        assert_eq!(tag("/metrics"), "metrics");
        let names: Vec<Value> =
            path_parameters("/api/v1/revisions/{from}/compare/{to}").iter().map(|p| p["name"].clone()).collect();
        assert_eq!(names, [json!("from"), json!("to")]);
    }

    #[test]
    fn a_problem_is_typed_by_its_code_and_titled_by_its_status() {
        let p = Problem::new(http::StatusCode::FORBIDDEN, "forbidden", "vera is a viewer".into());
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            json!({ "type": "urn:trellis:problem:forbidden", "title": "Forbidden", "status": 403,
                    "detail": "vera is a viewer", "code": "forbidden" })
        );
    }
}
