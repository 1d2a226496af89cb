//! The latest value of each watched resource, and a short ring of its recent numeric values:
//! what the console's device page shows (the value, and a sparkline). Written by the Observer
//! for every value it gets (before the platform's rate limit: the person on site sees the
//! newest value even when the platform is sent fewer), read by the admin API. Memory only and
//! bounded: one entry per watched link, [`RECENT_VALUES`] numbers each, a payload cut at
//! [`PAYLOAD_SHOWN`] bytes; a device's entries go when the Observer stops watching it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use crate::registry::RegistrationId;

/// Numeric values kept per resource for the sparkline.
pub(crate) const RECENT_VALUES: usize = 16;
/// Bytes of a payload kept for display.
pub(crate) const PAYLOAD_SHOWN: usize = 64;

/// One resource's latest answer.
#[derive(Clone, Debug)]
pub(crate) struct Reading {
    pub(crate) path: Arc<str>,
    /// Unix ms of the latest value.
    pub(crate) at_ms: u64,
    /// The CoAP response code, `2.05` for a value.
    pub(crate) code: String,
    pub(crate) content_format: Option<u16>,
    /// The payload as text (lossy UTF-8), cut at [`PAYLOAD_SHOWN`] bytes.
    pub(crate) text: String,
    pub(crate) truncated: bool,
    /// Recent payloads that read as a number, oldest first: `(at_ms, value)`.
    pub(crate) recent: VecDeque<(u64, f64)>,
}

/// Shared by the Observer (writer) and the admin API (reader); clones share the board.
#[derive(Clone, Default)]
pub(crate) struct Readings(Arc<Mutex<HashMap<RegistrationId, Vec<Reading>>>>);

impl Readings {
    /// A value (or error answer) for `path` of registration `id`.
    pub(crate) fn record(
        &self,
        id: RegistrationId,
        path: &Arc<str>,
        at_ms: u64,
        code: String,
        content_format: Option<u16>,
        payload: &[u8],
    ) {
        let cut = payload.len().min(PAYLOAD_SHOWN);
        let text = String::from_utf8_lossy(&payload[..cut]).into_owned();
        let number = std::str::from_utf8(payload)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && code.starts_with("2."));
        let mut board = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let links = board.entry(id).or_default();
        let reading = match links.iter().position(|r| r.path == *path) {
            Some(i) => &mut links[i],
            None => {
                links.push(Reading {
                    path: Arc::clone(path),
                    at_ms,
                    code: String::new(),
                    content_format: None,
                    text: String::new(),
                    truncated: false,
                    recent: VecDeque::new(),
                });
                let last = links.len() - 1;
                &mut links[last]
            }
        };
        reading.at_ms = at_ms;
        reading.code = code;
        reading.content_format = content_format;
        reading.truncated = payload.len() > cut;
        reading.text = text;
        if let Some(value) = number {
            if reading.recent.len() >= RECENT_VALUES {
                reading.recent.pop_front();
            }
            reading.recent.push_back((at_ms, value));
        }
    }

    /// The device is no longer watched: its values go.
    pub(crate) fn forget(&self, id: RegistrationId) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// A copy of registration `id`'s readings, by path.
    pub(crate) fn of(&self, id: RegistrationId) -> Vec<Reading> {
        let board = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut links = board.get(&id).cloned().unwrap_or_default();
        links.sort_by(|a, b| a.path.cmp(&b.path));
        links
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(r: &Readings, at: u64, payload: &str) {
        r.record(
            RegistrationId(1),
            &Arc::from("/t"),
            at,
            "2.05".into(),
            Some(0),
            payload.as_bytes(),
        );
    }

    #[test]
    fn the_latest_value_and_a_bounded_ring_of_numbers_are_kept() {
        let r = Readings::default();
        for i in 0..(RECENT_VALUES as u64 + 4) {
            record(&r, i, &format!("{}.5", i));
        }
        record(&r, 100, "not a number");
        let got = r.of(RegistrationId(1));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].text, "not a number");
        assert_eq!(got[0].at_ms, 100);
        assert_eq!(got[0].recent.len(), RECENT_VALUES);
        assert_eq!(got[0].recent.front(), Some(&(4, 4.5)));
        r.forget(RegistrationId(1));
        assert!(r.of(RegistrationId(1)).is_empty());
    }

    #[test]
    fn long_payloads_are_cut_on_display_only() {
        let r = Readings::default();
        record(&r, 1, &"x".repeat(PAYLOAD_SHOWN + 10));
        let got = r.of(RegistrationId(1));
        assert_eq!(got[0].text.len(), PAYLOAD_SHOWN);
        assert!(got[0].truncated);
    }
}
