//! Renders our `proto/` tree from the pinned PyPI `livekit-protocol` package's schema.
//!
//! We never copy upstream `.proto` text: it carries upstream comments and layout we do not
//! want to maintain. Instead the pinned package's descriptors are loaded into a
//! [`DescriptorPool`] and printed back by [`render_file`], which emits facts only —
//! packages, imports, messages, fields (names, numbers, types, labels), oneofs, maps,
//! enums, services, extensions, reserved ranges and the options that matter on the wire or
//! to codegen.
//!
//! Why PyPI: the crates.io `livekit-protocol` crate lags the schema (0.8.2 has no stream
//! `destinations`), while the Python package is published with each protocol release and
//! its generated modules embed every schema file as a serialized `FileDescriptorProto`,
//! so neither `.proto` source nor `protoc` is needed to read it. The
//! pinned version is the exact `livekit-protocol==X` line of
//! `tests/python/requirements.txt` ([`REQUIREMENTS`]): one place, which CI installs
//! before it runs `proto-sync --check`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message as _;
use prost_reflect::{
    Cardinality, DescriptorPool, DynamicMessage, EnumDescriptor, ExtensionDescriptor,
    FieldDescriptor, FileDescriptor, Kind, MessageDescriptor, ServiceDescriptor, Syntax, Value,
};
use prost_types::FileDescriptorProto;

/// The PyPI package whose embedded descriptors are the schema we pin.
pub const PIN_PACKAGE: &str = "livekit-protocol";
/// The requirements file that holds the pin, relative to the workspace root.
pub const REQUIREMENTS: &str = "tests/python/requirements.txt";
/// The schema file whose import closure we render.
pub const ROOT_FILE: &str = "livekit_egress.proto";

/// The gateway's own protos (its event service), under `proto/` beside LiveKit's but not
/// rendered from the pin: proto-sync neither checks nor removes anything below it.
pub const GATEWAY_PROTO_DIR: &str = "egress_gateway";
/// The Python module that embeds [`ROOT_FILE`].
const ROOT_MODULE: &str = "livekit.protocol.egress";

/// Prints the installed package version, then every file of the root module's import
/// closure (dependencies first) as `file <name> <hex of serialized FileDescriptorProto>`.
/// Only the standard library and the package itself are used, so the one thing the
/// environment must provide is the pinned package.
const DUMP_SCRIPT: &str = r#"
import importlib, importlib.metadata, sys
try:
    version = importlib.metadata.version(sys.argv[1])
except importlib.metadata.PackageNotFoundError:
    print("missing")
    sys.exit(0)
print("version " + version)
seen = set()
def walk(f):
    if f.name in seen:
        return
    seen.add(f.name)
    for dep in f.dependencies:
        walk(dep)
    print("file " + f.name + " " + f.serialized_pb.hex())
walk(importlib.import_module(sys.argv[2]).DESCRIPTOR)
"#;

/// Everything that can go wrong while syncing.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{REQUIREMENTS} has no exact `{PIN_PACKAGE}==<version>` line; that line is the pin")]
    PinNotFound,
    #[error("running `{python} -c <dump script>` failed: {detail}")]
    Python { python: String, detail: String },
    #[error("{PIN_PACKAGE} is not installed for {python}; run `pip install {PIN_PACKAGE}=={pin}`")]
    PackageMissing { python: String, pin: String },
    #[error(
        "{python} has {PIN_PACKAGE} {found} but the pin is {pin}; run `pip install {PIN_PACKAGE}=={pin}`"
    )]
    VersionMismatch {
        python: String,
        found: String,
        pin: String,
    },
    #[error("unexpected output from the dump script: {0}")]
    DumpFormat(String),
    #[error("decoding the descriptor of {file}: {source}")]
    Decode {
        file: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error("building the descriptor pool: {0}")]
    Pool(#[source] Box<prost_reflect::DescriptorError>),
    #[error("compiling {path}: {source}")]
    Compile {
        path: String,
        #[source]
        source: Box<protox::Error>,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The pinned schema: its version and its descriptors.
#[derive(Debug, Clone)]
pub struct Pin {
    /// Version of the PyPI `livekit-protocol` package.
    pub version: String,
    /// The import closure of [`ROOT_FILE`], Google well-known types included.
    pub pool: DescriptorPool,
}

/// The workspace root this tool was built in.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The pinned version: the `livekit-protocol==X` line of [`REQUIREMENTS`].
pub fn pin_version(workspace: &Path) -> Result<String, SyncError> {
    let path = workspace.join(REQUIREMENTS);
    let text = std::fs::read_to_string(&path).map_err(|source| SyncError::Io { path, source })?;
    parse_pin(&text).ok_or(SyncError::PinNotFound)
}

/// Finds `livekit-protocol==X` in requirements text; ranges do not count as a pin.
fn parse_pin(requirements: &str) -> Option<String> {
    requirements.lines().find_map(|line| {
        let line = line.split('#').next()?.trim();
        let version = line
            .strip_prefix(PIN_PACKAGE)?
            .trim()
            .strip_prefix("==")?
            .trim();
        let exact = !version.is_empty()
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.');
        exact.then(|| version.to_owned())
    })
}

/// The Python interpreter to ask: `$PYTHON`, else `python3` (what CI's pip installs into).
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Loads the pinned schema from the installed Python package, after checking that the
/// installed version is exactly the pin.
pub fn locate_pin(workspace: &Path) -> Result<Pin, SyncError> {
    let pin = pin_version(workspace)?;
    let python = python();
    let python_err = |detail: String| SyncError::Python {
        python: python.clone(),
        detail,
    };
    let out = Command::new(&python)
        .args(["-c", DUMP_SCRIPT, PIN_PACKAGE, ROOT_MODULE])
        .output()
        .map_err(|e| python_err(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    // The version comes first, so a missing or wrong package is reported as such even
    // when importing the module then fails.
    match lines.next() {
        Some("missing") => return Err(SyncError::PackageMissing { python, pin }),
        Some(line) => match line.strip_prefix("version ") {
            Some(found) if found == pin => {}
            Some(found) => {
                return Err(SyncError::VersionMismatch {
                    python,
                    found: found.to_owned(),
                    pin,
                });
            }
            None => return Err(SyncError::DumpFormat(line.to_owned())),
        },
        None => {}
    }
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or("no output").to_owned();
        return Err(python_err(last));
    }
    // The files are re-assembled into one serialized FileDescriptorSet (field 1, each
    // file length-delimited) rather than decoded into `prost_types`: those drop unknown
    // fields, and custom options such as `(logger.sensitivity)` are unknown fields until
    // the pool resolves them, which `DescriptorPool::decode_file_descriptor_set` does.
    let mut set = Vec::new();
    let mut names = Vec::new();
    for line in lines {
        let mut parts = line.splitn(3, ' ');
        let (Some("file"), Some(name), Some(hex)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SyncError::DumpFormat(line.to_owned()));
        };
        let bytes = hex::decode(hex).map_err(|e| SyncError::DumpFormat(format!("{name}: {e}")))?;
        // Decoding alone pins the failure on one file, which the pool's error would not.
        FileDescriptorProto::decode(bytes.as_slice()).map_err(|source| SyncError::Decode {
            file: name.to_owned(),
            source,
        })?;
        prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut set);
        prost::encoding::encode_varint(bytes.len() as u64, &mut set);
        set.extend_from_slice(&bytes);
        names.push(name.to_owned());
    }
    if !names.iter().any(|n| n == ROOT_FILE) {
        return Err(SyncError::DumpFormat(format!(
            "{ROOT_FILE} not in the dump"
        )));
    }
    let mut pool = DescriptorPool::new();
    pool.decode_file_descriptor_set(set.as_slice())
        .map_err(|e| SyncError::Pool(Box::new(e)))?;
    Ok(Pin { version: pin, pool })
}

/// Compiles `root` and its imports from `include` into a descriptor pool.
pub fn compile(include: &Path, root: &str) -> Result<DescriptorPool, SyncError> {
    let compile_err = |source| SyncError::Compile {
        path: include.join(root).display().to_string(),
        source: Box::new(source),
    };
    let mut compiler = protox::Compiler::new([include]).map_err(compile_err)?;
    compiler.include_imports(true);
    compiler.open_file(root).map_err(compile_err)?;
    Ok(compiler.descriptor_pool())
}

/// The files of the closure we own: everything but the Google well-known types, which
/// every protobuf toolchain already ships.
pub fn owned_files(pool: &DescriptorPool) -> impl Iterator<Item = FileDescriptor> + '_ {
    pool.files().filter(|f| !f.name().starts_with("google/"))
}

/// Renders every owned file of the pinned closure: path relative to `proto/` → contents.
pub fn render_pin(pin: &Pin) -> BTreeMap<String, String> {
    let header = header(pin);
    owned_files(&pin.pool)
        .map(|f| (f.name().to_owned(), render_file(&f, &header)))
        .collect()
}

fn header(pin: &Pin) -> String {
    format!(
        "// Rendered by build-tools/proto-sync from PyPI {PIN_PACKAGE} {}. Do not edit.\n\
         // Regenerate with `cargo run -p proto-sync`; CI runs `cargo run -p proto-sync -- --check`.\n\
         // Schema facts only; LiveKit's documentation lives in its protocol repository.\n",
        pin.version
    )
}

/// Prints one file descriptor as `.proto` source that compiles back to the same descriptor.
pub fn render_file(file: &FileDescriptor, header: &str) -> String {
    let mut p = Printer {
        out: String::new(),
        depth: 0,
        package: file.package_name().to_owned(),
    };
    p.out.push_str(header);
    p.out.push('\n');
    let syntax = match file.syntax() {
        Syntax::Proto2 => "proto2",
        Syntax::Proto3 => "proto3",
    };
    p.line(&format!("syntax = \"{syntax}\";"));
    if !file.package_name().is_empty() {
        p.blank();
        p.line(&format!("package {};", file.package_name()));
    }
    let deps: Vec<_> = file.dependencies().collect();
    if !deps.is_empty() {
        p.blank();
        for dep in deps {
            p.line(&format!("import \"{}\";", dep.name()));
        }
    }
    p.extensions(file.extensions());
    for service in file.services() {
        p.blank();
        p.service(&service);
    }
    for message in file.messages() {
        p.blank();
        p.message(&message);
    }
    for enum_ in file.enums() {
        p.blank();
        p.enum_(&enum_);
    }
    p.out
}

struct Printer {
    out: String,
    depth: usize,
    package: String,
}

impl Printer {
    fn line(&mut self, text: &str) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn blank(&mut self) {
        if !self.out.ends_with("{\n") {
            self.out.push('\n');
        }
    }

    fn open(&mut self, text: &str) {
        self.line(&format!("{text} {{"));
        self.depth += 1;
    }

    fn close(&mut self) {
        self.depth -= 1;
        self.line("}");
    }

    /// A type reference, relative to our package where that is unambiguous.
    fn type_name(&self, full_name: &str) -> String {
        match full_name.strip_prefix(&self.package) {
            Some(rest) if !self.package.is_empty() && rest.starts_with('.') => rest[1..].to_owned(),
            _ => format!(".{full_name}"),
        }
    }

    fn service(&mut self, service: &ServiceDescriptor) {
        self.open(&format!("service {}", service.name()));
        for method in service.methods() {
            let input = self.type_name(method.input().full_name());
            let output = self.type_name(method.output().full_name());
            let client = if method.is_client_streaming() {
                "stream "
            } else {
                ""
            };
            let server = if method.is_server_streaming() {
                "stream "
            } else {
                ""
            };
            let options = options_list(&method.options(), &["deprecated"]);
            if options.is_empty() {
                self.line(&format!(
                    "rpc {}({client}{input}) returns ({server}{output});",
                    method.name()
                ));
            } else {
                self.open(&format!(
                    "rpc {}({client}{input}) returns ({server}{output})",
                    method.name()
                ));
                for option in options {
                    self.line(&format!("option {option};"));
                }
                self.close();
            }
        }
        self.close();
    }

    fn message(&mut self, message: &MessageDescriptor) {
        self.open(&format!("message {}", message.name()));
        for option in options_list(&message.options(), &["deprecated"]) {
            self.line(&format!("option {option};"));
        }
        // Fields print in declaration order; a real oneof is printed as a block where its
        // first member appears, which keeps both field order and oneof membership.
        let mut printed_oneofs = Vec::new();
        // `fields()` iterates by number; the descriptor proto keeps declaration order.
        let declared = message
            .descriptor_proto()
            .field
            .iter()
            .filter_map(|f| message.get_field(u32::try_from(f.number()).ok()?));
        for field in declared {
            match field.containing_oneof().filter(|o| !o.is_synthetic()) {
                Some(oneof) => {
                    if printed_oneofs.contains(&oneof.name().to_owned()) {
                        continue;
                    }
                    printed_oneofs.push(oneof.name().to_owned());
                    self.open(&format!("oneof {}", oneof.name()));
                    for member in oneof.fields() {
                        self.field(&member, false);
                    }
                    self.close();
                }
                None => self.field(&field, true),
            }
        }
        for range in message.reserved_ranges() {
            let line = if range.end == range.start + 1 {
                format!("reserved {};", range.start)
            } else {
                format!("reserved {} to {};", range.start, range.end - 1)
            };
            self.line(&line);
        }
        let names: Vec<_> = message
            .reserved_names()
            .map(|n| format!("\"{n}\""))
            .collect();
        if !names.is_empty() {
            self.line(&format!("reserved {};", names.join(", ")));
        }
        for nested in message.child_messages().filter(|m| !m.is_map_entry()) {
            self.blank();
            self.message(&nested);
        }
        for nested in message.child_enums() {
            self.blank();
            self.enum_(&nested);
        }
        self.extensions(message.child_extensions());
        self.close();
    }

    fn field(&mut self, field: &FieldDescriptor, labelled: bool) {
        let ty = if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                unreachable!("map fields are message-typed")
            };
            let key = entry.map_entry_key_field();
            let value = entry.map_entry_value_field();
            format!(
                "map<{}, {}>",
                self.kind_name(&key.kind()),
                self.kind_name(&value.kind())
            )
        } else {
            self.kind_name(&field.kind())
        };
        let label = match (labelled, field.cardinality()) {
            (_, _) if field.is_map() => "",
            (true, Cardinality::Repeated) => "repeated ",
            (true, Cardinality::Required) => "required ",
            (true, Cardinality::Optional) if field.field_descriptor_proto().proto3_optional() => {
                "optional "
            }
            (true, Cardinality::Optional) if field.parent_file().syntax() == Syntax::Proto2 => {
                "optional "
            }
            _ => "",
        };
        let mut options = options_list(&field.options(), &["deprecated", "packed"]);
        if field.field_descriptor_proto().json_name.is_some()
            && field.json_name() != default_json_name(field.name())
        {
            options.insert(0, format!("json_name = \"{}\"", field.json_name()));
        }
        let suffix = if options.is_empty() {
            String::new()
        } else {
            format!(" [{}]", options.join(", "))
        };
        self.line(&format!(
            "{label}{ty} {} = {}{suffix};",
            field.name(),
            field.number()
        ));
    }

    fn kind_name(&self, kind: &Kind) -> String {
        match kind {
            Kind::Double => "double".into(),
            Kind::Float => "float".into(),
            Kind::Int32 => "int32".into(),
            Kind::Int64 => "int64".into(),
            Kind::Uint32 => "uint32".into(),
            Kind::Uint64 => "uint64".into(),
            Kind::Sint32 => "sint32".into(),
            Kind::Sint64 => "sint64".into(),
            Kind::Fixed32 => "fixed32".into(),
            Kind::Fixed64 => "fixed64".into(),
            Kind::Sfixed32 => "sfixed32".into(),
            Kind::Sfixed64 => "sfixed64".into(),
            Kind::Bool => "bool".into(),
            Kind::String => "string".into(),
            Kind::Bytes => "bytes".into(),
            Kind::Message(m) => self.type_name(m.full_name()),
            Kind::Enum(e) => self.type_name(e.full_name()),
        }
    }

    fn enum_(&mut self, enum_: &EnumDescriptor) {
        self.open(&format!("enum {}", enum_.name()));
        for option in options_list(&enum_.options(), &["allow_alias", "deprecated"]) {
            self.line(&format!("option {option};"));
        }
        for value in enum_.values() {
            let options = options_list(&value.options(), &["deprecated"]);
            let suffix = if options.is_empty() {
                String::new()
            } else {
                format!(" [{}]", options.join(", "))
            };
            self.line(&format!("{} = {}{suffix};", value.name(), value.number()));
        }
        for range in enum_.reserved_ranges() {
            let (start, end) = (range.start(), range.end());
            let line = if start == end {
                format!("reserved {start};")
            } else {
                format!("reserved {start} to {end};")
            };
            self.line(&line);
        }
        self.close();
    }

    fn extensions(&mut self, extensions: impl Iterator<Item = ExtensionDescriptor>) {
        // `extend` blocks group by extendee; BTreeMap keeps output stable.
        let mut by_extendee: BTreeMap<String, Vec<ExtensionDescriptor>> = BTreeMap::new();
        for ext in extensions {
            by_extendee
                .entry(ext.containing_message().full_name().to_owned())
                .or_default()
                .push(ext);
        }
        for (extendee, exts) in by_extendee {
            self.blank();
            self.open(&format!("extend {}", self.type_name(&extendee)));
            for ext in exts {
                let label = match ext.cardinality() {
                    Cardinality::Repeated => "repeated ",
                    _ => "",
                };
                let ty = self.kind_name(&ext.kind());
                self.line(&format!("{label}{ty} {} = {};", ext.name(), ext.number()));
            }
            self.close();
        }
    }
}

/// The options worth printing: the named standard ones when set, and every custom
/// (extension) option, which the schema's own tooling relies on (e.g. LiveKit marks
/// secret fields with `(logger.redact)`).
fn options_list(options: &DynamicMessage, standard: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (field, value) in options.fields() {
        if standard.contains(&field.name()) {
            out.push(format!(
                "{} = {}",
                field.name(),
                value_literal(value, &field.kind())
            ));
        }
    }
    for (ext, value) in options.extensions() {
        out.push(format!(
            "({}) = {}",
            ext.full_name(),
            value_literal(value, &ext.kind())
        ));
    }
    out
}

fn value_literal(value: &Value, kind: &Kind) -> String {
    match (value, kind) {
        (Value::EnumNumber(n), Kind::Enum(e)) => e
            .get_value(*n)
            .map(|v| v.name().to_owned())
            .unwrap_or_else(|| n.to_string()),
        (Value::String(s), _) => format!("{s:?}"),
        (Value::Bool(b), _) => b.to_string(),
        (Value::I32(n), _) => n.to_string(),
        (Value::I64(n), _) => n.to_string(),
        (Value::U32(n), _) => n.to_string(),
        (Value::U64(n), _) => n.to_string(),
        (Value::F32(n), _) => n.to_string(),
        (Value::F64(n), _) => n.to_string(),
        (other, _) => {
            let mut s = String::new();
            let _ = write!(s, "{other:?}");
            s
        }
    }
}

/// protoc's default JSON name: lowerCamelCase of the field name.
pub fn default_json_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Compares `proto/` on disk with what the pin renders; returns the paths that differ.
pub fn diff(proto_dir: &Path, rendered: &BTreeMap<String, String>) -> Vec<String> {
    let mut stale: Vec<String> = rendered
        .iter()
        .filter(|(path, text)| {
            std::fs::read_to_string(proto_dir.join(path))
                .ok()
                .as_deref()
                != Some(text.as_str())
        })
        .map(|(path, _)| path.clone())
        .collect();
    stale.extend(
        proto_files(proto_dir)
            .into_iter()
            .filter(|p| !rendered.contains_key(p)),
    );
    stale
}

/// Every `.proto` under `dir`, relative to it, with `/` separators, except the gateway's own
/// (under [`GATEWAY_PROTO_DIR`]).
pub fn proto_files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "proto") {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.retain(|p| !p.starts_with(&format!("{GATEWAY_PROTO_DIR}/")));
    out.sort();
    out
}

/// Writes the rendered files under `proto_dir`, removing `.proto` files the pin no longer has.
pub fn write(proto_dir: &Path, rendered: &BTreeMap<String, String>) -> Result<(), SyncError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SyncError::Io { path, source }
    };
    for stale in proto_files(proto_dir) {
        if !rendered.contains_key(&stale) {
            let path = proto_dir.join(&stale);
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    for (rel, text) in rendered {
        let path = proto_dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_pin;

    #[test]
    fn the_pin_is_an_exact_requirement() {
        let text = "livekit-api>=1.2,<2\nlivekit-protocol==1.1.29  # the pin\n";
        assert_eq!(parse_pin(text).as_deref(), Some("1.1.29"));
        assert_eq!(
            parse_pin("livekit-protocol == 1.1.29"),
            Some("1.1.29".into())
        );
    }

    #[test]
    fn ranges_and_other_packages_are_not_a_pin() {
        assert_eq!(parse_pin("livekit-protocol>=1.1,<2"), None);
        assert_eq!(parse_pin("livekit-protocol==1.1.*"), None);
        assert_eq!(parse_pin("livekit-protocol-extra==1.0"), None);
        assert_eq!(parse_pin("# livekit-protocol==1.1.29"), None);
    }
}
