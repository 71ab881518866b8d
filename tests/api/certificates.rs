//! Certificates of attendance: issued only for attended sessions, as Open
//! Badges 3.0 VC-JWTs that verify with the published key, printed as an SVG
//! with the credential baked in, confirmed publicly with only the printed
//! facts, and refused once tampered with.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    attendance::{events, exec, user_id, went_live_for_an_hour_at_t0},
    both_backends,
    helpers::{spawn_app, Backend, TestApp},
};

const TITLE: &str = "Questioning & <feedback>";

pub(crate) struct Attended {
    /// The session.
    pub session: i64,
    pub organiser: String,
    /// Ann O'Neill: live from 0 to 50 of the hour, attended.
    pub ann: String,
    pub ann_entry: i64,
    /// Ben: live from 10 to 30, partly.
    pub ben: String,
    pub ben_entry: i64,
}

/// The one session entry in `token`'s record.
pub(crate) async fn session_entry(app: &TestApp, token: &str) -> i64 {
    let (status, record) = app.get("/api/me/record", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{record}");
    record["entries"][0]["id"].as_i64().unwrap_or_else(|| panic!("a session entry in {record}"))
}

/// An hour's session with a presenter, live from T0 to T0 + 60 min.
pub(crate) async fn attended_session(app: &TestApp) -> Attended {
    let organiser = app.organiser().await;
    let id = app.session(&organiser, TITLE, 30, chrono::Duration::days(1)).await;
    app.sign_up("Priya Presenter", "priya@staffroom.test").await;
    exec(app, format!("insert into session_presenters (session_id, user_id) select {id}, id from users where email = 'priya@staffroom.test'")).await;
    let ann = app.sign_up("Ann O'Neill", "ann@oak.sch.uk").await;
    let ben = app.sign_up("Ben", "ben@oak.sch.uk").await;
    for token in [&ann, &ben] {
        let (status, body) = app.post(&format!("/api/sessions/{id}/registration"), Some(token), json!({})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    went_live_for_an_hour_at_t0(app, id).await;
    let ann_id = user_id(app, "ann@oak.sch.uk").await;
    events(app, id, ann_id, &[("join", None, 0.0), ("leave", Some("left"), 50.0)]).await;
    let ben_id = user_id(app, "ben@oak.sch.uk").await;
    events(app, id, ben_id, &[("join", None, 10.0), ("leave", Some("left"), 30.0)]).await;
    let ann_entry = session_entry(app, &ann).await;
    let ben_entry = session_entry(app, &ben).await;
    Attended { session: id, organiser, ann, ann_entry, ben, ben_entry }
}

/// Asks for the certificate as the page does: the holder's name as their
/// account has it, confirmed.
pub(crate) async fn issue(app: &TestApp, token: &str, entry: i64) -> (StatusCode, Value) {
    let (_, me) = app.get("/api/me", Some(token)).await;
    issue_as(app, token, entry, me["name"].as_str().unwrap_or_default()).await
}

/// Asks for the certificate in the name `holder_name`.
pub(crate) async fn issue_as(app: &TestApp, token: &str, entry: i64, holder_name: &str) -> (StatusCode, Value) {
    app.post(&format!("/api/me/record/entries/{entry}/certificate"), Some(token), json!({"holder_name": holder_name}))
        .await
}

/// A download: status, content type, content disposition and body.
pub(crate) async fn download(app: &TestApp, path: &str, token: Option<&str>) -> (StatusCode, String, String, String) {
    let mut req = app.client.get(format!("{}{path}", app.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let header = |name: &str| res.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let (content_type, disposition) = (header("content-type"), header("content-disposition"));
    (res.status(), content_type, disposition, res.text().await.unwrap())
}

pub(crate) fn part(jwt: &str, i: usize) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt.split('.').nth(i).unwrap()).unwrap()).unwrap()
}

/// Checks `jwt` with nothing but the public JWK its `kid` points at, as an
/// outside verifier would.
async fn verifies_with_the_published_key(app: &TestApp, jwt: &str) {
    let kid = part(jwt, 0)["kid"].as_str().unwrap().to_string();
    let path = kid.strip_prefix(&app.url).unwrap_or_else(|| panic!("the kid {kid} is a URL on this server"));
    let (status, jwk) = app.get(path, None).await;
    assert_eq!(status, StatusCode::OK, "{jwk}");
    assert!(jwk.get("d").is_none(), "never the private key: {jwk}");
    let key =
        jsonwebtoken::DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_exp = false;
    validation.required_spec_claims = ["iss", "nbf"].into_iter().map(String::from).collect();
    jsonwebtoken::decode::<Value>(jwt, &key, &validation).expect("the credential verifies with the published key");
}

async fn an_attended_session_gives_a_certificate_whose_credential_verifies(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = attended_session(&app).await;
    let (status, cert) = issue(&app, &s.ann, s.ann_entry).await;
    assert_eq!(status, StatusCode::CREATED, "{cert}");
    let id = cert["id"].as_str().unwrap().to_string();
    assert!(id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    assert_eq!(cert["verification_url"], format!("{}/certificate.html?id={id}", app.url));
    assert_eq!((cert["holder_name"].as_str(), cert["session_title"].as_str()), (Some("Ann O'Neill"), Some(TITLE)));
    assert_eq!(cert["minutes"], 50);

    let (status, content_type, disposition, jwt) =
        download(&app, cert["credential_url"].as_str().unwrap(), Some(&s.ann)).await;
    assert_eq!(status, StatusCode::OK, "{jwt}");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert!(disposition.starts_with("attachment") && disposition.contains(".jwt"), "{disposition}");
    let header = part(&jwt, 0);
    assert_eq!((header["alg"].as_str(), header["typ"].as_str()), (Some("RS256"), Some("JWT")));
    assert_eq!(header["jwk"]["kty"], "RSA");
    assert!(header["jwk"].get("d").is_none(), "{header}");
    let mut names: Vec<&str> = header.as_object().unwrap().keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["alg", "jwk", "kid", "typ"], "OB 3.0 allows no other JOSE headers");

    let payload = part(&jwt, 1);
    assert_eq!(
        payload["@context"],
        json!(["https://www.w3.org/ns/credentials/v2", "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json"])
    );
    assert_eq!(payload["type"], json!(["VerifiableCredential", "OpenBadgeCredential"]));
    assert_eq!(payload["issuer"]["type"], json!(["Profile"]));
    assert_eq!(payload["issuer"]["name"], "Staffroom");
    assert_eq!(payload["id"], cert["verification_url"]);
    assert_eq!((&payload["jti"], &payload["iss"]), (&payload["id"], &payload["issuer"]["id"]));
    let valid_from = chrono::DateTime::parse_from_rfc3339(payload["validFrom"].as_str().unwrap()).unwrap();
    assert_eq!(payload["nbf"].as_i64(), Some(valid_from.timestamp()));
    let subject = &payload["credentialSubject"];
    assert_eq!(subject["type"], json!(["AchievementSubject"]));
    assert_eq!(subject["identifier"][0]["identityHash"], "Ann O'Neill");
    assert_eq!(subject["identifier"][0]["identityType"], "name");
    assert!(subject["narrative"].as_str().unwrap().contains("credited with 50 minutes of"), "{subject}");
    assert_eq!(subject["achievement"]["type"], json!(["Achievement"]));
    assert_eq!(subject["achievement"]["name"], TITLE);
    assert!(subject["achievement"]["description"].as_str().unwrap().contains("Priya Presenter"), "{subject}");
    assert!(subject["achievement"]["criteria"]["narrative"].is_string());

    verifies_with_the_published_key(&app, &jwt).await;
    let (status, verified) = app.post("/api/certificates/verify", None, json!({"credential": jwt})).await;
    assert_eq!(status, StatusCode::OK, "{verified}");
    assert_eq!((verified["valid"].as_bool(), verified["id"].as_str()), (Some(true), Some(id.as_str())));
    assert_eq!(verified["certificate"]["minutes"], 50);

    // Again: the same certificate, and the record now shows it.
    let (status, again) = issue(&app, &s.ann, s.ann_entry).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], id.as_str());
    let (_, entry) = app.get(&format!("/api/me/record/entries/{}", s.ann_entry), Some(&s.ann)).await;
    assert_eq!(entry["certificate_id"], id.as_str());
}
both_backends!(an_attended_session_gives_a_certificate_whose_credential_verifies);

async fn partly_attended_sessions_and_manual_entries_get_no_certificate(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = attended_session(&app).await;
    let (status, body) = issue(&app, &s.ben, s.ben_entry).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("part of this session"), "{body}");

    let (status, manual) = app
        .post(
            "/api/me/record/entries",
            Some(&s.ann),
            json!({"kind": "course", "title": "Phonics course", "date": "2025-01-15", "minutes": 90}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{manual}");
    let (status, body) = issue(&app, &s.ann, manual["id"].as_i64().unwrap()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("added yourself"), "{body}");
    let (_, record) = app.get("/api/me/record", Some(&s.ben)).await;
    assert_eq!(record["entries"][0]["certificate_id"], Value::Null);
}
both_backends!(partly_attended_sessions_and_manual_entries_get_no_certificate);

async fn someone_elses_entry_and_certificate_are_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = attended_session(&app).await;
    let (status, body) = issue(&app, &s.ben, s.ann_entry).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = issue(&app, &s.ann, 999_999).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.post(&format!("/api/me/record/entries/{}/certificate", s.ann_entry), None, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (_, cert) = issue(&app, &s.ann, s.ann_entry).await;
    for url in [&cert["svg_url"], &cert["credential_url"]] {
        let url = url.as_str().unwrap();
        let (status, content_type, _, body) = download(&app, url, Some(&s.ben)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "a stranger downloads {url}: {body}");
        assert!(content_type.starts_with("application/json"), "{content_type}");
        assert!(!body.contains("Ann"), "{body}");
        let (status, _, _, _) = download(&app, url, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}
both_backends!(someone_elses_entry_and_certificate_are_not_found);

async fn the_public_page_shows_only_what_the_certificate_prints(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = attended_session(&app).await;
    let (_, cert) = issue(&app, &s.ann, s.ann_entry).await;
    let id = cert["id"].as_str().unwrap();
    let (status, public) = app.get(&format!("/api/certificates/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{public}");
    let mut keys: Vec<&str> = public.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["holder_name", "issued_at", "issuer_name", "minutes", "session_starts_at", "session_title"]);
    assert_eq!(public["holder_name"], "Ann O'Neill");
    assert_eq!(public["session_title"], TITLE);
    assert_eq!(public["minutes"], 50);
    assert_eq!(public["issuer_name"], "Staffroom");
    let text = public.to_string();
    assert!(!text.contains("ann@oak.sch.uk") && !text.contains("Oak Primary"), "{text}");

    let forged = if id.starts_with('0') { format!("1{}", &id[1..]) } else { format!("0{}", &id[1..]) };
    for bad in [forged.as_str(), "not-a-certificate", "ABCDEF0123456789ABCDEF0123456789"] {
        let (status, body) = app.get(&format!("/api/certificates/{bad}"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }
}
both_backends!(the_public_page_shows_only_what_the_certificate_prints);

pub(crate) async fn verify(app: &TestApp, credential: &str) -> (StatusCode, Value) {
    app.post("/api/certificates/verify", None, json!({"credential": credential})).await
}

async fn a_tampered_credential_is_refused_and_the_original_still_verifies(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = attended_session(&app).await;
    let (_, cert) = issue(&app, &s.ann, s.ann_entry).await;
    let (_, _, _, jwt) = download(&app, cert["credential_url"].as_str().unwrap(), Some(&s.ann)).await;
    let pieces: Vec<&str> = jwt.split('.').collect();

    // More minutes, same signature.
    let mut payload = part(&jwt, 1);
    let narrative = payload["credentialSubject"]["narrative"].as_str().unwrap().replace("50 minutes", "500 minutes");
    payload["credentialSubject"]["narrative"] = json!(narrative);
    let more_minutes = format!("{}.{}.{}", pieces[0], URL_SAFE_NO_PAD.encode(payload.to_string()), pieces[2]);
    let (status, body) = verify(&app, &more_minutes).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"].as_str().unwrap().contains("signature does not match"), "{body}");

    // One byte of the signature changed.
    let mut signature = URL_SAFE_NO_PAD.decode(pieces[2]).unwrap();
    signature[10] ^= 0x01;
    let bad_signature = format!("{}.{}.{}", pieces[0], pieces[1], URL_SAFE_NO_PAD.encode(signature));
    let (status, body) = verify(&app, &bad_signature).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"].as_str().unwrap().contains("signature does not match"), "{body}");

    // A key this server never held.
    let mut header = part(&jwt, 0);
    header["kid"] = json!(format!("{}/api/certificates/keys/someone-elses-key", app.url));
    let other_key = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), pieces[1], pieces[2]);
    let (status, body) = verify(&app, &other_key).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"].as_str().unwrap().contains("key this server does not hold"), "{body}");

    for junk in ["", "hello", "a.b.c", "<svg><text>nothing baked</text></svg>"] {
        let (status, body) = verify(&app, junk).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{junk:?}: {body}");
        assert_eq!(body["field"], "credential", "{body}");
    }

    let (status, body) = verify(&app, &jwt).await;
    assert_eq!(status, StatusCode::OK, "the stored certificate still verifies: {body}");
    assert_eq!(body["valid"], true);
}
both_backends!(a_tampered_credential_is_refused_and_the_original_still_verifies);

async fn the_svg_certificate_prints_the_holder_and_bakes_in_a_credential_that_verifies(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = attended_session(&app).await;
    let (_, cert) = issue(&app, &s.ann, s.ann_entry).await;
    let (status, content_type, disposition, svg) =
        download(&app, cert["svg_url"].as_str().unwrap(), Some(&s.ann)).await;
    assert_eq!(status, StatusCode::OK, "{svg}");
    assert_eq!(content_type, "image/svg+xml");
    assert!(disposition.starts_with("attachment") && disposition.contains(".svg"), "{disposition}");
    assert!(svg.starts_with("<?xml") && svg.contains(r#"xmlns:openbadges="https://purl.imsglobal.org/ob/v3p0""#));
    assert!(svg.contains("Ann O&#39;Neill"), "the holder, escaped");
    assert!(svg.contains("Questioning &amp; &lt;feedback&gt;"), "the title, escaped");
    assert!(!svg.contains("<feedback>"), "no user text as markup");
    assert!(svg.contains(cert["verification_url"].as_str().unwrap()), "the verification URL is printed");
    assert!(svg.contains("50 minutes of professional learning"), "the minutes");
    assert!(svg.contains("Presented by Priya Presenter"));

    // Baked per OB 3.0: directly after <svg>, the compact JWS in `verify`.
    assert_eq!(svg.matches("<openbadges:credential").count(), 1);
    let after_svg = &svg[svg.find("<svg").unwrap()..];
    let baked_at = after_svg.find("<openbadges:credential verify=\"").unwrap();
    assert!(!after_svg[after_svg.find('>').unwrap() + 1..baked_at].contains('<'), "nothing before the credential");
    let baked = &after_svg[baked_at + "<openbadges:credential verify=\"".len()..];
    let baked = &baked[..baked.find('"').unwrap()];
    let (_, _, _, jwt) = download(&app, cert["credential_url"].as_str().unwrap(), Some(&s.ann)).await;
    assert_eq!(baked, jwt);
    verifies_with_the_published_key(&app, baked).await;

    // The whole file, as uploaded on the public page.
    let (status, body) = verify(&app, &svg).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["certificate"]["holder_name"], "Ann O'Neill");
    let (status, _) = app.request(Method::GET, "/certificate.html", None, None).await;
    assert_eq!(status, StatusCode::OK, "the verification page is served");
}
both_backends!(the_svg_certificate_prints_the_holder_and_bakes_in_a_credential_that_verifies);
