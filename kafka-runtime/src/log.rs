//! Logging: librdkafka's own lines forwarded to `tracing` (target `librdkafka`), and the line
//! format of `run()`'s subscriber, which adds the record a handler is handling to its lines.

use std::fmt::{self, Write as _};

use rdkafka::config::RDKafkaLogLevel;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::container::RECORD_SPAN_TARGET;
use crate::handling::{self, Field, Handling};

pub(crate) fn librdkafka(client: &str, level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", client, facility, "{message}");
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", client, facility, "{message}")
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", client, facility, "{message}");
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!(target: "librdkafka", client, facility, "{message}")
        }
    }
}

/// The line format of `run()`'s subscriber: tracing-subscriber's own (`text` or `json`), plus the
/// record the task that writes the line is handling: `listener`, `topic`, `partition`, `offset`,
/// and `attempt` (on a redelivery) and `correlation_id` (when the record has one).
///
/// The record comes from the handler's task-local, read only when a line is written: unlike a
/// span per record, it costs nothing for records that log nothing. A line already inside the
/// record's span (`listener.record-span` at an enabled level) carries them there and gets
/// nothing more.
pub(crate) struct WithRecord<T> {
    plain: Format<T>,
    ansi: Format<T>,
}

impl WithRecord<Full> {
    pub(crate) fn text() -> Self {
        WithRecord {
            plain: Format::default().with_ansi(false),
            ansi: Format::default().with_ansi(true),
        }
    }
}

impl WithRecord<Json> {
    pub(crate) fn json() -> Self {
        let json = || {
            Format::default()
                .json()
                .with_current_span(true)
                .with_span_list(false)
        };
        WithRecord {
            plain: json(),
            ansi: json(),
        }
    }
}

/// How the record's fields are added to a line of a format.
pub(crate) trait RecordFields {
    /// Adds the fields to `line`, a whole line without its newline.
    fn add(line: &mut String, handling: &Handling, ansi: bool) -> fmt::Result;
}

impl RecordFields for Full {
    fn add(line: &mut String, handling: &Handling, ansi: bool) -> fmt::Result {
        for (name, value) in handling.fields() {
            if ansi {
                write!(line, " \x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m")?;
            } else {
                write!(line, " {name}=")?;
            }
            match value {
                Field::Number(n) => write!(line, "{n}")?,
                text => write!(line, "{:?}", text.to_string())?,
            }
        }
        Ok(())
    }
}

impl RecordFields for Json {
    fn add(line: &mut String, handling: &Handling, _: bool) -> fmt::Result {
        let Some(object) = line.strip_suffix('}') else {
            return Ok(());
        };
        let mut record = serde_json::Map::new();
        for (name, value) in handling.fields() {
            let value = match value {
                Field::Number(n) => serde_json::Value::from(n),
                text => serde_json::Value::from(text.to_string()),
            };
            record.insert(name.to_owned(), value);
        }
        let record = serde_json::Value::Object(record);
        *line = format!("{object},\"record\":{record}}}");
        Ok(())
    }
}

impl<S, N, T> FormatEvent<S, N> for WithRecord<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    T: RecordFields,
    Format<T>: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ansi = writer.has_ansi_escapes();
        let inner = if ansi { &self.ansi } else { &self.plain };
        let in_record_span = ctx.event_scope().is_some_and(|mut scope| {
            scope.any(|span| {
                span.name() == "record" && span.metadata().target() == RECORD_SPAN_TARGET
            })
        });
        if in_record_span {
            return inner.format_event(ctx, writer, event);
        }
        let with_record = handling::current(|handling| {
            let mut line = String::new();
            inner.format_event(ctx, Writer::new(&mut line), event)?;
            let newline = line.ends_with('\n');
            if newline {
                line.pop();
            }
            T::add(&mut line, handling, ansi)?;
            if newline {
                line.push('\n');
            }
            Ok::<_, fmt::Error>(line)
        });
        match with_record {
            Some(line) => writer.write_str(&line?),
            None => inner.format_event(ctx, writer, event),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::handling::DeliveredBy;
    use crate::record::{ConsumerRecord, Header, RecordView, TimestampType};

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lines").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        fn take(&self) -> String {
            String::from_utf8(std::mem::take(&mut *self.0.lock().expect("lines"))).expect("UTF-8")
        }
    }

    fn handling() -> Handling {
        let record = ConsumerRecord {
            topic: "orders".into(),
            partition: 2,
            offset: 7,
            timestamp: None,
            timestamp_type: TimestampType::NotAvailable,
            key: None,
            value: None,
            headers: vec![Header {
                key: "correlation_id".to_owned(),
                value: Some(b"abc-1".to_vec()),
            }],
        };
        let delivered_by = DeliveredBy { task: 1, epoch: 0 };
        Handling::new(
            "on_order",
            &RecordView::of_record(&record),
            (2, delivered_by),
            "correlation_id",
        )
    }

    /// Logs "handled" inside a handling, inside the record span, and outside any.
    fn log_three_ways(dispatch: tracing::Dispatch) {
        tracing::dispatcher::with_default(&dispatch, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            let handled = handling::Handled::new(
                handling(),
                tracing::Span::none(),
                Box::pin(async {
                    tracing::info!(n = 1, "handled");
                    let span =
                        tracing::info_span!(target: RECORD_SPAN_TARGET, "record", offset = 7);
                    span.in_scope(|| tracing::info!(n = 2, "handled"));
                }),
            );
            assert!(runtime.block_on(handled).is_ok());
            tracing::info!(n = 3, "handled");
        });
    }

    #[test]
    fn text_lines_of_a_handler_carry_its_record_once() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .event_format(WithRecord::text())
            .finish();
        log_three_ways(tracing::Dispatch::new(subscriber));
        let text = lines.take();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].ends_with(
                "handled n=1 listener=\"on_order\" topic=\"orders\" partition=2 offset=7 \
                 attempt=2 correlation_id=\"abc-1\""
            ),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains("record{offset=7}"), "{}", lines[1]);
        assert!(
            !lines[1].contains("listener="),
            "once, in the span: {}",
            lines[1]
        );
        assert!(lines[2].ends_with("handled n=3"), "{}", lines[2]);
    }

    #[test]
    fn json_lines_of_a_handler_carry_a_record_object() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .json()
            .event_format(WithRecord::json())
            .finish();
        log_three_ways(tracing::Dispatch::new(subscriber));
        let text = lines.take();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON object"))
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(
            lines[0]["record"],
            serde_json::json!({
                "listener": "on_order", "topic": "orders", "partition": 2, "offset": 7,
                "attempt": 2, "correlation_id": "abc-1"
            })
        );
        assert_eq!(lines[0]["fields"]["n"], 1);
        assert_eq!(lines[1]["span"]["offset"], 7);
        assert!(lines[1].get("record").is_none(), "once, in the span");
        assert!(lines[2].get("record").is_none(), "{}", lines[2]);
    }
}
