//! The certificate signing key out of the database: a 0600 PEM file in the
//! data dir that survives restarts, a key an older version kept in the
//! database moved into it once, and rotation by replacing the file
//! (docs/certificates.md, "The issuer key").

use std::{os::unix::fs::PermissionsExt, path::PathBuf};

use base64::{engine::general_purpose::STANDARD, Engine};
use reqwest::{Method, StatusCode};
use rsa::{
    pkcs1::EncodeRsaPrivateKey,
    pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding},
    RsaPrivateKey,
};
use serde_json::{json, Value};

use crate::{
    attendance::exec,
    both_backends,
    certificates::{attended_session, download, issue, part, verify},
    helpers::{spawn_app, Backend, TestApp},
};

fn key_file(app: &TestApp) -> PathBuf {
    app.data_dir.path().join("certificate-key.pem")
}

fn mode(path: &PathBuf) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.state.db.read).await.unwrap()
}

/// The credential (compact JWS) of a newly issued certificate.
async fn certificate(app: &TestApp, token: &str, entry: i64) -> String {
    let (status, cert) = issue(app, token, entry).await;
    assert!(status == StatusCode::CREATED || status == StatusCode::OK, "{cert}");
    let (status, _, _, jwt) = download(app, cert["credential_url"].as_str().unwrap(), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{jwt}");
    jwt
}

async fn verifies(app: &TestApp, jwt: &str) {
    let (status, body) = verify(app, jwt).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["valid"], true, "{body}");
}

fn kid(jwt: &str) -> String {
    part(jwt, 0)["kid"].as_str().unwrap().rsplit('/').next().unwrap().to_string()
}

async fn the_signing_key_is_a_0600_file_the_database_holds_no_private_key_and_certificates_verify_after_a_restart(
    backend: Backend,
) {
    let mut app = spawn_app(backend).await;
    let s = attended_session(&app).await;
    assert!(!key_file(&app).exists(), "no key before the first certificate");
    let jwt = certificate(&app, &s.ann, s.ann_entry).await;

    let path = key_file(&app);
    assert_eq!(mode(&path), 0o600, "{} is readable by its owner only", path.display());
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "a PKCS#8 PEM: {pem:.40}");
    assert_eq!(count(&app, "select count(*) from issuer_keys").await, 1);
    assert_eq!(count(&app, "select count(*) from issuer_keys where private_key <> ''").await, 0, "no private key");
    let jwk: String =
        sqlx::query_scalar("select public_jwk from issuer_keys").fetch_one(&app.state.db.read).await.unwrap();
    assert!(serde_json::from_str::<Value>(&jwk).unwrap().get("d").is_none(), "only the public half: {jwk}");

    app.restart().await;
    verifies(&app, &jwt).await;
    let (status, published) = app.get(&format!("/api/certificates/keys/{}", kid(&jwt)), None).await;
    assert_eq!(status, StatusCode::OK, "{published}");
    // Asking again after the restart gives the same certificate, and the key is unchanged.
    assert_eq!(certificate(&app, &s.ann, s.ann_entry).await, jwt);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), pem);
}
both_backends!(
    the_signing_key_is_a_0600_file_the_database_holds_no_private_key_and_certificates_verify_after_a_restart
);

async fn a_key_an_older_version_kept_in_the_database_moves_to_the_file_once_on_start(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let s = attended_session(&app).await;
    let jwt = certificate(&app, &s.ann, s.ann_entry).await;
    // What an older version left: the key base64 PKCS#1 DER in the row, no file.
    let path = key_file(&app);
    let private = RsaPrivateKey::from_pkcs8_pem(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let der = STANDARD.encode(private.to_pkcs1_der().unwrap().as_bytes());
    exec(&app, format!("update issuer_keys set private_key = '{der}'")).await;
    std::fs::remove_file(&path).unwrap();

    app.restart().await;
    assert_eq!(mode(&path), 0o600);
    let moved = RsaPrivateKey::from_pkcs8_pem(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(moved == private, "the same key, now in the file");
    assert_eq!(count(&app, "select count(*) from issuer_keys where private_key <> ''").await, 0);
    verifies(&app, &jwt).await;

    // Once: a second start finds nothing left to move and keeps the file as it is.
    let pem = std::fs::read_to_string(&path).unwrap();
    app.restart().await;
    assert_eq!(std::fs::read_to_string(&path).unwrap(), pem);
    verifies(&app, &jwt).await;
}
both_backends!(a_key_an_older_version_kept_in_the_database_moves_to_the_file_once_on_start);

async fn a_new_key_file_signs_new_certificates_and_those_signed_before_still_verify(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let s = attended_session(&app).await;
    let old = certificate(&app, &s.ann, s.ann_entry).await;
    // Rotation as docs/certificates.md says: a new PEM at the key's path, then a restart.
    let new_key = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let path = key_file(&app);
    std::fs::write(&path, new_key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
    app.restart().await;

    // Ben was in for 20 of the 60 minutes: an organiser's correction to
    // 30 % settles the session again and makes his attendance count.
    let (status, body) = app
        .request(
            Method::PUT,
            &format!("/api/sessions/{}/attendance-threshold", s.session),
            Some(&s.organiser),
            Some(json!({"percent": 30})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let new = certificate(&app, &s.ben, s.ben_entry).await;

    assert_ne!(kid(&new), kid(&old), "signed with the new key");
    verifies(&app, &new).await;
    verifies(&app, &old).await;
    assert_eq!(count(&app, "select count(*) from issuer_keys").await, 2, "the old public key is kept");
    let in_use: String =
        sqlx::query_scalar("select id from issuer_keys where in_use = 1").fetch_one(&app.state.db.read).await.unwrap();
    assert_eq!(in_use, kid(&new));
}
both_backends!(a_new_key_file_signs_new_certificates_and_those_signed_before_still_verify);
