//! A page of devices in the admin API (`GET /api/devices`). Each device is the one device
//! object of [`crate::device_object`], as the platform frames and `rd-dump` carry it, plus
//! `seen_at`: when the device was last heard from (its last answer to the gateway or its last
//! registration or update); `GET /api/devices/{ep}` answers one such object. Pure.

use serde::Serialize;

use crate::device_object::DeviceObject;
use crate::registry::Registration;
use crate::time::rfc3339_ms;

/// A device object with its `seen_at` (RFC 3339, like the object's other times).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ListedDevice<'a> {
    #[serde(flatten)]
    pub object: DeviceObject<'a>,
    pub seen_at: String,
}

impl<'a> ListedDevice<'a> {
    pub(crate) fn of(reg: &'a Registration) -> Self {
        ListedDevice {
            object: DeviceObject(reg),
            seen_at: rfc3339_ms(reg.seen_at_ms()),
        }
    }
}

/// One page of `GET /api/devices`: `{"total","page","count","devices":[..]}`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DevicePage<'a> {
    /// Every live device by status, whatever the filters (the console's counts at the top).
    pub counts: super::query::StatusCounts,
    /// Devices matching the filters, over all pages.
    pub total: u64,
    pub page: u64,
    pub count: u64,
    pub devices: Vec<ListedDevice<'a>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_holds_device_objects() {
        let reg = crate::device_object::tests::registration("node1");
        let page = DevicePage {
            counts: crate::admin::query::StatusCounts {
                all: 3,
                connected: 2,
                disconnected: 1,
            },
            total: 3,
            page: 1,
            count: 1,
            devices: vec![ListedDevice::of(&reg)],
        };
        let mut json = serde_json::to_value(&page).unwrap();
        let seen_at = json["devices"][0]
            .as_object_mut()
            .unwrap()
            .remove("seen_at")
            .unwrap();
        assert_eq!(seen_at, json["devices"][0]["updated_at"]);
        assert_eq!(json["total"], 3);
        assert_eq!(json["counts"]["disconnected"], 1);
        assert_eq!(json["page"], 1);
        assert_eq!(json["count"], 1);
        assert_eq!(
            json["devices"][0],
            serde_json::to_value(DeviceObject(&reg)).unwrap()
        );
    }
}
