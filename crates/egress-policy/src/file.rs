//! The policy file's TOML shape and its semantic validation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use egress_core::Rpc;
use egress_core::view::StorageProvider;
use serde::Deserialize;
use toml::Spanned;

use crate::caller::{AuthMode, Caller, CallerKey, Credentials};
use crate::check::{Rules, WATCH, toml_key};
use crate::error::{PolicyError, did_you_mean, line_column};
use crate::pattern::{GlobList, UrlPattern, quote};
use crate::token::EMPTY_TOKEN_SHA256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    auth: RawAuth,
    #[serde(default)]
    callers: Vec<Spanned<RawCaller>>,
    #[serde(default)]
    policies: BTreeMap<Spanned<String>, RawPolicy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    mode: Spanned<AuthMode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCaller {
    name: Spanned<String>,
    #[serde(default)]
    token_sha256: Option<Spanned<String>>,
    #[serde(default)]
    identity: Option<Spanned<String>>,
    #[serde(default)]
    api_key: Option<Spanned<String>>,
    #[serde(default)]
    api_secret_file: Option<Spanned<String>>,
    #[serde(default)]
    api_secret_env: Option<Spanned<String>>,
    policy: Spanned<String>,
}

type Strings = Vec<Spanned<String>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    rpcs: Strings,
    #[serde(default)]
    rooms: Option<Strings>,
    #[serde(default)]
    stream_urls: Option<Strings>,
    #[serde(default)]
    file_buckets: Option<Strings>,
    #[serde(default)]
    file_prefixes: Option<Strings>,
    #[serde(default)]
    storage_providers: Option<Vec<ProviderName>>,
    #[serde(default)]
    storage_endpoints: Option<Strings>,
    #[serde(default)]
    webhook_urls: Option<Strings>,
    #[serde(default)]
    web_urls: Option<Strings>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ProviderName {
    S3,
    Gcp,
    Azure,
    Alioss,
}

impl From<ProviderName> for StorageProvider {
    fn from(p: ProviderName) -> Self {
        match p {
            ProviderName::S3 => StorageProvider::S3,
            ProviderName::Gcp => StorageProvider::Gcp,
            ProviderName::Azure => StorageProvider::Azure,
            ProviderName::Alioss => StorageProvider::AliOss,
        }
    }
}

/// A semantic error: byte offset and message.
type Problem = (usize, String);

/// Everything [`Policy`](crate::Policy) is built from.
pub(crate) struct Parsed {
    pub(crate) auth_mode: AuthMode,
    pub(crate) callers: Vec<Caller>,
    pub(crate) policy_count: usize,
}

/// Parses and validates a policy file.
pub(crate) fn parse(text: &str, source_name: &str) -> Result<Parsed, PolicyError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |span| span.start);
        PolicyError::at(text, source_name, offset, e.message().trim().to_owned())
    })?;
    let mut problems = Vec::new();
    let parsed = validate(raw, text, &mut problems);
    // Report the problem that comes first in the file.
    match problems.into_iter().min_by_key(|(offset, _)| *offset) {
        Some((offset, message)) => Err(PolicyError::at(text, source_name, offset, message)),
        None => Ok(parsed),
    }
}

fn validate(raw: RawFile, text: &str, problems: &mut Vec<Problem>) -> Parsed {
    let auth_mode = *raw.auth.mode.get_ref();
    let mut policies: HashMap<String, Arc<Rules>> = HashMap::new();
    for (name, raw_policy) in raw.policies {
        let span = name.span();
        let name = name.into_inner();
        if name.is_empty() {
            problems.push((span.start, "policy name must not be empty".to_owned()));
        }
        let rules = compile_policy(&name, raw_policy, problems);
        policies.insert(name, Arc::new(rules));
    }
    let policy_count = policies.len();

    let line_of = |offset: usize| line_column(text, offset).0;
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut hashes: HashMap<[u8; 32], (String, usize)> = HashMap::new();
    let mut identities: HashMap<String, (String, usize)> = HashMap::new();
    let mut api_keys: HashMap<String, (String, usize)> = HashMap::new();
    let mut callers = Vec::new();
    for raw_caller in &raw.callers {
        let caller_start = raw_caller.span().start;
        let c = raw_caller.get_ref();
        let name = c.name.get_ref().as_str();
        let name_at = c.name.span().start;
        if name.is_empty() {
            problems.push((name_at, "caller name must not be empty".to_owned()));
        } else if let Some(first) = names.get(name) {
            problems.push((
                name_at,
                format!(
                    "duplicate caller name {} (first defined on line {})",
                    quote(name),
                    line_of(*first)
                ),
            ));
        } else {
            names.insert(name.to_owned(), name_at);
        }

        let token_sha256 = c.token_sha256.as_ref().and_then(|t| {
            let at = t.span().start;
            let hash = parse_sha256(t.get_ref()).map_err(|m| problems.push((at, m))).ok()?;
            if hash == EMPTY_TOKEN_SHA256 {
                problems.push((
                    at,
                    format!("token_sha256 of caller {} is the hash of an empty token", quote(name)),
                ));
            } else if let Some((other, first)) = hashes.get(&hash) {
                problems.push((
                    at,
                    format!(
                        "caller {} has the same token_sha256 as caller {} (line {}); every caller needs its own token",
                        quote(name),
                        quote(other),
                        line_of(*first)
                    ),
                ));
            } else {
                hashes.insert(hash, (name.to_owned(), at));
            }
            Some(hash)
        });

        let identity = c.identity.as_ref().map(|i| {
            let at = i.span().start;
            let identity = i.get_ref();
            if identity.is_empty() {
                problems.push((at, "identity must not be empty".to_owned()));
            } else if let Some((other, first)) = identities.get(identity) {
                problems.push((
                    at,
                    format!(
                        "caller {} has the same identity as caller {} (line {})",
                        quote(name),
                        quote(other),
                        line_of(*first)
                    ),
                ));
            } else {
                identities.insert(identity.clone(), (name.to_owned(), at));
            }
            identity.clone()
        });

        let key = caller_key(c, text, problems).and_then(|key| {
            let at = c.api_key.as_ref().map_or(caller_start, |k| k.span().start);
            if let Some((other, first)) = api_keys.get(&key.api_key) {
                problems.push((
                    at,
                    format!(
                        "caller {} has the same api_key as caller {} (line {}); every caller needs its own key",
                        quote(name),
                        quote(other),
                        line_of(*first)
                    ),
                ));
                return None;
            }
            api_keys.insert(key.api_key.clone(), (name.to_owned(), at));
            Some(key)
        });

        let mode = auth_mode.as_str();
        let keyed = c.api_key.is_some();
        match auth_mode {
            AuthMode::Bearer if c.token_sha256.is_none() && !keyed => problems.push((
                caller_start,
                format!(
                    "caller {} has no token_sha256 or api_key (required by auth mode \"{mode}\")",
                    quote(name)
                ),
            )),
            AuthMode::Mtls if c.identity.is_none() && !keyed => problems.push((
                caller_start,
                format!(
                    "caller {} has no identity or api_key (required by auth mode \"{mode}\")",
                    quote(name)
                ),
            )),
            AuthMode::None => {
                for (key, given) in [
                    ("token_sha256", c.token_sha256.as_ref()),
                    ("identity", c.identity.as_ref()),
                ] {
                    if let Some(value) = given {
                        problems.push((
                            value.span().start,
                            format!(
                                "caller {} has a {key}, but auth mode \"none\" checks no credentials; \
                                 use mode \"bearer\" or \"mtls\", or remove it",
                                quote(name)
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }

        let policy_name = c.policy.get_ref();
        let Some(rules) = policies.get(policy_name) else {
            let hint = did_you_mean(policy_name, policies.keys().map(String::as_str))
                .map(|s| format!(" (did you mean {s}?)"))
                .unwrap_or_default();
            problems.push((
                c.policy.span().start,
                format!(
                    "caller {} refers to undefined policy {} — add a [policies.{}] table{hint}",
                    quote(name),
                    quote(policy_name),
                    toml_key(policy_name)
                ),
            ));
            continue;
        };
        callers.push(Caller::new(
            name.to_owned(),
            rules.clone(),
            Credentials {
                token_sha256,
                identity,
                key,
            },
        ));
    }

    // Callers with their own API key authenticate with it in every mode; "none" is about
    // everyone else.
    let anonymous = raw
        .callers
        .iter()
        .filter(|c| c.get_ref().api_key.is_none())
        .count();
    if auth_mode == AuthMode::None && anonymous != 1 {
        let besides = if anonymous == raw.callers.len() {
            ""
        } else {
            " besides those with an api_key"
        };
        problems.push((
            raw.auth.mode.span().start,
            format!(
                "auth mode \"none\" needs exactly one [[callers]] entry (whose policy applies to \
                 every request){besides}; found {anonymous}"
            ),
        ));
    }

    Parsed {
        auth_mode,
        callers,
        policy_count,
    }
}

/// The caller's own API key and its secret, read from `api_secret_file` or
/// `api_secret_env` (never inline); problems go to `problems`, never quoting a secret.
fn caller_key(c: &RawCaller, text: &str, problems: &mut Vec<Problem>) -> Option<CallerKey> {
    let name = quote(c.name.get_ref());
    let sources = [c.api_secret_file.as_ref(), c.api_secret_env.as_ref()];
    let Some(api_key) = &c.api_key else {
        if let Some(source) = sources.into_iter().flatten().next() {
            problems.push((
                source.span().start,
                format!("caller {name} has a secret source but no api_key"),
            ));
        }
        return None;
    };
    let at = api_key.span().start;
    let key = api_key.get_ref();
    if key.is_empty() || key.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
        problems.push((
            at,
            "api_key must be non-empty, without whitespace".to_owned(),
        ));
        return None;
    }
    let secret = match (&c.api_secret_file, &c.api_secret_env) {
        (None, None) => {
            problems.push((
                at,
                format!(
                    "caller {name} has an api_key but no api_secret_file or api_secret_env \
                     (secrets are never written in the policy file)"
                ),
            ));
            return None;
        }
        (Some(_), Some(both)) => {
            problems.push((
                both.span().start,
                format!("caller {name} has both api_secret_file and api_secret_env; give one"),
            ));
            return None;
        }
        (Some(file), None) => egress_auth::Credentials::from_secret_file(file.get_ref(), Some(key))
            .map(|credentials| credentials.api_secret)
            .map_err(|err| (file.span().start, err.to_string())),
        (None, Some(env)) => std::env::var(env.get_ref())
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .map(egress_auth::ApiSecret::new)
            .ok_or_else(|| {
                (
                    env.span().start,
                    format!(
                        "environment variable {} (api_secret_env of caller {name}) is not set, \
                         empty or not UTF-8",
                        env.get_ref()
                    ),
                )
            }),
    };
    let api_secret = secret.map_err(|problem| problems.push(problem)).ok()?;
    Some(CallerKey {
        api_key: key.clone(),
        api_secret,
        secret_file: c
            .api_secret_file
            .as_ref()
            .map(|file| std::path::PathBuf::from(file.get_ref())),
        at: line_column(text, at),
    })
}

fn compile_policy(name: &str, raw: RawPolicy, problems: &mut Vec<Problem>) -> Rules {
    let mut rpcs = BTreeSet::new();
    let mut watch = false;
    for rpc in &raw.rpcs {
        let text = rpc.get_ref().as_str();
        if text == "*" {
            rpcs.extend(Rpc::ALL);
            watch = true;
        } else if text == WATCH {
            watch = true;
        } else if let Some(parsed) = Rpc::from_method(text) {
            rpcs.insert(parsed);
        } else {
            let names = Rpc::ALL.iter().map(|r| r.as_str()).chain([WATCH]);
            let hint = did_you_mean(text, names)
                .map(|s| format!(" (did you mean {s}?)"))
                .unwrap_or_default();
            problems.push((
                rpc.span().start,
                format!("unknown RPC {}{hint}", quote(text)),
            ));
        }
    }

    let rooms = match &raw.rooms {
        Some(rooms) => glob_list(rooms, "room", problems),
        None => GlobList::new(&["*".to_owned()]).ok(),
    };
    let rooms = rooms.unwrap_or_else(nothing);

    let file_buckets = raw
        .file_buckets
        .as_ref()
        .map(|b| glob_list(b, "bucket", problems).unwrap_or_else(nothing));

    let file_prefixes = raw.file_prefixes.as_ref().map(|prefixes| {
        prefixes
            .iter()
            .filter_map(|p| {
                let prefix = p.get_ref();
                let problem = if prefix.is_empty() {
                    Some("empty file prefix (it would allow every path; leave file_prefixes out instead)")
                } else if prefix.split('/').any(|s| s == "..") {
                    Some("file prefix must not contain a \"..\" segment")
                } else {
                    None
                };
                match problem {
                    Some(m) => {
                        problems.push((p.span().start, m.to_owned()));
                        None
                    }
                    None => Some(prefix.clone()),
                }
            })
            .collect()
    });

    Rules {
        name: name.to_owned(),
        rpcs,
        watch,
        rooms,
        stream_urls: url_list(raw.stream_urls.as_ref(), problems),
        file_buckets,
        file_prefixes,
        storage_providers: raw
            .storage_providers
            .map(|p| p.into_iter().map(StorageProvider::from).collect()),
        storage_endpoints: url_list(raw.storage_endpoints.as_ref(), problems),
        webhook_urls: url_list(raw.webhook_urls.as_ref(), problems),
        web_urls: url_list(raw.web_urls.as_ref(), problems),
    }
}

/// A glob list matching nothing (stand-in after an error was recorded).
fn nothing() -> GlobList {
    GlobList::new(&[]).unwrap_or_else(|_| unreachable!("an empty glob set always builds"))
}

fn glob_list(patterns: &Strings, what: &str, problems: &mut Vec<Problem>) -> Option<GlobList> {
    for p in patterns {
        if p.get_ref().is_empty() {
            problems.push((p.span().start, format!("empty {what} pattern")));
            return None;
        }
    }
    let plain: Vec<String> = patterns.iter().map(|p| p.get_ref().clone()).collect();
    GlobList::new(&plain)
        .map_err(|(i, message)| problems.push((patterns[i].span().start, message)))
        .ok()
}

fn url_list(patterns: Option<&Strings>, problems: &mut Vec<Problem>) -> Option<Vec<UrlPattern>> {
    let patterns = patterns?;
    Some(
        patterns
            .iter()
            .filter_map(|p| {
                UrlPattern::parse(p.get_ref())
                    .map_err(|m| problems.push((p.span().start, m)))
                    .ok()
            })
            .collect(),
    )
}

fn parse_sha256(hex_text: &str) -> Result<[u8; 32], String> {
    if hex_text.len() != 64 {
        return Err(format!(
            "token_sha256 must be 64 hex digits (a SHA-256 of the token), got {} characters; \
             generate it with `printf %s \"$TOKEN\" | sha256sum`",
            hex_text.chars().count()
        ));
    }
    let mut hash = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut hash)
        .map_err(|_| "token_sha256 must contain only hex digits (0-9, a-f)".to_owned())?;
    Ok(hash)
}
