//! The OpenAPI 3.1 document of the HTTP API, served at `/openapi.json`.
//!
//! Schemas come from the request and response types themselves
//! (`routes::requests`, `routes::responses`, derived with utoipa), so a
//! field cannot change without the document following. Operations are one
//! table, `OPERATIONS`, beside the router: a unit test checks that every
//! route template the router serves is described, and the test suite runs
//! schemathesis against a live server with this document.

use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use http::header;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, RefOr, Required,
    ResponseBuilder,
};

use crate::routes::requests::{
    ChangePasswordRequest, GetOtpRequest, GetUserQuery, IntrospectRequest, LoginRequest, RefreshRequest,
    RegisterRequest,
};
use crate::routes::responses::{
    AboutResponse, AdminSessionResponse, GetUserResponse, GrantResponse, HealthResponse, IntrospectionResponse,
    OAuthErrorResponse, PasswordChangedResponse, ReadyChecks, ReadyResponse, RevokedResponse, SessionResponse,
    TokenResponse, UserResponse, VerifyResponse,
};
use crate::routes::responses::{CsrfResponse, PublicUserResponse};

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// Anyone.
    None,
    /// A logged-in caller: the session cookie, `Authorization: Bearer` or
    /// `X-Auth-Token`.
    Session,
    /// An operator: `X-Admin-Token`.
    Admin,
    /// An introspection client: HTTP Basic or body credentials.
    Client,
}

/// What an operation answers with 200.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// The envelope `{"status":"success","data":…}` around a schema (by
    /// name), an array of it, or `null`.
    Data(&'static str),
    List(&'static str),
    Null,
    /// A bare JSON schema (no envelope), by name.
    Bare(&'static str),
    /// The refresh endpoint: the envelope, or RFC 6749 §5.1 for the
    /// standard form.
    Refresh,
    /// Prometheus text.
    Text,
    /// One of Tessera's pages or their assets.
    Page,
    /// The README, as Markdown.
    Markdown,
}

/// One operation of the API.
struct Operation {
    method: HttpMethod,
    path: &'static str,
    summary: &'static str,
    tag: &'static str,
    auth: Auth,
    /// The request body's schema (JSON or a form), by name.
    body: Option<&'static str>,
    /// Query parameters: (name, required).
    query: &'static [(&'static str, bool)],
    answer: Answer,
}

const fn op(
    method: HttpMethod,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    auth: Auth,
    body: Option<&'static str>,
    answer: Answer,
) -> Operation {
    Operation { method, path, summary, tag, auth, body, query: &[], answer }
}

use Answer::{Bare, Data, List, Null};
use Auth::{Admin, Client, Session};
use HttpMethod::{Delete, Get, Post};

/// Every operation, in the router's order. Routes that exist only in some
/// configurations (token mode, introspection clients, `--admin-token`,
/// `--metrics-bind main`) are described too; elsewhere they answer 404.
const OPERATIONS: &[Operation] = &[
    op(Get, "/", "service", "What this service is", Auth::None, None, Data("AboutResponse")),
    op(Get, "/healthz", "operations", "Database and store health", Auth::None, None, Data("HealthResponse")),
    op(Get, "/livez", "operations", "The process serves", Auth::None, None, Data("HealthResponse")),
    op(Get, "/readyz", "operations", "Ready for traffic", Auth::None, None, Data("ReadyResponse")),
    op(Get, "/metrics", "operations", "Prometheus metrics", Auth::None, None, Answer::Text),
    op(Get, "/openapi.json", "service", "This document", Auth::None, None, Bare("OpenApiDocument")),
    op(Get, "/ui/{name}", "pages", "Tessera's pages and their script and style", Auth::None, None, Answer::Page),
    op(Get, "/README.md", "service", "The documentation", Auth::None, None, Answer::Markdown),
    op(Get, "/auth/verify", "other services", "Forward auth", Session, None, Data("VerifyResponse")),
    op(Post, "/auth/refresh", "tokens", "New token pair", Auth::None, Some("RefreshRequest"), Answer::Refresh),
    op(Post, "/auth/logout", "tokens", "Log out by the refresh cookie", Auth::None, None, Null),
    op(Get, "/.well-known/jwks.json", "tokens", "Public signing keys", Auth::None, None, Bare("Jwks")),
    op(
        Post,
        "/oauth/introspect",
        "other services",
        "RFC 7662",
        Client,
        Some("IntrospectRequest"),
        Bare("IntrospectionResponse"),
    ),
    op(Post, "/user/getotp", "users", "Send a one-time code", Auth::None, Some("GetOtpRequest"), Null),
    op(
        Post,
        "/user/register",
        "users",
        "Register with a code",
        Auth::None,
        Some("RegisterRequest"),
        Data("UserResponse"),
    ),
    op(Post, "/user/login", "users", "Log in", Auth::None, Some("LoginRequest"), Data("GrantResponse")),
    op(Post, "/user/logout", "users", "Log out", Auth::None, None, Null),
    op(Post, "/user/logout-everywhere", "users", "End all my sessions", Session, None, Data("RevokedResponse")),
    op(
        Post,
        "/user/password",
        "users",
        "Change my password",
        Session,
        Some("ChangePasswordRequest"),
        Data("PasswordChangedResponse"),
    ),
    op(Get, "/user/me", "users", "Who am I", Session, None, Data("UserResponse")),
    Operation {
        query: &[("id", true)],
        ..op(Get, "/user/get", "users", "A user's profile", Session, None, Data("GetUserResponse"))
    },
    op(Get, "/user/csrf", "users", "My CSRF token", Session, None, Data("CsrfResponse")),
    op(Get, "/user/sessions", "sessions", "My sessions", Session, None, List("SessionResponse")),
    op(Delete, "/user/sessions", "sessions", "End my other sessions", Session, None, Data("RevokedResponse")),
    op(Delete, "/user/sessions/{id}", "sessions", "End one of my sessions", Session, None, Null),
    op(Post, "/admin/users/{id}/disable", "operators", "Disable an account", Admin, None, Data("RevokedResponse")),
    op(Post, "/admin/users/{id}/enable", "operators", "Enable an account", Admin, None, Null),
    op(Get, "/admin/users/{id}/sessions", "operators", "A user's sessions", Admin, None, List("AdminSessionResponse")),
    op(
        Delete,
        "/admin/users/{id}/sessions",
        "operators",
        "End a user's sessions",
        Admin,
        None,
        Data("RevokedResponse"),
    ),
    op(Delete, "/admin/users/{id}/sessions/{sid}", "operators", "End one of a user's sessions", Admin, None, Null),
];

/// Statuses every operation may answer with the failure envelope, and why.
const FAILURES: &[(&str, &str)] = &[
    ("400", "Bad parameters (10001) or a wrong code (20005, 20006)"),
    ("401", "Not logged in (20003), a wrong credential (20002) or refresh token (20009)"),
    ("403", "Cross-site request refused (10005) or a disabled account (20010)"),
    ("404", "No such endpoint (10007), user (20001) or session (20008)"),
    ("405", "Method not allowed on this path"),
    ("409", "Already registered (20004) or a concurrent update (10006)"),
    ("413", "Body too large"),
    ("429", "Throttled (10003); see Retry-After"),
    ("500", "Internal error (10002)"),
    ("502", "The SMS gateway failed (20007)"),
    ("503", "A store cannot be asked (10004); see Retry-After"),
];

/// The document, built once.
pub static DOCUMENT: LazyLock<OpenApi> = LazyLock::new(build);

/// `GET /openapi.json`.
pub async fn serve() -> Response {
    static JSON: LazyLock<String> = LazyLock::new(|| DOCUMENT.to_json().expect("the document serializes"));
    ([(header::CONTENT_TYPE, "application/json")], JSON.as_str()).into_response()
}

fn build() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for operation in OPERATIONS {
        paths = paths.path(operation.path, PathItem::new(operation.method.clone(), describe(operation)));
    }
    let info = InfoBuilder::new()
        .title("Tessera")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Sessions and tokens for web backends: phone + one-time code registration, login, who-am-I, \
             devices. Bodies are JSON or application/x-www-form-urlencoded; answers are the envelope \
             {\"status\":\"success\"|\"fail\",\"data\":…}.",
        ))
        .build();
    OpenApiBuilder::new().info(info).paths(paths.build()).components(Some(components())).build()
}

fn describe(operation: &Operation) -> utoipa::openapi::path::Operation {
    let mut builder = OperationBuilder::new()
        .summary(Some(operation.summary))
        .tag(operation.tag)
        .operation_id(Some(operation_id(operation)))
        .response("200", success(operation.answer));
    for (status, why) in FAILURES {
        builder = builder.response(*status, failure(why, operation.answer));
    }
    for segment in operation.path.split('/').filter(|s| s.starts_with('{')) {
        let name = segment.trim_matches(|c| c == '{' || c == '}');
        builder = builder.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(string())),
        );
    }
    for (name, required) in operation.query {
        let required = if *required { Required::True } else { Required::False };
        builder = builder.parameter(
            ParameterBuilder::new()
                .name(*name)
                .parameter_in(ParameterIn::Query)
                .required(required)
                .schema(Some(string())),
        );
    }
    if let Some(body) = operation.body {
        let content = |_| ContentBuilder::new().schema(Some(Ref::from_schema_name(body))).build();
        let request = RequestBodyBuilder::new()
            .content("application/json", content(()))
            .content("application/x-www-form-urlencoded", content(()))
            .build();
        builder = builder.request_body(Some(request));
    }
    for requirement in security(operation.auth) {
        builder = builder.security(requirement);
    }
    builder.build()
}

fn operation_id(operation: &Operation) -> String {
    let method = match operation.method {
        Get => "get",
        Post => "post",
        Delete => "delete",
        _ => "other",
    };
    let path: String =
        operation.path.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect::<String>();
    format!("{method}{}", path.trim_end_matches('_'))
}

fn string() -> Schema {
    ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)).into()
}

/// `{"status": <status>, "data": <data>}`.
fn envelope(status: &str, data: RefOr<Schema>) -> Schema {
    ObjectBuilder::new()
        .property("status", ObjectBuilder::new().schema_type(Type::String).enum_values(Some([status])))
        .required("status")
        .property("data", data)
        .required("data")
        .into()
}

fn null() -> RefOr<Schema> {
    RefOr::T(ObjectBuilder::new().schema_type(Type::Null).into())
}

fn success(answer: Answer) -> utoipa::openapi::Response {
    let json = |schema: Schema| ContentBuilder::new().schema(Some(schema)).build();
    let response = ResponseBuilder::new().description("Success");
    match answer {
        Data(name) => {
            response.content("application/json", json(envelope("success", Ref::from_schema_name(name).into())))
        }
        List(name) => {
            let list = ArrayBuilder::new().items(Ref::from_schema_name(name)).build();
            response.content("application/json", json(envelope("success", RefOr::T(list.into()))))
        }
        Null => response.content("application/json", json(envelope("success", null()))),
        Bare(name) => response
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name(name))).build()),
        Answer::Refresh => {
            let either = utoipa::openapi::schema::OneOfBuilder::new()
                .item(envelope("success", Ref::from_schema_name("GrantResponse").into()))
                .item(Ref::from_schema_name("TokenResponse"))
                .build();
            response.content("application/json", json(Schema::OneOf(either)))
        }
        Answer::Text => response.content("text/plain", json(string())),
        Answer::Page => ["text/html; charset=utf-8", "text/javascript; charset=utf-8", "text/css; charset=utf-8"]
            .into_iter()
            .fold(response, |response, kind| response.content(kind, json(string()))),
        Answer::Markdown => response.content("text/markdown; charset=utf-8", json(string())),
    }
    .build()
}

fn failure(why: &str, answer: Answer) -> utoipa::openapi::Response {
    let mut schemas = utoipa::openapi::schema::OneOfBuilder::new().item(Ref::from_schema_name("Failure"));
    // The RFC endpoints answer their own error shapes; a bare 405 or 413
    // from the HTTP stack may carry no JSON at all.
    if matches!(answer, Bare(_) | Answer::Refresh) {
        schemas = schemas.item(Ref::from_schema_name("OAuthErrorResponse"));
    }
    ResponseBuilder::new()
        .description(why)
        .content("application/json", ContentBuilder::new().schema(Some(Schema::OneOf(schemas.build()))).build())
        .content("text/plain", ContentBuilder::new().schema(Some(string())).build())
        .build()
}

fn security(auth: Auth) -> Vec<SecurityRequirement> {
    let one = |name: &str| SecurityRequirement::new::<_, _, String>(name, []);
    match auth {
        Auth::None => vec![],
        // Any one of the three carriers; an empty requirement marks the
        // operation as answering (401) without one.
        Session => vec![one("cookie"), one("bearer"), one("xAuthToken")],
        Admin => vec![one("adminToken")],
        Client => vec![one("basic")],
    }
}

fn components() -> utoipa::openapi::Components {
    let failure_data = ObjectBuilder::new()
        .property("errCode", ObjectBuilder::new().schema_type(Type::Integer))
        .required("errCode")
        .property("errMsg", string())
        .required("errMsg");
    let any_object = || Schema::from(ObjectBuilder::new().schema_type(Type::Object));
    ComponentsBuilder::new()
        .schema("Failure", envelope("fail", RefOr::T(failure_data.into())))
        .schema("OpenApiDocument", any_object())
        .schema("Jwks", any_object())
        .schema_from::<GetOtpRequest>()
        .schema_from::<RegisterRequest>()
        .schema_from::<LoginRequest>()
        .schema_from::<ChangePasswordRequest>()
        .schema_from::<GetUserQuery>()
        .schema_from::<RefreshRequest>()
        .schema_from::<IntrospectRequest>()
        .schema_from::<AboutResponse>()
        .schema_from::<HealthResponse>()
        .schema_from::<ReadyChecks>()
        .schema_from::<ReadyResponse>()
        .schema_from::<VerifyResponse>()
        .schema_from::<UserResponse>()
        .schema_from::<PublicUserResponse>()
        .schema_from::<GetUserResponse>()
        .schema_from::<GrantResponse>()
        .schema_from::<TokenResponse>()
        .schema_from::<RevokedResponse>()
        .schema_from::<PasswordChangedResponse>()
        .schema_from::<CsrfResponse>()
        .schema_from::<SessionResponse>()
        .schema_from::<AdminSessionResponse>()
        .schema_from::<IntrospectionResponse>()
        .schema_from::<OAuthErrorResponse>()
        .security_scheme("cookie", SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("tessera"))))
        .security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()))
        .security_scheme("xAuthToken", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Auth-Token"))))
        .security_scheme("adminToken", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Admin-Token"))))
        .security_scheme("basic", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described_and_every_reference_resolves() {
        let document: serde_json::Value = serde_json::from_str(&DOCUMENT.to_json().unwrap()).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        let paths = document["paths"].as_object().unwrap();
        for template in crate::routes::TEMPLATES {
            // Envoy's wildcard form of /auth/verify is the same operation.
            if template.contains('*') {
                continue;
            }
            assert!(paths.contains_key(*template), "{template} is not in the OpenAPI document");
        }
        for (path, method) in
            [("/user/sessions", "get"), ("/user/sessions", "delete"), ("/admin/users/{id}/sessions", "delete")]
        {
            assert!(paths[path].get(method).is_some(), "{method} {path}");
        }
        let schemas = document["components"]["schemas"].as_object().unwrap();
        let text = document.to_string();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = &reference[..reference.find('"').unwrap()];
            assert!(schemas.contains_key(name), "{name} is referenced but not defined");
        }
    }
}
