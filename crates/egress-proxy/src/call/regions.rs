//! LiveKit Cloud's other regions, for retries that fail over (see [`super::retry`]).
//!
//! `GET {LIVEKIT_URL}/settings/regions` (with the call's token) answers
//! `{"regions":[{"region":"…","url":"https://…","distance":"…"}, …]}`, nearest first. The
//! list is fetched when a retry first needs it and kept for [`TTL`]; a failed fetch is logged
//! and the primary URL is used (tried again after [`RETRY_AFTER`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use egress_twirp::{BaseUrl, TwirpClient};

/// How long a fetched list is used.
pub const TTL: Duration = Duration::from_secs(5 * 60);
/// How long after a failed fetch the primary alone is used.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Budget of the fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// Most regions kept.
const MAX_REGIONS: usize = 16;

/// The regions other than the configured URL.
#[derive(Debug)]
pub struct Regions {
    client: TwirpClient,
    /// The list and until when it is used.
    cached: Mutex<Option<(Instant, Vec<BaseUrl>)>>,
}

impl Regions {
    pub fn new(client: TwirpClient) -> Self {
        Self {
            client,
            cached: Mutex::new(None),
        }
    }

    /// The other regions' URLs, nearest first; empty when there are none or the list
    /// cannot be had.
    pub async fn others(&self) -> Vec<BaseUrl> {
        if let Some((until, regions)) = &*self.lock()
            && Instant::now() < *until
        {
            return regions.clone();
        }
        let (regions, keep) = match self.fetch().await {
            Ok(regions) => (regions, TTL),
            Err(err) => {
                tracing::warn!(error = %err, "region discovery failed; retrying on the primary URL");
                (Vec::new(), RETRY_AFTER)
            }
        };
        *self.lock() = Some((Instant::now() + keep, regions.clone()));
        regions
    }

    async fn fetch(&self) -> Result<Vec<BaseUrl>, String> {
        let body = self
            .client
            .get("/settings/regions", FETCH_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        let primary = self.client.config().base_url.as_str().to_owned();
        parse(&body, &primary)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Vec<BaseUrl>)>> {
        self.cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The region URLs of a `/settings/regions` answer, without `primary`.
fn parse(body: &[u8], primary: &str) -> Result<Vec<BaseUrl>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let regions = value
        .get("regions")
        .and_then(|r| r.as_array())
        .ok_or("no regions list")?;
    Ok(regions
        .iter()
        .filter_map(|r| r.get("url")?.as_str())
        .filter_map(|url| BaseUrl::parse(url).ok())
        .filter(|url| url.as_str() != primary)
        .take(MAX_REGIONS)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_answers_as_livekit_writes_them() {
        let body = br#"{"regions":[
            {"region":"here","url":"https://here.livekit.cloud","distance":"0"},
            {"region":"there","url":"wss://there.livekit.cloud","distance":"1200"},
            {"region":"broken","url":"not a url"},
            {"region":"no-url"}
        ]}"#;
        let others = parse(body, "https://here.livekit.cloud").unwrap();
        let urls: Vec<&str> = others.iter().map(BaseUrl::as_str).collect();
        assert_eq!(urls, ["https://there.livekit.cloud"]);
        assert!(parse(b"[]", "x").is_err());
        assert!(parse(b"<html>", "x").is_err());
    }
}
