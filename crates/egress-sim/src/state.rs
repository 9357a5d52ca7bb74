//! In-memory egress state with lazily computed status transitions.
//!
//! Each egress keeps the instants at which it was created, becomes active, was asked to stop
//! and completes, and its status is computed from the current time whenever it is read. With
//! webhooks configured, the store also remembers what it last reported for each egress and
//! queues an event whenever that changes (see [`Store::observe`]); the webhook dispatcher
//! wakes at [`Store::next_due`] so that transitions computed from timestamps are reported
//! when they happen.

use std::collections::HashMap;
use std::time::Duration;

use egress_proto::livekit::{
    self as lk, EgressInfo, EgressSourceType, EgressStatus, FileInfo, ImagesInfo, SegmentsInfo,
    StreamInfo, egress_info, stream_info,
};

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};

use egress_auth::Credentials;
use egress_core::events::EventKind;

use crate::fault::Faults;
use crate::flavor::Flavor;
pub(crate) use crate::ids::{now_ns, random_id};
use crate::record::RequestLog;
use crate::twirp::TwirpError;
use crate::webhook::{StoreEvent, Webhooks};

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
    /// How long LiveKit's internal RPCs take to give up when no egress worker answers.
    pub(crate) waits: Waits,
    /// Where egress events go as webhooks.
    pub(crate) webhooks: Arc<Webhooks>,
    /// LiveKit Cloud's region list for `/settings/regions`; empty: no such route.
    pub(crate) regions: Vec<String>,
}

impl Shared {
    /// The store, locked. When the guard is dropped, the events the store queued meanwhile
    /// (status changes, including those computed from timestamps) go to the webhook sender,
    /// after the lock is released.
    pub(crate) fn store(&self) -> StoreGuard<'_> {
        // A panic while holding the lock cannot leave the store half-updated in a way that
        // matters to a simulator, so a poisoned lock is simply taken over.
        StoreGuard {
            guard: Some(self.store.lock().unwrap_or_else(|p| p.into_inner())),
            shared: self,
            changed: false,
        }
    }
}

impl Shared {
    /// Forgets egresses, rooms, faults, the request log, the webhook log and webhooks not
    /// sent yet; reconnects the workers as configured.
    pub(crate) fn reset(&self) {
        self.store().clear();
        self.faults.clear();
        self.requests.clear();
        self.webhooks.reset();
    }
}

/// The locked store; see [`Shared::store`].
pub(crate) struct StoreGuard<'a> {
    guard: Option<MutexGuard<'a, Store>>,
    shared: &'a Shared,
    /// Borrowed mutably: the webhook sender recomputes when the next transition is due.
    changed: bool,
}

impl Deref for StoreGuard<'_> {
    type Target = Store;

    fn deref(&self) -> &Store {
        self.guard.as_ref().expect("held until dropped")
    }
}

impl DerefMut for StoreGuard<'_> {
    fn deref_mut(&mut self) -> &mut Store {
        self.changed = true;
        self.guard.as_mut().expect("held until dropped")
    }
}

impl Drop for StoreGuard<'_> {
    fn drop(&mut self) {
        let Some(mut store) = self.guard.take() else {
            return;
        };
        store.observe(now_ns());
        let events = std::mem::take(&mut store.outbox);
        drop(store);
        if !events.is_empty() {
            self.shared.webhooks.queue(events, &self.shared.faults);
        }
        if self.changed {
            self.shared.webhooks.wake();
        }
    }
}

fn ns(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

/// How long the lifecycle stages take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timing {
    /// STARTING → ACTIVE (the worker's pipeline starting).
    pub(crate) activate_after: Duration,
    /// ENDING → COMPLETE.
    pub(crate) complete_after: Duration,
}

/// How long LiveKit's internal RPC layer (psrpc) waits for an egress worker that never
/// answers, before the Twirp handler gets an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Waits {
    /// A Start RPC with no egress worker: the egress client's nested retries (protocol
    /// `rpc/egress_client.go` `NewEgressClient`: three claims of a second each with backoff,
    /// inside the generic three-attempt retry) add up to about 20 s before
    /// `no response from servers`.
    pub(crate) no_worker: Duration,
    /// StopEgress / UpdateStream on an egress no worker serves (unknown, ended, or its
    /// worker gone): three one-second claim attempts (psrpc `DefaultAffinityTimeout`,
    /// protocol `DefaultPSRPCConfig.MaxAttempts`) before the handler falls back to the
    /// store (livekit `pkg/service/egress.go` `StopEgress` / `UpdateStream`).
    pub(crate) gone_worker: Duration,
}

/// Whether Start RPCs need a live room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rooms {
    /// A room springs into existence the first time an egress names it (handy for tests
    /// that do not care about rooms).
    #[default]
    Auto,
    /// Like LiveKit: room-bound egresses need a live room (`POST /sim/rooms`,
    /// [`Simulator::create_room`](crate::Simulator::create_room)); otherwise `not_found`
    /// `requested room does not exist` (livekit `egressLauncher.StartEgress` →
    /// `LoadRoom` → `ErrRoomNotFound`).
    Strict,
}

/// The end reasons LiveKit's egress records in `EgressInfo.details` (protocol
/// `livekit/livekit_egress.go`), and its abort message.
pub(crate) mod reason {
    pub(crate) const API: &str = "StopEgress API";
    pub(crate) const SOURCE_CLOSED: &str = "Source closed";
    pub(crate) const STREAMS_STOPPED: &str = "All streams stopped";
    pub(crate) const STOPPED_BEFORE_STARTED: &str = "Stop called before pipeline could start";
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
    /// Ended before it became active (time, message): `EGRESS_ABORTED`.
    aborted: Option<(i64, String)>,
    /// Why it ended, as the worker records it (first reason wins: the worker's `SendEOS`
    /// runs once).
    end_reason: Option<String>,
    /// Whether a room's egress (room composite, participant, track, track composite):
    /// those end when their room does.
    room_bound: bool,
    /// Whether it has stream outputs (the worker's stream config): UpdateStream needs one.
    streaming: bool,
    /// Outputs other than streams (files, segments, images): they keep the egress alive
    /// when its last stream is removed.
    other_outputs: usize,
    /// When its worker went away without telling the store: from then on nothing changes
    /// its stored state, and no worker answers for it.
    gone_ns: Option<i64>,
    /// Bumped by every change of the stream results (UpdateStream).
    stream_rev: u32,
    /// The status and stream revision last reported as a webhook; `None` when webhooks are
    /// off.
    notified: Option<(EgressStatus, u32)>,
}

fn has_ended(status: EgressStatus) -> bool {
    matches!(
        status,
        EgressStatus::EgressComplete
            | EgressStatus::EgressFailed
            | EgressStatus::EgressAborted
            | EgressStatus::EgressLimitReached
    )
}

impl Entry {
    fn status(&self, now: i64) -> EgressStatus {
        // Nobody updates the store once the worker is gone: its state freezes.
        let now = self.gone_ns.map_or(now, |gone| now.min(gone));
        if self.failure.is_some() {
            return EgressStatus::EgressFailed;
        }
        if self.aborted.is_some() {
            return EgressStatus::EgressAborted;
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

    /// Whether a worker still runs this egress and answers for it: it has not ended and
    /// its worker was not made to go away.
    fn has_worker(&self, now: i64) -> bool {
        self.gone_ns.is_none()
            && matches!(
                self.status(now),
                EgressStatus::EgressStarting
                    | EgressStatus::EgressActive
                    | EgressStatus::EgressEnding
            )
    }

    /// The worker's end of an egress (egress `pipeline/controller.go` `SendEOS`, which
    /// runs once): a STARTING egress is aborted (`Stop called before pipeline could
    /// start`), an ACTIVE one goes ENDING then COMPLETE, an ENDING one stays as it is.
    fn send_eos(&mut self, reason: &str, now: i64, complete_after: i64) {
        if self.end_reason.is_some() {
            return;
        }
        self.end_reason = Some(reason.to_owned());
        match self.status(now) {
            EgressStatus::EgressStarting => {
                self.aborted = Some((now, reason::STOPPED_BEFORE_STARTED.to_owned()));
            }
            EgressStatus::EgressActive => {
                self.stop_ns = Some(now);
                self.complete_ns = Some(now.saturating_add(complete_after));
            }
            _ => {}
        }
    }

    /// The events LiveKit would have sent since the last report, oldest first (livekit
    /// `IOInfoService.UpdateEgress`: ACTIVE and ENDING are `egress_updated`, the end states
    /// `egress_ended`, a STARTING update sends nothing). A stage that lazy evaluation
    /// skipped (an egress that starts or stops with no delay) is reported on the way, as the
    /// worker reports every stage.
    fn observe(&mut self, now: i64) -> Vec<StoreEvent> {
        let Some((last, rev)) = self.notified.filter(|(last, _)| !has_ended(*last)) else {
            return Vec::new();
        };
        let status = self.status(now);
        if status == EgressStatus::EgressStarting {
            return Vec::new();
        }
        if status == last && rev == self.stream_rev {
            return Vec::new();
        }
        let mut events = Vec::new();
        let snapshot = self.snapshot(now);
        let stage = |status: EgressStatus, at: i64| {
            let mut info = snapshot.clone();
            info.status = status as i32;
            info.updated_at = at;
            info.ended_at = 0;
            info.error.clear();
            info.error_code = 0;
            if status == EgressStatus::EgressActive {
                info.details.clear();
            }
            StoreEvent {
                kind: EventKind::Updated,
                info,
            }
        };
        let cut = [self.stop_ns, self.failure.as_ref().map(|(t, _)| *t)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(i64::MAX);
        if last == EgressStatus::EgressStarting
            && status != EgressStatus::EgressActive
            && self.aborted.is_none()
            && self.activate_ns <= cut.min(now)
        {
            events.push(stage(EgressStatus::EgressActive, self.activate_ns));
        }
        if let Some(stop) = self.stop_ns
            && last != EgressStatus::EgressEnding
            && status == EgressStatus::EgressComplete
        {
            events.push(stage(EgressStatus::EgressEnding, stop));
        }
        let kind = if has_ended(status) {
            EventKind::Ended
        } else {
            EventKind::Updated
        };
        events.push(StoreEvent {
            kind,
            info: snapshot,
        });
        self.notified = Some((status, self.stream_rev));
        events
    }

    /// When a transition computed from timestamps is next due for a report.
    fn next_due(&self) -> Option<i64> {
        let (last, _) = self.notified?;
        if has_ended(last) || self.gone_ns.is_some() {
            return None;
        }
        if let Some(complete) = self.complete_ns {
            return Some(complete);
        }
        let open = self.stop_ns.is_none() && self.failure.is_none() && self.aborted.is_none();
        (last == EgressStatus::EgressStarting && open).then_some(self.activate_ns)
    }

    fn snapshot(&self, now: i64) -> EgressInfo {
        let now = self.gone_ns.map_or(now, |gone| now.min(gone));
        let mut info = self.info.clone();
        let status = self.status(now);
        info.status = status as i32;

        // The egress became active only if that happened before it was stopped or failed.
        let cut = [
            self.stop_ns,
            self.failure.as_ref().map(|(t, _)| *t),
            self.aborted.as_ref().map(|(t, _)| *t),
        ]
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
        if let Some(reason) = &self.end_reason {
            info.details = format!("End reason: {reason}");
        }
        // A failed or aborted egress ended when it was made to, with its message.
        let made_to =
            |ending: &Option<(i64, String)>| ending.clone().unwrap_or((now, String::new()));
        let ended = match status {
            EgressStatus::EgressComplete => Some((
                self.complete_ns.unwrap_or(now),
                stream_info::Status::Finished,
            )),
            EgressStatus::EgressFailed => {
                let (ended, error) = made_to(&self.failure);
                info.error = error;
                Some((ended, stream_info::Status::Failed))
            }
            EgressStatus::EgressAborted => {
                // protocol `EgressInfo.SetAborted`: the message, and 412 as its error code.
                let (ended, error) = made_to(&self.aborted);
                info.error = error;
                info.error_code = 412;
                Some((ended, stream_info::Status::Finished))
            }
            _ => None,
        };
        if let Some((ended, stream_status)) = ended {
            info.ended_at = ended;
            updated = updated.max(ended);
            finish_results(&mut info, ended, stream_status);
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

/// What a worker-bound RPC (StopEgress, UpdateStream) found.
#[derive(Debug)]
pub(crate) enum WorkerAnswer<T> {
    /// A worker runs the egress and answered.
    Answered(T),
    /// No worker answers for this egress id (unknown, ended, or its worker gone): the
    /// caller waits for the internal RPC to give up, then falls back to the store.
    NoWorker,
}

/// All egresses, the live rooms and whether egress workers are connected.
#[derive(Debug)]
pub(crate) struct Store {
    entries: Vec<Entry>,
    /// Live rooms: name → room id.
    rooms: HashMap<String, String>,
    timing: Timing,
    room_mode: Rooms,
    workers: bool,
    workers_default: bool,
    /// Whether status changes are reported (webhook URLs are configured).
    report: bool,
    /// Reports not yet handed to the webhook sender.
    outbox: Vec<StoreEvent>,
}

impl Store {
    pub(crate) fn new(timing: Timing, room_mode: Rooms, workers: bool) -> Self {
        Self {
            entries: Vec::new(),
            rooms: HashMap::new(),
            timing,
            room_mode,
            workers,
            workers_default: workers,
            report: false,
            outbox: Vec::new(),
        }
    }

    /// Reports status changes from now on (for webhooks).
    pub(crate) fn with_reports(mut self) -> Self {
        self.report = true;
        self
    }

    /// Queues the events of every egress whose reported state is behind its state at `now`.
    pub(crate) fn observe(&mut self, now: i64) {
        if !self.report {
            return;
        }
        for entry in &mut self.entries {
            let events = entry.observe(now);
            self.outbox.extend(events);
        }
    }

    /// The next instant (ns since the epoch) at which an egress changes without a request
    /// (STARTING → ACTIVE, ENDING → COMPLETE) and still needs reporting.
    pub(crate) fn next_due(&self) -> Option<i64> {
        self.entries.iter().filter_map(Entry::next_due).min()
    }

    fn find(&self, egress_id: &str) -> Result<usize, TwirpError> {
        self.entries
            .iter()
            .position(|e| e.info.egress_id == egress_id)
            .ok_or_else(TwirpError::not_found)
    }

    /// The room id a Start RPC records, as livekit `egressLauncher.StartEgress` looks the
    /// room up (`LoadRoom`) whenever the request names one: in [`Rooms::Strict`] a room
    /// that is not live is `not_found` `requested room does not exist`; in [`Rooms::Auto`]
    /// it is created. No room name (web egress) needs no room.
    pub(crate) fn room_for_start(&mut self, room_name: &str) -> Result<String, TwirpError> {
        if room_name.is_empty() {
            return Ok(String::new());
        }
        if let Some(sid) = self.rooms.get(room_name) {
            return Ok(sid.clone());
        }
        match self.room_mode {
            Rooms::Auto => Ok(self.create_room(room_name)),
            Rooms::Strict => Err(TwirpError::room_not_found()),
        }
    }

    /// Makes a room live (idempotent); returns its id.
    pub(crate) fn create_room(&mut self, room_name: &str) -> String {
        self.rooms
            .entry(room_name.to_owned())
            .or_insert_with(|| random_id("RM_"))
            .clone()
    }

    /// Live rooms: (name, id), sorted by name.
    pub(crate) fn rooms(&self) -> Vec<(String, String)> {
        let mut rooms: Vec<_> = self
            .rooms
            .iter()
            .map(|(name, sid)| (name.clone(), sid.clone()))
            .collect();
        rooms.sort();
        rooms
    }

    /// Ends a room: each of its egresses that a worker still runs ends as the worker's
    /// source closes (egress `controller.go`: `EndRecording` → `SendEOS(Source closed)`).
    /// Returns the ids of the egresses it ended, or `None` if the room is not live.
    pub(crate) fn end_room(&mut self, room_name: &str, now: i64) -> Option<Vec<String>> {
        self.rooms.remove(room_name)?;
        let complete_after = ns(self.timing.complete_after);
        let mut ended = Vec::new();
        for entry in &mut self.entries {
            if entry.room_bound && entry.info.room_name == room_name && entry.has_worker(now) {
                entry.send_eos(reason::SOURCE_CLOSED, now, complete_after);
                ended.push(entry.info.egress_id.clone());
            }
        }
        Some(ended)
    }

    /// Whether egress workers are connected (Start RPCs find one).
    pub(crate) fn workers(&self) -> bool {
        self.workers
    }

    pub(crate) fn set_workers(&mut self, available: bool) {
        self.workers = available;
    }

    /// Creates an egress in `EGRESS_STARTING` in the room `room_id` (from
    /// [`room_for_start`](Self::room_for_start)).
    pub(crate) fn start(&mut self, new: NewEgress, room_id: String, now: i64) -> EgressInfo {
        let egress_id = random_id("EG_");
        let room_bound =
            !new.room_name.is_empty() && !matches!(new.request, egress_info::Request::Web(_));
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
        let streaming = !info.stream_results.is_empty();
        let other_outputs =
            info.file_results.len() + info.segment_results.len() + info.image_results.len();
        let mut entry = Entry {
            info,
            created_ns: now,
            activate_ns: now.saturating_add(ns(self.timing.activate_after)),
            stop_ns: None,
            complete_ns: None,
            touched_ns: now,
            failure: None,
            aborted: None,
            end_reason: None,
            room_bound,
            streaming,
            other_outputs,
            gone_ns: None,
            stream_rev: 0,
            notified: None,
        };
        let snapshot = entry.snapshot(now);
        if self.report {
            // The worker's CreateEgress: `egress_started`, with the egress as it was created.
            entry.notified = Some((EgressStatus::EgressStarting, 0));
            self.outbox.push(StoreEvent {
                kind: EventKind::Started,
                info: entry.info.clone(),
            });
        }
        self.entries.push(entry);
        snapshot
    }

    /// Current state of one egress.
    pub(crate) fn get(&self, egress_id: &str, now: i64) -> Option<EgressInfo> {
        let index = self.find(egress_id).ok()?;
        Some(self.entries[index].snapshot(now))
    }

    fn worker_entry(&mut self, egress_id: &str, now: i64) -> Option<&mut Entry> {
        let index = self.find(egress_id).ok()?;
        let entry = &mut self.entries[index];
        entry.has_worker(now).then_some(entry)
    }

    /// StopEgress as the egress's worker handles it (egress `handler_rpc.go` `StopEgress`
    /// → `SendEOS(StopEgress API)`): STARTING → `EGRESS_ABORTED`, ACTIVE → `EGRESS_ENDING`
    /// (then `EGRESS_COMPLETE` after `complete_after`), ENDING answered as it is.
    pub(crate) fn stop(&mut self, egress_id: &str, now: i64) -> WorkerAnswer<EgressInfo> {
        let complete_after = ns(self.timing.complete_after);
        match self.worker_entry(egress_id, now) {
            Some(entry) => {
                entry.send_eos(reason::API, now, complete_after);
                WorkerAnswer::Answered(entry.snapshot(now))
            }
            None => WorkerAnswer::NoWorker,
        }
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

    /// UpdateStream as the egress's worker handles it (egress `pipeline/controller.go`
    /// `UpdateStream`): an egress without stream outputs is `invalid_argument`
    /// `UpdateStream called on non-streaming egress`; added URLs become `ACTIVE` stream
    /// results; each removed URL that is not streaming is `not_found` `stream <url> not
    /// found` (the others are still applied, and several errors are joined by newlines
    /// under the first one's code, as its `ErrArray` does); removing the last output ends
    /// the egress (`SendEOS(All streams stopped)`).
    pub(crate) fn update_stream(
        &mut self,
        request: &lk::UpdateStreamRequest,
        now: i64,
    ) -> WorkerAnswer<Result<EgressInfo, TwirpError>> {
        let complete_after = ns(self.timing.complete_after);
        let Some(entry) = self.worker_entry(&request.egress_id, now) else {
            return WorkerAnswer::NoWorker;
        };
        if !entry.streaming {
            return WorkerAnswer::Answered(Err(TwirpError::relayed(
                "invalid_argument",
                "UpdateStream called on non-streaming egress",
            )));
        }
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
                entry.stream_rev += 1;
                entry.info.stream_results.push(StreamInfo {
                    url: url.clone(),
                    id: id.to_owned(),
                    started_at: now,
                    status: active,
                    ..Default::default()
                });
            }
        }
        let mut errors = Vec::new();
        for url in &request.remove_output_urls {
            let stream = entry
                .info
                .stream_results
                .iter_mut()
                .find(|s| &s.url == url && s.status == active);
            match stream {
                Some(stream) => {
                    entry.stream_rev += 1;
                    stream.status = stream_info::Status::Finished as i32;
                    stream.ended_at = now;
                    stream.duration = now - stream.started_at;
                }
                None => errors.push(format!("stream {url} not found")),
            }
        }
        let streams_left = entry
            .info
            .stream_results
            .iter()
            .filter(|s| s.status == active)
            .count();
        if streams_left + entry.other_outputs == 0 {
            entry.send_eos(reason::STREAMS_STOPPED, now, complete_after);
        }
        entry.touched_ns = now;
        if errors.is_empty() {
            WorkerAnswer::Answered(Ok(entry.snapshot(now)))
        } else {
            WorkerAnswer::Answered(Err(TwirpError::relayed("not_found", errors.join("\n"))))
        }
    }

    fn open_for_update(&mut self, egress_id: &str, now: i64) -> Result<&mut Entry, TwirpError> {
        let index = self.find(egress_id)?;
        let entry = &mut self.entries[index];
        if !entry.is_open(now) {
            return Err(precondition(entry.status(now), "updated"));
        }
        Ok(entry)
    }

    /// ListEgress, oldest first (livekit `IOInfoService.ListEgress` over the store's
    /// `ListEgress`): by room name, and `active` keeps STARTING, ACTIVE and ENDING.
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

    /// Makes an egress's worker go away without telling the store (a crashed or
    /// partitioned worker): its stored state freezes, and StopEgress / UpdateStream wait
    /// for the internal RPC to give up before answering from the store.
    pub(crate) fn drop_worker(&mut self, egress_id: &str, now: i64) -> Option<EgressInfo> {
        let index = self.find(egress_id).ok()?;
        let entry = &mut self.entries[index];
        entry.gone_ns.get_or_insert(now);
        Some(entry.snapshot(now))
    }

    /// Forgets every egress and room, and reconnects the workers as configured.
    pub(crate) fn clear(&mut self) {
        self.outbox.clear();
        self.entries.clear();
        self.rooms.clear();
        self.workers = self.workers_default;
    }
}

/// livekit `egress.go`'s own answer for an egress that cannot be stopped or updated.
pub(crate) fn precondition(status: EgressStatus, verb: &str) -> TwirpError {
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

    fn store_with(rooms: Rooms) -> Store {
        Store::new(
            Timing {
                activate_after: Duration::from_millis(500),
                complete_after: Duration::from_millis(200),
            },
            rooms,
            true,
        )
    }

    fn store() -> Store {
        store_with(Rooms::Auto)
    }

    /// A Start RPC as the service runs it: room first, then the egress.
    fn start(s: &mut Store, new: NewEgress, now: i64) -> EgressInfo {
        let room_id = s.room_for_start(&new.room_name).unwrap();
        s.start(new, room_id, now)
    }

    fn answered<T>(answer: WorkerAnswer<T>) -> T {
        match answer {
            WorkerAnswer::Answered(value) => value,
            WorkerAnswer::NoWorker => panic!("no worker answered"),
        }
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

    /// Stream outputs only (no file): removing the last URL ends it.
    fn stream_only(room: &str, urls: &[&str]) -> NewEgress {
        let mut new = room_composite(room, urls);
        if let egress_info::Request::RoomComposite(r) = &mut new.request {
            r.file_outputs.clear();
        }
        new
    }

    fn status(info: &EgressInfo) -> EgressStatus {
        EgressStatus::try_from(info.status).unwrap()
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
        let info = start(&mut s, room_composite("r", &["rtmp://a"]), t0);
        let id = info.egress_id.clone();
        assert_eq!(status(&info), EgressStatus::EgressStarting);
        assert_eq!((info.started_at, info.updated_at), (t0, t0));
        assert!(info.room_id.starts_with("RM_"));
        assert_eq!(info.stream_results.len(), 1);
        assert_eq!(info.file_results[0].filename, format!("{id}.mp4"));
        assert!(matches!(
            info.request,
            Some(egress_info::Request::RoomComposite(_))
        ));

        let active = s.get(&id, t0 + 500 * MS).unwrap();
        assert_eq!(status(&active), EgressStatus::EgressActive);
        assert_eq!(active.updated_at, t0 + 500 * MS);

        let ending = answered(s.stop(&id, t0 + 600 * MS));
        assert_eq!(status(&ending), EgressStatus::EgressEnding);
        assert_eq!(ending.details, "End reason: StopEgress API");
        // The worker answers a second stop with the egress as it is (SendEOS runs once).
        let again = answered(s.stop(&id, t0 + 700 * MS));
        assert_eq!(status(&again), EgressStatus::EgressEnding);

        let done = s.get(&id, t0 + 800 * MS).unwrap();
        assert_eq!(status(&done), EgressStatus::EgressComplete);
        assert_eq!(done.ended_at, t0 + 800 * MS);
        assert_eq!(
            done.stream_results[0].status,
            stream_info::Status::Finished as i32
        );
        // Ended: its worker has exited, nobody answers.
        assert!(matches!(s.stop(&id, t0 + 900 * MS), WorkerAnswer::NoWorker));
        let err = s.update_layout(&id, "speaker", t0 + 900 * MS).unwrap_err();
        assert_eq!(err.code, "failed_precondition");
        assert_eq!(
            err.msg,
            "egress with status EGRESS_COMPLETE cannot be updated"
        );
        assert!(matches!(s.stop("EG_nope", t0), WorkerAnswer::NoWorker));
    }

    fn reported(s: &mut Store, now: i64) -> Vec<(EventKind, EgressStatus)> {
        s.observe(now);
        std::mem::take(&mut s.outbox)
            .into_iter()
            .map(|e| (e.kind, status(&e.info)))
            .collect()
    }

    #[test]
    fn reports_follow_the_lifecycle_and_skip_no_stage() {
        let mut s = store().with_reports();
        let t0 = 1_000 * MS;
        let id = start(&mut s, room_composite("r", &["rtmp://a"]), t0).egress_id;
        assert_eq!(
            reported(&mut s, t0),
            [(EventKind::Started, EgressStatus::EgressStarting)]
        );
        assert_eq!(s.next_due(), Some(t0 + 500 * MS));
        assert!(reported(&mut s, t0 + 499 * MS).is_empty());
        // Observed late, after the stop and the completion: ACTIVE and ENDING are still
        // reported on the way, in order.
        answered(s.stop(&id, t0 + 600 * MS));
        assert_eq!(
            reported(&mut s, t0 + 900 * MS),
            [
                (EventKind::Updated, EgressStatus::EgressActive),
                (EventKind::Updated, EgressStatus::EgressEnding),
                (EventKind::Ended, EgressStatus::EgressComplete),
            ]
        );
        assert_eq!(s.next_due(), None);
        assert!(reported(&mut s, t0 + 2_000 * MS).is_empty());

        // Stopped while STARTING: one egress_ended, no stage it never reached.
        let aborted = start(&mut s, room_composite("r", &[]), t0).egress_id;
        answered(s.stop(&aborted, t0 + 100 * MS));
        assert_eq!(
            reported(&mut s, t0 + 1_000 * MS),
            [
                (EventKind::Started, EgressStatus::EgressStarting),
                (EventKind::Ended, EgressStatus::EgressAborted),
            ]
        );
        // Without reports nothing is queued.
        let mut quiet = store();
        start(&mut quiet, room_composite("r", &[]), t0);
        assert!(reported(&mut quiet, t0 + 1_000 * MS).is_empty());
    }

    #[test]
    fn stop_while_starting_aborts() {
        let mut s = store();
        let t0 = 1_000 * MS;
        let id = start(&mut s, room_composite("r", &[]), t0).egress_id;
        let aborted = answered(s.stop(&id, t0 + 100 * MS));
        assert_eq!(status(&aborted), EgressStatus::EgressAborted);
        assert_eq!(aborted.error, "Stop called before pipeline could start");
        assert_eq!(aborted.error_code, 412);
        assert_eq!(aborted.ended_at, t0 + 100 * MS);
        // It never becomes active afterwards.
        let later = s.get(&id, t0 + 1_000 * MS).unwrap();
        assert_eq!(status(&later), EgressStatus::EgressAborted);
        assert_eq!(later.updated_at, t0 + 100 * MS);
    }

    #[test]
    fn strict_rooms_must_be_live_and_ending_a_room_ends_its_egresses() {
        let mut s = store_with(Rooms::Strict);
        let t0 = 1_000 * MS;
        assert_eq!(
            s.room_for_start("nope").unwrap_err(),
            TwirpError::room_not_found()
        );
        assert_eq!(s.room_for_start("").unwrap(), "");
        let sid = s.create_room("r");
        assert_eq!(s.create_room("r"), sid);
        let active = start(&mut s, room_composite("r", &[]), t0).egress_id;
        let starting = start(&mut s, room_composite("r", &[]), t0 + 600 * MS).egress_id;
        let web = s.start(
            NewEgress {
                room_name: String::new(),
                source_type: EgressSourceType::Web,
                request: egress_info::Request::Web(lk::WebEgressRequest::default()),
            },
            String::new(),
            t0,
        );
        assert_eq!(s.get(&active, t0).unwrap().room_id, sid);

        let ended = s.end_room("r", t0 + 700 * MS).unwrap();
        assert_eq!(ended, vec![active.clone(), starting.clone()]);
        let a = s.get(&active, t0 + 700 * MS).unwrap();
        assert_eq!(status(&a), EgressStatus::EgressEnding);
        assert_eq!(a.details, "End reason: Source closed");
        let b = s.get(&starting, t0 + 700 * MS).unwrap();
        assert_eq!(status(&b), EgressStatus::EgressAborted);
        let w = s.get(&web.egress_id, t0 + 700 * MS).unwrap();
        assert_eq!(status(&w), EgressStatus::EgressActive);
        assert!(s.end_room("r", t0).is_none());
        assert!(s.room_for_start("r").is_err());
        // A new room of the same name is a new room.
        assert_ne!(s.create_room("r"), sid);
    }

    #[test]
    fn update_stream_follows_the_workers_rules() {
        let mut s = store();
        let t0 = 1_000 * MS;
        let id = start(&mut s, stream_only("r", &["rtmp://a", "rtmp://b"]), t0).egress_id;
        let t1 = t0 + 600 * MS;

        let err = answered(s.update_stream(
            &lk::UpdateStreamRequest {
                egress_id: id.clone(),
                add_output_urls: vec!["rtmp://c".into()],
                remove_output_urls: vec!["rtmp://x".into(), "rtmp://a".into(), "rtmp://y".into()],
                ..Default::default()
            },
            t1,
        ))
        .unwrap_err();
        assert_eq!(err.code, "not_found");
        assert_eq!(
            err.msg,
            "stream rtmp://x not found\nstream rtmp://y not found"
        );
        assert!(err.relayed);
        // What could be done was done anyway.
        let info = s.get(&id, t1).unwrap();
        let active: Vec<_> = info
            .stream_results
            .iter()
            .filter(|r| r.status == stream_info::Status::Active as i32)
            .map(|r| r.url.as_str())
            .collect();
        assert_eq!(active, ["rtmp://b", "rtmp://c"]);

        let info = answered(s.update_stream(
            &lk::UpdateStreamRequest {
                egress_id: id.clone(),
                remove_output_urls: vec!["rtmp://b".into(), "rtmp://c".into()],
                ..Default::default()
            },
            t1 + MS,
        ))
        .unwrap();
        assert_eq!(status(&info), EgressStatus::EgressEnding);
        assert_eq!(info.details, "End reason: All streams stopped");

        // A file output keeps the egress going without streams.
        let kept = start(&mut s, room_composite("r", &["rtmp://a"]), t0).egress_id;
        let info = answered(s.update_stream(
            &lk::UpdateStreamRequest {
                egress_id: kept,
                remove_output_urls: vec!["rtmp://a".into()],
                ..Default::default()
            },
            t1,
        ))
        .unwrap();
        assert_eq!(status(&info), EgressStatus::EgressActive);

        let mut file_only = room_composite("r", &[]);
        if let egress_info::Request::RoomComposite(r) = &mut file_only.request {
            r.stream_outputs.clear();
        }
        let file_only = start(&mut s, file_only, t0).egress_id;
        let err = answered(s.update_stream(
            &lk::UpdateStreamRequest {
                egress_id: file_only,
                add_output_urls: vec!["rtmp://a".into()],
                ..Default::default()
            },
            t1,
        ))
        .unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.msg.as_str()),
            (
                "invalid_argument",
                "UpdateStream called on non-streaming egress"
            )
        );
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
        let id = start(&mut s, new, t0).egress_id;
        let info = answered(s.update_stream(
            &lk::UpdateStreamRequest {
                egress_id: id,
                add_destinations: vec![lk::StreamDestination {
                    id: "backup".into(),
                    url: "rtmp://e".into(),
                }],
                ..Default::default()
            },
            t0 + MS,
        ))
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
    fn a_gone_worker_freezes_the_egress_and_answers_nothing() {
        let mut s = store();
        let t0 = 1_000 * MS;
        let id = start(&mut s, room_composite("r", &["rtmp://a"]), t0).egress_id;
        s.drop_worker(&id, t0 + 100 * MS).unwrap();
        let later = s.get(&id, t0 + 10_000 * MS).unwrap();
        assert_eq!(status(&later), EgressStatus::EgressStarting);
        assert!(matches!(s.stop(&id, t0 + 200 * MS), WorkerAnswer::NoWorker));
        assert!(matches!(
            s.update_stream(
                &lk::UpdateStreamRequest {
                    egress_id: id.clone(),
                    ..Default::default()
                },
                t0
            ),
            WorkerAnswer::NoWorker
        ));
        assert!(s.drop_worker("EG_nope", t0).is_none());
    }

    #[test]
    fn same_room_same_room_id_and_list_filters() {
        let mut s = store();
        let t0 = 1_000 * MS;
        let a = start(&mut s, room_composite("r1", &[]), t0);
        let b = start(&mut s, room_composite("r1", &[]), t0);
        let c = start(&mut s, room_composite("r2", &[]), t0);
        assert_eq!(a.room_id, b.room_id);
        assert_ne!(a.room_id, c.room_id);
        // Stopped while starting: aborted, so not active.
        answered(s.stop(&b.egress_id, t0));

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
    }

    #[test]
    fn layout_failure_and_clear() {
        let mut s = store();
        let t0 = 1_000 * MS;
        let id = start(&mut s, room_composite("r", &["rtmp://a"]), t0).egress_id;
        let info = s.update_layout(&id, "speaker", t0 + 2 * MS).unwrap();
        match info.request {
            Some(egress_info::Request::RoomComposite(r)) => assert_eq!(r.layout, "speaker"),
            other => panic!("{other:?}"),
        }

        let failed = s.fail(&id, "boom", t0 + 3 * MS).unwrap();
        assert_eq!(status(&failed), EgressStatus::EgressFailed);
        assert_eq!(failed.error, "boom");
        assert!(matches!(s.stop(&id, t0 + 4 * MS), WorkerAnswer::NoWorker));
        s.set_workers(false);
        s.clear();
        assert!(s.get(&id, t0).is_none());
        assert!(s.workers(), "clear reconnects the workers as configured");
    }
}
