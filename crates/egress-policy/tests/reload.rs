//! Hot reload: a bad file keeps the old policy in effect.

use egress_core::Rpc;
use egress_policy::{Policy, PolicyError, PolicyStore, ReloadOutcome};

const V1: &str = "[auth]\nmode = \"none\"\n[[callers]]\nname = \"c\"\npolicy = \"p\"\n[policies.p]\nrpcs = [\"ListEgress\"]\n";
const V2: &str = "[auth]\nmode = \"none\"\n[[callers]]\nname = \"c\"\npolicy = \"p\"\n[policies.p]\nrpcs = [\"ListEgress\", \"StopEgress\"]\n";

fn allows_stop(policy: &Policy) -> bool {
    policy
        .anonymous_caller()
        .unwrap()
        .policy
        .allows_rpc(Rpc::StopEgress)
}

#[test]
fn reload_swaps_good_files_and_keeps_the_old_policy_on_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, V1).unwrap();
    let store = PolicyStore::load(&path).unwrap();
    let v1 = store.current();
    assert!(!allows_stop(&v1));

    // Same bytes: nothing to do, same Arc.
    let outcome = store.reload_from(&path).unwrap();
    assert_eq!(
        outcome,
        ReloadOutcome::Unchanged {
            fingerprint: v1.fingerprint().to_owned()
        }
    );
    assert!(std::sync::Arc::ptr_eq(&v1, &store.current()));

    // A broken file: error with its location, old policy still in effect.
    std::fs::write(&path, V2.replace("StopEgress", "StopEgres")).unwrap();
    let err = store.reload_from(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:7:23: unknown RPC \"StopEgres\" (did you mean StopEgress?)",
            path.display()
        )
    );
    assert_eq!(store.current().fingerprint(), v1.fingerprint());
    assert!(!allows_stop(&store.current()));

    // A syntax error and a missing file: same.
    std::fs::write(&path, "[auth\n").unwrap();
    assert!(matches!(
        store.reload_from(&path),
        Err(PolicyError::Invalid { line: 1, .. })
    ));
    assert!(matches!(
        store.reload_from(dir.path().join("gone.toml")),
        Err(PolicyError::Read { .. })
    ));
    assert_eq!(store.current().fingerprint(), v1.fingerprint());

    // A good file replaces it; requests holding the old Arc keep old rules.
    std::fs::write(&path, V2).unwrap();
    let outcome = store.reload_from(&path).unwrap();
    let v2 = store.current();
    assert_eq!(
        outcome,
        ReloadOutcome::Replaced {
            previous_fingerprint: v1.fingerprint().to_owned(),
            fingerprint: v2.fingerprint().to_owned(),
            callers: 1,
        }
    );
    assert!(outcome.to_string().starts_with("policy replaced ("));
    assert!(allows_stop(&v2));
    assert!(!allows_stop(&v1));
}

#[test]
fn current_is_shared_across_threads() {
    let store = std::sync::Arc::new(PolicyStore::new(Policy::from_toml_str(V1, "v1").unwrap()));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    let policy = store.current();
                    // Either version, never a torn one.
                    assert!(matches!(policy.source_name(), "v1" | "v2"));
                }
            })
        })
        .collect();
    for _ in 0..100 {
        store.replace(Policy::from_toml_str(V2, "v2").unwrap());
        store.replace(Policy::from_toml_str(V1, "v1").unwrap());
    }
    for r in readers {
        r.join().unwrap();
    }
}
