use reqwest::StatusCode;
use serde_json::json;

use crate::{
    both_backends,
    helpers::{spawn_app, Backend, CheckedClient, TestApp},
};

async fn a_new_teacher_signs_up_verifies_by_email_and_signs_in(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.sign_up_unverified("Nia Evans", "Nia@Riverside.sch.uk").await;
    let (_, me) = app.get("/api/me", Some(&token)).await;
    assert_eq!(me["email"], "nia@riverside.sch.uk");
    assert_eq!(me["email_verified"], false);

    let mail = app.mail_to("nia@riverside.sch.uk", "Confirm your email address").await;
    assert!(mail.html.contains("Confirm my email address"));
    let link = mail.link(&format!("{}/verify.html?token=", app.url));
    let verify_token = link.split("token=").nth(1).unwrap();
    let (status, user) = app.post("/api/auth/verify", None, json!({"token": verify_token})).await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["email_verified"], true);

    let (status, body) =
        app.post("/api/auth/signin", None, json!({"email": "nia@riverside.sch.uk", "password": "correct horse"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, me) = app.get("/api/me", body["token"].as_str()).await;
    assert_eq!(me["name"], "Nia Evans");
    assert_eq!(me["email_verified"], true);
}
both_backends!(a_new_teacher_signs_up_verifies_by_email_and_signs_in);

async fn signing_up_twice_with_one_address_is_a_conflict(backend: Backend) {
    let app = spawn_app(backend).await;
    app.sign_up("Ann", "ann@oak.sch.uk").await;
    let (status, body) = app
        .post(
            "/api/auth/signup",
            None,
            json!({"name": "Ann", "email": "ANN@oak.sch.uk", "password": "another one", "stage": "teacher"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["field"], "email");
}
both_backends!(signing_up_twice_with_one_address_is_a_conflict);

async fn unknown_email_and_wrong_password_get_the_same_answer_and_repeats_are_slowed(backend: Backend) {
    let app = spawn_app(backend).await;
    app.sign_up("Ann", "ann@oak.sch.uk").await;
    let (s1, b1) =
        app.post("/api/auth/signin", None, json!({"email": "ann@oak.sch.uk", "password": "wrong guess"})).await;
    let (s2, b2) =
        app.post("/api/auth/signin", None, json!({"email": "nobody@oak.sch.uk", "password": "wrong guess"})).await;
    assert_eq!(s1, StatusCode::UNAUTHORIZED);
    assert_eq!((s1, &b1), (s2, &b2));
    for _ in 0..4 {
        app.post("/api/auth/signin", None, json!({"email": "ann@oak.sch.uk", "password": "wrong guess"})).await;
    }
    let (status, body) =
        app.post("/api/auth/signin", None, json!({"email": "ann@oak.sch.uk", "password": "correct horse"})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body["error"].as_str().unwrap().contains("try again"));
}
both_backends!(unknown_email_and_wrong_password_get_the_same_answer_and_repeats_are_slowed);

async fn a_password_reset_link_works_once_and_ends_old_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let old_token = app.sign_up("Ann", "ann@oak.sch.uk").await;
    let (status, _) = app.post("/api/auth/password-reset", None, json!({"email": "ann@oak.sch.uk"})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // Unknown addresses get the same answer and no mail.
    let (status, _) = app.post("/api/auth/password-reset", None, json!({"email": "ghost@oak.sch.uk"})).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let mail = app.mail_to("ann@oak.sch.uk", "Reset your Staffroom password").await;
    let token = mail.link(&format!("{}/reset.html?token=", app.url)).split("token=").nth(1).unwrap().to_string();
    let (status, body) =
        app.post("/api/auth/password-reset/confirm", None, json!({"token": token, "password": "a new secret"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) =
        app.post("/api/auth/password-reset/confirm", None, json!({"token": token, "password": "yet another"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "token");

    assert_eq!(app.get("/api/me", Some(&old_token)).await.0, StatusCode::UNAUTHORIZED);
    let (status, _) =
        app.post("/api/auth/signin", None, json!({"email": "ann@oak.sch.uk", "password": "a new secret"})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(app.smtp.messages().iter().all(|m| m.to != "ghost@oak.sch.uk"));
}
both_backends!(a_password_reset_link_works_once_and_ends_old_sessions);

async fn signing_out_makes_the_same_bearer_token_answer_401_on_every_device(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.sign_up("Ann", "ann@oak.sch.uk").await;
    let sign_in = || async {
        let (status, body) =
            app.post("/api/auth/signin", None, json!({"email": "ann@oak.sch.uk", "password": "correct horse"})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().unwrap().to_string()
    };
    let laptop = sign_in().await;
    let (status, me) = app.get("/api/me", Some(&laptop)).await;
    assert_eq!((status, me["email"].as_str()), (StatusCode::OK, Some("ann@oak.sch.uk")));

    let (status, _) = app.post("/api/auth/signout", Some(&laptop), json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for token in [&laptop, &first] {
        let (status, body) = app.get("/api/me", Some(token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"], "sign in first");
    }
    // Signing out again with the dead token changes nothing and still answers 204.
    assert_eq!(app.post("/api/auth/signout", Some(&laptop), json!({})).await.0, StatusCode::NO_CONTENT);
    // Signing in again gives a token that works.
    let again = sign_in().await;
    assert_eq!(app.get("/api/me", Some(&again)).await.0, StatusCode::OK);
    assert_eq!(app.get("/api/me", Some(&laptop)).await.0, StatusCode::UNAUTHORIZED);
}
both_backends!(signing_out_makes_the_same_bearer_token_answer_401_on_every_device);

/// A browser (a client with a cookie jar) that signed Ann up, and the answer.
async fn browser_signed_up(app: &TestApp) -> (CheckedClient, reqwest::Response) {
    let browser = CheckedClient::new(reqwest::Client::builder().cookie_store(true).build().unwrap());
    let res = browser
        .post(format!("{}/api/auth/signup", app.url))
        .json(&json!({"name": "Ann", "email": "ann@oak.sch.uk", "password": "correct horse", "stage": "ect"}))
        .send()
        .await
        .unwrap();
    (browser, res)
}

async fn a_cross_site_sign_out_without_the_csrf_header_ends_no_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let (browser, res) = browser_signed_up(&app).await;
    let token = res.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_string();
    let forged = browser.post(format!("{}/api/auth/signout", app.url)).send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged.text().await.unwrap().contains("x-staffroom-csrf"));
    assert_eq!(app.get("/api/me", Some(&token)).await.0, StatusCode::OK, "the forged sign-out ended nothing");
    let real =
        browser.post(format!("{}/api/auth/signout", app.url)).header("x-staffroom-csrf", "1").send().await.unwrap();
    assert_eq!(real.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get("/api/me", Some(&token)).await.0, StatusCode::UNAUTHORIZED);
}
both_backends!(a_cross_site_sign_out_without_the_csrf_header_ends_no_session);

async fn a_cookie_session_must_carry_the_csrf_header_to_change_anything(backend: Backend) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let id = app.session(&organiser, "Calm classrooms", 10, chrono::Duration::days(3)).await;
    let (browser, res) = browser_signed_up(&app).await;
    let cookie = res.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    app.verify_email("ann@oak.sch.uk").await;
    // Reading with the cookie works.
    let me = browser.get(format!("{}/api/me", app.url)).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    // A forged cross-site POST carries the cookie but cannot add the header.
    let forged = browser.post(format!("{}/api/sessions/{id}/registration", app.url)).send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let real = browser
        .post(format!("{}/api/sessions/{id}/registration", app.url))
        .header("x-staffroom-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(real.status(), StatusCode::CREATED);
}
both_backends!(a_cookie_session_must_carry_the_csrf_header_to_change_anything);

async fn the_health_check_and_openapi_document_describe_the_server(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, health) = app.get("/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["database"], "reachable");
    let (status, doc) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/auth/signup",
        "/api/sessions",
        "/api/sessions/{id}/registration",
        "/api/sessions/{id}/invitations",
        "/api/opt-out",
        "/api/sessions/{id}/recordings",
        "/api/recordings/{id}",
        "/api/recordings/{id}/files/{file}",
        "/api/recordings/{id}/watched",
        "/api/recordings/{id}/download",
        "/api/recordings/{id}/access",
        "/api/sessions/{id}/attendance",
        "/api/sessions/{id}/attendance.csv",
        "/api/sessions/{id}/attendance-threshold",
        "/api/me/attendance",
        "/api/me/record",
        "/api/me/record/entries",
        "/api/me/record/entries/{id}",
        "/api/me/record/entries/{id}/goals",
        "/api/me/record/entries/{id}/reflection",
        "/api/me/record/sessions/{id}/reflection",
        "/api/me/record/entries/{id}/evidence",
        "/api/me/record/entries/{id}/evidence/file",
        "/api/me/record/evidence/{id}",
        "/api/me/goals",
        "/api/me/goals/{id}",
        "/api/me/record/summary",
        "/api/me/record.csv",
        "/api/me/record.json",
        "/api/me/record/xapi.json",
        "/api/me/record/entries/{id}/certificate",
        "/api/me/certificates/{id}/certificate.svg",
        "/api/me/certificates/{id}/credential.jwt",
        "/api/certificates/{id}",
        "/api/certificates/keys/{kid}",
        "/api/certificates/verify",
        "/api/me/record/entries/{id}/share",
        "/api/shared/{token}",
        "/api/shared/{token}/evidence/{id}",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the OpenAPI document");
    }
}
both_backends!(the_health_check_and_openapi_document_describe_the_server);
