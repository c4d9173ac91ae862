//! The one time format the project stores and returns: ISO 8601 in UTC with exactly three
//! fractional digits and a `Z`, e.g. `2026-11-22T10:00:00.000Z` (24 characters).
//!
//! Why this form:
//! - fixed width, so stored timestamps sort as text in time order: they are used in sort keys
//!   (the document list is ordered by `<insertedDate>#<id>`, see `docs/architecture.md`);
//! - it is what FormKiQ returns for `insertedDate`/`lastModifiedDate` and Cognito-derived dates,
//!   and a valid FHIR `instant`;
//! - milliseconds are what DynamoDB-era clients expect; finer precision would not sort
//!   differently for one writer and would make every key longer.

use time::{OffsetDateTime, UtcOffset};

/// `t` in the stored format (converted to UTC first).
pub fn format(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// The current time in the stored format.
pub fn now() -> String {
    format(OffsetDateTime::now_utc())
}

/// `unix_seconds` plus `millis` (at most 999 count) in the stored format, for times other
/// services report as numbers (Cognito); a time out of range reads as the Unix epoch.
pub fn from_unix(unix_seconds: i64, millis: u32) -> String {
    let t = OffsetDateTime::from_unix_timestamp(unix_seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH)
        + time::Duration::milliseconds(i64::from(millis.min(999)));
    format(t)
}

/// Parses an RFC 3339 date-time with a time zone (a FHIR `instant`, or a stored time).
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// The stored time one millisecond after the stored time `s` (for versions that must sort
/// after their predecessor when clocks disagree); `s` itself when it does not parse.
pub fn next_milli(s: &str) -> String {
    parse(s).map_or_else(
        || s.to_owned(),
        |t| format(t + time::Duration::milliseconds(1)),
    )
}

const HTTP_DATE: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// The stored time `s` as an HTTP date (`Last-Modified`): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(s: &str) -> Option<String> {
    parse(s)?.to_offset(UtcOffset::UTC).format(HTTP_DATE).ok()
}

/// An HTTP date (`If-Modified-Since`) in the stored format.
pub fn parse_http_date(s: &str) -> Option<String> {
    time::PrimitiveDateTime::parse(s.trim(), HTTP_DATE)
        .ok()
        .map(|t| format(t.assume_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_width_utc_with_milliseconds() {
        let t = OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap()
            + time::Duration::milliseconds(7);
        assert_eq!(format(t), "2026-11-18T11:06:40.007Z");
        let east = t.to_offset(UtcOffset::from_hms(5, 30, 0).unwrap());
        assert_eq!(format(east), "2026-11-18T11:06:40.007Z");
        assert_eq!(now().len(), 24);
        assert_eq!(from_unix(0, 5), "1970-01-01T00:00:00.005Z");
        assert_eq!(from_unix(1, 5000), "1970-01-01T00:00:01.999Z");
        assert_eq!(from_unix(i64::MAX, 0), "1970-01-01T00:00:00.000Z");
        // Text order is time order.
        assert!(format(t) < format(t + time::Duration::milliseconds(1)));
        assert_eq!(parse("2026-11-18T16:36:40.007+05:30"), Some(t));
        assert_eq!(parse("2026-11-18"), None);
        assert_eq!(
            http_date("1994-11-06T08:49:37.500Z").as_deref(),
            Some("Sun, 06 Nov 1994 08:49:37 GMT")
        );
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").as_deref(),
            Some("1994-11-06T08:49:37.000Z")
        );
        assert_eq!(parse_http_date("yesterday"), None);
        assert_eq!(
            next_milli("2026-11-18T11:06:40.999Z"),
            "2026-11-18T11:06:41.000Z"
        );
    }
}
