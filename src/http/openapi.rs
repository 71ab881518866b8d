//! Answers every operation can give because of what it shares with the
//! others (the extractors, the body limit, the database pool), added to the
//! document from what each operation declares, so that no handler has to
//! repeat them and a new route gets them by declaring its inputs.

use serde_json::{json, Value};

/// The security schemes' names, as the operations' `security(...)` write them.
pub const BEARER_SCHEME: &str = "bearer";
pub const COOKIE_SCHEME: &str = "cookie";

/// Adds the shared answers to each operation of `document`, where the
/// operation does not already describe them itself:
/// - any operation: 503 when no database connection came free in time;
/// - a JSON request body: 400 (not JSON, or not sent as JSON), 422 (a
///   field missing or of the wrong type, naming it) and 413 (over the limit);
/// - path or query parameters: 422 when one does not parse;
/// - `security` (the `AuthUser`/`MaybeUser` extractors): 401 for a missing,
///   expired or revoked token (an optional sign-in still refuses a bad
///   one), and, for a method that changes state, 403 when signed in by cookie
///   without the CSRF header.
pub fn add_shared_responses(document: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut value = serde_json::to_value(&document).expect("the OpenAPI document serialises");
    for item in value["paths"].as_object_mut().into_iter().flat_map(|p| p.values_mut()) {
        for (method, operation) in item.as_object_mut().into_iter().flatten() {
            if !matches!(method.as_str(), "get" | "put" | "post" | "delete" | "patch") {
                continue;
            }
            let shared = shared_for(method, operation);
            let responses = operation["responses"].as_object_mut().expect("an operation has responses");
            for (status, description) in shared {
                responses.entry(status.to_string()).or_insert_with(|| {
                    json!({"description": description,
                           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
                });
            }
        }
    }
    serde_json::from_value(value).expect("the OpenAPI document reads back")
}

fn shared_for(method: &str, operation: &Value) -> Vec<(u16, &'static str)> {
    let mut shared = vec![(503, "The server is busy (no database connection came free in time): try again shortly")];
    if operation.pointer("/requestBody/content/application~1json").is_some() {
        shared.push((400, "The body is not JSON, or was not sent as application/json"));
        shared.push((422, "A field of the body is missing or invalid (`field` names it)"));
        shared.push((413, "The body is larger than the server accepts"));
    }
    let parameters = operation["parameters"].as_array().into_iter().flatten();
    if parameters.into_iter().any(|p| matches!(p["in"].as_str(), Some("path" | "query"))) {
        shared.push((422, "A path or query parameter does not parse"));
    }
    let requirements: Vec<&Value> = operation["security"].as_array().into_iter().flatten().collect();
    if requirements.iter().any(|r| r.as_object().is_some_and(|r| !r.is_empty())) {
        shared.push((401, "Not signed in, or the token has expired or was revoked"));
        let by_cookie = requirements.iter().any(|r| r.get(COOKIE_SCHEME).is_some());
        if by_cookie && !matches!(method, "get" | "head") {
            shared.push((403, "Signed in by cookie without the x-staffroom-csrf header"));
        }
    }
    shared
}
