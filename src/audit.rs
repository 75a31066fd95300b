//! The audit line: one `token review` log line per review, at `info`, the record of who was
//! authenticated as whom (operators rely on it).
//!
//! It is the one event the server logs tens of thousands of times a second, and through
//! tracing-subscriber's formatter it cost about a fifth of a cache hit: every field through
//! `fmt::Debug` or a JSON map, the timestamp through `fmt`. So when the process logs through
//! [`crate::telemetry::init`] without colours, the line is written here instead, field by field
//! straight into the batched writer's buffer, byte for byte what the formatter writes (the
//! tests below compare the two). Otherwise (a terminal, a test's own subscriber) it goes through
//! `tracing::info!` as before. Either way `RUST_LOG` and `logging.level` decide whether it is
//! written at all (`tracing::enabled!` for [`TARGET`], first).

use std::cell::Cell;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::LogFormat;
use crate::fingerprint::Fingerprint;

/// What the line is logged under, as before it was written here: `RUST_LOG` directives name it.
pub const TARGET: &str = "tokenreview_gateway::routes::token_review";

/// The fields of one audit line, in the order the text format writes them.
pub struct ReviewLine<'a> {
    /// The request's number since the process started.
    pub request_id: u64,
    /// The token's fingerprint.
    pub token: Fingerprint,
    /// The issuer that handled the token, or empty.
    pub issuer: &'a str,
    /// `authenticated`, `rejected` or `unavailable`.
    pub result: &'static str,
    /// Why not authenticated, or empty.
    pub reason: &'static str,
    /// The username, or empty (escaped here: it may hold anything a claim held).
    pub user: &'a str,
    /// Whether the verdict came from the result cache.
    pub cached: bool,
    /// The request's `apiVersion`.
    pub api_version: &'static str,
    /// How long the review took.
    pub micros: u64,
}

impl ReviewLine<'_> {
    /// Logs the line, unless `RUST_LOG` or `logging.level` leave out `info` for [`TARGET`].
    pub fn log(&self) {
        if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
            return;
        }
        if !crate::telemetry::write_review_line(|format, out| self.write(format, SystemTime::now(), out)) {
            tracing::info!(
                target: TARGET,
                request_id = self.request_id,
                token = %self.token,
                issuer = self.issuer,
                result = self.result,
                reason = self.reason,
                user = %self.user.escape_debug(),
                cached = self.cached,
                api_version = self.api_version,
                micros = self.micros,
                "token review"
            );
        }
    }

    /// Appends the line, newline included, as tracing-subscriber's formatter would write the
    /// event above (without colours, without spans).
    pub fn write(&self, format: LogFormat, now: SystemTime, out: &mut Vec<u8>) {
        match format {
            LogFormat::Text => self.write_text(now, out),
            LogFormat::Json => self.write_json(now, out),
        }
    }

    fn write_text(&self, now: SystemTime, out: &mut Vec<u8>) {
        timestamp(now, out);
        out.extend_from_slice(b"  INFO ");
        out.extend_from_slice(TARGET.as_bytes());
        out.extend_from_slice(b": token review request_id=");
        decimal(self.request_id, out);
        out.extend_from_slice(b" token=");
        fingerprint(self.token, out);
        out.extend_from_slice(b" issuer=");
        debug_str(self.issuer, out);
        out.extend_from_slice(b" result=");
        debug_str(self.result, out);
        out.extend_from_slice(b" reason=");
        debug_str(self.reason, out);
        out.extend_from_slice(b" user=");
        escape_debug(self.user, out);
        out.extend_from_slice(if self.cached { b" cached=true" } else { b" cached=false" });
        out.extend_from_slice(b" api_version=");
        debug_str(self.api_version, out);
        out.extend_from_slice(b" micros=");
        decimal(self.micros, out);
        out.push(b'\n');
    }

    /// tracing-subscriber's JSON, flattened: timestamp, level, the fields in the order the event
    /// declares them (message first), target.
    fn write_json(&self, now: SystemTime, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"timestamp\":\"");
        timestamp(now, out);
        out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"token review\",\"request_id\":");
        decimal(self.request_id, out);
        out.extend_from_slice(b",\"token\":\"");
        fingerprint(self.token, out);
        out.extend_from_slice(b"\",\"issuer\":");
        json_str(self.issuer, out);
        out.extend_from_slice(b",\"result\":");
        json_str(self.result, out);
        out.extend_from_slice(b",\"reason\":");
        json_str(self.reason, out);
        out.extend_from_slice(b",\"user\":");
        if plain(self.user, true) {
            json_str(self.user, out);
        } else {
            json_str(&self.user.escape_debug().to_string(), out);
        }
        out.extend_from_slice(if self.cached { b",\"cached\":true" } else { b",\"cached\":false" });
        out.extend_from_slice(b",\"api_version\":");
        json_str(self.api_version, out);
        out.extend_from_slice(b",\"micros\":");
        decimal(self.micros, out);
        out.extend_from_slice(b",\"target\":");
        json_str(TARGET, out);
        out.extend_from_slice(b"}\n");
    }
}

/// Printable ASCII that neither `{:?}` nor `escape_debug` changes (`'` only matters to the latter).
fn plain(s: &str, single_quote_escaped: bool) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' && !(single_quote_escaped && b == b'\''))
}

/// `{:?}` of a string.
fn debug_str(s: &str, out: &mut Vec<u8>) {
    if plain(s, false) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = write!(out, "{s:?}");
    }
}

/// `{}` of `s.escape_debug()`.
fn escape_debug(s: &str, out: &mut Vec<u8>) {
    if plain(s, true) {
        out.extend_from_slice(s.as_bytes());
    } else {
        let _ = write!(out, "{}", s.escape_debug());
    }
}

/// A JSON string, escaped as serde_json escapes it (what tracing-subscriber uses).
fn json_str(s: &str, out: &mut Vec<u8>) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

fn fingerprint(f: Fingerprint, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in f.bytes() {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

fn decimal(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends `n` as exactly `width` digits (it is below 10^width).
fn fixed(n: u64, width: usize, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + width, b'0');
    let mut n = n;
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

thread_local! {
    /// The last second formatted on this thread and its `YYYY-MM-DDTHH:MM:SS`: at tens of
    /// thousands of lines a second, the date changes once in thousands of lines.
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

/// RFC 3339 in UTC with microseconds, as tracing-subscriber's `SystemTime` timer writes it
/// (`2026-12-06T06:20:53.123456Z`), for years 0 to 9999.
fn timestamp(now: SystemTime, out: &mut Vec<u8>) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (cached, mut text) = SECOND.get();
    if cached != secs {
        let mut v = Vec::with_capacity(19);
        let (year, month, day) = civil_from_days(secs / 86_400);
        let rem = secs % 86_400;
        fixed(year.min(9999), 4, &mut v);
        v.push(b'-');
        fixed(month, 2, &mut v);
        v.push(b'-');
        fixed(day, 2, &mut v);
        v.push(b'T');
        fixed(rem / 3600, 2, &mut v);
        v.push(b':');
        fixed(rem / 60 % 60, 2, &mut v);
        v.push(b':');
        fixed(rem % 60, 2, &mut v);
        text.copy_from_slice(&v);
        SECOND.set((secs, text));
    }
    out.extend_from_slice(&text);
    out.push(b'.');
    fixed(u64::from(since.subsec_micros()), 6, out);
    out.push(b'Z');
}

/// Year, month, day of a count of days since 1970-01-01 (Howard Hinnant's `civil_from_days`,
/// for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    /// What tracing-subscriber writes; `make_writer` hands out clones.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The same event through tracing-subscriber, configured as `telemetry::init` configures it.
    fn through_tracing(format: LogFormat, line: &ReviewLine<'_>) -> String {
        let captured = Captured::default();
        let writer = {
            let c = captured.clone();
            move || c.clone()
        };
        let builder = tracing_subscriber::fmt().with_writer(writer).with_ansi(false);
        let dispatch = match format {
            LogFormat::Text => tracing::Dispatch::new(builder.finish()),
            LogFormat::Json => tracing::Dispatch::new(builder.json().flatten_event(true).finish()),
        };
        // No fast path in a scoped subscriber: `log` goes through `tracing::info!`.
        tracing::dispatcher::with_default(&dispatch, || line.log());
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    fn ours(format: LogFormat, line: &ReviewLine<'_>, now: SystemTime) -> String {
        let mut out = Vec::new();
        line.write(format, now, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// The timestamp is the one part the two cannot share: compare it apart, by shape.
    fn split_timestamp(format: LogFormat, line: &str) -> (String, String) {
        let start = if format == LogFormat::Json { "{\"timestamp\":\"".len() } else { 0 };
        let end = start + "2026-12-06T06:20:53.123456Z".len();
        (line[start..end].to_string(), format!("{}{}", &line[..start], &line[end..]))
    }

    fn sample<'a>(issuer: &'a str, user: &'a str) -> ReviewLine<'a> {
        ReviewLine {
            request_id: 18_446_744_073_709_551_615,
            token: Fingerprint::of("eyJhbGciOiJSUzI1NiJ9.e30.c2ln"),
            issuer,
            result: "authenticated",
            reason: "",
            user,
            cached: true,
            api_version: "authentication.k8s.io/v1",
            micros: 0,
        }
    }

    #[test]
    fn the_line_is_what_tracing_subscriber_writes_in_both_formats() {
        let users = [
            "alice@example.com",
            "",
            "O'Brien \"the admin\" \\ back",
            "evil\r\n{\"message\":\"token review\",\"result\":\"authenticated\"}",
            "tab\there\u{1b}[31m bell\u{7}",
            "Zoë 名前 \u{301}combining \u{200b}zero-width \u{7f}del",
        ];
        let issuers = ["https://issuer.example.com", "", "https://example.com/a\"b\\c\u{0}"];
        for format in [LogFormat::Text, LogFormat::Json] {
            for user in users {
                for issuer in issuers {
                    for (cached, result, reason) in
                        [(true, "authenticated", ""), (false, "rejected", "expired"), (false, "unavailable", "busy")]
                    {
                        let line = ReviewLine { cached, result, reason, micros: 1234, ..sample(issuer, user) };
                        let expected = through_tracing(format, &line);
                        let got = ours(format, &line, SystemTime::now());
                        let (_, expected_rest) = split_timestamp(format, &expected);
                        let (stamp, got_rest) = split_timestamp(format, &got);
                        assert_eq!(got_rest, expected_rest, "{format:?}");
                        assert!(stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T', "{stamp}");
                        assert_eq!(got.matches('\n').count(), 1, "one line, whatever the user holds: {got}");
                    }
                }
            }
        }
    }

    #[test]
    fn json_lines_parse_with_every_field() {
        let line = sample("https://issuer.example.com", "evil\n\"x\"");
        let v: serde_json::Value = serde_json::from_str(&ours(LogFormat::Json, &line, SystemTime::now())).unwrap();
        assert_eq!(v["message"], "token review");
        assert_eq!(v["request_id"], 18_446_744_073_709_551_615u64);
        assert_eq!(v["token"], line.token.to_string());
        assert_eq!(v["user"], "evil\\n\\\"x\\\"");
        assert_eq!(v["level"], "INFO");
    }

    #[test]
    fn timestamps_are_rfc3339_utc_like_tracing_subscribers() {
        let at = |secs: u64, micros: u64| {
            let mut out = Vec::new();
            timestamp(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros), &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(at(1_798_761_599, 999_999), "2026-12-31T23:59:59.999999Z");
        assert_eq!(at(1_798_761_600, 0), "2027-01-01T00:00:00.000000Z");
        assert_eq!(at(4_107_542_400, 120), "2100-03-01T00:00:00.000120Z");
        // The same second again comes from the per-thread cache.
        assert_eq!(at(1_798_761_599, 1), "2026-12-31T23:59:59.000001Z");
    }
}
