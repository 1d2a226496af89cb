//! The platform protocol's `at` timestamps (`2026-11-25T14:00:00.123Z`, RFC 3339 UTC with
//! milliseconds, as `coap_gateway::time::rfc3339_ms` writes them) read back as Unix
//! milliseconds, so a test can measure a span with the gateway's own clock instead of timing
//! it with sleeps on a loaded machine.
#![allow(dead_code)]

/// Unix milliseconds of an `at` value; `None` for anything not in that exact shape.
pub fn at_ms(at: &str) -> Option<u64> {
    let b = at.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[23] != b'Z' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' || b[19] != b'.' {
        return None;
    }
    let num = |from: usize, to: usize| at.get(from..to)?.parse::<u64>().ok();
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, s, ms) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y as i64, mo as i64, d as i64);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + mi * 60 + s;
    Some(secs * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[test]
fn reads_back_what_the_gateway_writes() {
    for ms in [0, 1_764_700_000_123, 1_709_164_800_999, 4_102_444_799_000] {
        assert_eq!(at_ms(&coap_gateway::time::rfc3339_ms(ms)), Some(ms));
    }
    assert_eq!(at_ms("2026-11-25T14:00:00.123"), None);
    assert_eq!(at_ms("2026-13-25T14:00:00.123Z"), None);
}
