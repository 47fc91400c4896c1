//! The startup check that the configured cluster answers, and why not when it does not: a dead
//! broker, an untrusted certificate or rejected credentials each get their own error.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::ClientContext;

use crate::config::{client, KafkaSettings};
use crate::error::Error;

/// One metadata request of the startup check.
const ATTEMPT: Duration = Duration::from_secs(1);

/// Messages kept from the startup check: enough for the connection attempts of its timeout.
const KEPT: usize = 64;

/// Remembers what librdkafka reported while connecting; its messages name no secret.
#[derive(Default)]
struct Witness {
    messages: Mutex<Vec<String>>,
}

impl Witness {
    fn record(&self, message: &str) {
        if let Ok(mut messages) = self.messages.lock() {
            if messages.len() == KEPT {
                messages.remove(0);
            }
            messages.push(message.to_owned());
        }
    }

    /// The newest message that tells a security problem, with what to fix.
    fn security_problem(&self) -> Option<(&'static str, String)> {
        let messages = self.messages.lock().ok()?;
        messages
            .iter()
            .rev()
            .find_map(|message| security_problem(message).map(|p| (p, message.clone())))
    }
}

impl ClientContext for Witness {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            self.record(message);
        }
        crate::log::librdkafka("startup-check", level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.record(&format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Witness {}

/// Fails, naming the servers and the reason, when the cluster does not answer within `timeout`.
pub(crate) async fn check(
    settings: &KafkaSettings,
    bootstrap: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let probe: BaseConsumer<Witness> = client::client_config(&settings.admin_properties(bootstrap))
        .set("allow.auto.create.topics", "false")
        .create_with_context(Witness::default())
        .map_err(Error::kafka("cannot create the startup check's client"))?;
    let answer = tokio::task::spawn_blocking(move || {
        // Short attempts, so that a refused certificate or password is reported at once rather
        // than after the whole timeout.
        let started = Instant::now();
        loop {
            let result = probe.fetch_metadata(None, ATTEMPT).map(|_| ());
            if result.is_ok() {
                return (result, None);
            }
            // librdkafka hands error events to the context only when the client is polled.
            let _ = probe.poll(Duration::ZERO);
            let security = probe.context().security_problem();
            if security.is_some() || started.elapsed() >= timeout {
                return (result, security);
            }
        }
    })
    .await;
    let (result, security) = match answer {
        Ok(answer) => answer,
        Err(join) => {
            return Err(Error::Listener {
                listener: "startup".to_owned(),
                message: format!("the broker check panicked: {join}"),
            })
        }
    };
    let Err(source) = result else {
        return Ok(());
    };
    if let Some((problem, detail)) = security {
        return Err(Error::Security {
            servers: bootstrap.to_owned(),
            problem: problem.to_owned(),
            detail,
        });
    }
    Err(Error::Unreachable {
        servers: bootstrap.to_owned(),
        timeout_secs: timeout.as_secs(),
        source,
    })
}

/// What an operator should fix, when librdkafka's last message was a TLS or SASL failure.
fn security_problem(message: &str) -> Option<&'static str> {
    if message.contains("certificate verify failed") {
        Some(
            "the broker's TLS certificate is not trusted: set kafka.ssl.trust-store-location \
             (PEM) to the CA certificate that signed it",
        )
    } else if message.contains("SSL handshake failed") || message.contains("SSL transport error") {
        Some("the TLS handshake with the broker failed (kafka.security.protocol, kafka.ssl.*)")
    } else if message.contains("SASL authentication error")
        || message.contains("Authentication failed")
    {
        Some(
            "the broker rejected the SASL credentials: check the user name and password in \
             kafka.properties.sasl.jaas.config and kafka.properties.sasl.mechanism",
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::security_problem;

    #[test]
    fn librdkafka_messages_become_what_to_fix() {
        let untrusted = "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified";
        assert!(security_problem(untrusted).is_some_and(|p| p.contains("not trusted")));
        let rejected = "sasl_plaintext://127.0.0.1:9092/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512";
        assert!(security_problem(rejected).is_some_and(|p| p.contains("SASL credentials")));
        assert_eq!(security_problem("Connection refused"), None);
    }
}
