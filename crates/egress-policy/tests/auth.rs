//! Caller authentication: bearer tokens, mTLS identities, mode "none".

mod common;

use common::{ADMIN, BUCKETS_ONLY, LISTER, RECORDER, policy};
use egress_policy::{AuthMode, Policy, hash_token};

#[test]
fn right_token_finds_its_caller() {
    let policy = policy();
    assert_eq!(policy.auth_mode(), AuthMode::Bearer);
    for (token, name) in [
        (RECORDER, "recorder-service"),
        (ADMIN, "admin"),
        (LISTER, "lister"),
        (BUCKETS_ONLY, "archiver"),
    ] {
        let caller = policy.authenticate_bearer(token).expect(name);
        assert_eq!(caller.name, name);
        assert_eq!(caller.policy.caller_name(), name);
    }
}

#[test]
fn wrong_tokens_find_nobody() {
    let policy = policy();
    for token in [
        "",
        "recorder-token ",
        " recorder-token",
        "Recorder-token",
        "recorder-toke",
        "Bearer recorder-token",
        // The hash itself is not the token.
        &hash_token(RECORDER),
    ] {
        assert!(policy.authenticate_bearer(token).is_none(), "{token:?}");
    }
}

#[test]
fn another_callers_token_is_that_caller_not_this_one() {
    // The lister's token authenticates the lister, with the lister's
    // (smaller) policy, never the recorder.
    let policy = policy();
    let caller = policy.authenticate_bearer(LISTER).unwrap();
    assert_eq!(caller.name, "lister");
    assert_eq!(caller.policy.policy_name(), "list-only");
    assert!(
        !caller
            .policy
            .allows_rpc(egress_core::Rpc::StartRoomCompositeEgress)
    );
}

#[test]
fn constant_time_lookup_over_many_callers() {
    // Every caller is compared for every token; whichever position the
    // matching caller has, the right one is found.
    let mut text = String::from("[auth]\nmode = \"bearer\"\n[policies.p]\nrpcs = [\"*\"]\n");
    for i in 0..64 {
        text.push_str(&format!(
            "[[callers]]\nname = \"c{i}\"\ntoken_sha256 = \"{}\"\npolicy = \"p\"\n",
            hash_token(&format!("token-{i}"))
        ));
    }
    let policy = Policy::from_toml_str(&text, "many.toml").unwrap();
    for i in [0, 1, 31, 62, 63] {
        let caller = policy.authenticate_bearer(&format!("token-{i}")).unwrap();
        assert_eq!(caller.name, format!("c{i}"));
    }
    assert!(policy.authenticate_bearer("token-64").is_none());
}

#[test]
fn modes_do_not_mix() {
    let policy = policy();
    // A bearer policy never authenticates by certificate…
    assert!(
        policy
            .authenticate_identity(&["recorder-service".to_owned()])
            .is_none()
    );
    assert!(policy.anonymous_caller().is_none());

    // …and an mTLS policy never by token, even one that has hashes.
    let text = format!(
        "[auth]\nmode = \"mtls\"\n[[callers]]\nname = \"r\"\nidentity = \"r.svc\"\ntoken_sha256 = \"{}\"\npolicy = \"p\"\n[policies.p]\nrpcs = [\"*\"]\n",
        hash_token("t")
    );
    let mtls = Policy::from_toml_str(&text, "p").unwrap();
    assert!(mtls.authenticate_bearer("t").is_none());
    assert_eq!(
        mtls.authenticate_identity(&["r.svc".to_owned()])
            .unwrap()
            .name,
        "r"
    );
}

#[test]
fn identities() {
    let text = r#"
        [auth]
        mode = "mtls"
        [[callers]]
        name = "recorder"
        identity = "recorder.prod.svc"
        policy = "p"
        [[callers]]
        name = "spiffe"
        identity = "spiffe://example.org/ns/prod/sa/egress"
        policy = "p"
        [policies.p]
        rpcs = ["*"]
    "#;
    let policy = Policy::from_toml_str(text, "p").unwrap();
    let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let found = |list: &[&str]| {
        policy
            .authenticate_identity(&ids(list))
            .map(|c| c.name.clone())
    };
    assert_eq!(found(&["recorder.prod.svc"]), Some("recorder".into()));
    assert_eq!(
        found(&["x", "spiffe://example.org/ns/prod/sa/egress"]),
        Some("spiffe".into())
    );
    // Exact and case-sensitive.
    assert_eq!(found(&["Recorder.prod.svc"]), None);
    assert_eq!(found(&["recorder.prod.svc.evil"]), None);
    assert_eq!(found(&[]), None);
    // A certificate naming two callers is ambiguous: refused.
    assert_eq!(
        found(&[
            "recorder.prod.svc",
            "spiffe://example.org/ns/prod/sa/egress"
        ]),
        None
    );
    assert_eq!(
        policy.caller("recorder").unwrap().identity(),
        Some("recorder.prod.svc")
    );
}

#[test]
fn mode_none_has_one_anonymous_caller() {
    let text = "[auth]\nmode = \"none\"\n[[callers]]\nname = \"anyone\"\npolicy = \"p\"\n[policies.p]\nrpcs = [\"ListEgress\"]\n";
    let policy = Policy::from_toml_str(text, "p").unwrap();
    assert_eq!(policy.auth_mode(), AuthMode::None);
    assert_eq!(policy.anonymous_caller().unwrap().name, "anyone");
    assert!(policy.authenticate_bearer("").is_none());
    assert!(policy.authenticate_identity(&["anyone".into()]).is_none());
}

#[test]
fn debug_output_hides_hashes() {
    let policy = policy();
    let caller = policy.authenticate_bearer(RECORDER).unwrap();
    let debug = format!("{caller:?} {policy:?}");
    assert!(debug.contains("has_token_sha256: true"));
    let hash = hash_token(RECORDER);
    assert!(!debug.contains(&hash));
    assert!(!debug.contains(RECORDER));
}
