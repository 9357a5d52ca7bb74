//! The shipped container setups start as shipped: `docker-compose.yml`, the `Dockerfile`
//! run as its header documents, and every `egress-proxy` container in `deploy/kubernetes/`.
//!
//! No container engine runs here, so each gateway container is started as the real binary
//! with exactly that container's environment (the image's `ENV`, then the setup's own),
//! arguments (`ENTRYPOINT`/`CMD` or their overrides) and mounted files (compose bind mounts,
//! ConfigMaps and Secrets), laid out under a temporary root that stands in for the
//! container's file system. Only two things are rewritten: `LIVEKIT_URL` points at an
//! in-process simulator holding the setup's LiveKit keys, and each listener keeps its IP
//! (the gateway's loopback check sees the real address) but gets an ephemeral port.
//! Then the gateway must answer the admin `/healthz`, turn `grpc.health.v1` SERVING, and
//! authenticate callers as its policy says.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use egress_auth::Credentials;
use egress_e2e::certs::temp_dir;
use egress_e2e::{admin_get, proxy_bin, read_log, ready_addrs};
use egress_policy::{AuthMode, Policy};
use egress_proto::livekit::ListEgressRequest;
use egress_proto::livekit::egress_client::EgressClient;
use egress_sim::{SimHandle, Simulator};
use serde::Deserialize as _;
use serde_yaml::Value;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The public demo token that `deploy/policy.toml` accepts (the README shows it).
const DEMO_TOKEN: &str = "egress-demo-token-change-me";
/// Where the Dockerfile's header tells `docker run` users to mount their policy file.
const DOCUMENTED_POLICY_MOUNT: &str = "/etc/egress-proxy/policy.toml";
/// What the tests export as `LIVEKIT_API_SECRET` before "running" compose.
const COMPOSE_SECRET: &str = "packaging-test-secret-0123456789abcdef0123456789";
/// Where the Dockerfile installs the binary (an entrypoint must run it directly).
const IMAGE_BINARY_NAME: &str = "egress-proxy";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------
// The image: the Dockerfile's final stage.

/// What the runtime image brings to every container made from it.
#[derive(Debug, Clone, Default)]
struct Image {
    env: Vec<(String, String)>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
}

fn image() -> Image {
    parse_dockerfile(&read(&repo().join("Dockerfile")))
}

/// The final stage's `ENV`, `ENTRYPOINT` and `CMD` (comments dropped, continuations joined).
fn parse_dockerfile(text: &str) -> Image {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        match line.trim_end().strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                if !current.trim().is_empty() {
                    instructions.push(std::mem::take(&mut current));
                }
                current.clear();
            }
        }
    }
    let mut image = Image::default();
    for instruction in instructions {
        let instruction = instruction.trim();
        let (keyword, rest) = instruction
            .split_once(char::is_whitespace)
            .unwrap_or((instruction, ""));
        let rest = rest.trim();
        match keyword.to_ascii_uppercase().as_str() {
            // A new stage starts from a clean slate (the runtime stage is the last one).
            "FROM" => image = Image::default(),
            "ENV" => image.env.extend(parse_env_instruction(rest)),
            "ENTRYPOINT" => {
                image.entrypoint = exec_form(rest);
                // Docker: setting ENTRYPOINT resets a CMD inherited so far.
                image.cmd.clear();
            }
            "CMD" => image.cmd = exec_form(rest),
            _ => {}
        }
    }
    image
}

/// `ENV K=V K2="v 2"` or the legacy `ENV K V`.
fn parse_env_instruction(rest: &str) -> Vec<(String, String)> {
    let words = shell_words(rest);
    if !words.iter().any(|w| w.contains('=')) {
        let (key, value) = rest.split_once(char::is_whitespace).expect("ENV K V");
        return vec![(key.to_owned(), value.trim().to_owned())];
    }
    words
        .into_iter()
        .map(|w| {
            let (k, v) = w
                .split_once('=')
                .unwrap_or_else(|| panic!("ENV word {w:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// Splits on blanks, honouring double and single quotes.
fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut in_word = false;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// `["a", "b"]` as is; the shell form runs under `/bin/sh -c`.
fn exec_form(rest: &str) -> Vec<String> {
    if rest.starts_with('[') {
        serde_json::from_str(rest).unwrap_or_else(|e| panic!("exec form {rest:?}: {e}"))
    } else {
        vec!["/bin/sh".into(), "-c".into(), rest.into()]
    }
}

// ---------------------------------------------------------------------------------------
// A gateway container, as a setup describes it.

#[derive(Debug, Clone)]
struct Container {
    /// Where it comes from, for messages: `docker-compose.yml service egress-proxy`.
    name: String,
    /// In order; a later entry wins.
    env: Vec<(String, String)>,
    /// Entrypoint and arguments.
    argv: Vec<String>,
    /// Files mounted into the container: container path and content.
    files: Vec<(String, Vec<u8>)>,
}

impl Container {
    fn env_map(&self) -> BTreeMap<String, String> {
        self.env.iter().cloned().collect()
    }

    fn env_var(&self, key: &str) -> Option<String> {
        self.env_map().remove(key)
    }
}

/// The value of `--flag VALUE` / `--flag=VALUE` in `args`, if given.
fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == flag {
            return it.next().cloned();
        }
        if let Some(v) = arg.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            return Some(v.to_owned());
        }
    }
    None
}

/// Rewrites the value of `--flag` in place, wherever it is given.
fn map_flag(args: &mut [String], flag: &str, f: impl Fn(&str) -> String) {
    let mut i = 0;
    while i < args.len() {
        if args[i] == flag && i + 1 < args.len() {
            args[i + 1] = f(&args[i + 1]);
            i += 1;
        } else if let Some(v) = args[i].strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            args[i] = format!("{flag}={}", f(v));
        }
        i += 1;
    }
}

/// The same address with port 0: the IP stays what the setup says.
fn ephemeral(addr: &str) -> String {
    match addr.parse::<SocketAddr>() {
        Ok(mut a) => {
            a.set_port(0);
            a.to_string()
        }
        // Left alone: the gateway itself refuses it, and the test with it.
        Err(_) => addr.to_owned(),
    }
}

/// How the gateway would be configured, read the way the binary reads it (flag over env over
/// default).
#[derive(Debug)]
struct Effective {
    listen: String,
    admin_listen: String,
    policy_file: Option<String>,
    allow_unauthenticated: bool,
}

fn effective(c: &Container) -> Effective {
    let env = c.env_map();
    let args = &c.argv[1..];
    let pick = |flag: &str, var: &str| {
        flag_value(args, flag).or_else(|| env.get(var).cloned().filter(|v| !v.is_empty()))
    };
    Effective {
        listen: pick("--listen", "EGRESS_PROXY_LISTEN").unwrap_or("127.0.0.1:50051".into()),
        admin_listen: pick("--admin-listen", "EGRESS_PROXY_ADMIN_LISTEN")
            .unwrap_or("127.0.0.1:9090".into()),
        policy_file: pick("--policy-file", "EGRESS_PROXY_POLICY_FILE"),
        allow_unauthenticated: args
            .iter()
            .any(|a| a.starts_with("--allow-unauthenticated"))
            || env
                .get("EGRESS_PROXY_ALLOW_UNAUTHENTICATED")
                .is_some_and(|v| !v.is_empty() && v != "false" && v != "0"),
    }
}

// ---------------------------------------------------------------------------------------
// Running one.

#[derive(Debug)]
struct Running {
    child: Child,
    grpc: SocketAddr,
    admin: SocketAddr,
    log: Arc<Mutex<String>>,
    /// The container's policy, as mounted.
    auth_mode: AuthMode,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lays out the container's files under a temporary root and starts the binary as the
/// container would; `Err` says why it did not become ready (with its log).
fn start(c: &Container, upstream_url: &str) -> Result<Running, String> {
    let label: String = c
        .name
        .chars()
        .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
        .collect();
    let root = temp_dir(&format!("pkg-{label}"));
    let in_root = |value: &str| -> String {
        match value.strip_prefix('/') {
            Some(rel) => root.join(rel).display().to_string(),
            None => value.to_owned(),
        }
    };
    for (path, content) in &c.files {
        let at = PathBuf::from(in_root(path));
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::write(&at, content).unwrap();
    }

    let Some((program, args)) = c.argv.split_first() else {
        return Err(format!("{}: no entrypoint or command", c.name));
    };
    if Path::new(program).file_name() != Some(IMAGE_BINARY_NAME.as_ref()) {
        return Err(format!(
            "{}: the entrypoint {program:?} is not the gateway binary",
            c.name
        ));
    }
    let mut args = args.to_vec();
    let eff = effective(c);
    for flag in ["--listen", "--admin-listen"] {
        map_flag(&mut args, flag, ephemeral);
    }
    for flag in [
        "--policy-file",
        "--api-secret-file",
        "--tls-cert",
        "--tls-key",
        "--tls-client-ca",
    ] {
        map_flag(&mut args, flag, in_root);
    }
    let mut env = c.env_map();
    for value in env.values_mut() {
        *value = in_root(value);
    }
    env.insert("LIVEKIT_URL".into(), upstream_url.into());
    env.insert("EGRESS_PROXY_LISTEN".into(), ephemeral(&eff.listen));
    env.insert(
        "EGRESS_PROXY_ADMIN_LISTEN".into(),
        ephemeral(&eff.admin_listen),
    );
    if let Some(webhook) = env.get("EGRESS_PROXY_WEBHOOK_LISTEN").cloned() {
        env.insert("EGRESS_PROXY_WEBHOOK_LISTEN".into(), ephemeral(&webhook));
    }
    map_flag(&mut args, "--webhook-listen", ephemeral);

    let auth_mode = match &eff.policy_file {
        None => AuthMode::None,
        Some(path) => match Policy::load(in_root(path)) {
            Ok(policy) => policy.auth_mode(),
            // The gateway reports it (and exits 2) below.
            Err(_) => AuthMode::None,
        },
    };

    let mut child = Command::new(proxy_bin())
        .args(&args)
        .env_clear()
        .envs(&env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn egress-proxy");
    let (log, rx) = read_log(&mut child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((grpc, admin)) = rx.recv_timeout(Duration::from_millis(50)) {
            return Ok(Running {
                child,
                grpc: reachable(grpc),
                admin: reachable(admin),
                log,
                auth_mode,
            });
        }
        if let Some(status) = child.try_wait().unwrap() {
            // Let the reader take the last lines.
            std::thread::sleep(Duration::from_millis(100));
            return Err(format!(
                "{}: egress-proxy exited ({status}) instead of starting; log:\n{}",
                c.name,
                log.lock().unwrap()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{}: egress-proxy did not become ready; log:\n{}",
                c.name,
                log.lock().unwrap()
            ));
        }
    }
}

/// A wildcard listener is reached on loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

fn simulator(credentials: Credentials) -> SimHandle {
    Simulator::builder()
        .credentials(credentials)
        .build()
        .spawn("127.0.0.1:0".parse().unwrap())
        .unwrap()
}

fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

/// The setup-independent promises: the admin endpoint is alive, gRPC health turns SERVING
/// (LiveKit reachable with the setup's keys), and callers authenticate as the policy says.
async fn check_gateway(name: &str, gateway: &Running, token: Option<&str>) {
    let (status, body) = admin_get(gateway.admin, "/healthz").await;
    assert_eq!(status, 200, "{name}: /healthz answered {status}: {body}");

    let channel = Channel::from_shared(format!("http://{}", gateway.grpc))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{name}: connect to the gRPC listener: {e}"));
    let mut health = HealthClient::new(channel.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = health
            .check(HealthCheckRequest::default())
            .await
            .unwrap_or_else(|e| panic!("{name}: grpc.health.v1.Health/Check: {e}"))
            .into_inner()
            .status();
        if now == ServingStatus::Serving {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: health stayed {now:?}; log:\n{}",
            gateway.log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut client = EgressClient::new(channel);
    match gateway.auth_mode {
        AuthMode::None => {
            client
                .list_egress(ListEgressRequest::default())
                .await
                .unwrap_or_else(|e| panic!("{name}: ListEgress (auth mode none): {e}"));
        }
        AuthMode::Bearer => {
            let anonymous = client
                .list_egress(ListEgressRequest::default())
                .await
                .expect_err("a bearer policy must refuse a call without a token");
            assert_eq!(
                anonymous.code(),
                Code::Unauthenticated,
                "{name}: {anonymous}"
            );
            if let Some(token) = token {
                client
                    .list_egress(with_token(ListEgressRequest::default(), Some(token)))
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "{name}: ListEgress with the documented token: {e}; log:\n{}",
                            gateway.log.lock().unwrap()
                        )
                    });
            }
        }
        other => panic!("{name}: unexpected auth mode {other:?} in a shipped setup"),
    }
}

/// Shipped setups never open the gateway to unauthenticated callers off loopback.
fn assert_not_exposed(c: &Container) {
    let eff = effective(c);
    assert!(
        !eff.allow_unauthenticated,
        "{}: a shipped setup must not use --allow-unauthenticated",
        c.name
    );
}

/// The LiveKit keys the gateway container holds (the simulator is given the same).
fn gateway_credentials(c: &Container) -> Credentials {
    let key = c.env_var("LIVEKIT_API_KEY").unwrap_or_default();
    let secret = c.env_var("LIVEKIT_API_SECRET").unwrap_or_default();
    Credentials::new(key, secret)
}

// ---------------------------------------------------------------------------------------
// docker-compose.yml

/// Compose's variable substitution: `${V}`, `${V:-default}`, `${V-default}`, `${V:?err}`,
/// `${V?err}`, `$V` and `$$`.
fn interpolate(text: &str, vars: &BTreeMap<&str, &str>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
            let expr = &inner[..end];
            rest = &inner[end + 1..];
            let name_end = expr
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(expr.len());
            let (name, op) = expr.split_at(name_end);
            let value = vars.get(name).copied();
            let set = value.is_some_and(|v| !v.is_empty());
            let resolved = if let Some(default) = op.strip_prefix(":-") {
                if set { value.unwrap() } else { default }
            } else if let Some(default) = op.strip_prefix('-') {
                value.unwrap_or(default)
            } else if let Some(message) = op.strip_prefix(":?") {
                if !set {
                    return Err(format!("{name}: {message}"));
                }
                value.unwrap()
            } else if let Some(message) = op.strip_prefix('?') {
                value.ok_or_else(|| format!("{name}: {message}"))?
            } else if op.is_empty() {
                value.unwrap_or("")
            } else {
                return Err(format!("unsupported substitution ${{{expr}}}"));
            };
            out.push_str(resolved);
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            out.push_str(vars.get(&after[..end]).copied().unwrap_or(""));
            rest = &after[end..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn interpolate_tree(value: &mut Value, vars: &BTreeMap<&str, &str>) -> Result<(), String> {
    match value {
        Value::String(s) => *s = interpolate(s, vars)?,
        Value::Sequence(items) => {
            for item in items {
                interpolate_tree(item, vars)?;
            }
        }
        Value::Mapping(map) => {
            for (_, item) in map.iter_mut() {
                interpolate_tree(item, vars)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `docker-compose.yml` as `docker-compose` sees it with only `LIVEKIT_API_SECRET`
/// exported, as the README tells.
fn compose() -> Value {
    let mut file: Value =
        serde_yaml::from_str(&read(&repo().join("docker-compose.yml"))).expect("compose YAML");
    let vars = BTreeMap::from([("LIVEKIT_API_SECRET", COMPOSE_SECRET)]);
    interpolate_tree(&mut file, &vars).expect("compose interpolation");
    file
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    match value? {
        Value::Sequence(items) => Some(items.iter().map(scalar).collect()),
        Value::String(s) => Some(shell_words(s)),
        other => panic!("not a command: {other:?}"),
    }
}

/// A service's `environment`, map or `K=V` list.
fn compose_env(service: &Value) -> Vec<(String, String)> {
    match service.get("environment") {
        None => Vec::new(),
        Some(Value::Mapping(map)) => map.iter().map(|(k, v)| (scalar(k), scalar(v))).collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|i| {
                let item = scalar(i);
                let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        Some(other) => panic!("environment: {other:?}"),
    }
}

/// A service's bind mounts: (host path, container path).
fn compose_binds(service: &Value) -> Vec<(PathBuf, String)> {
    let Some(Value::Sequence(volumes)) = service.get("volumes") else {
        return Vec::new();
    };
    volumes
        .iter()
        .map(|v| {
            let (source, target) = match v {
                Value::String(s) => {
                    let mut parts = s.split(':');
                    let source = parts.next().unwrap_or_default().to_owned();
                    let target = parts
                        .next()
                        .unwrap_or_else(|| panic!("volume {s:?} has no target"));
                    (source, target.to_owned())
                }
                Value::Mapping(_) => (
                    scalar(v.get("source").expect("volume source")),
                    scalar(v.get("target").expect("volume target")),
                ),
                other => panic!("volume {other:?}"),
            };
            assert!(
                source.starts_with('.') || source.starts_with('/'),
                "volume {source:?} is not a bind mount"
            );
            (repo().join(source), target)
        })
        .collect()
}

/// A bind mount's files: a file, or a folder's files (one level).
fn bind_files(host: &Path, target: &str) -> Vec<(String, Vec<u8>)> {
    if host.is_dir() {
        std::fs::read_dir(host)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (format!("{target}/{name}"), std::fs::read(&p).unwrap())
            })
            .collect()
    } else {
        // A missing source: docker creates an empty directory, so the file is not there.
        std::fs::read(host)
            .map(|content| vec![(target.to_owned(), content)])
            .unwrap_or_default()
    }
}

fn services(compose: &Value) -> Vec<(String, &Value)> {
    compose
        .get("services")
        .and_then(Value::as_mapping)
        .expect("services")
        .iter()
        .map(|(k, v)| (scalar(k), v))
        .collect()
}

/// The services that run the gateway: built from this repository's Dockerfile, or from an
/// `egress-proxy` image.
fn compose_gateways(compose: &Value) -> Vec<Container> {
    let image = image();
    services(compose)
        .into_iter()
        .filter(|(_, s)| {
            s.get("build").is_some()
                || s.get("image")
                    .map(scalar)
                    .is_some_and(|i| i.contains("egress-proxy"))
        })
        .map(|(name, s)| {
            let mut env = image.env.clone();
            env.extend(compose_env(s));
            let (entrypoint, cmd) = match strings(s.get("entrypoint")) {
                // Compose: an entrypoint override drops the image's CMD.
                Some(ep) => (ep, strings(s.get("command")).unwrap_or_default()),
                None => (
                    image.entrypoint.clone(),
                    strings(s.get("command")).unwrap_or_else(|| image.cmd.clone()),
                ),
            };
            let files = compose_binds(s)
                .iter()
                .flat_map(|(host, target)| bind_files(host, target))
                .collect();
            Container {
                name: format!("docker-compose.yml service {name}"),
                env,
                argv: entrypoint.into_iter().chain(cmd).collect(),
                files,
            }
        })
        .collect()
}

/// The compose service running livekit-server.
fn livekit_service(compose: &Value) -> &Value {
    services(compose)
        .into_iter()
        .find(|(_, s)| {
            s.get("image")
                .map(scalar)
                .is_some_and(|i| i.starts_with("livekit/livekit-server"))
        })
        .map(|(_, service)| service)
        .expect("a livekit-server service")
}

/// livekit-server's keys in compose: its `LIVEKIT_KEYS` (`key: secret` lines).
fn compose_livekit_keys(compose: &Value) -> Vec<(String, String)> {
    let livekit = livekit_service(compose);
    let keys = compose_env(livekit)
        .into_iter()
        .find(|(k, _)| k == "LIVEKIT_KEYS")
        .map(|(_, v)| v)
        .expect("livekit-server gets LIVEKIT_KEYS");
    keys.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (k, s) = l.split_once(':').expect("LIVEKIT_KEYS is `key: secret`");
            (k.trim().to_owned(), s.trim().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn compose_gateway_starts_and_takes_the_demo_token() {
    let compose = compose();
    let gateways = compose_gateways(&compose);
    assert!(!gateways.is_empty(), "docker-compose.yml runs no gateway");
    let keys = compose_livekit_keys(&compose);
    let service_names: Vec<String> = services(&compose).into_iter().map(|(n, _)| n).collect();
    for gateway in gateways {
        assert_not_exposed(&gateway);
        // The gateway talks to the compose livekit service...
        let url = gateway
            .env_var("LIVEKIT_URL")
            .expect("the gateway gets LIVEKIT_URL");
        let host = url
            .split("://")
            .nth(1)
            .and_then(|r| r.split([':', '/']).next())
            .unwrap_or_default()
            .to_owned();
        assert!(
            service_names.contains(&host),
            "{}: LIVEKIT_URL {url} names no compose service",
            gateway.name
        );
        // ...with keys livekit-server has (the simulator holds exactly those).
        let key = gateway.env_var("LIVEKIT_API_KEY").unwrap_or_default();
        let secret = keys
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| panic!("{}: key {key:?} is not in LIVEKIT_KEYS", gateway.name));
        let sim = simulator(Credentials::new(key, secret));
        let running = start(&gateway, &sim.url()).unwrap_or_else(|e| panic!("{e}"));
        check_gateway(&gateway.name, &running, Some(DEMO_TOKEN)).await;
    }
}

/// livekit-server posts its webhooks to the gateway's receiver, signed with a key the
/// gateway holds, and the gateway shares events through the stack's Redis: checked on the
/// files, then with a webhook signed as LiveKit would sign it, posted to the gateway started
/// as compose starts it.
#[tokio::test]
async fn compose_livekit_webhooks_reach_the_gateway() {
    let compose = compose();
    let livekit = livekit_service(&compose);
    let config = compose_env(livekit)
        .into_iter()
        .find(|(k, _)| k == "LIVEKIT_CONFIG")
        .map(|(_, v)| v)
        .expect("livekit-server gets its config in LIVEKIT_CONFIG");
    let config: Value = serde_yaml::from_str(&config).expect("livekit config YAML");
    let webhook_key = scalar(&config["webhook"]["api_key"]);
    let urls = strings(config["webhook"].get("urls")).expect("webhook.urls");
    let keys = compose_livekit_keys(&compose);
    let secret = keys
        .iter()
        .find(|(k, _)| *k == webhook_key)
        .map(|(_, s)| s.clone())
        .unwrap_or_else(|| panic!("webhook.api_key {webhook_key:?} is not in LIVEKIT_KEYS"));
    let redis_services: Vec<String> = services(&compose)
        .into_iter()
        .filter(|(_, s)| {
            s.get("image")
                .map(scalar)
                .is_some_and(|i| i.starts_with("redis"))
        })
        .map(|(n, _)| n)
        .collect();

    let gateway_services: Vec<(String, &Value)> = services(&compose)
        .into_iter()
        .filter(|(_, s)| {
            s.get("build").is_some()
                || s.get("image")
                    .map(scalar)
                    .is_some_and(|i| i.contains("egress-proxy"))
        })
        .collect();
    let gateways = compose_gateways(&compose);
    assert_eq!(gateways.len(), gateway_services.len());
    for (gateway, (service, _)) in gateways.iter().zip(&gateway_services) {
        let listen = gateway
            .env_var("EGRESS_PROXY_WEBHOOK_LISTEN")
            .unwrap_or_else(|| panic!("{}: no EGRESS_PROXY_WEBHOOK_LISTEN", gateway.name));
        let port = listen.rsplit(':').next().unwrap();
        let expected = format!("http://{service}:{port}/webhook");
        assert!(
            urls.contains(&expected),
            "livekit's webhook.urls {urls:?} miss {expected}"
        );
        let redis = gateway
            .env_var("EGRESS_PROXY_REDIS_URL")
            .unwrap_or_default();
        assert!(
            redis_services
                .iter()
                .any(|r| redis.starts_with(&format!("redis://{r}:"))),
            "{}: EGRESS_PROXY_REDIS_URL {redis:?} names no redis service",
            gateway.name
        );

        let key = gateway.env_var("LIVEKIT_API_KEY").unwrap_or_default();
        assert_eq!(
            key, webhook_key,
            "the gateway verifies with the webhook's key"
        );
        let sim = simulator(Credentials::new(key.clone(), secret.clone()));
        let running = start(gateway, &sim.url()).unwrap_or_else(|e| panic!("{e}"));
        // The reader hands over the addresses as it sees the ready line, maybe before the
        // line is in the captured log.
        let webhook_addr = || -> Option<SocketAddr> {
            let log = running.log.lock().unwrap();
            log.split("webhook=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|addr| addr.parse().ok())
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let webhook = loop {
            if let Some(addr) = webhook_addr() {
                break addr;
            }
            assert!(
                Instant::now() < deadline,
                "no webhook address in the ready line:\n{}",
                running.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let body = egress_e2e::events::egress_webhook(
            "egress_started",
            "EV_PKG",
            "EG_PKG",
            "r",
            "EGRESS_STARTING",
        );
        let token = egress_auth::sign_webhook(
            &Credentials::new(key, secret.clone()),
            body.as_bytes(),
            std::time::SystemTime::now(),
        )
        .unwrap();
        let status =
            egress_e2e::events::post_webhook(reachable(webhook), &body, Some(&token)).await;
        assert_eq!(status, 200, "{}: the webhook was refused", gateway.name);
    }
}

#[test]
fn compose_egress_worker_has_livekit_keys() {
    let compose = compose();
    let keys = compose_livekit_keys(&compose);
    let workers: Vec<_> = services(&compose)
        .into_iter()
        .filter(|(_, s)| {
            s.get("image")
                .map(scalar)
                .is_some_and(|i| i.starts_with("livekit/egress"))
        })
        .collect();
    assert!(
        !workers.is_empty(),
        "docker-compose.yml runs no egress worker"
    );
    for (name, service) in workers {
        let env: BTreeMap<String, String> = compose_env(service).into_iter().collect();
        // The worker reads EGRESS_CONFIG_BODY, else the file EGRESS_CONFIG_FILE names.
        let config = match (env.get("EGRESS_CONFIG_BODY"), env.get("EGRESS_CONFIG_FILE")) {
            (Some(body), _) if !body.is_empty() => body.clone(),
            (_, Some(path)) => compose_binds(service)
                .iter()
                .flat_map(|(host, target)| bind_files(host, target))
                .find(|(target, _)| target == path)
                .map(|(_, content)| String::from_utf8(content).unwrap())
                .unwrap_or_else(|| panic!("{name}: {path} is not mounted")),
            _ => panic!("{name}: neither EGRESS_CONFIG_BODY nor EGRESS_CONFIG_FILE"),
        };
        let config: Value = serde_yaml::from_str(&config).expect("egress config YAML");
        let key = config.get("api_key").map(scalar).unwrap_or_default();
        let secret = config.get("api_secret").map(scalar).unwrap_or_default();
        assert!(
            keys.iter().any(|(k, s)| *k == key && *s == secret),
            "{name}: the egress worker's api_key/api_secret are not livekit-server's \
             LIVEKIT_KEYS (with LIVEKIT_API_SECRET={COMPOSE_SECRET:?} exported)"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Dockerfile

#[tokio::test]
async fn dockerfile_image_starts_with_the_documented_policy_mount() {
    let image = image();
    let env = |mount: bool| {
        let mut env = image.env.clone();
        env.extend([
            (
                "LIVEKIT_URL".to_owned(),
                "https://lk.example.com".to_owned(),
            ),
            ("LIVEKIT_API_KEY".to_owned(), "APIdocker".to_owned()),
            ("LIVEKIT_API_SECRET".to_owned(), COMPOSE_SECRET.to_owned()),
        ]);
        let files = if mount {
            vec![(
                DOCUMENTED_POLICY_MOUNT.to_owned(),
                std::fs::read(repo().join("deploy/policy.toml")).unwrap(),
            )]
        } else {
            Vec::new()
        };
        Container {
            name: format!("Dockerfile (policy mounted: {mount})"),
            env,
            argv: image.entrypoint.iter().chain(&image.cmd).cloned().collect(),
            files,
        }
    };

    // `docker run -e LIVEKIT_... -v ./policy.toml:/etc/egress-proxy/policy.toml:ro IMAGE`
    let documented = env(true);
    assert_not_exposed(&documented);
    let sim = simulator(gateway_credentials(&documented));
    let running = start(&documented, &sim.url()).unwrap_or_else(|e| panic!("{e}"));
    check_gateway(&documented.name, &running, Some(DEMO_TOKEN)).await;
    drop(running);

    // Without the policy the image refuses to start, and says which file it wants.
    let bare = env(false);
    let refused = start(&bare, &sim.url()).expect_err("the image must not start without auth");
    assert!(
        refused.contains("exited (exit status: 2)") && refused.contains("policy"),
        "{refused}"
    );
}

// ---------------------------------------------------------------------------------------
// deploy/kubernetes

/// Secrets and ConfigMaps by name: key to content.
type Objects = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

fn kubernetes_documents() -> Vec<(String, Value)> {
    let dir = repo().join("deploy/kubernetes");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no manifests in {}", dir.display());
    let mut docs = Vec::new();
    for path in paths {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        for doc in serde_yaml::Deserializer::from_str(&read(&path)) {
            let value = Value::deserialize(doc).expect("manifest YAML");
            if !value.is_null() {
                docs.push((file.clone(), value));
            }
        }
    }
    docs
}

fn objects(docs: &[(String, Value)], kind: &str) -> Objects {
    let mut out = Objects::new();
    for (_, doc) in docs {
        if doc.get("kind").map(scalar).as_deref() != Some(kind) {
            continue;
        }
        let name = scalar(&doc["metadata"]["name"]);
        let mut entries = BTreeMap::new();
        for (field, base64) in [("data", kind == "Secret"), ("stringData", false)] {
            if let Some(Value::Mapping(map)) = doc.get(field) {
                for (k, v) in map {
                    let text = scalar(v);
                    let content = if base64 {
                        base64::engine::general_purpose::STANDARD
                            .decode(text.trim())
                            .expect("Secret data is base64")
                    } else {
                        text.into_bytes()
                    };
                    entries.insert(scalar(k), content);
                }
            }
        }
        out.insert(name, entries);
    }
    out
}

/// The container's port named or numbered `port`.
fn container_port(container: &Value, port: &Value) -> u16 {
    match port {
        Value::Number(n) => n.as_u64().unwrap() as u16,
        Value::String(name) => container
            .get("ports")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .find(|p| p.get("name").map(scalar).as_deref() == Some(name))
            .and_then(|p| p.get("containerPort"))
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("no container port named {name:?}"))
            as u16,
        other => panic!("port {other:?}"),
    }
}

/// Every `egress-proxy` container of every workload, as the kubelet would start it.
fn kubernetes_gateways() -> Result<Vec<(Container, Value)>, String> {
    let docs = kubernetes_documents();
    let secrets = objects(&docs, "Secret");
    let config_maps = objects(&docs, "ConfigMap");
    let lookup = |kind: &str, name: &str| -> Result<&BTreeMap<String, Vec<u8>>, String> {
        let table = if kind == "Secret" {
            &secrets
        } else {
            &config_maps
        };
        table
            .get(name)
            .ok_or_else(|| format!("{kind} {name:?} is referenced but not defined in deploy/"))
    };
    let text = |bytes: &Vec<u8>| String::from_utf8(bytes.clone()).unwrap();
    let image = image();
    let mut out = Vec::new();
    for (file, doc) in &docs {
        let kind = doc.get("kind").map(scalar).unwrap_or_default();
        let pod = match kind.as_str() {
            "Pod" => &doc["spec"],
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
                &doc["spec"]["template"]["spec"]
            }
            _ => continue,
        };
        let workload = scalar(&doc["metadata"]["name"]);
        let volumes: BTreeMap<String, &Value> = pod
            .get("volumes")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .map(|v| (scalar(&v["name"]), v))
            .collect();
        for container in pod
            .get("containers")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            if !scalar(&container["image"]).contains("egress-proxy") {
                continue;
            }
            let name = format!(
                "{file} {kind} {workload} container {}",
                scalar(&container["name"])
            );
            let mut env = image.env.clone();
            for from in container
                .get("envFrom")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                let prefix = from.get("prefix").map(scalar).unwrap_or_default();
                let (ref_kind, reference) = match (from.get("secretRef"), from.get("configMapRef"))
                {
                    (Some(r), _) => ("Secret", r),
                    (_, Some(r)) => ("ConfigMap", r),
                    _ => return Err(format!("{name}: envFrom {from:?}")),
                };
                for (k, v) in lookup(ref_kind, &scalar(&reference["name"]))? {
                    env.push((format!("{prefix}{k}"), text(v)));
                }
            }
            for var in container
                .get("env")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                let key = scalar(&var["name"]);
                let value =
                    if let Some(value) = var.get("value") {
                        scalar(value)
                    } else if let Some(from) = var.get("valueFrom") {
                        let (ref_kind, reference) =
                            match (from.get("secretKeyRef"), from.get("configMapKeyRef")) {
                                (Some(r), _) => ("Secret", r),
                                (_, Some(r)) => ("ConfigMap", r),
                                _ => return Err(format!("{name}: valueFrom {from:?}")),
                            };
                        let entries = lookup(ref_kind, &scalar(&reference["name"]))?;
                        let entry_key = scalar(&reference["key"]);
                        text(entries.get(&entry_key).ok_or_else(|| {
                            format!("{name}: {ref_kind} has no key {entry_key:?}")
                        })?)
                    } else {
                        String::new()
                    };
                env.push((key, value));
            }
            // Kubernetes: `command` replaces ENTRYPOINT (and drops CMD), `args` replaces CMD.
            let command = strings(container.get("command"));
            let args = strings(container.get("args"));
            let argv = match (command, args) {
                (Some(c), a) => c.into_iter().chain(a.unwrap_or_default()).collect(),
                (None, Some(a)) => image.entrypoint.iter().cloned().chain(a).collect(),
                (None, None) => image.entrypoint.iter().chain(&image.cmd).cloned().collect(),
            };
            let mut files = Vec::new();
            for mount in container
                .get("volumeMounts")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                let volume_name = scalar(&mount["name"]);
                let mount_path = scalar(&mount["mountPath"]).trim_end_matches('/').to_owned();
                let volume = volumes
                    .get(&volume_name)
                    .ok_or_else(|| format!("{name}: no volume {volume_name:?}"))?;
                let entries = if let Some(cm) = volume.get("configMap") {
                    lookup("ConfigMap", &scalar(&cm["name"]))?
                } else if let Some(secret) = volume.get("secret") {
                    lookup("Secret", &scalar(&secret["secretName"]))?
                } else if volume.get("emptyDir").is_some() {
                    continue;
                } else {
                    return Err(format!("{name}: volume {volume_name:?} of an unknown type"));
                };
                match mount.get("subPath").map(scalar) {
                    Some(key) => files.push((
                        mount_path,
                        entries
                            .get(&key)
                            .cloned()
                            .ok_or_else(|| format!("{name}: no key {key:?} for subPath"))?,
                    )),
                    None => {
                        for (key, content) in entries {
                            files.push((format!("{mount_path}/{key}"), content.clone()));
                        }
                    }
                }
            }
            out.push((
                Container {
                    name,
                    env,
                    argv,
                    files,
                },
                container.clone(),
            ));
        }
    }
    Ok(out)
}

/// The kubelet probes on the pod IP: each probe's port must be a listener that is not
/// loopback-only.
fn check_probes(c: &Container, spec: &Value) {
    let eff = effective(c);
    let listen: SocketAddr = eff.listen.parse().expect("listen address");
    let admin: SocketAddr = eff.admin_listen.parse().expect("admin address");
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(p) = spec.get(probe) else { continue };
        let (port, target) = if let Some(http) = p.get("httpGet") {
            (container_port(spec, &http["port"]), admin)
        } else if let Some(grpc) = p.get("grpc") {
            (container_port(spec, &grpc["port"]), listen)
        } else {
            continue;
        };
        assert_eq!(
            port,
            target.port(),
            "{}: {probe} probes port {port}, but the listener it needs is {target}",
            c.name
        );
        assert!(
            !target.ip().is_loopback(),
            "{}: {probe} comes from the kubelet on the pod IP, but {target} is loopback only",
            c.name
        );
    }
}

#[tokio::test]
async fn kubernetes_gateways_start() {
    let gateways = kubernetes_gateways().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !gateways.is_empty(),
        "deploy/kubernetes has no egress-proxy container"
    );
    for (gateway, spec) in &gateways {
        assert_not_exposed(gateway);
        check_probes(gateway, spec);
        let sim = simulator(gateway_credentials(gateway));
        let running = start(gateway, &sim.url()).unwrap_or_else(|e| panic!("{e}"));
        // The manifests ship no usable token: a bearer gateway must refuse anonymous calls.
        check_gateway(&gateway.name, &running, None).await;
    }
}

// ---------------------------------------------------------------------------------------
// The harness's own parsers.

#[test]
fn parsers() {
    let image = parse_dockerfile(
        "FROM a AS b\nENV X=1\nFROM c\n# ENV Y=2 \\\nENV A=1 \\\n    B=\"two words\"\nENV C 3 4\n\
         ENTRYPOINT [\"/bin/egress-proxy\"]\nCMD [\"--dev\"]\n",
    );
    assert_eq!(
        image.env,
        [("A", "1"), ("B", "two words"), ("C", "3 4")].map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    assert_eq!(image.entrypoint, ["/bin/egress-proxy"]);
    assert_eq!(image.cmd, ["--dev"]);

    let vars = BTreeMap::from([("S", "x"), ("E", "")]);
    assert_eq!(
        interpolate("${S}-${U:-d}-${E:-d}-${E-d}-$$S-$S", &vars).unwrap(),
        "x-d-d--$S-x"
    );
    assert!(interpolate("${U:?set U}", &vars).is_err());
    assert!(interpolate("${E:?set E}", &vars).is_err());

    let mut args: Vec<String> = ["--listen", "0.0.0.0:50051", "--admin-listen=[::]:9090"]
        .map(String::from)
        .to_vec();
    map_flag(&mut args, "--listen", ephemeral);
    map_flag(&mut args, "--admin-listen", ephemeral);
    assert_eq!(args, ["--listen", "0.0.0.0:0", "--admin-listen=[::]:0"]);

    let json =
        r#"{"fields":{"message":"egress-proxy ready","listen":"0.0.0.0:1","admin":"127.0.0.1:2"}}"#;
    assert_eq!(
        ready_addrs(json),
        Some(("0.0.0.0:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap()))
    );
    let text = "INFO egress_proxy: egress-proxy ready listen=127.0.0.1:1 admin=127.0.0.1:2 x=y";
    assert!(ready_addrs(text).is_some());
}
