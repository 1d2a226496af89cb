//! Fitting frames into the platform's frame limit (`platform.max_frame_bytes`).
//!
//! A platform refuses a WebSocket frame larger than its own limit (RFC 6455 close 1009, or just
//! a dropped connection). The gateway therefore never writes a frame above its bound:
//! - `snapshot` parts are cut by encoded bytes as well as by count ([`SNAPSHOT_PART_MAX`]
//!   devices): each part holds as many whole device objects as fit in the bound.
//! - A device object that cannot fit in a frame on its own (a registration with a huge link set,
//!   e.g. one stored before `limits.max_payload_bytes` applied to simple registration) travels
//!   with the longest prefix of its links that fits, plus `"links_truncated": true` and
//!   `"links_total": N` (the contract's "A device object"). The same rule applies to
//!   `device_registered` / `device_updated`, so one device has one shape everywhere on the link.
//! - A device that does not fit even without links, or any other frame over the bound, is not
//!   sent (the caller counts and logs it): sending it would only get the link closed again.
//!
//! Every device object is rendered once ([`RawDevice`]), measured, and copied into its part, so
//! the byte count is exact and the snapshot is not serialized twice. Pure: no actix, no sockets.

use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use super::protocol::{CommandErrorKind, CommandResult, DeviceRef, OutboundFrame};
use crate::device_object::DeviceObject;
use crate::registry::Registration;

/// At most this many devices travel in one `snapshot` frame (whatever their size).
pub(crate) const SNAPSHOT_PART_MAX: usize = 1_000;

/// Bytes of a frame's bound kept for the envelope around device objects:
/// `{"type":"snapshot","devices":[` … `],"part":18446744073709551615,"last":false}` is 77 bytes,
/// `{"type":"device_registered","device":` … `}` 38.
pub(crate) const ENVELOPE_BYTES: usize = 128;

/// The smallest frame bound: the floor of `platform.max_frame_bytes` and of the link's own
/// shrinking after a platform refused a frame as too big. A device object without links fits
/// in it (endpoint attributes come from one CoAP request).
pub(crate) const MIN_FRAME_BYTES: usize = 65_536;

/// One rendered device object (JSON text).
#[derive(Debug, Clone)]
pub struct RawDevice(Box<RawValue>);

impl RawDevice {
    pub(crate) fn len(&self) -> usize {
        self.0.get().len()
    }
}

impl PartialEq for RawDevice {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Serialize for RawDevice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// A device object whose links were cut to fit a frame.
#[derive(Serialize)]
struct TruncatedDevice<'a> {
    #[serde(flatten)]
    device: DeviceObject<'a>,
    links_truncated: bool,
    links_total: usize,
}

/// How a device object came out of [`fit_device`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FittedDevice {
    Whole(RawDevice),
    /// Only the first `links_sent` of its links fit.
    Truncated {
        device: RawDevice,
        links_sent: usize,
    },
    /// Not even the device without links fits in `max` bytes.
    TooBig {
        bytes: usize,
    },
}

fn render<T: Serialize>(value: &T) -> Option<RawDevice> {
    // Our types serialize infallibly (string keys only); `None` would be a bug, and the caller
    // treats it like a device that cannot be sent rather than panicking.
    serde_json::value::to_raw_value(value).ok().map(RawDevice)
}

fn render_truncated(r: &Registration, links: usize) -> Option<RawDevice> {
    let total = r.links.len();
    let cut = Registration {
        links: r.links[..links.min(total)].to_vec().into(),
        ..r.clone()
    };
    render(&TruncatedDevice {
        device: DeviceObject(&cut),
        links_truncated: true,
        links_total: total,
    })
}

/// The device object of `r` in at most `max` bytes: whole when it fits, else with the longest
/// prefix of its links that fits (found by bisection: this is the rare path).
pub(crate) fn fit_device(r: &Registration, max: usize) -> FittedDevice {
    let Some(whole) = render(&DeviceObject(r)) else {
        return FittedDevice::TooBig { bytes: usize::MAX };
    };
    if whole.len() <= max {
        return FittedDevice::Whole(whole);
    }
    let fits = |links: usize| render_truncated(r, links).filter(|d| d.len() <= max);
    let Some(mut best) = fits(0) else {
        return FittedDevice::TooBig {
            bytes: render_truncated(r, 0).map_or(usize::MAX, |d| d.len()),
        };
    };
    // Invariant: `low` links fit (as `best`), `high` links do not.
    let (mut low, mut high) = (0usize, r.links.len());
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        match fits(mid) {
            Some(device) => {
                low = mid;
                best = device;
            }
            None => high = mid,
        }
    }
    FittedDevice::Truncated {
        device: best,
        links_sent: low,
    }
}

/// The snapshot as frames, with what had to give way to the frame bound.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SnapshotParts {
    pub frames: Vec<OutboundFrame>,
    /// Devices in the parts (for `hello.devices`).
    pub devices: usize,
    /// Devices sent with their links truncated.
    pub truncated: usize,
    /// Devices left out: too big for a frame even without links.
    pub skipped: usize,
    /// The largest part, in bytes of JSON.
    pub largest_part: usize,
}

/// Split a registry snapshot into `snapshot` frames of at most [`SNAPSHOT_PART_MAX`] devices
/// and at most `max_frame_bytes` bytes each (at least [`MIN_FRAME_BYTES`] is assumed). An empty
/// registry is still one part (`part` 0, `last` true, no devices), so the platform always sees
/// where the snapshot ends.
pub(crate) fn snapshot_parts(
    devices: &[Arc<Registration>],
    max_frame_bytes: usize,
) -> SnapshotParts {
    let max_frame_bytes = max_frame_bytes.max(MIN_FRAME_BYTES);
    let device_max = max_frame_bytes - ENVELOPE_BYTES;
    let mut out = SnapshotParts {
        frames: Vec::new(),
        devices: 0,
        truncated: 0,
        skipped: 0,
        largest_part: 0,
    };
    let mut part: Vec<RawDevice> = Vec::new();
    // Envelope plus the devices in `part` and the commas between them.
    let mut part_bytes = ENVELOPE_BYTES;
    for r in devices {
        let device = match fit_device(r, device_max) {
            FittedDevice::Whole(device) => device,
            FittedDevice::Truncated { device, .. } => {
                out.truncated += 1;
                device
            }
            FittedDevice::TooBig { .. } => {
                out.skipped += 1;
                continue;
            }
        };
        let comma = usize::from(!part.is_empty());
        if !part.is_empty()
            && (part.len() == SNAPSHOT_PART_MAX
                || part_bytes + comma + device.len() > max_frame_bytes)
        {
            close_part(&mut part, &mut part_bytes, &mut out);
        }
        part_bytes += usize::from(!part.is_empty()) + device.len();
        part.push(device);
        out.devices += 1;
    }
    if !part.is_empty() || out.frames.is_empty() {
        close_part(&mut part, &mut part_bytes, &mut out);
    }
    if let Some(OutboundFrame::Snapshot { last, .. }) = out.frames.last_mut() {
        *last = true;
    }
    out
}

/// Append `part` to `out` as the next (not yet last) `snapshot` frame and start a new one.
fn close_part(part: &mut Vec<RawDevice>, part_bytes: &mut usize, out: &mut SnapshotParts) {
    out.largest_part = out.largest_part.max(*part_bytes);
    out.frames.push(OutboundFrame::Snapshot {
        devices: std::mem::take(part),
        part: out.frames.len(),
        last: false,
    });
    *part_bytes = ENVELOPE_BYTES;
}

/// Why a frame was not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrameTooBig {
    pub bytes: usize,
}

/// A frame's JSON text within `max` bytes, and whether its device was truncated to get there.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FittedFrame {
    pub text: String,
    pub device_truncated: bool,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum DeviceFrame<'a> {
    DeviceRegistered { device: &'a RawDevice },
    DeviceUpdated { device: &'a RawDevice },
}

/// `frame` as JSON text of at most `max` bytes: as is when it fits; a `device_registered` /
/// `device_updated` with its device's links truncated; a `command_result` replaced by a
/// `bad_command` failure saying why (the contract promises one result per command, and the
/// same command would only produce the same oversized answer). Anything else over `max` is
/// [`FrameTooBig`].
pub(crate) fn frame_within(frame: &OutboundFrame, max: usize) -> Result<FittedFrame, FrameTooBig> {
    let text = frame.to_json().map_err(|_| FrameTooBig { bytes: 0 })?;
    if text.len() <= max {
        return Ok(FittedFrame {
            text,
            device_truncated: false,
        });
    }
    let bytes = text.len();
    drop(text);
    let (registration, registered) = match frame {
        OutboundFrame::DeviceRegistered {
            device: DeviceRef(r),
        } => (r, true),
        OutboundFrame::DeviceUpdated {
            device: DeviceRef(r),
        } => (r, false),
        OutboundFrame::CommandResult(result) => {
            let failed = OutboundFrame::CommandResult(CommandResult::failed(
                result.id.clone(),
                CommandErrorKind::BadCommand,
                format!(
                    "the device's answer makes a frame of {bytes} bytes, over the platform's frame limit of {max} bytes (platform.max_frame_bytes)"
                ),
            ));
            let text = failed.to_json().map_err(|_| FrameTooBig { bytes })?;
            return if text.len() <= max {
                Ok(FittedFrame {
                    text,
                    device_truncated: false,
                })
            } else {
                Err(FrameTooBig { bytes })
            };
        }
        _ => return Err(FrameTooBig { bytes }),
    };
    let device = match fit_device(registration, max.saturating_sub(ENVELOPE_BYTES)) {
        FittedDevice::Truncated { device, .. } | FittedDevice::Whole(device) => device,
        FittedDevice::TooBig { .. } => return Err(FrameTooBig { bytes }),
    };
    let wrapped = if registered {
        DeviceFrame::DeviceRegistered { device: &device }
    } else {
        DeviceFrame::DeviceUpdated { device: &device }
    };
    let text = serde_json::to_string(&wrapped).map_err(|_| FrameTooBig { bytes })?;
    Ok(FittedFrame {
        text,
        device_truncated: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use link_format::Link;
    use serde_json::Value;

    fn registration(ep: &str, links: usize, title_len: usize) -> Arc<Registration> {
        let mut r = crate::device_object::tests::registration(ep);
        let title = "t".repeat(title_len);
        r.links = (0..links)
            .map(|i| Link::new(format!("/l/{i}").as_str()).with("title", Some(title.as_str())))
            .collect::<Vec<_>>()
            .into();
        Arc::new(r)
    }

    fn parse(frame: &OutboundFrame) -> (String, Value) {
        let text = frame.to_json().unwrap();
        let value = serde_json::from_str(&text).unwrap();
        (text, value)
    }

    #[test]
    fn small_devices_are_cut_by_count() {
        let regs: Vec<_> = (0..2_001)
            .map(|i| registration(&format!("n{i}"), 1, 4))
            .collect();
        let parts = snapshot_parts(&regs, 16 << 20);
        let sizes: Vec<(usize, u64, bool)> = parts
            .frames
            .iter()
            .map(|f| {
                let (_, v) = parse(f);
                (
                    v["devices"].as_array().unwrap().len(),
                    v["part"].as_u64().unwrap(),
                    v["last"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            sizes,
            vec![(1_000, 0, false), (1_000, 1, false), (1, 2, true)]
        );
        assert_eq!(
            (parts.devices, parts.truncated, parts.skipped),
            (2_001, 0, 0)
        );
    }

    #[test]
    fn large_devices_are_cut_by_bytes_and_every_part_fits() {
        // 60 devices of about 100 KB each: 6 MB, which used to be one frame.
        let regs: Vec<_> = (0..60)
            .map(|i| registration(&format!("big{i}"), 200, 480))
            .collect();
        let max = 1 << 20;
        let parts = snapshot_parts(&regs, max);
        assert!(parts.frames.len() >= 6, "{} parts", parts.frames.len());
        let mut names = Vec::new();
        for (i, frame) in parts.frames.iter().enumerate() {
            let (text, v) = parse(frame);
            assert!(text.len() <= max, "part {i} is {} bytes", text.len());
            assert!(text.len() <= parts.largest_part);
            assert_eq!(v["part"], i);
            assert_eq!(v["last"], i + 1 == parts.frames.len());
            for d in v["devices"].as_array().unwrap() {
                assert!(d.get("links_truncated").is_none());
                names.push(d["ep"].as_str().unwrap().to_owned());
            }
        }
        let expected: Vec<_> = (0..60).map(|i| format!("big{i}")).collect();
        assert_eq!(names, expected, "every device once, in order");
        assert_eq!(parts.devices, 60);
    }

    #[test]
    fn a_device_larger_than_a_frame_goes_with_its_links_truncated_and_flagged() {
        // About 1.5 MB of links, against 256 KiB frames.
        let huge = registration("huge", 3_000, 480);
        let regs = vec![
            registration("a", 1, 4),
            huge.clone(),
            registration("b", 1, 4),
        ];
        let max = 256 << 10;
        let parts = snapshot_parts(&regs, max);
        assert_eq!((parts.devices, parts.truncated, parts.skipped), (3, 1, 0));
        let mut seen = Vec::new();
        for frame in &parts.frames {
            let (text, v) = parse(frame);
            assert!(text.len() <= max);
            seen.extend(v["devices"].as_array().unwrap().iter().cloned());
        }
        let names: Vec<_> = seen.iter().map(|d| d["ep"].as_str().unwrap()).collect();
        assert_eq!(names, ["a", "huge", "b"]);
        let cut = &seen[1];
        assert_eq!(cut["links_truncated"], true);
        assert_eq!(cut["links_total"], 3_000);
        let sent = cut["links"].as_array().unwrap();
        assert!(sent.len() > 100 && sent.len() < 3_000, "{}", sent.len());
        assert_eq!(sent[0]["href"], "/l/0", "a prefix of the links");
        assert_eq!(
            sent.last().unwrap()["href"],
            format!("/l/{}", sent.len() - 1)
        );
        // One more link would not have fitted.
        let FittedDevice::Truncated { links_sent, device } =
            fit_device(&huge, max - ENVELOPE_BYTES)
        else {
            panic!("not truncated");
        };
        assert_eq!(links_sent, sent.len());
        assert!(render_truncated(&huge, links_sent + 1).unwrap().len() > max - ENVELOPE_BYTES);
        assert!(device.len() <= max - ENVELOPE_BYTES);
        assert!(seen[0].get("links_truncated").is_none());
    }

    #[test]
    fn a_device_event_over_the_bound_is_truncated_the_same_way() {
        let huge = registration("huge", 3_000, 480);
        let frame = OutboundFrame::DeviceUpdated {
            device: DeviceRef(huge),
        };
        let max = 256 << 10;
        let fitted = frame_within(&frame, max).unwrap();
        assert!(fitted.device_truncated);
        assert!(fitted.text.len() <= max);
        let v: Value = serde_json::from_str(&fitted.text).unwrap();
        assert_eq!(v["type"], "device_updated");
        assert_eq!(v["device"]["ep"], "huge");
        assert_eq!(v["device"]["links_truncated"], true);
        // A small frame is untouched.
        let small = OutboundFrame::DeviceRegistered {
            device: DeviceRef(registration("s", 2, 4)),
        };
        let fitted = frame_within(&small, max).unwrap();
        assert!(!fitted.device_truncated);
        assert_eq!(fitted.text, small.to_json().unwrap());
    }

    #[test]
    fn an_oversized_command_result_becomes_a_bad_command_failure() {
        let big = OutboundFrame::CommandResult(CommandResult::response(
            "c1",
            "2.05",
            None,
            "x".repeat(200_000).as_bytes(),
            3,
        ));
        let fitted = frame_within(&big, MIN_FRAME_BYTES).unwrap();
        let v: Value = serde_json::from_str(&fitted.text).unwrap();
        assert_eq!(v["id"], "c1");
        assert_eq!(v["error"]["kind"], "bad_command");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_frame_bytes"));
    }

    #[test]
    fn an_empty_registry_is_one_last_part() {
        let parts = snapshot_parts(&[], MIN_FRAME_BYTES);
        assert_eq!(
            serde_json::to_value(&parts.frames).unwrap(),
            serde_json::json!([{"type": "snapshot", "devices": [], "part": 0, "last": true}])
        );
    }
}
