//! Whether a policy reads the contents of a request at all.
//!
//! The gateway forwards a caller's request bytes as they are, including fields our schema
//! does not know. For a caller whose policy only names RPCs that is the pass-through it
//! was promised; for a caller whose policy restricts rooms, URLs or storage, a field we
//! cannot read could carry exactly what the policy forbids, so the proxy refuses such
//! requests (fail closed). This is the question it asks.

use crate::check::CallerPolicy;

impl CallerPolicy {
    /// Whether any rule depends on what a request carries: rooms other than `"*"`, or an
    /// allow-list of stream URLs, storage (providers, endpoints, buckets, prefixes),
    /// webhook URLs or web URLs.
    pub fn restricts_content(&self) -> bool {
        let rules = &self.rules;
        !rules.rooms.matches_everything()
            || rules.stream_urls.is_some()
            || rules.file_buckets.is_some()
            || rules.file_prefixes.is_some()
            || rules.storage_providers.is_some()
            || rules.storage_endpoints.is_some()
            || rules.webhook_urls.is_some()
            || rules.web_urls.is_some()
    }
}

#[cfg(test)]
mod tests {
    use crate::Policy;

    /// The policy of the one bearer caller (token "test") with `rules` as its table.
    fn restricts(rules: &str) -> bool {
        let text = format!(
            "[auth]\nmode = \"bearer\"\n[[callers]]\nname = \"svc\"\n\
             token_sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n\
             policy = \"p\"\n[policies.p]\nrpcs = [\"*\"]\n{rules}\n"
        );
        let policy = Policy::from_toml_str(&text, "policy.toml").expect("valid policy");
        policy
            .authenticate_bearer("test")
            .expect("known token")
            .policy
            .restricts_content()
    }

    #[test]
    fn only_rpcs_and_every_room_restricts_nothing() {
        assert!(!restricts("rooms = [\"*\"]"));
        // Without a rooms key every room is allowed.
        assert!(!restricts(""));
    }

    #[test]
    fn each_rule_on_content_restricts() {
        for rule in [
            "rooms = [\"team-*\"]",
            "rooms = [\"*\"]\nstream_urls = [\"rtmps://*.live.example.com/*\"]",
            "rooms = [\"*\"]\nfile_buckets = [\"b\"]",
            "rooms = [\"*\"]\nfile_prefixes = [\"p/\"]",
            "rooms = [\"*\"]\nstorage_providers = [\"s3\"]",
            "rooms = [\"*\"]\nstorage_endpoints = [\"https://s3.example.com\"]",
            "rooms = [\"*\"]\nwebhook_urls = [\"https://hooks.example.com/*\"]",
            "rooms = [\"*\"]\nweb_urls = [\"https://app.example.com/*\"]",
        ] {
            assert!(restricts(rule), "{rule:?} should restrict content");
        }
    }
}
