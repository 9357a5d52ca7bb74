//! Property: a room is allowed exactly when it matches one of the globs.

use egress_core::{RequestView, Rpc};
use egress_policy::{Policy, Rule};
use proptest::prelude::*;

/// A reference matcher for globs made of literals and `*` only.
fn wildcard_match(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|i| wildcard_match(rest, &text[i..])),
        Some((c, rest)) => text.first() == Some(c) && wildcard_match(rest, &text[1..]),
    }
}

fn policy_for(rooms: &[String]) -> Policy {
    let list: Vec<String> = rooms.iter().map(|r| format!("{r:?}")).collect();
    let text = format!(
        "[auth]\nmode = \"none\"\n[[callers]]\nname = \"c\"\npolicy = \"p\"\n[policies.p]\nrpcs = [\"*\"]\nrooms = [{}]\n",
        list.join(", ")
    );
    Policy::from_toml_str(&text, "prop.toml").expect("valid policy")
}

proptest! {
    #[test]
    fn room_allowed_iff_some_glob_matches(
        patterns in prop::collection::vec("[ab/-]{0,3}(\\*[ab/-]{0,3}){0,2}", 1..4)
            .prop_filter("no empty patterns", |p| p.iter().all(|s| !s.is_empty())),
        room in "[ab/-]{0,6}",
    ) {
        let policy = policy_for(&patterns);
        let caller = policy.anonymous_caller().unwrap();
        let room_chars: Vec<char> = room.chars().collect();
        let expected = patterns
            .iter()
            .any(|p| wildcard_match(&p.chars().collect::<Vec<_>>(), &room_chars));

        let mut view = RequestView::new(Rpc::StartRoomCompositeEgress);
        view.room_name = Some(room.clone());
        let start = caller.policy.check(&view);
        let existing = caller.policy.check_egress_room(&room);
        let mut list = RequestView::new(Rpc::ListEgress);
        list.room_name = Some(room.clone());
        let listing = caller.policy.check(&list);

        for result in [start, existing, listing] {
            match result {
                Ok(()) => prop_assert!(expected, "{room:?} allowed by {patterns:?}"),
                Err(d) => {
                    prop_assert!(!expected, "{room:?} denied by {patterns:?}");
                    prop_assert_eq!(d.rule(), Rule::Rooms);
                }
            }
        }
    }

    #[test]
    fn matching_is_case_sensitive(room in "[a-z]{1,8}") {
        let policy = policy_for(std::slice::from_ref(&room));
        let caller = policy.anonymous_caller().unwrap();
        prop_assert!(caller.policy.check_egress_room(&room).is_ok());
        prop_assert!(caller.policy.check_egress_room(&room.to_uppercase()).is_err());
    }
}
