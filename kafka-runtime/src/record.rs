//! The record a listener receives, owned and detached from the consumer.

use std::borrow::Cow;
use std::ffi::{c_char, c_void, CStr};
use std::ptr::NonNull;
use std::sync::Arc;

use rdkafka::bindings::{rd_kafka_header_get_all, rd_kafka_headers_t, rd_kafka_message_headers};
use rdkafka::message::{BorrowedHeaders, BorrowedMessage, Message};
use rdkafka::types::{RDKafkaMessage, RDKafkaRespErr};

/// One record from a topic partition: coordinates, key, value and headers.
///
/// Detached from librdkafka (a consumer must not be dropped while one of its borrowed messages
/// lives), so it can be moved into handlers and other tasks freely.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerRecord {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The offset within the partition.
    pub offset: i64,
    /// The record's timestamp in milliseconds since the epoch, if it has one.
    pub timestamp: Option<i64>,
    /// Whether the timestamp was set by the producer (`CreateTime`) or the broker (`LogAppendTime`).
    pub timestamp_type: TimestampType,
    /// The key, `None` for a null key.
    pub key: Option<Vec<u8>>,
    /// The value, `None` for a null value (a tombstone).
    pub value: Option<Vec<u8>>,
    /// The headers in wire order.
    pub headers: Vec<Header>,
}

/// Who set a record's timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimestampType {
    /// No timestamp.
    NotAvailable,
    /// The producer's clock (`CreateTime`).
    CreateTime,
    /// The broker's clock (`LogAppendTime`).
    LogAppendTime,
}

/// One record header; the value may be null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header name.
    pub key: String,
    /// The header value.
    pub value: Option<Vec<u8>>,
}

impl ConsumerRecord {
    /// `topic-partition@offset`, the way records are named in logs and errors.
    pub fn coordinates(&self) -> String {
        Coordinates(&self.topic, self.partition, self.offset).to_string()
    }

    /// The value of the last header named `name` (Spring's `lastHeader`); `None` if there is
    /// none or its value is null.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .rev()
            .find(|header| header.key == name)
            .and_then(|header| header.value.as_deref())
    }
}

/// A record as read, borrowed from librdkafka's fetch buffer (or from a [`ConsumerRecord`]):
/// extractors decode from the bytes where they lie, and copy only what a handler asks to own.
#[derive(Clone, Copy)]
pub(crate) struct RecordView<'m> {
    pub(crate) topic: &'m Arc<str>,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) timestamp: Option<i64>,
    pub(crate) timestamp_type: TimestampType,
    pub(crate) key: Option<&'m [u8]>,
    pub(crate) value: Option<&'m [u8]>,
    headers: HeaderList<'m>,
}

/// Where a record's headers are. librdkafka parses a message's headers when they are first
/// asked for, and for a message without headers parses again at every asking (allocating): so
/// they are asked for only when something reads them, not for every record.
#[derive(Clone, Copy)]
enum HeaderList<'m> {
    Message(&'m BorrowedMessage<'m>),
    Owned(&'m [Header]),
}

/// The message a handling reads its record's headers from, when first asked (see
/// [`crate::handling::Handling`]); valid while the message is.
#[derive(Clone, Copy)]
pub(crate) struct HeldMessage(NonNull<RDKafkaMessage>);

// SAFETY: a plain address; what is done through it is `HeldMessage::headers`, whose caller
// guarantees the message is alive. librdkafka lets a message be read from any thread.
unsafe impl Send for HeldMessage {}

impl HeldMessage {
    /// The headers of the message, in wire order.
    ///
    /// # Safety
    /// The message must still be alive: not destroyed by its `BorrowedMessage`'s drop.
    pub(crate) unsafe fn headers<'a>(self) -> HeaderIter<'a> {
        let mut native: *mut rd_kafka_headers_t = std::ptr::null_mut();
        // SAFETY: the caller guarantees the message is alive; librdkafka writes the address of
        // its header list (owned by the message) or reports that there is none.
        let error = unsafe { rd_kafka_message_headers(self.0.as_ptr(), &mut native) };
        let list = match NonNull::new(native) {
            Some(native) if error == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR => {
                // SAFETY: rdkafka's `BorrowedHeaders` is this very list seen through a
                // reference (rdkafka builds it by casting the same pointer); it lives as long
                // as the message, which the caller guarantees for 'a.
                HeaderSlice::Wire(unsafe { native.cast::<BorrowedHeaders>().as_ref() })
            }
            _ => HeaderSlice::Owned(&[]),
        };
        HeaderIter { list, index: 0 }
    }
}

impl<'m> RecordView<'m> {
    /// The record `message` holds; `topic` is its partition's topic name, shared.
    pub(crate) fn of_message(message: &'m BorrowedMessage<'_>, topic: &'m Arc<str>) -> Self {
        let (timestamp, timestamp_type) = match message.timestamp() {
            rdkafka::Timestamp::NotAvailable => (None, TimestampType::NotAvailable),
            rdkafka::Timestamp::CreateTime(ms) => (Some(ms), TimestampType::CreateTime),
            rdkafka::Timestamp::LogAppendTime(ms) => (Some(ms), TimestampType::LogAppendTime),
        };
        RecordView {
            topic,
            partition: message.partition(),
            offset: message.offset(),
            timestamp,
            timestamp_type,
            key: message.key(),
            value: message.payload(),
            headers: HeaderList::Message(message),
        }
    }

    pub(crate) fn of_record(record: &'m ConsumerRecord) -> Self {
        RecordView {
            topic: &record.topic,
            partition: record.partition,
            offset: record.offset,
            timestamp: record.timestamp,
            timestamp_type: record.timestamp_type,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: HeaderList::Owned(&record.headers),
        }
    }

    /// The headers in wire order: names that are not UTF-8 decoded lossily (as Kafka's Java
    /// client does), values as they are.
    pub(crate) fn headers(self) -> HeaderIter<'m> {
        let list = match self.headers {
            HeaderList::Message(message) => message
                .headers()
                .map_or(HeaderSlice::Owned(&[]), HeaderSlice::Wire),
            HeaderList::Owned(headers) => HeaderSlice::Owned(headers),
        };
        HeaderIter { list, index: 0 }
    }

    /// The librdkafka message this record is borrowed from, if it is.
    pub(crate) fn held_message(self) -> Option<HeldMessage> {
        match self.headers {
            HeaderList::Message(message) => NonNull::new(message.ptr()).map(HeldMessage),
            HeaderList::Owned(_) => None,
        }
    }

    /// The value of the last header named `name` (Spring's `lastHeader`); `None` if missing or null.
    pub(crate) fn last_header(self, name: &str) -> Option<&'m [u8]> {
        self.headers()
            .filter(|(key, _)| key == name)
            .last()
            .and_then(|(_, value)| value)
    }

    pub(crate) fn coordinates(self) -> Coordinates<'m> {
        Coordinates(self.topic, self.partition, self.offset)
    }

    /// Copies the record out of the buffer it lies in.
    pub(crate) fn to_record(self) -> ConsumerRecord {
        ConsumerRecord {
            topic: Arc::clone(self.topic),
            partition: self.partition,
            offset: self.offset,
            timestamp: self.timestamp,
            timestamp_type: self.timestamp_type,
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.map(<[u8]>::to_vec),
            headers: self.owned_headers(),
        }
    }

    /// The headers, copied.
    pub(crate) fn owned_headers(self) -> Vec<Header> {
        self.headers()
            .map(|(key, value)| Header {
                key: key.into_owned(),
                value: value.map(<[u8]>::to_vec),
            })
            .collect()
    }
}

/// The headers of a [`RecordView`], in wire order.
pub(crate) struct HeaderIter<'m> {
    list: HeaderSlice<'m>,
    index: usize,
}

/// A header list being read.
#[derive(Clone, Copy)]
enum HeaderSlice<'m> {
    Wire(&'m BorrowedHeaders),
    Owned(&'m [Header]),
}

impl<'m> Iterator for HeaderIter<'m> {
    type Item = (Cow<'m, str>, Option<&'m [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        let header = match self.list {
            HeaderSlice::Wire(headers) => wire_header(headers, self.index),
            HeaderSlice::Owned(headers) => headers
                .get(self.index)
                .map(|h| (Cow::Borrowed(h.key.as_str()), h.value.as_deref())),
        };
        self.index += 1;
        header
    }
}

/// Header `index` of a message's header list. Read here rather than through rdkafka's
/// `Headers::try_get`, which panics on a name that is not UTF-8: bytes any producer can send.
fn wire_header(headers: &BorrowedHeaders, index: usize) -> Option<(Cow<'_, str>, Option<&[u8]>)> {
    let native = std::ptr::from_ref(headers).cast::<rd_kafka_headers_t>();
    let mut name: *const c_char = std::ptr::null();
    let mut value: *const c_void = std::ptr::null();
    let mut size = 0;
    // SAFETY: a `BorrowedHeaders` reference is the address of librdkafka's header list of a
    // message it borrows (rdkafka builds it by casting that pointer); the list outlives the borrow.
    let error = unsafe { rd_kafka_header_get_all(native, index, &mut name, &mut value, &mut size) };
    if error != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
        return None;
    }
    // SAFETY: librdkafka stores header names NUL-terminated and values as `size` bytes (null for
    // a null value), both owned by the list that `headers` borrows.
    let (name, value) = unsafe {
        let name = CStr::from_ptr(name).to_bytes();
        let value =
            (!value.is_null()).then(|| std::slice::from_raw_parts(value.cast::<u8>(), size));
        (name, value)
    };
    Some((String::from_utf8_lossy(name), value))
}

/// Formats `topic-partition@offset` without allocating until it is printed.
pub(crate) struct Coordinates<'a>(pub(crate) &'a str, pub(crate) i32, pub(crate) i64);

impl std::fmt::Display for Coordinates<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}@{}", self.0, self.1, self.2)
    }
}
