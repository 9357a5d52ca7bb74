//! Renders our `proto/` tree from the pinned `livekit-protocol` crate's schema.
//!
//! We never copy upstream `.proto` text: it carries upstream comments and layout we do not
//! want to maintain. Instead the pinned files are compiled with `protox` into descriptors and
//! printed back by [`render_file`], which emits facts only — packages, imports, messages,
//! fields (names, numbers, types, labels), oneofs, maps, enums, services, extensions,
//! reserved ranges and the options that matter on the wire or to codegen.
//!
//! The pin itself lives in this crate's `Cargo.toml` (a dev-dependency on an exact
//! `livekit-protocol` version), so it is recorded in `Cargo.lock` and `cargo metadata` can
//! locate its sources on any machine.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use prost_reflect::{
    Cardinality, DescriptorPool, DynamicMessage, EnumDescriptor, ExtensionDescriptor,
    FieldDescriptor, FileDescriptor, Kind, MessageDescriptor, ServiceDescriptor, Syntax, Value,
};

/// The crate whose bundled `.proto` files are the schema we pin.
pub const PIN_CRATE: &str = "livekit-protocol";
/// The schema file whose import closure we render.
pub const ROOT_FILE: &str = "livekit_egress.proto";

/// Everything that can go wrong while syncing.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("running `cargo metadata` failed: {0}")]
    Metadata(String),
    #[error(
        "`{PIN_CRATE}` is not in the workspace's dependency graph; is it still pinned in build-tools/proto-sync/Cargo.toml?"
    )]
    PinNotFound,
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

/// Where the pinned schema lives and which versions it is.
#[derive(Debug, Clone)]
pub struct Pin {
    /// Version of the `livekit-protocol` crate.
    pub crate_version: String,
    /// LiveKit protocol release the crate bundles (from its `package.json`), if readable.
    pub protocol_version: Option<String>,
    /// The crate's `protocol/protobufs` directory.
    pub protobufs: PathBuf,
}

/// The workspace root this tool was built in.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Locates the pinned crate's sources through `cargo metadata` (which also downloads them).
pub fn locate_pin(workspace: &Path) -> Result<Pin, SyncError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(workspace.join("Cargo.toml"))
        .output()
        .map_err(|e| SyncError::Metadata(e.to_string()))?;
    if !out.status.success() {
        return Err(SyncError::Metadata(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| SyncError::Metadata(e.to_string()))?;
    let package = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == PIN_CRATE)
        .ok_or(SyncError::PinNotFound)?;
    let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
    let root = manifest.parent().ok_or(SyncError::PinNotFound)?;
    let protocol_version = std::fs::read_to_string(root.join("protocol/package.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned));
    Ok(Pin {
        crate_version: package["version"].as_str().unwrap_or_default().to_owned(),
        protocol_version,
        protobufs: root.join("protocol/protobufs"),
    })
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
pub fn render_pin(pin: &Pin) -> Result<BTreeMap<String, String>, SyncError> {
    let pool = compile(&pin.protobufs, ROOT_FILE)?;
    let header = header(pin);
    Ok(owned_files(&pool)
        .map(|f| (f.name().to_owned(), render_file(&f, &header)))
        .collect())
}

fn header(pin: &Pin) -> String {
    let protocol = pin
        .protocol_version
        .as_deref()
        .map(|v| format!(" (LiveKit protocol {v})"))
        .unwrap_or_default();
    format!(
        "// Rendered by build-tools/proto-sync from {PIN_CRATE} {}{protocol}. Do not edit.\n\
         // Regenerate with `cargo run -p proto-sync`; CI runs `cargo run -p proto-sync -- --check`.\n\
         // Schema facts only; LiveKit's documentation lives in its protocol repository.\n",
        pin.crate_version
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
fn default_json_name(name: &str) -> String {
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

/// Every `.proto` under `dir`, relative to it, with `/` separators.
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
