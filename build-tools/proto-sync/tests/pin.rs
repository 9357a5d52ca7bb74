//! Our `proto/` must describe exactly the wire schema of the pinned crate: these tests
//! compile both with protox and compare the descriptors, file by file and field by field.

use prost_types::{DescriptorProto, FileDescriptorProto};

fn descriptors() -> (Vec<FileDescriptorProto>, Vec<FileDescriptorProto>) {
    let workspace = proto_sync::workspace_root();
    let pin = proto_sync::locate_pin(&workspace).expect("locate pinned crate");
    let upstream = proto_sync::compile(&pin.protobufs, proto_sync::ROOT_FILE).expect("upstream");
    let ours = proto_sync::compile(&workspace.join("proto"), proto_sync::ROOT_FILE).expect("ours");
    let owned = |pool: &prost_reflect::DescriptorPool| {
        proto_sync::owned_files(pool)
            .map(|f| normalize(f.file_descriptor_proto().clone()))
            .collect::<Vec<_>>()
    };
    (owned(&upstream), owned(&ours))
}

/// Drops what is not schema: source locations, and file-level options (language package
/// names for other code generators), which our rendering leaves out on purpose.
fn normalize(mut file: FileDescriptorProto) -> FileDescriptorProto {
    file.source_code_info = None;
    file.options = None;
    file
}

#[test]
fn same_files_in_the_closure() {
    let (upstream, ours) = descriptors();
    let names = |files: &[FileDescriptorProto]| {
        let mut v: Vec<_> = files.iter().map(|f| f.name().to_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(names(&upstream), names(&ours));
    assert_eq!(
        names(&ours),
        [
            "livekit_egress.proto",
            "livekit_metrics.proto",
            "livekit_models.proto",
            "logger/options.proto"
        ]
    );
}

#[test]
fn descriptors_match_field_by_field() {
    let (upstream, ours) = descriptors();
    for theirs in &upstream {
        let mine = ours
            .iter()
            .find(|f| f.name == theirs.name)
            .unwrap_or_else(|| panic!("{} missing from proto/", theirs.name()));
        let file = theirs.name();
        assert_eq!(mine.package, theirs.package, "{file}: package");
        assert_eq!(mine.dependency, theirs.dependency, "{file}: imports");
        assert_eq!(mine.syntax, theirs.syntax, "{file}: syntax");
        assert_eq!(mine.enum_type, theirs.enum_type, "{file}: enums");
        assert_eq!(mine.service, theirs.service, "{file}: services");
        assert_eq!(mine.extension, theirs.extension, "{file}: extensions");
        assert_eq!(
            mine.message_type.len(),
            theirs.message_type.len(),
            "{file}: message count"
        );
        for (a, b) in mine.message_type.iter().zip(&theirs.message_type) {
            compare_message(file, a, b);
        }
        // Belt and braces: after the itemised checks, the whole descriptors agree.
        assert_eq!(mine, theirs, "{file}: descriptor");
    }
}

fn compare_message(scope: &str, mine: &DescriptorProto, theirs: &DescriptorProto) {
    let scope = format!("{scope}: {}", theirs.name());
    assert_eq!(mine.name, theirs.name, "{scope}: name");
    for (a, b) in mine.field.iter().zip(&theirs.field) {
        assert_eq!(a, b, "{scope}.{}: field", b.name());
    }
    assert_eq!(mine.field.len(), theirs.field.len(), "{scope}: field count");
    assert_eq!(mine.oneof_decl, theirs.oneof_decl, "{scope}: oneofs");
    assert_eq!(mine.enum_type, theirs.enum_type, "{scope}: nested enums");
    assert_eq!(
        mine.reserved_range, theirs.reserved_range,
        "{scope}: reserved"
    );
    assert_eq!(mine.options, theirs.options, "{scope}: options");
    assert_eq!(
        mine.nested_type.len(),
        theirs.nested_type.len(),
        "{scope}: nested count"
    );
    for (a, b) in mine.nested_type.iter().zip(&theirs.nested_type) {
        compare_message(&scope, a, b);
    }
}

#[test]
fn egress_service_has_all_ten_rpcs() {
    let (_, ours) = descriptors();
    let egress = ours
        .iter()
        .find(|f| f.name() == "livekit_egress.proto")
        .unwrap();
    let service = egress
        .service
        .iter()
        .find(|s| s.name() == "Egress")
        .unwrap();
    let methods: Vec<_> = service.method.iter().map(|m| m.name()).collect();
    assert_eq!(
        methods,
        [
            "StartEgress",
            "UpdateLayout",
            "UpdateStream",
            "ListEgress",
            "StopEgress",
            "StartRoomCompositeEgress",
            "StartWebEgress",
            "StartParticipantEgress",
            "StartTrackCompositeEgress",
            "StartTrackEgress"
        ]
    );
}

#[test]
fn checked_in_proto_is_fresh() {
    let workspace = proto_sync::workspace_root();
    let pin = proto_sync::locate_pin(&workspace).unwrap();
    let rendered = proto_sync::render_pin(&pin).unwrap();
    let stale = proto_sync::diff(&workspace.join("proto"), &rendered);
    assert!(
        stale.is_empty(),
        "proto/ is stale: {stale:?}; run `cargo run -p proto-sync`"
    );
}
