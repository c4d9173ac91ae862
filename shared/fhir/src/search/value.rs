//! Search values: what a search parameter extracts from a resource, and the codecs that turn
//! them into index values whose text order is their value order (`docs/architecture.md`,
//! "FHIR", "Search", "Index values").
//!
//! - strings are compared case- and accent-insensitively: [`normalize`] decomposes (NFD), drops
//!   combining marks and lowercases;
//! - dates are ranges of UTC milliseconds ([`DateRange`]): `2020` is the whole year, a time
//!   without a zone is UTC (this server's zone), a Period is open where it has no bound;
//! - numbers and quantity values are exact decimals ([`Dec`]) with the precision they were
//!   written with (`100` means 99.5 to 100.5 when searched for);
//! - [`Dec::sortable`] and [`DateRange`]'s [`instant`] are the index encodings.

use std::cmp::Ordering;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::types::{ResourceId, ResourceType};

/// Longest index value kept (characters); longer values are indexed by their prefix and
/// checked on the resource.
pub const MAX_INDEXED_CHARS: usize = 128;

/// Text for comparisons: NFD-decomposed, combining marks dropped, lowercased, control
/// characters replaced by spaces, whitespace runs collapsed, trimmed.
pub fn normalize(s: &str) -> String {
    use icu_normalizer::DecomposingNormalizerBorrowed;
    let nfd = DecomposingNormalizerBorrowed::new_nfd().normalize(s);
    let mut out = String::with_capacity(nfd.len());
    let mut space = false;
    for c in nfd.chars() {
        if is_combining(c) {
            continue;
        }
        if c.is_whitespace() || c.is_control() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// The combining diacritical mark blocks (what NFD splits accents into).
fn is_combining(c: char) -> bool {
    matches!(c as u32,
        0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

/// `s` without control characters (index values never contain the key separators), cut to
/// [`MAX_INDEXED_CHARS`].
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_INDEXED_CHARS)
        .collect()
}

/// An exact decimal: `m` x 10^`e`, with the precision it was written with (`1.50` is
/// `150 x 10^-2`). Equality and order are numeric (`1.50 == 1.5`).
#[derive(Debug, Clone, Copy)]
pub struct Dec {
    pub m: i128,
    pub e: i32,
}

/// Most significant digits a decimal may have (FHIR decimals are at most 18 in practice).
const MAX_DIGITS: usize = 30;

impl Dec {
    /// A FHIR decimal (`-1.50`, `1e2`, `0.001`); `None` when it is not one.
    pub fn parse(s: &str) -> Option<Dec> {
        let (mant, exp) = match s.find(['e', 'E']) {
            Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
            None => (s, 0),
        };
        let (neg, mant) = match mant.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, mant.strip_prefix('+').unwrap_or(mant)),
        };
        let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
        if int.is_empty() && frac.is_empty()
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
            || !(-1000..=1000).contains(&exp)
        {
            return None;
        }
        let digits = format!("{int}{frac}");
        let significant = digits.trim_start_matches('0');
        if significant.len() > MAX_DIGITS {
            return None;
        }
        let m: i128 = if significant.is_empty() {
            0
        } else {
            significant.parse().ok()?
        };
        let mut d = Dec {
            m: if neg { -m } else { m },
            e: exp - frac.len() as i32,
        };
        if s.contains(['e', 'E']) {
            // Exponent notation carries one more digit of precision than its mantissa shows:
            // the R4 search page reads `1e2` as [95, 105).
            d.m *= 10;
            d.e -= 1;
        }
        Some(d)
    }

    /// From a JSON number.
    pub fn from_json(n: &serde_json::Number) -> Option<Dec> {
        Dec::parse(&n.to_string())
    }

    /// Digits and exponent of the value with trailing zeros removed: `(sign, digits, exp)`
    /// with the value `0.d1d2... x 10^exp`; zero is `(0, "", 0)`.
    fn normal(self) -> (i8, String, i32) {
        if self.m == 0 {
            return (0, String::new(), 0);
        }
        let sign = if self.m < 0 { -1 } else { 1 };
        let digits = self.m.unsigned_abs().to_string();
        let exp = self.e + digits.len() as i32;
        (sign, digits.trim_end_matches('0').to_owned(), exp)
    }

    /// Text whose order is the numbers' order: `o` for zero, `p<exp+5000><digits>` for
    /// positive numbers, `n<4999-exp><9's complement of the digits>~` for negative ones.
    pub fn sortable(self) -> String {
        let (sign, digits, exp) = self.normal();
        let exp = exp.clamp(-5000, 4999);
        match sign {
            0 => "o".to_owned(),
            1 => format!("p{:04}{digits}", exp + 5000),
            _ => {
                let comp: String = digits
                    .bytes()
                    .map(|b| char::from(b'9' - (b - b'0') + b'0'))
                    .collect();
                format!("n{:04}{comp}~", 4999 - exp)
            }
        }
    }

    /// Half a unit of the last digit written: `100` -> 0.5, `1.50` -> 0.005, `1e2` -> 50.
    fn half_unit(self) -> Dec {
        Dec {
            m: 5,
            e: self.e - 1,
        }
    }

    fn add(self, o: Dec) -> Option<Dec> {
        let e = self.e.min(o.e);
        let scale =
            |d: Dec| -> Option<i128> { d.m.checked_mul(10i128.checked_pow((d.e - e) as u32)?) };
        Some(Dec {
            m: scale(self)?.checked_add(scale(o)?)?,
            e,
        })
    }

    fn neg(self) -> Dec {
        Dec {
            m: -self.m,
            e: self.e,
        }
    }

    /// The range a search value stands for: `[v - half unit, v + half unit)`.
    pub fn precision_range(self) -> Option<(Dec, Dec)> {
        let h = self.half_unit();
        Some((self.add(h.neg())?, self.add(h)?))
    }

    /// `v` +/- 10% of `v` (the `ap` prefix).
    pub fn approx_range(self) -> Option<(Dec, Dec)> {
        let tenth = Dec {
            m: self.m.abs(),
            e: self.e - 1,
        };
        let (a, b) = (self.add(tenth.neg())?, self.add(tenth)?);
        Some((a.min(b), a.max(b)))
    }
}

impl Ord for Dec {
    fn cmp(&self, o: &Self) -> Ordering {
        let (sa, da, ea) = self.normal();
        let (sb, db, eb) = o.normal();
        sa.cmp(&sb).then_with(|| {
            let mag = ea.cmp(&eb).then_with(|| da.cmp(&db));
            if sa < 0 { mag.reverse() } else { mag }
        })
    }
}

impl PartialEq for Dec {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}

impl Eq for Dec {}

impl PartialOrd for Dec {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// A time range in UTC milliseconds since the epoch, both ends included; open ends are
/// `i64::MIN` / `i64::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub lo: i64,
    pub hi: i64,
}

/// The earliest and latest instants an index value can spell (open ends are stored as these).
const MIN_MS: i64 = -62_135_596_800_000; // 0001-01-01T00:00:00Z
const MAX_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z

/// An instant as index text: fixed-width UTC with milliseconds (`timestamp` format), so text
/// order is time order. Open ends are the first and last instant of years 1 and 9999.
pub fn instant(ms: i64) -> String {
    let ms = ms.clamp(MIN_MS, MAX_MS);
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    timestamp::format(t)
}

/// Milliseconds of an index instant.
pub fn parse_instant(s: &str) -> Option<i64> {
    let t = timestamp::parse(s)?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

impl DateRange {
    /// A FHIR date, dateTime or instant (`2020`, `2020-03`, `2020-03-04`,
    /// `2020-03-04T10:00`, `2020-03-04T10:00:00.5+02:00`) as the range it covers. A time
    /// without a zone is read as UTC.
    pub fn parse(s: &str) -> Option<DateRange> {
        let (date, time) = match s.split_once('T') {
            Some((d, t)) => (d, Some(t)),
            None => (s, None),
        };
        let mut parts = date.split('-');
        let year: i32 = num(parts.next()?, 4)?;
        let month: Option<u8> = match parts.next() {
            Some(m) => Some(num(m, 2)?),
            None => None,
        };
        let day: Option<u8> = match parts.next() {
            Some(d) => Some(num(d, 2)?),
            None => None,
        };
        if parts.next().is_some() || year < 1 || day.is_some() && month.is_none() {
            return None;
        }
        let Some(time) = time else {
            let (lo, hi) = match (month, day) {
                (None, _) => (ymd(year, 1, 1)?, ymd(year, 12, 31)?),
                (Some(m), None) => {
                    let first = ymd(year, m, 1)?;
                    let last = ymd(year, m, time::util::days_in_month(first.month(), year))?;
                    (first, last)
                }
                (Some(m), Some(d)) => (ymd(year, m, d)?, ymd(year, m, d)?),
            };
            return Some(DateRange {
                lo: day_ms(lo, Time::MIDNIGHT, UtcOffset::UTC),
                hi: day_ms(hi, Time::MIDNIGHT, UtcOffset::UTC) + 86_400_000 - 1,
            });
        };
        let day = ymd(year, month?, day?)?;
        // The zone: Z, +hh:mm or -hh:mm; none means UTC.
        let (clock, offset) = match time.find(['Z', '+', '-']) {
            Some(i) => (&time[..i], zone(&time[i..])?),
            None => (time, UtcOffset::UTC),
        };
        let mut hms = clock.split(':');
        let h: u8 = num(hms.next()?, 2)?;
        let mi: u8 = num(hms.next()?, 2)?;
        let (sec, frac) = match hms.next() {
            Some(s) => {
                let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
                (Some(num::<u8>(whole, 2)?), frac)
            }
            None => (None, ""),
        };
        if hms.next().is_some() || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let t = Time::from_hms(h, mi, sec.unwrap_or(0)).ok()?;
        let base = day_ms(day, t, offset);
        let span = match sec {
            None => 60_000,
            Some(_) if frac.is_empty() => 1000,
            Some(_) => {
                let digits = frac.len().min(3);
                let ms: i64 = format!("{:0<3}", &frac[..digits]).parse().ok()?;
                let lo = base + ms;
                let span = 10i64.pow(3 - digits as u32);
                return Some(DateRange {
                    lo,
                    hi: lo + span - 1,
                });
            }
        };
        Some(DateRange {
            lo: base,
            hi: base + span - 1,
        })
    }

    /// The range `lo`..`hi` of two optional bounds (a Period): a missing bound is open. A
    /// period that ends before it starts (invalid, per-1) covers both ends.
    pub fn between(lo: Option<DateRange>, hi: Option<DateRange>) -> Option<DateRange> {
        match (lo, hi) {
            (None, None) => None,
            (Some(a), Some(b)) => Some(DateRange {
                lo: a.lo.min(b.lo),
                hi: a.hi.max(b.hi),
            }),
            (a, b) => Some(DateRange {
                lo: a.map_or(i64::MIN, |r| r.lo),
                hi: b.map_or(i64::MAX, |r| r.hi),
            }),
        }
    }

    /// The index text of both ends.
    pub fn bounds_text(self) -> (String, String) {
        (instant(self.lo), instant(self.hi))
    }
}

fn num<T: std::str::FromStr>(s: &str, width: usize) -> Option<T> {
    (s.len() == width && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn ymd(y: i32, m: u8, d: u8) -> Option<Date> {
    Date::from_calendar_date(y, Month::try_from(m).ok()?, d).ok()
}

fn zone(s: &str) -> Option<UtcOffset> {
    if s == "Z" {
        return Some(UtcOffset::UTC);
    }
    let sign: i8 = if s.starts_with('-') { -1 } else { 1 };
    let (h, m) = s[1..].split_once(':')?;
    UtcOffset::from_hms(sign * num::<i8>(h, 2)?, sign * num::<i8>(m, 2)?, 0).ok()
}

fn day_ms(d: Date, t: Time, offset: UtcOffset) -> i64 {
    let at = PrimitiveDateTime::new(d, t).assume_offset(offset);
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

/// A token: a code with its system (Coding, CodeableConcept, Identifier, ContactPoint, code,
/// boolean), or only a text (`CodeableConcept.text`) for `:text`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Token {
    pub system: Option<String>,
    pub code: Option<String>,
    /// `Coding.display`, `CodeableConcept.text` or `Identifier.type.text`, for `:text`.
    pub display: Option<String>,
    /// An Identifier's `type` codings `(system, code)`, for `:of-type`.
    pub types: Vec<(Option<String>, String)>,
}

/// A reference's target.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ref {
    /// `Type/id` on this server (a relative reference).
    pub local: Option<(ResourceType, ResourceId)>,
    /// An absolute URL or canonical (without `|version`).
    pub url: Option<String>,
    /// `Reference.identifier`, for `:identifier`.
    pub identifier: Option<Token>,
}

/// A quantity (Quantity, Age, Duration, Money, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity {
    pub value: Dec,
    pub system: Option<String>,
    pub code: Option<String>,
    pub unit: Option<String>,
}

/// A value one search parameter extracts from a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchValue {
    String(String),
    Token(Token),
    Reference(Ref),
    Date(DateRange),
    Number(Dec),
    Quantity(Quantity),
    Uri(String),
    /// One combination of a composite parameter's component values (from one focus).
    Composite(Vec<SearchValue>),
}

/// A relative reference `Type/id` (or `Type/id/_history/n`).
pub fn parse_local(s: &str) -> Option<(ResourceType, ResourceId)> {
    let mut it = s.split('/');
    let t = ResourceType::parse(it.next()?)?;
    let id = ResourceId::parse(it.next()?)?;
    match (it.next(), it.next(), it.next()) {
        (None, _, _) => Some((t, id)),
        (Some("_history"), Some(_), None) => Some((t, id)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Dec {
        Dec::parse(s).unwrap()
    }

    #[test]
    fn decimals_order_and_encode_in_the_same_order() {
        let xs = [
            "-1000", "-100.5", "-100", "-1.5", "-1.25", "-1.2", "-0.001", "0", "0.001", "0.01",
            "1", "1.2", "1.25", "1.5", "2", "10", "99.99", "100", "1e3", "1000.5",
        ];
        for w in xs.windows(2) {
            let (a, b) = (d(w[0]), d(w[1]));
            assert!(a < b, "{} < {}", w[0], w[1]);
            assert!(
                a.sortable() < b.sortable(),
                "{} {} vs {} {}",
                w[0],
                a.sortable(),
                w[1],
                b.sortable()
            );
        }
        assert_eq!((d("1.50").m, d("1.50").e), (150, -2));
        assert_eq!(d("1.50").cmp(&d("1.5")), Ordering::Equal);
        assert_eq!(d("1.50").sortable(), d("1.5").sortable());
        assert_eq!(d("0.0").sortable(), "o");
        for bad in ["", "-", ".", "1.2.3", "abc", "1e", "1x", "--1"] {
            assert_eq!(Dec::parse(bad), None, "{bad}");
        }
        assert_eq!(Dec::parse(&"9".repeat(40)), None);
    }

    #[test]
    fn search_precision_follows_the_digits_written() {
        // The FHIR search page: 100 means [99.5, 100.5); 100.00 means [99.995, 100.005);
        // 1e2 means [95, 105).
        assert_eq!(d("100").precision_range(), Some((d("99.5"), d("100.5"))));
        assert_eq!(
            d("100.00").precision_range(),
            Some((d("99.995"), d("100.005")))
        );
        assert_eq!(d("1e2").precision_range(), Some((d("95"), d("105"))));
        assert_eq!(d("100").approx_range(), Some((d("90"), d("110"))));
        assert_eq!(d("-100").approx_range(), Some((d("-110"), d("-90"))));
    }

    #[test]
    fn dates_are_ranges_of_their_precision() {
        let r = |s: &str| {
            let r = DateRange::parse(s).unwrap_or_else(|| panic!("{s}"));
            (instant(r.lo), instant(r.hi))
        };
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            r("2020"),
            pair("2020-01-01T00:00:00.000Z", "2020-12-31T23:59:59.999Z")
        );
        assert_eq!(
            r("2020-02"),
            pair("2020-02-01T00:00:00.000Z", "2020-02-29T23:59:59.999Z")
        );
        assert_eq!(
            r("2021-02"),
            pair("2021-02-01T00:00:00.000Z", "2021-02-28T23:59:59.999Z")
        );
        assert_eq!(
            r("2020-03-04"),
            pair("2020-03-04T00:00:00.000Z", "2020-03-04T23:59:59.999Z")
        );
        assert_eq!(
            r("2020-03-04T10:00"),
            pair("2020-03-04T10:00:00.000Z", "2020-03-04T10:00:59.999Z")
        );
        assert_eq!(
            r("2020-03-04T10:00:05+02:00"),
            pair("2020-03-04T08:00:05.000Z", "2020-03-04T08:00:05.999Z")
        );
        assert_eq!(
            r("2020-03-04T10:00:05.5Z"),
            pair("2020-03-04T10:00:05.500Z", "2020-03-04T10:00:05.599Z")
        );
        assert_eq!(
            r("2020-03-04T10:00:05.123456-05:00"),
            pair("2020-03-04T15:00:05.123Z", "2020-03-04T15:00:05.123Z")
        );
        for bad in [
            "",
            "20",
            "2020-13",
            "2020-02-30",
            "2020-1-01",
            "2020-01-01T25:00",
            "2020-01-01T10:00+2",
            "x",
            "2020-01-01T10:00:00.x",
        ] {
            assert_eq!(DateRange::parse(bad), None, "{bad}");
        }
        let open = DateRange::between(DateRange::parse("2020"), None).unwrap();
        assert_eq!(instant(open.hi), "9999-12-31T23:59:59.999Z");
        assert_eq!(
            parse_instant("2020-01-01T00:00:00.000Z"),
            Some(1_577_836_800_000)
        );
    }

    #[test]
    fn strings_normalize_case_accents_and_spaces() {
        assert_eq!(normalize("  Müller\tCHÁVEZ  Ñandú "), "muller chavez nandu");
        assert_eq!(normalize("Åsa-Lisa"), "asa-lisa");
        assert_eq!(clean("a\u{1f}b"), "a b");
        assert_eq!(clean(&"x".repeat(500)).len(), MAX_INDEXED_CHARS);
    }

    #[test]
    fn local_references_parse() {
        let (t, id) = parse_local("Patient/p1/_history/2").unwrap();
        assert_eq!((t.as_str(), id.as_str()), ("Patient", "p1"));
        assert!(parse_local("Patient").is_none());
        assert!(parse_local("Foo/1").is_none());
        assert!(parse_local("Patient/1/x").is_none());
    }
}
