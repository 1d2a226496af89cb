//! The console's device page data (`GET /api/devices/{ep}/detail`): the device object with
//! `seen_at`, its status history, and the latest value of each resource the Observer watches,
//! with the recent numbers for a sparkline. Pure shaping.

use serde::Serialize;

use super::device::ListedDevice;
use crate::observer::Reading;
use crate::registry::Registration;
use crate::time::rfc3339_ms;

#[derive(Debug, Serialize)]
pub(crate) struct DeviceDetail<'a> {
    #[serde(flatten)]
    pub device: ListedDevice<'a>,
    /// Oldest first.
    pub status_history: Vec<StatusChangeView>,
    /// `false` when no Observer runs here (no platform configured): `readings` is then empty
    /// because nothing collects values, not because the device sent none.
    pub observed: bool,
    pub readings: Vec<ReadingView>,
    /// Whether this gateway accepts console actions (an admin token is configured).
    pub actions: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct StatusChangeView {
    pub at: String,
    pub status: u8,
}

#[derive(Debug, Serialize)]
pub(crate) struct ReadingView {
    pub path: String,
    pub at: String,
    pub code: String,
    pub content_format: Option<u16>,
    /// The payload as text, cut for display (`truncated`).
    pub text: String,
    pub truncated: bool,
    /// `[unix_ms, value]` pairs, oldest first.
    pub recent: Vec<(u64, f64)>,
}

impl<'a> DeviceDetail<'a> {
    pub(crate) fn of(reg: &'a Registration, readings: Option<Vec<Reading>>, actions: bool) -> Self {
        DeviceDetail {
            device: ListedDevice::of(reg),
            status_history: reg
                .status_history
                .changes()
                .iter()
                .map(|c| StatusChangeView {
                    at: rfc3339_ms(c.at_ms),
                    status: c.status.as_u8(),
                })
                .collect(),
            observed: readings.is_some(),
            readings: readings
                .unwrap_or_default()
                .into_iter()
                .map(|r| ReadingView {
                    path: r.path.to_string(),
                    at: rfc3339_ms(r.at_ms),
                    code: r.code,
                    content_format: r.content_format,
                    text: r.text,
                    truncated: r.truncated,
                    recent: r.recent.into_iter().collect(),
                })
                .collect(),
            actions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Status;

    #[test]
    fn history_and_readings_are_shown_with_their_times() {
        let mut reg = crate::device_object::tests::registration("node1");
        reg.status_history.record(1_000, Status::Disconnected);
        reg.status_history.record(2_000, Status::Connected);
        let readings = crate::observer::Readings::default();
        readings.record(
            reg.id,
            &std::sync::Arc::from("/t"),
            3_000,
            "2.05".into(),
            Some(0),
            b"21.5",
        );
        let detail = DeviceDetail::of(&reg, Some(readings.of(reg.id)), true);
        let json = serde_json::to_value(&detail).unwrap();
        assert_eq!(json["ep"], "node1");
        assert_eq!(json["status_history"][0]["status"], 0);
        assert_eq!(json["status_history"][1]["at"], "1970-01-01T00:00:02.000Z");
        assert_eq!(json["readings"][0]["text"], "21.5");
        assert_eq!(json["readings"][0]["recent"][0][1], 21.5);
        assert_eq!(json["observed"], true);
        assert_eq!(json["actions"], true);
    }
}
