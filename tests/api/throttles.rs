//! Abuse limits on the routes that mail an address the caller names:
//! sign-up, verification resend and password reset, each limited per
//! address (or account) and per client IP, answering 429 with a JSON error
//! and a Retry-After header.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    both_backends,
    helpers::{spawn_app_with, Backend, TestApp},
};

/// Every test client is 127.0.0.1, so this is the one client's allowance.
const PER_IP: &str = "4";

/// POSTs `body`; the status, the Retry-After header and the JSON body.
async fn post(app: &TestApp, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Option<u64>, Value) {
    let mut req = app.client.post(format!("{}{path}", app.url)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
    let status = res.status();
    let text = res.text().await.unwrap();
    (status, retry_after, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Asserts a 429 with a JSON error containing `says` and an hour's Retry-After at most.
fn throttled(answer: (StatusCode, Option<u64>, Value), says: &str) {
    let (status, retry_after, body) = answer;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let error = body["error"].as_str().unwrap_or_else(|| panic!("a JSON error: {body}"));
    assert!(error.contains(says) && error.contains("try again in"), "{error}");
    let seconds = retry_after.expect("a Retry-After header");
    assert!((3_000..=3_600).contains(&seconds), "Retry-After {seconds}");
}

fn sign_up_body(email: &str) -> Value {
    json!({"name": "Ann", "email": email, "password": "correct horse", "stage": "ect"})
}

async fn sign_ups_are_limited_per_address_and_per_client(backend: Backend) {
    let app = spawn_app_with(backend, &[("THROTTLE_IP_PER_HOUR", PER_IP)]).await;
    let (status, _, body) = post(&app, "/api/auth/signup", None, sign_up_body("ann@oak.sch.uk")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for _ in 0..2 {
        let (status, _, _) = post(&app, "/api/auth/signup", None, sign_up_body("ANN@oak.sch.uk")).await;
        assert_eq!(status, StatusCode::CONFLICT);
    }
    throttled(post(&app, "/api/auth/signup", None, sign_up_body("ann@oak.sch.uk")).await, "too many sign-ups");
    // The refused attempt was not counted against the client: one more address may sign up, then none.
    let (status, _, body) = post(&app, "/api/auth/signup", None, sign_up_body("bob@oak.sch.uk")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    throttled(post(&app, "/api/auth/signup", None, sign_up_body("cy@oak.sch.uk")).await, "too many sign-ups");
    let accounts: i64 = sqlx::query_scalar("select count(*) from users").fetch_one(&app.state.db.read).await.unwrap();
    assert_eq!(accounts, 2);
}
both_backends!(sign_ups_are_limited_per_address_and_per_client);

async fn resending_the_verification_email_is_limited_per_account_and_per_client(backend: Backend) {
    let app = spawn_app_with(backend, &[("THROTTLE_IP_PER_HOUR", PER_IP)]).await;
    let ann = app.sign_up_unverified("Ann", "ann@oak.sch.uk").await;
    let bob = app.sign_up_unverified("Bob", "bob@oak.sch.uk").await;
    for _ in 0..3 {
        let (status, _, body) = post(&app, "/api/auth/verify/resend", Some(&ann), json!({})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    throttled(post(&app, "/api/auth/verify/resend", Some(&ann), json!({})).await, "sent several times already");
    let (status, _, body) = post(&app, "/api/auth/verify/resend", Some(&bob), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    throttled(post(&app, "/api/auth/verify/resend", Some(&bob), json!({})).await, "sent several times already");

    app.drain_outbox().await;
    let to_ann = |m: &crate::helpers::Mail| m.to == "ann@oak.sch.uk" && m.subject.starts_with("Confirm your email");
    app.wait_for_mail("four verification emails to Ann", |m| m.iter().filter(|m| to_ann(m)).count() >= 4).await;
    assert_eq!(app.smtp.messages().iter().filter(|m| to_ann(m)).count(), 4, "one at sign-up and three resent");
}
both_backends!(resending_the_verification_email_is_limited_per_account_and_per_client);

async fn password_reset_requests_are_limited_alike_for_known_and_unknown_addresses(backend: Backend) {
    let app = spawn_app_with(backend, &[("THROTTLE_IP_PER_HOUR", "7")]).await;
    app.sign_up_unverified("Ann", "ann@oak.sch.uk").await;
    for email in ["ann@oak.sch.uk", "ghost@oak.sch.uk"] {
        for _ in 0..3 {
            let (status, _, body) = post(&app, "/api/auth/password-reset", None, json!({"email": email})).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        }
        // The same answer whether or not the account exists.
        throttled(
            post(&app, "/api/auth/password-reset", None, json!({"email": email})).await,
            "too many password-reset",
        );
    }
    let (status, _, _) = post(&app, "/api/auth/password-reset", None, json!({"email": "bob@oak.sch.uk"})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    throttled(
        post(&app, "/api/auth/password-reset", None, json!({"email": "cy@oak.sch.uk"})).await,
        "from this network",
    );
    app.drain_outbox().await;
    let resets = app.smtp.messages().iter().filter(|m| m.subject.starts_with("Reset your Staffroom password")).count();
    assert_eq!(resets, 3, "three to Ann, none to addresses without an account");
}
both_backends!(password_reset_requests_are_limited_alike_for_known_and_unknown_addresses);
