//! In-memory egress state with lazily computed status transitions.
//!
//! Nothing runs in the background: each egress keeps the instants at which it was created,
//! becomes active, was asked to stop and completes, and its status is computed from the
//! current time whenever it is read.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use egress_proto::livekit::{
    self as lk, EgressInfo, EgressSourceType, EgressStatus, FileInfo, ImagesInfo, SegmentsInfo,
    StreamInfo, egress_info, stream_info,
};
use rand::Rng as _;
use rand::distr::Alphanumeric;

use std::sync::{Mutex, MutexGuard};

use egress_auth::Credentials;

use crate::fault::Faults;
use crate::flavor::Flavor;
use crate::record::RequestLog;
use crate::twirp::TwirpError;

/// State shared by every connection of one simulator.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) credentials: Vec<Credentials>,
    /// `""` or a path like `/lk` (leading slash, no trailing slash).
    pub(crate) prefix: String,
    /// How answers are shaped: see [`Flavor`].
    pub(crate) flavor: Flavor,
    /// ListEgress page size; `None` returns everything and ignores `page_token`.
    pub(crate) page_size: Option<usize>,
    pub(crate) max_body: usize,
    pub(crate) store: Mutex<Store>,
    pub(crate) faults: Faults,
    pub(crate) requests: RequestLog,
}

impl Shared {
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the store half-updated in a way that
        // matters to a simulator, so a poisoned lock is simply taken over.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
}

fn ns(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

/// `prefix` followed by 12 random ASCII letters and digits, like LiveKit's ids.
pub(crate) fn random_id(prefix: &str) -> String {
    let suffix: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(12)
        .map(char::from)
        .collect();
    format!("{prefix}{suffix}")
}

/// How long the lifecycle stages take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timing {
    pub(crate) activate_after: Duration,
    pub(crate) complete_after: Duration,
}

/// What a Start RPC asks for, already turned into an egress description.
#[derive(Debug)]
pub(crate) struct NewEgress {
    pub(crate) room_name: String,
    pub(crate) source_type: EgressSourceType,
    pub(crate) request: egress_info::Request,
}

#[derive(Debug)]
struct Entry {
    /// Everything that does not depend on time: ids, room, request, results as started.
    info: EgressInfo,
    created_ns: i64,
    activate_ns: i64,
    stop_ns: Option<i64>,
    complete_ns: Option<i64>,
    /// Last UpdateLayout / UpdateStream.
    touched_ns: i64,
    /// Forced failure (time, error message).
    failure: Option<(i64, String)>,
}

impl Entry {
    fn status(&self, now: i64) -> EgressStatus {
        if self.failure.is_some() {
            return EgressStatus::EgressFailed;
        }
        match (self.stop_ns, self.complete_ns) {
            (_, Some(complete)) if now >= complete => EgressStatus::EgressComplete,
            (Some(_), _) => EgressStatus::EgressEnding,
            _ if now >= self.activate_ns => EgressStatus::EgressActive,
            _ => EgressStatus::EgressStarting,
        }
    }

    fn is_open(&self, now: i64) -> bool {
        matches!(
            self.status(now),
            EgressStatus::EgressStarting | EgressStatus::EgressActive
        )
    }

    fn snapshot(&self, now: i64) -> EgressInfo {
        let mut info = self.info.clone();
        let status = self.status(now);
        info.status = status as i32;

        // The egress became active only if that happened before it was stopped or failed.
        let cut = [self.stop_ns, self.failure.as_ref().map(|(t, _)| *t)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(i64::MAX);
        let mut updated = self.created_ns.max(self.touched_ns);
        if self.activate_ns <= now && self.activate_ns < cut {
            updated = updated.max(self.activate_ns);
        }
        if let Some(stop) = self.stop_ns {
            updated = updated.max(stop);
        }
        match status {
            EgressStatus::EgressComplete => {
                let ended = self.complete_ns.unwrap_or(now);
                info.ended_at = ended;
                updated = updated.max(ended);
                finish_results(&mut info, ended, stream_info::Status::Finished);
            }
            EgressStatus::EgressFailed => {
                let (ended, error) = self.failure.clone().unwrap_or((now, String::new()));
                info.ended_at = ended;
                info.error = error;
                updated = updated.max(ended);
                finish_results(&mut info, ended, stream_info::Status::Failed);
            }
            _ => {}
        }
        info.updated_at = updated;
        info
    }
}

fn finish_results(info: &mut EgressInfo, ended: i64, stream_status: stream_info::Status) {
    for stream in &mut info.stream_results {
        if stream.status == stream_info::Status::Active as i32 {
            stream.status = stream_status as i32;
            stream.ended_at = ended;
            stream.duration = ended - stream.started_at;
        }
    }
    for file in &mut info.file_results {
        file.ended_at = ended;
        file.duration = ended - file.started_at;
    }
    for segments in &mut info.segment_results {
        segments.ended_at = ended;
        segments.duration = ended - segments.started_at;
    }
    for images in &mut info.image_results {
        images.ended_at = ended;
    }
}

/// ListEgress filters.
#[derive(Debug, Default)]
pub(crate) struct ListFilter<'a> {
    pub(crate) room_name: &'a str,
    pub(crate) egress_id: &'a str,
    pub(crate) active: bool,
}

/// All egresses and the room ids handed out so far.
#[derive(Debug)]
pub(crate) struct Store {
    entries: Vec<Entry>,
    rooms: HashMap<String, String>,
    timing: Timing,
}

impl Store {
    pub(crate) fn new(timing: Timing) -> Self {
        Self {
            entries: Vec::new(),
            rooms: HashMap::new(),
            timing,
        }
    }

    fn find(&self, egress_id: &str) -> Result<usize, TwirpError> {
        self.entries
            .iter()
            .position(|e| e.info.egress_id == egress_id)
            .ok_or_else(TwirpError::not_found)
    }

    fn room_id(&mut self, room_name: &str) -> String {
        if room_name.is_empty() {
            return String::new();
        }
        self.rooms
            .entry(room_name.to_owned())
            .or_insert_with(|| random_id("RM_"))
            .clone()
    }

    /// Creates an egress in `EGRESS_STARTING`.
    pub(crate) fn start(&mut self, new: NewEgress, now: i64) -> EgressInfo {
        let egress_id = random_id("EG_");
        let room_id = self.room_id(&new.room_name);
        let mut info = EgressInfo {
            egress_id,
            room_id,
            room_name: new.room_name,
            source_type: new.source_type as i32,
            status: EgressStatus::EgressStarting as i32,
            started_at: now,
            updated_at: now,
            ..Default::default()
        };
        add_results(&mut info, &new.request, now);
        info.request = Some(new.request);
        let entry = Entry {
            info,
            created_ns: now,
            activate_ns: now.saturating_add(ns(self.timing.activate_after)),
            stop_ns: None,
            complete_ns: None,
            touched_ns: now,
            failure: None,
        };
        let snapshot = entry.snapshot(now);
        self.entries.push(entry);
        snapshot
    }

    /// Current state of one egress.
    pub(crate) fn get(&self, egress_id: &str, now: i64) -> Option<EgressInfo> {
        let index = self.find(egress_id).ok()?;
        Some(self.entries[index].snapshot(now))
    }

    /// StopEgress: `EGRESS_ENDING`, then `EGRESS_COMPLETE` after `complete_after`.
    pub(crate) fn stop(&mut self, egress_id: &str, now: i64) -> Result<EgressInfo, TwirpError> {
        let index = self.find(egress_id)?;
        let complete_after = ns(self.timing.complete_after);
        let entry = &mut self.entries[index];
        if !entry.is_open(now) {
            return Err(precondition(entry.status(now), "stopped"));
        }
        entry.stop_ns = Some(now);
        entry.complete_ns = Some(now.saturating_add(complete_after));
        Ok(entry.snapshot(now))
    }

    /// UpdateLayout: changes the layout of a room composite or template egress.
    pub(crate) fn update_layout(
        &mut self,
        egress_id: &str,
        layout: &str,
        now: i64,
    ) -> Result<EgressInfo, TwirpError> {
        let entry = self.open_for_update(egress_id, now)?;
        match &mut entry.info.request {
            Some(egress_info::Request::RoomComposite(request)) => {
                request.layout = layout.to_owned();
            }
            Some(egress_info::Request::Egress(lk::StartEgressRequest {
                source: Some(lk::start_egress_request::Source::Template(template)),
                ..
            })) => template.layout = layout.to_owned(),
            _ => {}
        }
        entry.touched_ns = now;
        Ok(entry.snapshot(now))
    }

    /// UpdateStream: adds stream URLs (new `ACTIVE` stream results) and finishes removed ones.
    pub(crate) fn update_stream(
        &mut self,
        request: &lk::UpdateStreamRequest,
        now: i64,
    ) -> Result<EgressInfo, TwirpError> {
        let entry = self.open_for_update(&request.egress_id, now)?;
        let active = stream_info::Status::Active as i32;
        // Added URLs carry no id; added destinations carry theirs into the result.
        let added = request.add_output_urls.iter().map(|url| (url, "")).chain(
            request
                .add_destinations
                .iter()
                .map(|d| (&d.url, d.id.as_str())),
        );
        for (url, id) in added {
            let present = entry
                .info
                .stream_results
                .iter()
                .any(|s| &s.url == url && s.status == active);
            if !present {
                entry.info.stream_results.push(StreamInfo {
                    url: url.clone(),
                    id: id.to_owned(),
                    started_at: now,
                    status: active,
                    ..Default::default()
                });
            }
        }
        let remove = &request.remove_output_urls;
        for stream in &mut entry.info.stream_results {
            if stream.status == active && remove.contains(&stream.url) {
                stream.status = stream_info::Status::Finished as i32;
                stream.ended_at = now;
                stream.duration = now - stream.started_at;
            }
        }
        entry.touched_ns = now;
        Ok(entry.snapshot(now))
    }

    fn open_for_update(&mut self, egress_id: &str, now: i64) -> Result<&mut Entry, TwirpError> {
        let index = self.find(egress_id)?;
        let entry = &mut self.entries[index];
        if !entry.is_open(now) {
            return Err(precondition(entry.status(now), "updated"));
        }
        Ok(entry)
    }

    /// ListEgress, oldest first.
    pub(crate) fn list(&self, filter: &ListFilter<'_>, now: i64) -> Vec<EgressInfo> {
        self.entries
            .iter()
            .filter(|e| filter.room_name.is_empty() || e.info.room_name == filter.room_name)
            .filter(|e| filter.egress_id.is_empty() || e.info.egress_id == filter.egress_id)
            .map(|e| e.snapshot(now))
            .filter(|info| {
                !filter.active
                    || matches!(
                        EgressStatus::try_from(info.status),
                        Ok(EgressStatus::EgressStarting
                            | EgressStatus::EgressActive
                            | EgressStatus::EgressEnding)
                    )
            })
            .collect()
    }

    /// Forces an egress into `EGRESS_FAILED` with `error`.
    pub(crate) fn fail(&mut self, egress_id: &str, error: &str, now: i64) -> Option<EgressInfo> {
        let index = self.find(egress_id).ok()?;
        let entry = &mut self.entries[index];
        entry.failure = Some((now, error.to_owned()));
        Some(entry.snapshot(now))
    }

    /// Forgets every egress (room ids too).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.rooms.clear();
    }
}

fn precondition(status: EgressStatus, verb: &str) -> TwirpError {
    TwirpError::new(
        "failed_precondition",
        format!(
            "egress with status {} cannot be {verb}",
            status.as_str_name()
        ),
    )
}

/// Fills the result lists from the outputs a request asks for.
// The deprecated single `output` oneof is still honoured by LiveKit, so it counts here too.
#[allow(deprecated)]
fn add_results(info: &mut EgressInfo, request: &egress_info::Request, now: i64) {
    let egress_id = info.egress_id.clone();
    let mut files = Vec::new();
    let mut streams = Vec::new();
    let mut segments = Vec::new();
    let mut images = Vec::new();

    let file = |filepath: &str| FileInfo {
        filename: if filepath.is_empty() {
            format!("{egress_id}.mp4")
        } else {
            filepath.to_owned()
        },
        started_at: now,
        ..Default::default()
    };
    let stream = |url: &str| StreamInfo {
        url: url.to_owned(),
        started_at: now,
        status: stream_info::Status::Active as i32,
        ..Default::default()
    };
    // A stream output names its targets as plain `urls` and as `destinations` (a URL with
    // a caller-chosen id, which the result carries back); both become stream results.
    let streams_of = |s: &lk::StreamOutput| -> Vec<StreamInfo> {
        let urls = s.urls.iter().map(|u| stream(u));
        let destinations = s.destinations.iter().map(|d| StreamInfo {
            id: d.id.clone(),
            ..stream(&d.url)
        });
        urls.chain(destinations).collect()
    };
    let segment = |s: &lk::SegmentedFileOutput| SegmentsInfo {
        playlist_name: if s.playlist_name.is_empty() {
            format!("{}.m3u8", non_empty(&s.filename_prefix, &egress_id))
        } else {
            s.playlist_name.clone()
        },
        live_playlist_name: s.live_playlist_name.clone(),
        started_at: now,
        ..Default::default()
    };
    let image = |i: &lk::ImageOutput| ImagesInfo {
        filename_prefix: non_empty(&i.filename_prefix, &egress_id).to_owned(),
        started_at: now,
        ..Default::default()
    };

    macro_rules! legacy {
        ($req:expr, $oneof:ident) => {{
            let req = $req;
            files.extend(req.file_outputs.iter().map(|f| file(&f.filepath)));
            streams.extend(req.stream_outputs.iter().flat_map(streams_of));
            segments.extend(req.segment_outputs.iter().map(segment));
            images.extend(req.image_outputs.iter().map(image));
            match &req.output {
                Some(lk::$oneof::Output::File(f)) => files.push(file(&f.filepath)),
                Some(lk::$oneof::Output::Stream(s)) => streams.extend(streams_of(s)),
                Some(lk::$oneof::Output::Segments(s)) => segments.push(segment(s)),
                None => {}
            }
        }};
    }

    match request {
        egress_info::Request::RoomComposite(r) => legacy!(r, room_composite_egress_request),
        egress_info::Request::Web(r) => legacy!(r, web_egress_request),
        egress_info::Request::TrackComposite(r) => legacy!(r, track_composite_egress_request),
        egress_info::Request::Participant(r) => {
            files.extend(r.file_outputs.iter().map(|f| file(&f.filepath)));
            streams.extend(r.stream_outputs.iter().flat_map(streams_of));
            segments.extend(r.segment_outputs.iter().map(segment));
            images.extend(r.image_outputs.iter().map(image));
        }
        egress_info::Request::Track(r) => match &r.output {
            Some(lk::track_egress_request::Output::File(f)) => files.push(file(&f.filepath)),
            Some(lk::track_egress_request::Output::WebsocketUrl(url)) => streams.push(stream(url)),
            None => {}
        },
        egress_info::Request::Egress(r) => {
            for output in &r.outputs {
                match &output.config {
                    Some(lk::output::Config::File(f)) => files.push(file(&f.filepath)),
                    Some(lk::output::Config::Stream(s)) => streams.extend(streams_of(s)),
                    Some(lk::output::Config::Segments(s)) => segments.push(segment(s)),
                    Some(lk::output::Config::Images(i)) => images.push(image(i)),
                    None => {}
                }
            }
        }
        egress_info::Request::Replay(_) => {}
    }

    info.file_results = files;
    info.stream_results = streams;
    info.segment_results = segments;
    info.image_results = images;
}

fn non_empty<'a>(value: &'a str, fallback: &'a str) -> &'a str {
    if value.is_empty() { fallback } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    fn store() -> Store {
        Store::new(Timing {
            activate_after: Duration::from_millis(500),
            complete_after: Duration::from_millis(200),
        })
    }

    fn room_composite(room: &str, urls: &[&str]) -> NewEgress {
        NewEgress {
            room_name: room.into(),
            source_type: EgressSourceType::Web,
            request: egress_info::Request::RoomComposite(lk::RoomCompositeEgressRequest {
                room_name: room.into(),
                layout: "grid".into(),
                stream_outputs: vec![lk::StreamOutput {
                    protocol: lk::StreamProtocol::Rtmp as i32,
                    urls: urls.iter().map(|u| u.to_string()).collect(),
                    ..Default::default()
                }],
                file_outputs: vec![lk::EncodedFileOutput::default()],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn ids_have_livekit_shape() {
        let id = random_id("EG_");
        assert_eq!(id.len(), 15);
        assert!(id.starts_with("EG_"));
        assert!(id[3..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(random_id("EG_"), id);
    }

    #[test]
    fn lifecycle_is_computed_from_timestamps() {
        let mut s = store();
        let t0 = 1_000_000 * MS;
        let info = s.start(room_composite("r", &["rtmp://a"]), t0);
        let id = info.egress_id.clone();
        assert_eq!(info.status, EgressStatus::EgressStarting as i32);
        assert_eq!((info.started_at, info.updated_at), (t0, t0));
        assert!(info.room_id.starts_with("RM_"));
        assert_eq!(info.stream_results.len(), 1);
        assert_eq!(info.file_results[0].filename, format!("{id}.mp4"));
        assert!(matches!(
            info.request,
            Some(egress_info::Request::RoomComposite(_))
        ));

        let active = s.get(&id, t0 + 500 * MS).unwrap();
        assert_eq!(active.status, EgressStatus::EgressActive as i32);
        assert_eq!(active.updated_at, t0 + 500 * MS);

        let ending = s.stop(&id, t0 + 600 * MS).unwrap();
        assert_eq!(ending.status, EgressStatus::EgressEnding as i32);
        let err = s.stop(&id, t0 + 700 * MS).unwrap_err();
        assert_eq!(
            err.msg,
            "egress with status EGRESS_ENDING cannot be stopped"
        );

        let done = s.get(&id, t0 + 800 * MS).unwrap();
        assert_eq!(done.status, EgressStatus::EgressComplete as i32);
        assert_eq!(done.ended_at, t0 + 800 * MS);
        assert_eq!(
            done.stream_results[0].status,
            stream_info::Status::Finished as i32
        );
        let err = s.update_layout(&id, "speaker", t0 + 900 * MS).unwrap_err();
        assert_eq!(err.code, "failed_precondition");
        assert_eq!(
            err.msg,
            "egress with status EGRESS_COMPLETE cannot be updated"
        );
        assert_eq!(s.stop("EG_nope", t0).unwrap_err(), TwirpError::not_found());
    }

    #[test]
    fn same_room_same_room_id_and_list_filters() {
        let mut s = store();
        let t0 = 1_000 * MS;
        let a = s.start(room_composite("r1", &[]), t0);
        let b = s.start(room_composite("r1", &[]), t0);
        let c = s.start(room_composite("r2", &[]), t0);
        assert_eq!(a.room_id, b.room_id);
        assert_ne!(a.room_id, c.room_id);
        s.stop(&b.egress_id, t0).unwrap();

        let all = s.list(&ListFilter::default(), t0 + 1_000 * MS);
        assert_eq!(all.len(), 3);
        let r1 = s.list(
            &ListFilter {
                room_name: "r1",
                ..Default::default()
            },
            t0,
        );
        assert_eq!(r1.len(), 2);
        let active = s.list(
            &ListFilter {
                active: true,
                ..Default::default()
            },
            t0 + 1_000 * MS,
        );
        assert_eq!(
            active.iter().map(|i| &i.egress_id).collect::<Vec<_>>(),
            vec![&a.egress_id, &c.egress_id]
        );
        let one = s.list(
            &ListFilter {
                egress_id: &c.egress_id,
                ..Default::default()
            },
            t0,
        );
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn stream_destinations_become_results_with_their_ids() {
        let mut s = store();
        let t0 = 1_000 * MS;
        let mut new = room_composite("r", &["rtmp://a"]);
        if let egress_info::Request::RoomComposite(r) = &mut new.request {
            r.stream_outputs[0].destinations = vec![lk::StreamDestination {
                id: "main".into(),
                url: "rtmp://d".into(),
            }];
        }
        let id = s.start(new, t0).egress_id;
        let info = s
            .update_stream(
                &lk::UpdateStreamRequest {
                    egress_id: id,
                    add_destinations: vec![lk::StreamDestination {
                        id: "backup".into(),
                        url: "rtmp://e".into(),
                    }],
                    ..Default::default()
                },
                t0 + MS,
            )
            .unwrap();
        let results: Vec<_> = info
            .stream_results
            .iter()
            .map(|s| (s.id.as_str(), s.url.as_str()))
            .collect();
        assert_eq!(
            results,
            [
                ("", "rtmp://a"),
                ("main", "rtmp://d"),
                ("backup", "rtmp://e")
            ]
        );
    }

    #[test]
    fn update_stream_and_layout() {
        let mut s = store();
        let t0 = 1_000 * MS;
        let id = s.start(room_composite("r", &["rtmp://a"]), t0).egress_id;
        let info = s
            .update_stream(
                &lk::UpdateStreamRequest {
                    egress_id: id.clone(),
                    add_output_urls: vec!["rtmp://b".into()],
                    remove_output_urls: vec!["rtmp://a".into()],
                    ..Default::default()
                },
                t0 + MS,
            )
            .unwrap();
        let active: Vec<_> = info
            .stream_results
            .iter()
            .filter(|s| s.status == stream_info::Status::Active as i32)
            .map(|s| s.url.as_str())
            .collect();
        assert_eq!(active, vec!["rtmp://b"]);
        assert_eq!(info.updated_at, t0 + MS);

        let info = s.update_layout(&id, "speaker", t0 + 2 * MS).unwrap();
        match info.request {
            Some(egress_info::Request::RoomComposite(r)) => assert_eq!(r.layout, "speaker"),
            other => panic!("{other:?}"),
        }

        let failed = s.fail(&id, "boom", t0 + 3 * MS).unwrap();
        assert_eq!(failed.status, EgressStatus::EgressFailed as i32);
        assert_eq!(failed.error, "boom");
        assert_eq!(
            s.stop(&id, t0 + 4 * MS).unwrap_err().msg,
            "egress with status EGRESS_FAILED cannot be stopped"
        );
        s.clear();
        assert!(s.get(&id, t0).is_none());
    }
}
