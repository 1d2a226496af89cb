//! The frames the gateway sends the platform ([`OutboundFrame`]): `hello`, the snapshot
//! parts, device events (from registry events), the Observer's `data` and `data_error`,
//! command results and `error` replies.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::command::CommandResult;
use super::payload::{encode_payload, EncodedPayload};
use super::PROTOCOL_VERSION;
use crate::device_object::DeviceObject;
use crate::platform::fit::RawDevice;
use crate::registry::{Registration, RegistryEvent, RemovalReason};

/// A registration as carried in a frame: shared with the Registry (no copy while queued) and
/// rendered as the contract's device object by [`DeviceObject`].
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRef(pub Arc<Registration>);

impl Serialize for DeviceRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        DeviceObject(&self.0).serialize(s)
    }
}

/// Why a device went away (`device_removed.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovedReason {
    Deleted,
    Expired,
}

/// `data`: a value the Observer got from a device. Deserialize: replicas on etcd carry an
/// owner's frames to the leader through etcd (`cluster::data_relay`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFrame {
    pub ep: String,
    pub d: Option<String>,
    pub path: String,
    /// CoAP response code in dotted form, e.g. `"2.05"`.
    pub code: String,
    pub content_format: Option<u16>,
    #[serde(flatten)]
    pub payload: EncodedPayload,
    /// RFC 3339 UTC with milliseconds.
    pub at: String,
}

impl DataFrame {
    /// A `data` frame for a value read at `at_ms` (Unix ms); the payload is encoded by the
    /// contract's rule.
    pub(crate) fn new(
        ep: impl Into<String>,
        d: Option<String>,
        path: impl Into<String>,
        code: impl Into<String>,
        content_format: Option<u16>,
        payload: &[u8],
        at_ms: u64,
    ) -> DataFrame {
        DataFrame {
            ep: ep.into(),
            d,
            path: path.into(),
            code: code.into(),
            content_format,
            payload: encode_payload(payload),
            at: crate::time::rfc3339_ms(at_ms),
        }
    }
}

/// How the Observer was watching the resource that answered with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchedBy {
    Poll,
    Observe,
}

/// `data_error`: a watched resource answered with an error code (4.xx, 5.xx) instead of a value.
/// Not a reading, so never a `data` frame: the platform learns the code and the diagnostic
/// payload (RFC 7252 §5.5.2), how many error answers in a row that resource gave, and when the
/// gateway asks again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataErrorFrame {
    pub ep: String,
    pub d: Option<String>,
    pub path: String,
    /// The error code in dotted form, e.g. `"4.04"`.
    pub code: String,
    pub content_format: Option<u16>,
    #[serde(flatten)]
    pub payload: EncodedPayload,
    pub at: String,
    pub via: WatchedBy,
    /// Error answers in a row from this resource, this one included (1 after a success).
    pub consecutive: u32,
    /// When the gateway asks the resource again (the back-off), in milliseconds from `at`.
    pub retry_in_ms: u64,
}

/// Every frame the gateway sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutboundFrame {
    Hello {
        gateway: String,
        version: String,
        protocol: u32,
        devices: usize,
        /// Protocol 1.1 features the gateway offers (`["ack"]`); a v1 platform ignores it.
        features: Vec<String>,
        /// Replicas on etcd: the member holding the link (additive; older platforms ignore it).
        #[serde(skip_serializing_if = "Option::is_none")]
        replica: Option<String>,
        /// Replicas on etcd: `"etcd-revision"`, seqs derived from revisions, with holes.
        #[serde(skip_serializing_if = "Option::is_none")]
        seq_scheme: Option<&'static str>,
    },
    /// Built by `fit::snapshot_parts`, which renders each device once to measure it.
    Snapshot {
        devices: Vec<RawDevice>,
        part: usize,
        last: bool,
    },
    DeviceRegistered {
        device: DeviceRef,
    },
    DeviceUpdated {
        device: DeviceRef,
    },
    DeviceRemoved {
        ep: String,
        d: Option<String>,
        reason: RemovedReason,
    },
    DeviceStatus {
        ep: String,
        d: Option<String>,
        status: u8,
        at: String,
    },
    Data(DataFrame),
    DataError(DataErrorFrame),
    CommandResult(CommandResult),
    Error {
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
}

impl OutboundFrame {
    /// `data` and `data_error` frames (the Observer's) are the ones the outbox drops first
    /// (`outbox::Class::Data`): the next value or error supersedes them.
    #[cfg(test)]
    pub(crate) fn is_data(&self) -> bool {
        matches!(self, OutboundFrame::Data(_) | OutboundFrame::DataError(_))
    }

    /// The frame's JSON text. Our types serialize infallibly (string keys only); an error here
    /// would be a bug, reported rather than panicking.
    pub(crate) fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

impl OutboundFrame {
    /// The frame a registry event becomes. `at_ms` is when the link learned of the event: a
    /// status change carries no time of its own, and a queued one must keep its original time.
    pub(crate) fn from_event(event: &RegistryEvent, at_ms: u64) -> OutboundFrame {
        fn names(r: &Registration) -> (String, Option<String>) {
            (
                r.ep.as_str().to_owned(),
                r.d.as_ref().map(|d| d.as_str().to_owned()),
            )
        }
        match event {
            RegistryEvent::Registered(r) => OutboundFrame::DeviceRegistered {
                device: DeviceRef(r.clone()),
            },
            RegistryEvent::Updated(r) => OutboundFrame::DeviceUpdated {
                device: DeviceRef(r.clone()),
            },
            RegistryEvent::Removed {
                registration,
                reason,
            } => {
                let (ep, d) = names(registration);
                OutboundFrame::DeviceRemoved {
                    ep,
                    d,
                    reason: match reason {
                        RemovalReason::Deleted => RemovedReason::Deleted,
                        RemovalReason::Expired => RemovedReason::Expired,
                    },
                }
            }
            RegistryEvent::StatusChanged(r) => {
                let (ep, d) = names(r);
                OutboundFrame::DeviceStatus {
                    ep,
                    d,
                    status: r.status.as_u8(),
                    at: crate::time::rfc3339_ms(at_ms),
                }
            }
        }
    }
}

/// The seq scheme of replicas on etcd (`hello.seq_scheme`).
pub(crate) const SEQ_SCHEME_REVISION: &str = "etcd-revision";

/// The `hello` frame for this gateway; `replica` names the member of a cluster on etcd that
/// holds the link, whose seqs follow [`SEQ_SCHEME_REVISION`].
pub(crate) fn hello(gateway: &str, devices: usize, replica: Option<&str>) -> OutboundFrame {
    OutboundFrame::Hello {
        gateway: gateway.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        protocol: PROTOCOL_VERSION,
        devices,
        features: vec![super::FEATURE_ACK.to_owned()],
        replica: replica.map(str::to_owned),
        seq_scheme: replica.map(|_| SEQ_SCHEME_REVISION),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::protocol::to_value;
    use serde_json::json;

    #[test]
    fn hello_carries_the_contract_fields() {
        assert_eq!(
            to_value(&hello("gw-1", 3, None)),
            json!({"type": "hello", "gateway": "gw-1", "version": env!("CARGO_PKG_VERSION"),
                   "protocol": 1, "devices": 3, "features": ["ack"]})
        );
        assert_eq!(
            to_value(&hello("site", 0, Some("gw-b"))),
            json!({"type": "hello", "gateway": "site", "version": env!("CARGO_PKG_VERSION"),
                   "protocol": 1, "devices": 0, "features": ["ack"],
                   "replica": "gw-b", "seq_scheme": "etcd-revision"})
        );
    }

    #[test]
    fn data_frame_is_flat_with_payload_and_encoding() {
        let frame = OutboundFrame::Data(DataFrame::new(
            "node1",
            None,
            "/sensors/temp",
            "2.05",
            Some(0),
            b"21.5",
            1_795_615_200_123,
        ));
        assert!(frame.is_data());
        assert_eq!(
            to_value(&frame),
            json!({"type": "data", "ep": "node1", "d": null, "path": "/sensors/temp",
                   "code": "2.05", "content_format": 0, "payload": "21.5",
                   "payload_encoding": "utf8", "at": "2026-11-25T14:00:00.123Z"})
        );
    }

    #[test]
    fn removal_status_and_error_frames() {
        let removed = OutboundFrame::DeviceRemoved {
            ep: "n".into(),
            d: Some("f1".into()),
            reason: RemovedReason::Expired,
        };
        assert_eq!(
            to_value(&removed),
            json!({"type": "device_removed", "ep": "n", "d": "f1", "reason": "expired"})
        );
        let status = OutboundFrame::DeviceStatus {
            ep: "n".into(),
            d: None,
            status: 0,
            at: "2026-11-25T14:00:00.000Z".into(),
        };
        assert_eq!(
            to_value(&status),
            json!({"type": "device_status", "ep": "n", "d": null, "status": 0,
                   "at": "2026-11-25T14:00:00.000Z"})
        );
        let error = OutboundFrame::Error {
            message: "x".into(),
            id: None,
        };
        assert_eq!(to_value(&error), json!({"type": "error", "message": "x"}));
    }

    #[test]
    fn registry_events_map_to_their_frames() {
        use crate::registry::{Sector, Status};
        let mut r = crate::device_object::tests::registration("n1");
        r.d = Some(Sector::new("f1").unwrap());
        r.status = Status::Disconnected;
        let r = Arc::new(r);
        let at = 1_795_615_200_000;
        let reg = to_value(&OutboundFrame::from_event(
            &RegistryEvent::Registered(r.clone()),
            at,
        ));
        assert_eq!(reg["type"], "device_registered");
        assert_eq!(reg["device"]["ep"], "n1");
        let upd = to_value(&OutboundFrame::from_event(
            &RegistryEvent::Updated(r.clone()),
            at,
        ));
        assert_eq!(upd["type"], "device_updated");
        assert_eq!(upd["device"]["d"], "f1");
        for (reason, text) in [
            (RemovalReason::Deleted, "deleted"),
            (RemovalReason::Expired, "expired"),
        ] {
            let event = RegistryEvent::Removed {
                registration: r.clone(),
                reason,
            };
            assert_eq!(
                to_value(&OutboundFrame::from_event(&event, at)),
                json!({"type": "device_removed", "ep": "n1", "d": "f1", "reason": text})
            );
        }
        assert_eq!(
            to_value(&OutboundFrame::from_event(
                &RegistryEvent::StatusChanged(r),
                at
            )),
            json!({"type": "device_status", "ep": "n1", "d": "f1", "status": 0,
                   "at": "2026-11-25T14:00:00.000Z"})
        );
    }

    #[test]
    fn data_error_frames_carry_the_error_and_the_back_off() {
        let frame = OutboundFrame::DataError(DataErrorFrame {
            ep: "n".into(),
            d: None,
            path: "/missing".into(),
            code: "4.04".into(),
            content_format: None,
            payload: encode_payload(b"Not Found"),
            at: "2026-11-25T14:00:00.000Z".into(),
            via: WatchedBy::Poll,
            consecutive: 2,
            retry_in_ms: 4_000,
        });
        assert!(
            frame.is_data(),
            "dropped before events when the queue is full"
        );
        assert_eq!(
            to_value(&frame),
            json!({"type": "data_error", "ep": "n", "d": null, "path": "/missing",
                   "code": "4.04", "content_format": null, "payload": "Not Found",
                   "payload_encoding": "utf8", "at": "2026-11-25T14:00:00.000Z",
                   "via": "poll", "consecutive": 2, "retry_in_ms": 4000})
        );
    }
}
