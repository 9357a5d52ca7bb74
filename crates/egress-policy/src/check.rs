//! [`CallerPolicy`]: the compiled rules of one `[policies.<name>]` table as
//! applied to one caller, and the [`Denial`] a failed check returns.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use egress_core::Rpc;
use egress_core::view::{Destination, RequestView, StorageProvider};

use crate::pattern::{GlobList, UrlPattern, parse_url, quote, redact_url};

/// The name a request's destination without an upload configuration (the
/// egress service's own default storage) is matched under in
/// `file_buckets`. No real bucket or container name can contain `@`.
pub const DEFAULT_STORAGE_BUCKET: &str = "@default";

/// The name of the gateway's own event stream in a policy's `rpcs`.
pub const WATCH: &str = "Watch";

/// Which rule of a policy denied a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// `rpcs`: the RPC itself is not allowed.
    Rpcs,
    /// `rooms`: the room (or a missing room filter / egress id).
    Rooms,
    /// `stream_urls`: a stream or WebSocket destination.
    StreamUrls,
    /// `file_buckets`: the bucket or container of a stored output.
    FileBuckets,
    /// `file_prefixes`: the path of a stored output.
    FilePrefixes,
    /// `storage_providers`: S3, GCP, Azure or AliOSS.
    StorageProviders,
    /// `storage_endpoints`: a custom (S3-compatible / OSS) endpoint.
    StorageEndpoints,
    /// `webhook_urls`: an extra webhook registered by the request.
    WebhookUrls,
    /// `web_urls`: the page a web egress records, or a template base URL.
    WebUrls,
}

impl Rule {
    /// The rule's key in the policy file, e.g. `stream_urls`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Rule::Rpcs => "rpcs",
            Rule::Rooms => "rooms",
            Rule::StreamUrls => "stream_urls",
            Rule::FileBuckets => "file_buckets",
            Rule::FilePrefixes => "file_prefixes",
            Rule::StorageProviders => "storage_providers",
            Rule::StorageEndpoints => "storage_endpoints",
            Rule::WebhookUrls => "webhook_urls",
            Rule::WebUrls => "web_urls",
        }
    }
}

egress_core::display_as_str!(Rule);

/// Why a request was refused: which caller, which rule, and the offending
/// value.
///
/// The message is safe to return to the caller and to log: URLs are reduced
/// to `scheme://host[:port]` (stream keys, webhook secrets and signed-URL
/// tokens live in the userinfo, path and query), and no credential of the
/// request is ever included.
///
/// # Example
///
/// ```
/// use egress_core::{RequestView, Rpc};
/// use egress_policy::{Policy, Rule};
///
/// let policy = Policy::from_toml_str(r#"
///     [auth]
///     mode = "none"
///     [[callers]]
///     name = "recorder-service"
///     policy = "recording"
///     [policies.recording]
///     rpcs = ["StartRoomCompositeEgress"]
///     rooms = ["team-*"]
/// "#, "policy.toml")?;
/// let caller = policy.anonymous_caller().unwrap();
///
/// let mut view = RequestView::new(Rpc::StartRoomCompositeEgress);
/// view.room_name = Some("secret-room".into());
/// let denial = caller.policy.check(&view).unwrap_err();
/// assert_eq!(denial.rule(), Rule::Rooms);
/// assert_eq!(
///     denial.to_string(),
///     r#"caller "recorder-service" may not use room "secret-room" (rule policies.recording.rooms)"#
/// );
/// # Ok::<(), egress_policy::PolicyError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    rule: Rule,
    caller: String,
    policy: String,
    reason: String,
}

impl Denial {
    /// The rule that refused the request.
    pub fn rule(&self) -> Rule {
        self.rule
    }

    /// The caller's name.
    pub fn caller(&self) -> &str {
        &self.caller
    }

    /// The name of the caller's policy.
    pub fn policy(&self) -> &str {
        &self.policy
    }

    /// Where the rule lives in the file, e.g. `policies.recording.rooms`.
    pub fn rule_path(&self) -> String {
        format!("policies.{}.{}", toml_key(&self.policy), self.rule)
    }

    /// The message without the trailing `(rule …)`, e.g.
    /// `caller "recorder-service" may not use room "secret-room"`.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (rule {})", self.reason, self.rule_path())
    }
}

impl std::error::Error for Denial {}

/// A table key as it would be written in TOML: bare when possible, quoted
/// otherwise.
pub(crate) fn toml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        quote(key)
    }
}

/// An optional allow-list: `None` allows anything, `Some(empty)` nothing.
pub(crate) type AllowList<T> = Option<Vec<T>>;

/// One `[policies.<name>]` table, compiled. Shared by every caller that
/// uses the policy.
#[derive(Debug)]
pub(crate) struct Rules {
    pub(crate) name: String,
    pub(crate) rpcs: BTreeSet<Rpc>,
    /// `"Watch"` (or `"*"`) in `rpcs`: the gateway's own event stream.
    pub(crate) watch: bool,
    pub(crate) rooms: GlobList,
    pub(crate) stream_urls: AllowList<UrlPattern>,
    pub(crate) file_buckets: Option<GlobList>,
    pub(crate) file_prefixes: AllowList<String>,
    pub(crate) storage_providers: AllowList<StorageProvider>,
    pub(crate) storage_endpoints: AllowList<UrlPattern>,
    pub(crate) webhook_urls: AllowList<UrlPattern>,
    pub(crate) web_urls: AllowList<UrlPattern>,
}

/// What one caller may do: its policy's rules, bound to the caller's name
/// so that every [`Denial`] says who was refused.
///
/// Obtained from [`Caller::policy`](crate::Caller::policy) after
/// authentication. Immutable and cheap to share (`Arc`).
///
/// # How the proxy uses it
///
/// ```
/// use egress_core::{RequestView, Rpc};
/// use egress_policy::Policy;
///
/// let policy = Policy::from_toml_str(r#"
///     [auth]
///     mode = "bearer"
///     [[callers]]
///     name = "recorder-service"
///     token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
///     policy = "recording"
///     [policies.recording]
///     rpcs = ["StartRoomCompositeEgress", "StopEgress"]
///     rooms = ["team-*"]
/// "#, "policy.toml")?;
///
/// let caller = policy.authenticate_bearer("test").expect("known token");
///
/// // A Stop request names only an egress id: the RPC-level check passes…
/// let mut stop = RequestView::new(Rpc::StopEgress);
/// stop.egress_id = Some("EG_123".into());
/// assert!(caller.policy.check(&stop).is_ok());
/// // …but the proxy must look up the egress's room and check it too.
/// assert_eq!(caller.policy.needs_egress_room(&stop), Some("EG_123"));
/// assert!(caller.policy.check_egress_room("team-a").is_ok());
/// assert!(caller.policy.check_egress_room("board").is_err());
/// # Ok::<(), egress_policy::PolicyError>(())
/// ```
#[derive(Debug)]
pub struct CallerPolicy {
    caller: String,
    pub(crate) rules: Arc<Rules>,
}

impl CallerPolicy {
    pub(crate) fn new(caller: String, rules: Arc<Rules>) -> Self {
        Self { caller, rules }
    }

    /// The caller this policy is bound to.
    pub fn caller_name(&self) -> &str {
        &self.caller
    }

    /// The name of the `[policies.<name>]` table.
    pub fn policy_name(&self) -> &str {
        &self.rules.name
    }

    /// Whether `rpc` is in the policy's `rpcs` (or `rpcs` has `"*"`).
    pub fn allows_rpc(&self, rpc: Rpc) -> bool {
        self.rules.rpcs.contains(&rpc)
    }

    /// Whether `room` matches one of the policy's `rooms` globs.
    pub fn allows_room(&self, room: &str) -> bool {
        self.rules.rooms.is_match(room)
    }

    /// Whether `rooms` contains a match-everything glob (`"*"`), so no room
    /// lookups are ever needed for this caller.
    pub fn all_rooms(&self) -> bool {
        self.rules.rooms.matches_everything()
    }

    /// Whether the policy's `rpcs` has [`WATCH`] (or `"*"`): the gateway's own
    /// `EgressEvents/Watch` stream.
    pub fn allows_watch(&self) -> bool {
        self.rules.watch
    }

    /// Checks a `Watch` request and its filters: [`WATCH`] must be allowed; a room filter
    /// must match `rooms`; a watch with neither a room nor an egress id filter sees every
    /// room, so it needs `"*"` in `rooms`. Each event is then checked with
    /// [`may_see`](Self::may_see).
    ///
    /// # Errors
    ///
    /// A [`Denial`] of `rpcs` or `rooms`.
    pub fn check_watch(&self, room: Option<&str>, egress_id: Option<&str>) -> Result<(), Denial> {
        if !self.allows_watch() {
            return Err(self.deny(Rule::Rpcs, format!("call {WATCH}")));
        }
        match (room, egress_id) {
            (Some(room), _) => self.check_room(room),
            (None, None) if !self.all_rooms() => Err(self.deny(
                Rule::Rooms,
                format!("call {WATCH} without a room or egress filter"),
            )),
            _ => Ok(()),
        }
    }

    /// Whether an event of an egress in `room` may reach this caller. A web egress has no
    /// room: only a caller allowed every room sees it (fail closed).
    pub fn may_see(&self, room: &str) -> bool {
        if room.is_empty() {
            self.all_rooms()
        } else {
            self.allows_room(room)
        }
    }

    /// Checks everything about `view` that can be decided from the request
    /// alone. Returns the first rule that refuses it.
    ///
    /// In order:
    ///
    /// 1. `rpcs` — the RPC must be listed (or `"*"`).
    /// 2. `rooms` — for room-scoped calls: the five room-scoped Start RPCs
    ///    (a missing room counts as the empty room name), `StartEgress`
    ///    unless it records a web page without a room, and `ListEgress`'s
    ///    room filter. A caller without `"*"` in `rooms` may not call
    ///    `ListEgress` without a room filter (it would list every room's
    ///    egresses), nor `StopEgress`/`UpdateLayout`/`UpdateStream` without
    ///    an egress id.
    /// 3. `stream_urls` — every stream URL (a stream output's `urls` and
    ///    `destinations`), track WebSocket URL and URL added by
    ///    `UpdateStream` (`add_output_urls`, `add_destinations`)
    ///    ([`RequestView::stream_urls`]).
    /// 4. Every stored output (file, segments, images):
    ///    `storage_providers`, `storage_endpoints`, `file_buckets`,
    ///    `file_prefixes`.
    /// 5. `webhook_urls` — every extra webhook.
    /// 6. `web_urls` — the recorded page (`StartWebEgress`, `StartEgress`
    ///    web source) and a template's `custom_base_url`.
    ///
    /// Calls that name only an egress id (`StopEgress`, `UpdateLayout`,
    /// `UpdateStream`, `ListEgress` with an id filter) pass the room rule
    /// here; afterwards [`needs_egress_room`](Self::needs_egress_room) tells
    /// the proxy to look the egress up and call
    /// [`check_egress_room`](Self::check_egress_room).
    ///
    /// # Errors
    ///
    /// A [`Denial`] naming the rule and the offending (redacted) value.
    pub fn check(&self, view: &RequestView) -> Result<(), Denial> {
        let rpc = view.rpc;
        if !self.allows_rpc(rpc) {
            return Err(self.deny(Rule::Rpcs, format!("call {rpc}")));
        }
        self.check_rooms(view)?;
        for url in &view.stream_urls {
            self.check_url(&self.rules.stream_urls, Rule::StreamUrls, "stream to", url)?;
        }
        for destination in &view.destinations {
            self.check_destination(destination)?;
        }
        for url in &view.webhook_urls {
            self.check_url(
                &self.rules.webhook_urls,
                Rule::WebhookUrls,
                "send webhooks to",
                url,
            )?;
        }
        if let Some(url) = &view.web_url {
            self.check_url(
                &self.rules.web_urls,
                Rule::WebUrls,
                "record the web page",
                url,
            )?;
        }
        if let Some(url) = &view.custom_base_url {
            self.check_url(
                &self.rules.web_urls,
                Rule::WebUrls,
                "use the template base URL",
                url,
            )?;
        }
        Ok(())
    }

    /// The egress id whose room the proxy must look up (and pass to
    /// [`check_egress_room`](Self::check_egress_room)) before forwarding
    /// `view`, or `None` when no lookup is needed.
    ///
    /// `Some` for `StopEgress`, `UpdateLayout` and `UpdateStream` (the empty
    /// string if the request names no id, which no lookup will find), and
    /// for `ListEgress` with an egress id filter (LiveKit answers an id
    /// filter with that egress whatever the room filter says). Always
    /// `None` when the caller's `rooms` contains `"*"`.
    pub fn needs_egress_room<'v>(&self, view: &'v RequestView) -> Option<&'v str> {
        if self.all_rooms() {
            return None;
        }
        match view.rpc {
            Rpc::StopEgress | Rpc::UpdateLayout | Rpc::UpdateStream => {
                Some(view.egress().unwrap_or(""))
            }
            Rpc::ListEgress => view.egress(),
            _ => None,
        }
    }

    /// Checks the room of an existing egress, which the proxy looked up
    /// because [`needs_egress_room`](Self::needs_egress_room) asked it to.
    ///
    /// # Errors
    ///
    /// A [`Rule::Rooms`] denial when `room` matches none of the `rooms`
    /// globs.
    pub fn check_egress_room(&self, room: &str) -> Result<(), Denial> {
        self.check_room(room)
    }

    fn check_rooms(&self, view: &RequestView) -> Result<(), Denial> {
        match view.rpc {
            Rpc::StartRoomCompositeEgress
            | Rpc::StartParticipantEgress
            | Rpc::StartTrackCompositeEgress
            | Rpc::StartTrackEgress => self.check_room(view.room().unwrap_or("")),
            // The unified request records a web page without a room.
            Rpc::StartEgress if view.room().is_none() && view.web_url.is_some() => Ok(()),
            Rpc::StartEgress => self.check_room(view.room().unwrap_or("")),
            Rpc::StartWebEgress => Ok(()),
            Rpc::ListEgress => match view.room() {
                Some(room) => self.check_room(room),
                None if self.all_rooms() => Ok(()),
                None => Err(self.deny(
                    Rule::Rooms,
                    "call ListEgress without a room filter".to_owned(),
                )),
            },
            Rpc::StopEgress | Rpc::UpdateLayout | Rpc::UpdateStream => {
                if view.egress().is_none() && !self.all_rooms() {
                    Err(self.deny(
                        Rule::Rooms,
                        format!("call {} without an egress id", view.rpc),
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    fn check_room(&self, room: &str) -> Result<(), Denial> {
        if self.allows_room(room) {
            Ok(())
        } else {
            Err(self.deny(Rule::Rooms, format!("use room {}", quote(room))))
        }
    }

    fn check_url(
        &self,
        allowed: &AllowList<UrlPattern>,
        rule: Rule,
        verb: &str,
        url: &str,
    ) -> Result<(), Denial> {
        let Some(patterns) = allowed else {
            return Ok(());
        };
        let ok = parse_url(url).is_some_and(|u| patterns.iter().any(|p| p.matches(&u)));
        if ok {
            Ok(())
        } else {
            Err(self.deny(rule, format!("{verb} {}", quote_url(url))))
        }
    }

    fn check_destination(&self, d: &Destination) -> Result<(), Denial> {
        let rules = &self.rules;
        let bucket = match &d.storage {
            Some(storage) => {
                if let Some(providers) = &rules.storage_providers
                    && !providers.contains(&storage.provider)
                {
                    return Err(self.deny(
                        Rule::StorageProviders,
                        format!("store files on {}", provider_name(storage.provider)),
                    ));
                }
                if let Some(endpoint) = &storage.endpoint {
                    self.check_endpoint(endpoint)?;
                }
                storage.bucket.as_deref().unwrap_or("")
            }
            None => DEFAULT_STORAGE_BUCKET,
        };
        if let Some(buckets) = &rules.file_buckets
            && !buckets.is_match(bucket)
        {
            let what = if d.storage.is_none() {
                "the egress service's default storage".to_owned()
            } else {
                format!("bucket {}", quote(bucket))
            };
            return Err(self.deny(Rule::FileBuckets, format!("store files in {what}")));
        }
        if let Some(prefixes) = &rules.file_prefixes {
            if d.filepath.is_none() && d.playlist_name.is_none() {
                return Err(self.deny(
                    Rule::FilePrefixes,
                    "store files under the default file name".to_owned(),
                ));
            }
            let paths = [&d.filepath, &d.playlist_name, &d.live_playlist_name];
            for path in paths.into_iter().flatten() {
                if !path_allowed(prefixes, path) {
                    return Err(self.deny(
                        Rule::FilePrefixes,
                        format!("store files at {}", quote(path)),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A custom endpoint is checked against `storage_endpoints`; without
    /// that list it is allowed only when buckets are unrestricted too (a
    /// bucket allow-list means nothing if the bucket may live on any
    /// server).
    fn check_endpoint(&self, endpoint: &str) -> Result<(), Denial> {
        let rules = &self.rules;
        let allowed = match (&rules.storage_endpoints, &rules.file_buckets) {
            (None, None) => return Ok(()),
            (None, Some(_)) => false,
            (Some(patterns), _) => {
                let url: std::borrow::Cow<'_, str> = if endpoint.contains("://") {
                    endpoint.into()
                } else {
                    format!("https://{endpoint}").into()
                };
                parse_url(&url).is_some_and(|u| patterns.iter().any(|p| p.matches(&u)))
            }
        };
        if allowed {
            Ok(())
        } else {
            let shown = if endpoint.contains("://") {
                quote_url(endpoint)
            } else {
                quote_url(&format!("https://{endpoint}"))
            };
            Err(self.deny(
                Rule::StorageEndpoints,
                format!("upload to the custom endpoint {shown}"),
            ))
        }
    }

    fn deny(&self, rule: Rule, what: String) -> Denial {
        Denial {
            rule,
            caller: self.caller.clone(),
            policy: self.rules.name.clone(),
            reason: format!("caller {} may not {what}", quote(&self.caller)),
        }
    }
}

/// A path is allowed when it starts with one of the prefixes and has no
/// `..` segment (the egress cleans paths, which would resolve `..` out of
/// the prefix).
fn path_allowed(prefixes: &[String], path: &str) -> bool {
    !path.split('/').any(|segment| segment == "..")
        && prefixes
            .iter()
            .any(|prefix| path.starts_with(prefix.as_str()))
}

fn quote_url(url: &str) -> String {
    let shown = redact_url(url);
    if shown.starts_with('<') {
        "an invalid URL".to_owned()
    } else {
        quote(&shown)
    }
}

/// The name of a provider as written in `storage_providers`.
pub(crate) fn provider_name(provider: StorageProvider) -> &'static str {
    match provider {
        StorageProvider::S3 => "s3",
        StorageProvider::Gcp => "gcp",
        StorageProvider::Azure => "azure",
        StorageProvider::AliOss => "alioss",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_quoted_when_needed() {
        assert_eq!(toml_key("recording"), "recording");
        assert_eq!(toml_key("a.b"), "\"a.b\"");
        assert_eq!(toml_key(""), "\"\"");
    }

    #[test]
    fn paths() {
        let prefixes = ["recordings/".to_owned()];
        assert!(path_allowed(&prefixes, "recordings/a.mp4"));
        assert!(path_allowed(&prefixes, "recordings/{room_name}/a.mp4"));
        assert!(!path_allowed(&prefixes, "recordings/../secret/a.mp4"));
        assert!(!path_allowed(&prefixes, "other/a.mp4"));
        assert!(!path_allowed(&prefixes, "/recordings/a.mp4"));
    }

    /// `Watch` is the gateway's own stream: named in `rpcs` (or `"*"`), filtered by room.
    #[test]
    fn watch_needs_its_name_and_a_room_the_caller_may_see() {
        let policy = |rpcs: &str, rooms: &str| {
            crate::Policy::from_toml_str(
                &format!(
                    "[auth]\nmode = \"none\"\n[[callers]]\nname = \"w\"\npolicy = \"p\"\n\
                     [policies.p]\nrpcs = {rpcs}\nrooms = {rooms}\n"
                ),
                "policy.toml",
            )
            .unwrap()
            .anonymous_caller()
            .unwrap()
            .policy
            .clone()
        };
        let listed = policy(r#"["ListEgress", "Watch"]"#, r#"["team-*"]"#);
        assert!(listed.allows_watch());
        assert!(listed.check_watch(Some("team-a"), None).is_ok());
        assert!(listed.check_watch(None, Some("EG_1")).is_ok());
        let denied = |r: Result<(), Denial>| r.unwrap_err().rule();
        assert_eq!(denied(listed.check_watch(Some("board"), None)), Rule::Rooms);
        assert_eq!(denied(listed.check_watch(None, None)), Rule::Rooms);
        assert!(listed.may_see("team-b") && !listed.may_see("board") && !listed.may_see(""));

        let star = policy(r#"["*"]"#, r#"["*"]"#);
        assert!(star.check_watch(None, None).is_ok());
        assert!(star.may_see(""));

        let without = policy(r#"["ListEgress"]"#, r#"["*"]"#);
        assert_eq!(denied(without.check_watch(None, None)), Rule::Rpcs);
        let err = crate::Policy::from_toml_str(
            "[auth]\nmode = \"none\"\n[[callers]]\nname = \"w\"\npolicy = \"p\"\n\
             [policies.p]\nrpcs = [\"Wach\"]\n",
            "policy.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("did you mean Watch"), "{err}");
    }

    /// Stream destinations (`StreamOutput.destinations`, `UpdateStream`'s
    /// `add_destinations`) carry stream URLs just as `urls` does; a caller
    /// confined to one streaming host must not reach another through them.
    mod stream_destinations {
        use egress_core::{Rpc, decode_view, proto};
        use prost::Message as _;

        use crate::{CallerPolicy, Policy, Rule};

        const ALLOWED: &str = "rtmps://a.live.example.com/app/KEY";
        const ELSEWHERE: &str = "rtmps://evil.example.net/app/KEY";

        fn policy() -> Policy {
            Policy::from_toml_str(
                r#"
                [auth]
                mode = "none"
                [[callers]]
                name = "streamer"
                policy = "streaming"
                [policies.streaming]
                rpcs = ["*"]
                rooms = ["*"]
                stream_urls = ["rtmps://*.live.example.com/*"]
                "#,
                "policy.toml",
            )
            .unwrap()
        }

        fn check(policy: &CallerPolicy, rpc: Rpc, body: Vec<u8>) -> Result<(), Rule> {
            let view = decode_view(rpc, &body).unwrap();
            policy.check(&view).map_err(|d| d.rule())
        }

        fn stream(url: &str) -> proto::StreamOutput {
            proto::StreamOutput {
                protocol: proto::StreamProtocol::Rtmp as i32,
                destinations: vec![proto::StreamDestination {
                    id: "d1".into(),
                    url: url.into(),
                }],
                ..Default::default()
            }
        }

        fn room_composite(url: &str) -> Vec<u8> {
            proto::RoomCompositeEgressRequest {
                room_name: "r".into(),
                stream_outputs: vec![stream(url)],
                ..Default::default()
            }
            .encode_to_vec()
        }

        fn start_egress(url: &str) -> Vec<u8> {
            proto::StartEgressRequest {
                room_name: "r".into(),
                outputs: vec![proto::Output {
                    config: Some(proto::output::Config::Stream(stream(url))),
                    storage: None,
                }],
                ..Default::default()
            }
            .encode_to_vec()
        }

        fn update_stream(url: &str) -> Vec<u8> {
            proto::UpdateStreamRequest {
                egress_id: "EG_1".into(),
                add_destinations: vec![proto::StreamDestination {
                    id: "d2".into(),
                    url: url.into(),
                }],
                ..Default::default()
            }
            .encode_to_vec()
        }

        #[test]
        fn a_destination_elsewhere_is_denied() {
            let policy = policy();
            let caller = &policy.anonymous_caller().unwrap().policy;
            let rpc = Rpc::StartRoomCompositeEgress;
            assert_eq!(check(caller, rpc, room_composite(ALLOWED)), Ok(()));
            assert_eq!(
                check(caller, rpc, room_composite(ELSEWHERE)),
                Err(Rule::StreamUrls)
            );
            let rpc = Rpc::StartEgress;
            assert_eq!(check(caller, rpc, start_egress(ALLOWED)), Ok(()));
            assert_eq!(
                check(caller, rpc, start_egress(ELSEWHERE)),
                Err(Rule::StreamUrls)
            );
        }

        #[test]
        fn an_added_destination_elsewhere_is_denied() {
            let policy = policy();
            let caller = &policy.anonymous_caller().unwrap().policy;
            let rpc = Rpc::UpdateStream;
            assert_eq!(check(caller, rpc, update_stream(ALLOWED)), Ok(()));
            assert_eq!(
                check(caller, rpc, update_stream(ELSEWHERE)),
                Err(Rule::StreamUrls)
            );
        }

        #[test]
        fn the_denial_names_the_destination_host_only() {
            let policy = policy();
            let caller = &policy.anonymous_caller().unwrap().policy;
            let view = decode_view(Rpc::UpdateStream, &update_stream(ELSEWHERE)).unwrap();
            let denial = caller.check(&view).unwrap_err().to_string();
            assert!(denial.contains("\"rtmps://evil.example.net\""), "{denial}");
            assert!(!denial.contains("KEY"), "stream key leaked: {denial}");
        }
    }
}
