//! The bearer-token verifier against key sets served over HTTP: the attack battery,
//! clock skew, key rotation, single-flight refreshes, a JWKS server that goes down,
//! discovery, and the per-IP pre-limit.

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use ic_gateway::{
    bearer::{AuthError, Verifier, VerifierConfig},
    jwks::{KeySource, KeyStore, readiness_checks},
};
use ic_health::Criticality;
use ic_testkit::jwt::{self, EcIssuer, JwksServer as Jwks, RsaIssuer, attack_battery, claims};
use jsonwebtoken::Algorithm;
use serde_json::json;

const AUDIENCE: &str = "ic-admin";
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const SKEW: i64 = 60;

async fn verifier_for(
    source: KeySource,
    issuer: &str,
    tune: impl FnOnce(&mut VerifierConfig),
) -> Verifier {
    ic_telemetry::install_crypto_provider();
    let store = KeyStore::new(
        source,
        vec![Algorithm::RS256, Algorithm::ES256],
        Duration::from_secs(2),
    )
    .with_min_refresh_interval(Duration::ZERO);
    let _ = store.refresh().await;
    let mut config = VerifierConfig::new(issuer, AUDIENCE);
    tune(&mut config);
    Verifier::new(config, Arc::new(store))
}

fn metric(verifier: &Verifier, line_start: &str) -> f64 {
    let mut registry = prometheus_client::registry::Registry::default();
    verifier.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn every_attack_of_the_battery_is_refused_and_no_named_url_is_fetched() {
    let known = RsaIssuer::generate("k1");
    let jwks = Jwks::start(vec![known.jwk()]).await;
    let verifier = verifier_for(KeySource::Url(jwks.jwks_url()), &jwks.issuer(), |_| {}).await;
    let (evil, evil_hits) = ic_testkit::counting_server().await;
    let battery = attack_battery(&known, &jwks.issuer(), AUDIENCE, SKEW, &evil);
    assert!(battery.len() >= 25, "{} cases", battery.len());
    for (name, token) in &battery {
        match verifier.verify(token, CLIENT).await {
            Err(AuthError::Invalid(why)) => eprintln!("refused, {name}: {why}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(
        evil_hits.load(Ordering::SeqCst),
        0,
        "jku/x5u are never fetched"
    );

    // The real thing passes, within the skew too.
    let issuer = jwks.issuer();
    let good = claims(&issuer, AUDIENCE, "ada", &["admin", "editor"], 300);
    let verified = verifier.verify(&known.token(&good), CLIENT).await.unwrap();
    assert_eq!(verified.identity.user_id, "ada");
    assert_eq!(verified.identity.roles, ["admin", "editor"]);
    assert_eq!(verified.identity.email.as_deref(), Some("ada@example.org"));
    assert_eq!(verified.identity.name.as_deref(), Some("ada"));
    let mut late = good.clone();
    late["exp"] = json!(jwt::now() - SKEW / 2);
    verifier.verify(&known.token(&late), CLIENT).await.unwrap();
    let mut early = good.clone();
    early["nbf"] = json!(jwt::now() + SKEW / 2);
    verifier.verify(&known.token(&early), CLIENT).await.unwrap();
    // An audience list containing ours, and Authentik's RFC 9068 header type.
    let mut listed = good.clone();
    listed["aud"] = json!(["another-app", AUDIENCE]);
    let at_jwt = known.sign(
        &json!({"alg": "RS256", "typ": "at+jwt", "kid": "k1"}),
        &listed,
    );
    verifier.verify(&at_jwt, CLIENT).await.unwrap();
}

#[tokio::test]
async fn es256_keys_verify_es256_only_and_hmac_or_small_keys_are_never_loaded() {
    let ec = EcIssuer::generate("ec1");
    let rsa = RsaIssuer::generate("rsa1");
    let mut hmac = json!({"kty": "oct", "kid": "hmac", "k": jwt::b64("secret"), "alg": "HS256"});
    let small = json!({"kty": "RSA", "kid": "small", "n": jwt::b64([0xC5u8; 128]), "e": "AQAB"});
    let mut rs_on_ec = ec.jwk();
    rs_on_ec["kid"] = json!("ec-claims-rs");
    rs_on_ec["alg"] = json!("RS256");
    let mut encryption = rsa.jwk();
    encryption["kid"] = json!("enc");
    encryption["use"] = json!("enc");
    let jwks = Jwks::start(vec![
        ec.jwk(),
        rsa.jwk(),
        hmac.take(),
        small,
        rs_on_ec,
        encryption,
    ])
    .await;
    let verifier = verifier_for(KeySource::Url(jwks.jwks_url()), &jwks.issuer(), |_| {}).await;
    assert_eq!(verifier.keys().current().len(), 2, "ec1 and rsa1 only");
    let good = claims(&jwks.issuer(), AUDIENCE, "ada", &[], 300);
    verifier.verify(&ec.token(&good), CLIENT).await.unwrap();
    verifier.verify(&rsa.token(&good), CLIENT).await.unwrap();
    let hs = jwt::hs256(b"secret", &json!({"alg": "HS256", "kid": "hmac"}), &good);
    assert!(matches!(
        verifier.verify(&hs, CLIENT).await,
        Err(AuthError::Invalid(_))
    ));
}

#[tokio::test]
async fn a_rotated_key_is_accepted_after_one_refresh_and_a_removed_one_refused_after_the_next() {
    let old = RsaIssuer::generate("old");
    let jwks = Jwks::start(vec![old.jwk()]).await;
    let verifier = verifier_for(KeySource::Url(jwks.jwks_url()), &jwks.issuer(), |_| {}).await;
    let good = claims(&jwks.issuer(), AUDIENCE, "ada", &["admin"], 300);
    let old_token = old.token(&good);
    verifier.verify(&old_token, CLIENT).await.unwrap();
    assert_eq!(jwks.fetches(), 1);

    // Published later: the unknown kid asks for one refresh, which finds it.
    let new = RsaIssuer::generate("new");
    jwks.set_keys(vec![old.jwk(), new.jwk()]);
    verifier.verify(&new.token(&good), CLIENT).await.unwrap();
    assert_eq!(jwks.fetches(), 2);

    // Removed: refused after the next refresh, though the token was verified (cached).
    jwks.set_keys(vec![new.jwk()]);
    verifier.verify(&old_token, CLIENT).await.unwrap();
    verifier.keys().refresh().await.unwrap();
    assert!(matches!(
        verifier.verify(&old_token, CLIENT).await,
        Err(AuthError::Invalid(_))
    ));
    verifier.verify(&new.token(&good), CLIENT).await.unwrap();
}

#[tokio::test]
async fn fifty_concurrent_unknown_kids_cause_one_fetch_and_a_rate_limited_store_none_more() {
    let known = RsaIssuer::generate("k1");
    let jwks = Jwks::start(vec![known.jwk()]).await;
    ic_telemetry::install_crypto_provider();
    let store = KeyStore::new(
        KeySource::Url(jwks.jwks_url()),
        vec![Algorithm::RS256],
        Duration::from_secs(2),
    );
    store.refresh().await.unwrap();
    let verifier = Arc::new(Verifier::new(
        VerifierConfig::new(jwks.issuer(), AUDIENCE),
        Arc::new(store),
    ));
    let stranger = RsaIssuer::generate("unknown");
    let token = stranger.token(&claims(&jwks.issuer(), AUDIENCE, "eve", &[], 300));
    let before = jwks.fetches();
    let attempts = (0..50).map(|_| {
        let verifier = verifier.clone();
        let token = token.clone();
        tokio::spawn(async move { verifier.verify(&token, CLIENT).await })
    });
    for attempt in futures::future::join_all(attempts).await {
        assert!(matches!(attempt.unwrap(), Err(AuthError::Invalid(_))));
    }
    assert_eq!(jwks.fetches() - before, 1, "one fetch for 50 requests");
    // Within the 30 s minimum interval, another unknown kid fetches nothing.
    let other = RsaIssuer::generate("unknown-2");
    let token = other.token(&claims(&jwks.issuer(), AUDIENCE, "eve", &[], 300));
    assert!(verifier.verify(&token, CLIENT).await.is_err());
    assert_eq!(jwks.fetches() - before, 1);
}

#[tokio::test]
async fn a_jwks_server_that_goes_down_leaves_the_last_good_keys_in_use_and_readiness_says_so() {
    let known = RsaIssuer::generate("k1");
    let jwks = Jwks::start(vec![known.jwk()]).await;
    let verifier = verifier_for(KeySource::Url(jwks.jwks_url()), &jwks.issuer(), |_| {}).await;
    let [keys_check, refresh_check] = readiness_checks(verifier.keys(), Criticality::Critical);
    assert_eq!(keys_check.run().await, Ok(()));
    jwks.set_down(true);
    assert!(verifier.keys().refresh().await.is_err());
    let good = claims(&jwks.issuer(), AUDIENCE, "ada", &["admin"], 300);
    verifier.verify(&known.token(&good), CLIENT).await.unwrap();
    assert_eq!(keys_check.run().await, Ok(()), "keys still usable");
    let degraded = refresh_check.run().await.unwrap_err();
    assert!(degraded.contains("still in use"), "{degraded}");
    jwks.set_down(false);
    verifier.keys().refresh().await.unwrap();
    assert_eq!(refresh_check.run().await, Ok(()));

    // Never loaded at all: no keys, which admin-gateway reports as not ready.
    let empty = verifier_for(
        KeySource::Url(format!("{}/nothing", jwks.base)),
        "x",
        |_| {},
    )
    .await;
    let [keys_check, _] = readiness_checks(empty.keys(), Criticality::Critical);
    assert!(
        keys_check
            .run()
            .await
            .unwrap_err()
            .contains("no signing keys")
    );
}

#[tokio::test]
async fn keys_are_discovered_from_the_issuer_whose_configuration_must_name_it() {
    let known = RsaIssuer::generate("k1");
    let jwks = Jwks::start(vec![known.jwk()]).await;
    let issuer = jwks.issuer();
    let verifier = verifier_for(
        KeySource::Discovery {
            issuer: issuer.clone(),
        },
        &issuer,
        |_| {},
    )
    .await;
    let good = claims(&issuer, AUDIENCE, "ada", &["admin"], 300);
    verifier.verify(&known.token(&good), CLIENT).await.unwrap();
    // A configuration naming another issuer is not believed.
    let store = KeyStore::new(
        KeySource::Discovery {
            issuer: format!("{}/application/o/admin", jwks.base),
        },
        vec![Algorithm::RS256],
        Duration::from_secs(2),
    );
    let err = store.refresh().await.unwrap_err().to_string();
    assert!(err.contains("names issuer"), "{err}");
}

#[tokio::test]
async fn a_flood_of_garbage_tokens_is_stopped_before_any_signature_check() {
    let known = RsaIssuer::generate("k1");
    let jwks = Jwks::start(vec![known.jwk()]).await;
    let verifier = verifier_for(KeySource::Url(jwks.jwks_url()), &jwks.issuer(), |c| {
        c.verify_per_minute = 5;
    })
    .await;
    let good = claims(&jwks.issuer(), AUDIENCE, "ada", &["admin"], 300);
    let valid = known.token(&good);
    verifier.verify(&valid, CLIENT).await.unwrap();
    let forger = RsaIssuer::generate("k1");
    let mut limited = 0;
    for n in 0..40 {
        let mut c = good.clone();
        c["jti"] = json!(n);
        match verifier.verify(&forger.token(&c), CLIENT).await {
            Err(AuthError::Limited(decision)) => {
                assert!(!decision.allowed);
                limited += 1;
            }
            Err(AuthError::Invalid(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(limited, 36, "5 per minute: 1 valid + 4 forged checked");
    let checked = metric(
        &verifier,
        "auth_token_verifications_total{result=\"invalid\"}",
    );
    assert_eq!(checked, 4.0);
    // The verified token is not charged: it needs no signature check.
    verifier.verify(&valid, CLIENT).await.unwrap();
    // Another client is not limited by this one's flood.
    let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    assert!(matches!(
        verifier.verify(&forger.token(&good), other).await,
        Err(AuthError::Invalid(_))
    ));
}
