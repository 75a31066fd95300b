//! Log output: text or JSON lines on stderr, so `review` can print its answer alone on stdout.
//!
//! `serve` and `dev` write a line per review, tens of thousands a second under load. Written one
//! `write(2)` each, those lines cost a busy worker a tenth of a cache hit, and every write to a
//! pipe wakes whatever reads the log (the container runtime) once per review. So their lines go
//! through [`Batched`]: an in-memory buffer written out in one call when it reaches
//! [`FLUSH_BYTES`], and at least every [`FLUSH_INTERVAL`] by a background thread. Nothing is
//! dropped: a full buffer is written by the thread that filled it, so a log sink that stops
//! accepting writes slows reviews down as it did before, rather than losing audit lines.
//! Warnings and errors, and every line of the one-shot commands, are written at once.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{self, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Written out once this much has accumulated: a few hundred lines per `write(2)`.
pub const FLUSH_BYTES: usize = 64 * 1024;
/// The longest a line waits in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// Installs the global subscriber. `RUST_LOG` wins over `level`; a second call is a no-op.
/// `batched`: for the long-running commands (see the module comment); call [`flush`] before the
/// process exits.
pub fn init(format: LogFormat, level: Option<&str>, batched: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level.unwrap_or("info")));
    // Colours only for a terminal: escape codes in a log file are noise, and cost time per line.
    let ansi = io::IsTerminal::is_terminal(&io::stderr());
    let sink = STDERR.get_or_init(|| Batched::new(io::stderr()));
    if batched {
        sink.start_flusher();
    }
    if batched {
        start_client_noise_summary();
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(sink).with_ansi(ansi);
    let installed = match format {
        LogFormat::Text => builder.finish().with(ClientNoise).with(ReviewLines).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).finish().with(ClientNoise).with(ReviewLines).try_init(),
    };
    // Colours are tracing-subscriber's business: on a terminal the audit line goes through it.
    if installed.is_ok() && !ansi {
        let _ = REVIEW_LINES.set(format);
    }
}

/// The format [`write_review_line`] writes in, once [`init`] has installed our subscriber.
static REVIEW_LINES: OnceLock<LogFormat> = OnceLock::new();

/// Marks the subscriber [`init`] installs: the audit line is written by [`crate::audit`] only
/// while that subscriber is the one in effect (not under a test's or a caller's own).
struct ReviewLines;

impl<S: tracing::Subscriber> Layer<S> for ReviewLines {}

/// Lets `write` append one audit line to the log's buffer, in the configured format, and
/// returns true; false when the line must go through tracing instead (see [`crate::audit`]).
pub(crate) fn write_review_line(write: impl FnOnce(LogFormat, &mut Vec<u8>)) -> bool {
    let (Some(format), Some(sink)) = (REVIEW_LINES.get(), STDERR.get()) else {
        return false;
    };
    if !tracing::dispatcher::get_default(|d| d.is::<ReviewLines>()) {
        return false;
    }
    sink.append(|buffer| write(*format, buffer));
    true
}

/// Connections actix-http closed because of what the client sent, since the last summary.
static CLIENT_NOISE: AtomicU64 = AtomicU64::new(0);

/// How often the count of [`ClientNoise`] events is logged, when there were any.
pub const CLIENT_NOISE_SUMMARY: Duration = Duration::from_secs(60);

/// Keeps a stranger's garbage out of the ERROR log. actix-http logs every connection it closes
/// for a malformed request, an oversized head, a reset or a slow client as
/// `ERROR actix_http::h1::dispatcher: stream error: ...`, so anyone who can connect could fill
/// the log at ERROR level, and drown the errors that are ours. Those events are counted instead
/// and summarised once a [`CLIENT_NOISE_SUMMARY`] as one warning; actix-http itself logs each
/// one at `trace` (`RUST_LOG=actix_http=trace`). Its other errors pass through unchanged.
pub struct ClientNoise;

impl<S: tracing::Subscriber> Layer<S> for ClientNoise {
    fn event_enabled(&self, event: &Event<'_>, _: layer::Context<'_, S>) -> bool {
        if !is_client_noise(event) {
            return true;
        }
        CLIENT_NOISE.fetch_add(1, Ordering::Relaxed);
        false
    }
}

fn is_client_noise(event: &Event<'_>) -> bool {
    struct StreamError(bool);
    impl Visit for StreamError {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0 = format!("{value:?}").starts_with("stream error: ");
            }
        }
    }
    let meta = event.metadata();
    if *meta.level() != Level::ERROR || meta.target() != "actix_http::h1::dispatcher" {
        return false;
    }
    let mut visitor = StreamError(false);
    event.record(&mut visitor);
    visitor.0
}

/// Takes the count of client noise since the last call.
pub fn take_client_noise() -> u64 {
    CLIENT_NOISE.swap(0, Ordering::Relaxed)
}

fn start_client_noise_summary() {
    static STARTED: OnceLock<()> = OnceLock::new();
    if STARTED.set(()).is_err() {
        return;
    }
    // Not from inside the layer: tracing drops events logged while another is being dispatched.
    let _ = std::thread::Builder::new().name("log-client-noise".into()).spawn(|| {
        loop {
            std::thread::sleep(CLIENT_NOISE_SUMMARY);
            report_client_noise();
        }
    });
}

/// Logs the count of [`ClientNoise`] since the last report, if any.
fn report_client_noise() {
    let connections = take_client_noise();
    if connections > 0 {
        tracing::warn!(
            connections,
            "connections closed for malformed, oversized, slow or broken HTTP requests since the last report (each one: RUST_LOG=actix_http=trace)"
        );
    }
}

/// Writes out whatever lines are waiting, after the count of client noise not yet reported.
/// Cheap when there are none.
pub fn flush() {
    report_client_noise();
    if let Some(sink) = STDERR.get() {
        sink.flush_pending();
    }
}

static STDERR: OnceLock<Batched<io::Stderr>> = OnceLock::new();

/// A log sink that batches lines at `info` and below once [`Batched::start_flusher`] has run.
pub struct Batched<W> {
    pending: Mutex<Vec<u8>>,
    /// Held while writing, and while taking `pending` to write it: chunks leave in the order
    /// their lines were logged, and a direct line waits for the lines logged before it.
    out: Mutex<W>,
    batching: OnceLock<()>,
}

impl<W: Write + Send + 'static> Batched<W> {
    /// A sink writing to `out`, line by line until [`Batched::start_flusher`].
    pub fn new(out: W) -> Self {
        Batched { pending: Mutex::new(Vec::new()), out: Mutex::new(out), batching: OnceLock::new() }
    }

    /// From now on, lines at `info` and below are buffered; starts the thread that writes them
    /// out every [`FLUSH_INTERVAL`]. Idempotent.
    pub fn start_flusher(&'static self) {
        if self.batching() {
            return;
        }
        let spawned = std::thread::Builder::new().name("log-flush".into()).spawn(move || {
            loop {
                std::thread::sleep(FLUSH_INTERVAL);
                self.flush_pending();
            }
        });
        // Without the thread a quiet server's last lines would wait for traffic: stay direct.
        if spawned.is_ok() {
            let _ = self.batching.set(());
        }
    }

    fn batching(&self) -> bool {
        self.batching.get().is_some()
    }

    /// Appends one formatted line; writes the buffer out when it is full.
    fn buffer(&self, line: &[u8]) {
        let full = {
            let mut pending = lock(&self.pending);
            pending.extend_from_slice(line);
            pending.len() >= FLUSH_BYTES
        };
        if full {
            self.flush_pending();
        }
    }

    /// Lets `write` append a line to the buffer itself (no copy); writes the buffer out when it
    /// is full, or at once when not batching.
    fn append(&self, write: impl FnOnce(&mut Vec<u8>)) {
        let full = {
            let mut pending = lock(&self.pending);
            write(&mut pending);
            pending.len() >= FLUSH_BYTES
        };
        if full || !self.batching() {
            self.flush_pending();
        }
    }

    /// Writes the waiting lines, then `line`, in one hold of the output.
    fn write_now(&self, line: &[u8]) -> io::Result<()> {
        let mut out = lock(&self.out);
        let pending = std::mem::take(&mut *lock(&self.pending));
        if !pending.is_empty() {
            // A log line that cannot be written has nowhere else to go.
            let _ = out.write_all(&pending);
        }
        out.write_all(line)?;
        out.flush()
    }

    /// Writes out whatever is buffered.
    pub fn flush_pending(&self) {
        let mut out = lock(&self.out);
        let pending = std::mem::take(&mut *lock(&self.pending));
        if !pending.is_empty() {
            let _ = out.write_all(&pending);
            let _ = out.flush();
        }
    }
}

/// A poisoned lock only means a thread panicked while holding it; the bytes are still valid.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What `tracing_subscriber` writes one event into (it formats the whole line first, then
/// makes one `write_all`).
pub struct LineWriter<'a, W: Write + Send + 'static> {
    sink: &'a Batched<W>,
    direct: bool,
}

impl<W: Write + Send + 'static> Write for LineWriter<'_, W> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        if self.direct {
            self.sink.write_now(line)?;
        } else {
            self.sink.buffer(line);
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> Batched<W> {
    fn writer_for(&self, level: Level) -> LineWriter<'_, W> {
        // Warnings and errors are rare and may be the last thing a failing process says.
        LineWriter { sink: self, direct: !self.batching() || level <= Level::WARN }
    }
}

// For the `'static` sink the subscriber holds (it outlives every event).
impl<'a, W: Write + Send + 'static> MakeWriter<'a> for &'static Batched<W> {
    type Writer = LineWriter<'static, W>;

    fn make_writer(&'a self) -> Self::Writer {
        self.writer_for(Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        self.writer_for(*meta.level())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A `Write` whose bytes and number of write calls the test can read.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut r = self.0.lock().unwrap();
            r.0.extend_from_slice(buf);
            r.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn sink() -> (&'static Batched<Recorder>, Recorder) {
        let recorder = Recorder::default();
        (Box::leak(Box::new(Batched::new(recorder.clone()))), recorder)
    }

    fn line(sink: &Batched<Recorder>, level: Level, text: &str) {
        sink.writer_for(level).write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn unbatched_lines_are_written_at_once() {
        let (sink, out) = sink();
        line(sink, Level::INFO, "one\n");
        assert_eq!(out.0.lock().unwrap().0, b"one\n");
    }

    #[test]
    fn batched_lines_leave_together_in_order_and_a_warning_takes_them_along() {
        let (sink, out) = sink();
        sink.batching.set(()).unwrap(); // batching without the timer thread, to control flushes
        line(sink, Level::INFO, "one\n");
        line(sink, Level::INFO, "two\n");
        assert!(out.0.lock().unwrap().0.is_empty(), "info lines wait in the buffer");
        line(sink, Level::WARN, "three\n");
        let (bytes, writes) = out.0.lock().unwrap().clone();
        assert_eq!(bytes, b"one\ntwo\nthree\n", "a warning is written at once, after the lines before it");
        assert_eq!(writes, 2, "the waiting lines went out in one write");
    }

    #[test]
    fn a_full_buffer_is_written_by_the_thread_that_filled_it() {
        let (sink, out) = sink();
        sink.batching.set(()).unwrap();
        let text = "x".repeat(1000) + "\n";
        let lines = FLUSH_BYTES / text.len() + 1;
        for _ in 0..lines {
            line(sink, Level::INFO, &text);
        }
        let (bytes, writes) = out.0.lock().unwrap().clone();
        assert_eq!(bytes.len(), lines * text.len(), "nothing is dropped or left waiting");
        assert_eq!(writes, 1);
    }

    #[test]
    fn the_flusher_writes_waiting_lines_without_more_traffic() {
        let (sink, out) = sink();
        sink.start_flusher();
        line(sink, Level::INFO, "waiting\n");
        // Polls for the outcome; the generous bound only turns a hang into a failure.
        let give_up = std::time::Instant::now() + Duration::from_secs(30);
        while out.0.lock().unwrap().0.is_empty() && std::time::Instant::now() < give_up {
            std::thread::sleep(FLUSH_INTERVAL / 5);
        }
        assert_eq!(out.0.lock().unwrap().0, b"waiting\n");
    }

    #[test]
    fn client_noise_from_actix_is_counted_not_logged_and_other_errors_pass() {
        let (sink, out) = sink();
        let subscriber = tracing_subscriber::fmt().with_writer(sink).with_ansi(false).finish().with(ClientNoise);
        take_client_noise();
        tracing::subscriber::with_default(subscriber, || {
            for err in
                ["request parse error: invalid Header provided", "request parse error: invalid HTTP version specified"]
            {
                tracing::error!(target: "actix_http::h1::dispatcher", "stream error: {}", err);
            }
            tracing::error!(target: "actix_http::h1::dispatcher", "write zero; closing");
            tracing::error!(target: "tokenreview_gateway::x", "stream error: ours");
        });
        let text = String::from_utf8(out.0.lock().unwrap().0.clone()).unwrap();
        assert!(!text.contains("parse error"), "{text}");
        assert!(text.contains("write zero; closing") && text.contains("stream error: ours"), "{text}");
        // A static counter: other tests may only add to it.
        assert!(take_client_noise() >= 2);
    }

    #[test]
    fn flush_pending_empties_the_buffer() {
        let (sink, out) = sink();
        sink.batching.set(()).unwrap();
        line(sink, Level::INFO, "last words\n");
        sink.flush_pending();
        assert_eq!(out.0.lock().unwrap().0, b"last words\n");
    }
}
