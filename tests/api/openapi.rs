//! The response check in the harness (`helpers::contract`) must refuse what
//! the document does not describe, or every API test passing it proves
//! nothing. These feed it answers by hand; no server is needed.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::contract::check;

const JSON: Option<&str> = Some("application/json");

/// Runs the check; the message it fails with, if it does.
fn refusal(method: Method, path: &str, status: u16, content_type: Option<&str>, body: &Value) -> Option<String> {
    let body = if body.is_null() { vec![] } else { body.to_string().into_bytes() };
    let outcome = std::panic::catch_unwind(|| check(&method, path, status, content_type, &body));
    outcome.err().map(|e| {
        e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap()
    })
}

fn ann() -> Value {
    json!({"id": 7, "email": "ann@oak.sch.uk", "name": "Ann", "school": "Oak Primary", "stage": "ect",
           "is_organiser": false, "email_verified": true, "time_zone": null})
}

#[test]
fn the_response_check_passes_what_the_document_declares_and_refuses_the_rest() {
    assert_eq!(refusal(Method::GET, "/api/me", 200, JSON, &ann()), None);
    assert_eq!(refusal(Method::GET, "/api/me", 401, JSON, &json!({"error": "sign in first"})), None);
    assert_eq!(refusal(Method::DELETE, "/api/me/goals/3", 204, None, &Value::Null), None);

    let mut missing = ann();
    missing.as_object_mut().unwrap().remove("email");
    let said = refusal(Method::GET, "/api/me", 200, JSON, &missing).expect("a missing field is refused");
    assert!(said.contains("GET /api/me answered 200") && said.contains("\"email\" is a required property"), "{said}");

    let mut extra = ann();
    extra["password_hash"] = json!("$argon2id$…");
    let said =
        refusal(Method::GET, "/api/me", 200, JSON, &extra).expect("a field the document does not list is refused");
    assert!(said.contains("password_hash"), "{said}");

    let mut wrong = ann();
    wrong["stage"] = json!("headteacher");
    let said = refusal(Method::PATCH, "/api/me", 200, JSON, &wrong).expect("a value outside an enum is refused");
    assert!(said.contains("PATCH /api/me") && said.contains("/stage"), "{said}");

    let said = refusal(Method::GET, "/api/me", 418, JSON, &json!({"error": "teapot"})).expect("an undeclared status");
    assert!(said.contains("GET /api/me answered 418, a status the document does not declare"), "{said}");

    let said = refusal(Method::GET, "/api/me/record.csv", 200, JSON, &json!([])).expect("an undeclared content type");
    assert!(said.contains("GET /api/me/record.csv answered 200 as application/json"), "{said}");

    let said =
        refusal(Method::DELETE, "/api/me/goals/3", 204, JSON, &json!({})).expect("a body where none is declared");
    assert!(said.contains("declares no body"), "{said}");

    // Parameters in the path match any value; routes the document lacks answer 404 or 405 only.
    assert_eq!(refusal(Method::GET, "/api/nowhere", 404, JSON, &json!({"error": "API route not found"})), None);
    assert!(refusal(Method::GET, "/api/nowhere", 200, JSON, &json!({})).is_some());
    assert!(refusal(Method::PUT, "/api/me", 405, JSON, &json!({"error": "this method is not allowed"})).is_none());
    assert!(refusal(Method::PUT, "/api/me", 200, JSON, &ann()).is_some());
}

/// A flattened struct (`allOf`) is closed as a whole: each part's fields are
/// allowed, a field of neither is not.
#[test]
fn a_flattened_answer_allows_the_fields_of_every_part_and_no_other() {
    let document = serde_json::to_value(staffroom::routes::openapi()).unwrap();
    let issued = &document["components"]["schemas"]["IssuedCertificate"];
    assert!(issued["allOf"].is_array(), "IssuedCertificate is written as allOf: {issued}");
    let path = "/api/me/record/entries/5/certificate";
    let mut certificate = json!({
        "holder_name": "Ann", "session_title": "Phonics", "session_starts_at": "2026-12-01T16:00:00Z",
        "minutes": 60, "issued_at": "2026-12-01T17:05:00Z", "issuer_name": "Staffroom",
        "id": "c-1", "verification_url": "/verify-certificate.html?id=c-1", "svg_url": "/a.svg", "credential_url": "/a.jwt"
    });
    assert_eq!(refusal(Method::POST, path, 201, JSON, &certificate), None);
    certificate["unheard_of"] = json!(1);
    let said = refusal(Method::POST, path, 201, JSON, &certificate).expect("a field of neither part is refused");
    assert!(said.contains("unheard_of"), "{said}");
    certificate.as_object_mut().unwrap().remove("unheard_of");
    certificate["issued_at"] = json!("yesterday");
    let said = refusal(Method::POST, path, 201, JSON, &certificate).expect("formats are checked");
    assert!(said.contains("/issued_at"), "{said}");
}
