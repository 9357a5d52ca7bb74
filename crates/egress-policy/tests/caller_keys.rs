//! Callers with their own LiveKit-style API key: `api_key` with `api_secret_file` or
//! `api_secret_env`, parsed and validated like every other entry.

use egress_policy::{AuthMode, Policy, PolicyStore, ReloadOutcome, hash_token};

fn secret_file(name: &str, contents: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    (dir, path.display().to_string())
}

fn keyed(mode: &str, caller: &str) -> String {
    format!(
        "[auth]\nmode = \"{mode}\"\n\n[[callers]]\nname = \"sdk\"\n{caller}\npolicy = \"p\"\n\n\
         [policies.p]\nrpcs = [\"ListEgress\"]\n"
    )
}

fn error(text: &str) -> String {
    Policy::from_toml_str(text, "policy.toml")
        .unwrap_err()
        .to_string()
}

#[test]
fn a_keyed_caller_is_found_by_its_key_in_every_mode() {
    let (_dir, path) = secret_file("sdk.secret", "sdk-secret\n");
    for mode in ["bearer", "mtls", "none"] {
        let text = keyed(
            mode,
            &format!("api_key = \"APIsdk\"\napi_secret_file = \"{path}\""),
        );
        let text = if mode == "none" {
            // Mode none still needs its one anonymous caller.
            format!("{text}\n[[callers]]\nname = \"local\"\npolicy = \"p\"\n")
        } else {
            text
        };
        let policy = Policy::from_toml_str(&text, "policy.toml").unwrap();
        let caller = policy.caller_by_api_key("APIsdk").expect(mode);
        assert_eq!(caller.name, "sdk");
        assert_eq!(caller.key().unwrap().api_secret.expose(), "sdk-secret");
        assert!(policy.has_caller_keys());
        assert!(policy.caller_by_api_key("APIother").is_none());
        // The secret never shows in Debug.
        assert!(!format!("{policy:?}").contains("sdk-secret"), "{policy:?}");
        if policy.auth_mode() == AuthMode::None {
            assert_eq!(policy.anonymous_caller().unwrap().name, "local");
        }
    }
}

#[test]
fn a_secret_file_in_keys_yaml_form_must_be_for_that_key() {
    let (_dir, path) = secret_file("keys.yaml", "APIsdk: sdk-secret\n");
    let text = keyed(
        "bearer",
        &format!("api_key = \"APIsdk\"\napi_secret_file = \"{path}\""),
    );
    let policy = Policy::from_toml_str(&text, "policy.toml").unwrap();
    assert_eq!(
        policy
            .caller_by_api_key("APIsdk")
            .unwrap()
            .key()
            .unwrap()
            .api_secret
            .expose(),
        "sdk-secret"
    );
    let text = keyed(
        "bearer",
        &format!("api_key = \"APIother\"\napi_secret_file = \"{path}\""),
    );
    let message = error(&text);
    assert!(
        message.starts_with("policy.toml:7:19: secret file ") && message.contains("APIother"),
        "{message}"
    );
    assert!(!message.contains("sdk-secret"), "{message}");
}

#[test]
fn an_api_key_needs_exactly_one_secret_source() {
    assert_eq!(
        error(&keyed("bearer", "api_key = \"APIsdk\"")),
        "policy.toml:6:11: caller \"sdk\" has an api_key but no api_secret_file or api_secret_env \
         (secrets are never written in the policy file)"
    );
    assert_eq!(
        error(&keyed(
            "bearer",
            "api_key = \"APIsdk\"\napi_secret_file = \"/x\"\napi_secret_env = \"X\""
        )),
        "policy.toml:8:18: caller \"sdk\" has both api_secret_file and api_secret_env; give one"
    );
    assert_eq!(
        error(&keyed(
            "bearer",
            &format!(
                "token_sha256 = \"{}\"\napi_secret_env = \"X\"",
                hash_token("t")
            )
        )),
        "policy.toml:7:18: caller \"sdk\" has a secret source but no api_key"
    );
    assert_eq!(
        error(&keyed("bearer", "api_key = \"\"\napi_secret_env = \"X\"")),
        "policy.toml:6:11: api_key must be non-empty, without whitespace"
    );
    // An inline secret is not a field at all.
    let message = error(&keyed("bearer", "api_key = \"APIsdk\"\napi_secret = \"s\""));
    assert!(
        message.starts_with("policy.toml:7:1: unknown field `api_secret`"),
        "{message}"
    );
}

#[test]
fn missing_secret_sources_are_reported_where_they_are_named() {
    let text = keyed(
        "bearer",
        "api_key = \"APIsdk\"\napi_secret_env = \"EGRESS_POLICY_TEST_UNSET_VARIABLE\"",
    );
    assert_eq!(
        error(&text),
        "policy.toml:7:18: environment variable EGRESS_POLICY_TEST_UNSET_VARIABLE (api_secret_env \
         of caller \"sdk\") is not set, empty or not UTF-8"
    );
    let text = keyed(
        "bearer",
        "api_key = \"APIsdk\"\napi_secret_file = \"/nonexistent/sdk.secret\"",
    );
    let message = error(&text);
    assert!(
        message.starts_with("policy.toml:7:19: cannot read secret file /nonexistent/sdk.secret"),
        "{message}"
    );
}

#[test]
fn keys_are_unique_and_the_gateways_own_key_is_refused() {
    let (_dir, path) = secret_file("sdk.secret", "sdk-secret");
    let text = format!(
        "{}\n[[callers]]\nname = \"other\"\napi_key = \"APIsdk\"\napi_secret_file = \"{path}\"\npolicy = \"p\"\n",
        keyed(
            "bearer",
            &format!("api_key = \"APIsdk\"\napi_secret_file = \"{path}\"")
        )
    );
    assert_eq!(
        error(&text),
        "policy.toml:15:11: caller \"other\" has the same api_key as caller \"sdk\" (line 6); \
         every caller needs its own key"
    );

    let dir = tempfile::tempdir().unwrap();
    let policy_path = dir.path().join("policy.toml");
    let own = keyed(
        "bearer",
        &format!("api_key = \"APIgateway\"\napi_secret_file = \"{path}\""),
    );
    std::fs::write(&policy_path, &own).unwrap();
    let refused = PolicyStore::load(&policy_path)
        .unwrap()
        .reserving_api_key("APIgateway")
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!(
            "{}:6:11: the api_key of caller \"sdk\" is the gateway's own LiveKit API key; give \
             the caller a key of its own",
            policy_path.display()
        )
    );
    // Nor can a reload bring it in.
    let fine = keyed(
        "bearer",
        &format!("api_key = \"APIsdk\"\napi_secret_file = \"{path}\""),
    );
    std::fs::write(&policy_path, &fine).unwrap();
    let store = PolicyStore::load(&policy_path)
        .unwrap()
        .reserving_api_key("APIgateway")
        .unwrap();
    std::fs::write(&policy_path, &own).unwrap();
    assert!(store.reload_from(&policy_path).is_err());
    assert!(store.current().caller_by_api_key("APIsdk").is_some());
}

#[test]
fn a_rotated_secret_is_a_new_policy_on_reload() {
    let (dir, path) = secret_file("sdk.secret", "first-secret");
    let policy_path = dir.path().join("policy.toml");
    std::fs::write(
        &policy_path,
        keyed(
            "bearer",
            &format!("api_key = \"APIsdk\"\napi_secret_file = \"{path}\""),
        ),
    )
    .unwrap();
    let store = PolicyStore::load(&policy_path).unwrap();
    assert!(matches!(
        store.reload_from(&policy_path).unwrap(),
        ReloadOutcome::Unchanged { .. }
    ));
    std::fs::write(&path, "second-secret").unwrap();
    assert!(matches!(
        store.reload_from(&policy_path).unwrap(),
        ReloadOutcome::Replaced { .. }
    ));
    let current = store.current();
    let key = current.caller_by_api_key("APIsdk").unwrap().key().unwrap();
    assert_eq!(key.api_secret.expose(), "second-secret");
}
