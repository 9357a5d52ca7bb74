//! Fuzzes the policy file parser, and the compiled rules of whatever it accepts.
//!
//! Input: the TOML text (lossy UTF-8).
//!
//! Checked for every input:
//! * `Policy::from_toml_str` never panics, nor does formatting its error;
//! * an error points at a 1-based line and column inside the text;
//! * an accepted policy answers authentication and checks of a few fixed requests without
//!   panicking.
#![no_main]

use egress_core::Rpc;
use egress_core::view::{
    Destination, DestinationKind, RequestView, StorageProvider, StorageTarget,
};
use egress_policy::Policy;
use libfuzzer_sys::fuzz_target;

fn sample_views() -> Vec<RequestView> {
    let mut views = Vec::new();

    let mut start = RequestView::new(Rpc::StartRoomCompositeEgress);
    start.room_name = Some("team-standup".into());
    start.stream_urls = vec!["rtmps://a.live.example.com/app/key".into()];
    start.webhook_urls = vec!["https://hooks.example.com/x".into()];
    start.custom_base_url = Some("https://templates.example.com/t".into());
    start.destinations = vec![
        Destination {
            kind: DestinationKind::File,
            filepath: Some("recordings/a.mp4".into()),
            playlist_name: None,
            live_playlist_name: None,
            storage: Some(StorageTarget {
                provider: StorageProvider::S3,
                account: None,
                bucket: Some("recordings-prod".into()),
                region: Some("us-east-1".into()),
                endpoint: Some("https://minio.internal.example.com".into()),
            }),
        },
        Destination {
            kind: DestinationKind::Segments,
            filepath: Some("../escape/".into()),
            playlist_name: Some("p.m3u8".into()),
            live_playlist_name: None,
            storage: None,
        },
    ];
    start.output_count = 4;
    views.push(start);

    let mut web = RequestView::new(Rpc::StartWebEgress);
    web.web_url = Some("https://www.example.com/page".into());
    web.stream_urls = vec!["wss://ws.example.com/track".into(), "not a url".into()];
    views.push(web);

    let mut list = RequestView::new(Rpc::ListEgress);
    list.room_name = Some("Ünïcødé room *".into());
    views.push(list);

    let mut stop = RequestView::new(Rpc::StopEgress);
    stop.egress_id = Some("EG_123".into());
    views.push(stop);

    views.push(RequestView::new(Rpc::UpdateStream));
    views
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let policy = match Policy::from_toml_str(&text, "fuzz.toml") {
        Ok(policy) => policy,
        Err(err) => {
            let rendered = err.to_string();
            assert!(rendered.starts_with("fuzz.toml:"), "{rendered}");
            let _ = err.message();
            let line = err.line().expect("parse errors have a line");
            let column = err.column().expect("parse errors have a column");
            assert!(line >= 1 && column >= 1, "{rendered}");
            let lines = text.split('\n').count();
            assert!(
                line <= lines,
                "line {line} of a {lines}-line text: {rendered}"
            );
            return;
        }
    };

    let _ = format!("{policy:?}");
    let _ = (
        policy.auth_mode(),
        policy.fingerprint(),
        policy.policy_count(),
    );
    let _ = policy.authenticate_bearer("token");
    let _ = policy.authenticate_bearer("");
    let _ = policy.authenticate_identity(&["ops.prod.svc".to_owned(), String::new()]);
    let _ = policy.anonymous_caller();

    let views = sample_views();
    for caller in policy.callers() {
        assert!(policy.caller(&caller.name).is_some());
        let rules = &caller.policy;
        let _ = (rules.caller_name(), rules.policy_name(), rules.all_rooms());
        for rpc in Rpc::ALL {
            let _ = rules.allows_rpc(rpc);
        }
        for room in ["", "team-a", "standup", "a/b", "Ünïcødé"] {
            let _ = rules.allows_room(room);
            let _ = rules.check_egress_room(room).map_err(|d| d.to_string());
        }
        for view in &views {
            if let Err(denial) = rules.check(view) {
                let _ = (
                    denial.rule(),
                    denial.caller(),
                    denial.policy(),
                    denial.rule_path(),
                );
                let _ = (denial.reason(), denial.to_string());
            }
            let _ = rules.needs_egress_room(view);
        }
    }
});
