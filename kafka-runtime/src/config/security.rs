//! TLS and SASL: Spring Boot's `spring.kafka.security.*`, `spring.kafka.ssl.*` and
//! `spring.kafka.properties.sasl.*` keys, mapped onto librdkafka's `security.protocol`, `ssl.*`
//! and `sasl.*`.
//!
//! | Spring key                         | librdkafka property                          |
//! |------------------------------------|----------------------------------------------|
//! | `security.protocol`                | `security.protocol`                          |
//! | `ssl.trust-store-location` (PEM)   | `ssl.ca.location`                            |
//! | `ssl.trust-store-certificates`     | `ssl.ca.pem`                                 |
//! | `ssl.key-store-location` (PKCS12)  | `ssl.keystore.location`                      |
//! | `ssl.key-store-password`           | `ssl.keystore.password`                      |
//! | `ssl.key-store-location` (PEM)     | `ssl.certificate.location`, `ssl.key.location` |
//! | `ssl.key-store-certificate-chain`  | `ssl.certificate.pem`                        |
//! | `ssl.key-store-key`                | `ssl.key.pem`                                |
//! | `ssl.key-password`                 | `ssl.key.password`                           |
//! | `properties.sasl.mechanism`        | `sasl.mechanism` (passed unchanged)          |
//! | `properties.sasl.jaas.config`      | `sasl.username`, `sasl.password` (from the JAAS line) |
//!
//! Java key stores (JKS) and PKCS12 trust stores are Java formats librdkafka cannot read: such a
//! configuration fails at startup with the `openssl`/`keytool` command that converts it.
//! TLS needs kafka-runtime's `ssl` cargo feature, SASL its `sasl` feature.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::values::{deserialize_from_str, Properties, PropertyMap};

/// A password or key: never shown by `Debug`, logs, `--print-config` or errors.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the client that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Self {
        Secret(text.to_owned())
    }
}

/// `[kafka.security]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct SecuritySettings {
    /// `protocol`: `PLAINTEXT` (default), `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    #[serde(default)]
    pub protocol: Option<SecurityProtocol>,
}

/// `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecurityProtocol {
    /// No TLS, no authentication.
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL authentication without TLS.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    fn librdkafka_value(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_uppercase().replace('-', "_").as_str() {
            "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
            "SSL" => Ok(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Ok(SecurityProtocol::SaslSsl),
            _ => Err(format!(
                "unknown security protocol `{text}`, expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
            )),
        }
    }
}

deserialize_from_str!(SecurityProtocol);

/// `ssl.key-store-type` / `ssl.trust-store-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreType {
    /// PEM files (certificates and keys as text).
    Pem,
    /// A PKCS#12 archive (`.p12`, `.pfx`).
    Pkcs12,
    /// A Java key store, which librdkafka cannot read.
    Jks,
}

impl StoreType {
    /// The type named in config, else guessed from the file's extension (PEM unless it says
    /// otherwise, as `openssl` writes them).
    fn of(explicit: Option<StoreType>, path: &Path) -> StoreType {
        explicit.unwrap_or_else(|| {
            let ext = path
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase());
            match ext.as_deref() {
                Some("p12" | "pfx") => StoreType::Pkcs12,
                Some("jks") => StoreType::Jks,
                _ => StoreType::Pem,
            }
        })
    }
}

impl FromStr for StoreType {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_uppercase().as_str() {
            "PEM" => Ok(StoreType::Pem),
            "PKCS12" | "P12" => Ok(StoreType::Pkcs12),
            "JKS" => Ok(StoreType::Jks),
            _ => Err(format!(
                "unknown store type `{text}`, expected PEM, PKCS12 or JKS"
            )),
        }
    }
}

deserialize_from_str!(StoreType);

/// `[kafka.ssl]`: the client's TLS key material and the certificates it trusts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct SslSettings {
    /// `trust-store-location`: the CA certificates (PEM) that sign the brokers' certificates.
    #[serde(default)]
    pub trust_store_location: Option<PathBuf>,
    /// `trust-store-type`: `PEM` (default unless the extension says otherwise).
    #[serde(default)]
    pub trust_store_type: Option<StoreType>,
    /// `trust-store-password`: not needed for PEM; accepted for Spring configurations.
    #[serde(default)]
    pub trust_store_password: Option<Secret>,
    /// `trust-store-certificates`: the CA certificates as PEM text.
    #[serde(default)]
    pub trust_store_certificates: Option<String>,
    /// `key-store-location`: the client certificate and key, PKCS12 or PEM (mutual TLS).
    #[serde(default)]
    pub key_store_location: Option<PathBuf>,
    /// `key-store-type`: `PKCS12` or `PEM` (default from the extension).
    #[serde(default)]
    pub key_store_type: Option<StoreType>,
    /// `key-store-password`: the PKCS12 key store's password.
    #[serde(default)]
    pub key_store_password: Option<Secret>,
    /// `key-password`: the private key's password.
    #[serde(default)]
    pub key_password: Option<Secret>,
    /// `key-store-certificate-chain`: the client certificate chain as PEM text.
    #[serde(default)]
    pub key_store_certificate_chain: Option<String>,
    /// `key-store-key`: the client's private key as PEM text.
    #[serde(default)]
    pub key_store_key: Option<Secret>,
}

/// A problem found in the security settings: the key (relative to the `kafka` tree) and why.
pub(crate) struct Problem {
    pub(crate) key: String,
    pub(crate) message: String,
}

fn problem(key: &str, message: impl Into<String>) -> Problem {
    Problem {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// The JAAS line of `properties.sasl.jaas.config`, reduced to what librdkafka takes.
struct Jaas {
    username: String,
    password: String,
}

impl Jaas {
    /// Parses `org.apache.kafka.common.security.plain.PlainLoginModule required
    /// username="u" password="p";` (and the SCRAM module's equivalent).
    fn parse(text: &str) -> Result<Jaas, String> {
        let module = text.split_whitespace().next().unwrap_or_default();
        if !(module.ends_with("PlainLoginModule") || module.ends_with("ScramLoginModule")) {
            return Err(format!(
                "login module `{module}` is not supported; PlainLoginModule and ScramLoginModule are \
                 (for OAUTHBEARER or GSSAPI, set librdkafka's sasl.* properties under kafka.properties)"
            ));
        }
        let option = |name: &str| -> Option<String> {
            let start = text.find(&format!("{name}=\""))? + name.len() + 2;
            let end = text[start..].find('"')?;
            Some(text[start..start + end].to_owned())
        };
        match (option("username"), option("password")) {
            (Some(username), Some(password)) => Ok(Jaas { username, password }),
            _ => Err("expected username=\"...\" and password=\"...\" in the JAAS line".to_owned()),
        }
    }
}

/// The librdkafka property that carries the JAAS line, which librdkafka does not know.
pub(crate) const JAAS_CONFIG: &str = "sasl.jaas.config";

/// Checks what librdkafka could not use, before any client is created.
pub(crate) fn validate(
    protocol: Option<SecurityProtocol>,
    ssl: &SslSettings,
    properties: &PropertyMap,
) -> Result<(), Problem> {
    if let Some(protocol) = protocol {
        if protocol.uses_tls() && !cfg!(feature = "ssl") {
            return Err(problem(
                "security.protocol",
                format!(
                    "`{}` needs TLS support: enable kafka-runtime's `ssl` cargo feature",
                    protocol.librdkafka_value().to_ascii_uppercase()
                ),
            ));
        }
        if protocol.uses_sasl() && !cfg!(feature = "sasl") {
            return Err(problem(
                "security.protocol",
                format!(
                    "`{}` needs SASL support: enable kafka-runtime's `sasl` cargo feature",
                    protocol.librdkafka_value().to_ascii_uppercase()
                ),
            ));
        }
    }
    if let Some(path) = &ssl.trust_store_location {
        match StoreType::of(ssl.trust_store_type, path) {
            StoreType::Pem => {}
            StoreType::Pkcs12 => {
                return Err(problem(
                    "ssl.trust-store-location",
                    format!(
                        "librdkafka reads trusted certificates from PEM only; export them with \
                         `openssl pkcs12 -in {} -nokeys -out ca.pem` and point trust-store-location at ca.pem",
                        path.display()
                    ),
                ))
            }
            StoreType::Jks => {
                return Err(problem(
                    "ssl.trust-store-location",
                    format!(
                        "a Java key store (JKS) cannot be read by librdkafka; export its certificates with \
                         `keytool -exportcert -rfc -keystore {} -alias <alias> -file ca.pem`",
                        path.display()
                    ),
                ))
            }
        }
    }
    if let Some(path) = &ssl.key_store_location {
        if StoreType::of(ssl.key_store_type, path) == StoreType::Jks {
            return Err(problem(
                "ssl.key-store-location",
                format!(
                    "a Java key store (JKS) cannot be read by librdkafka; convert it with \
                     `keytool -importkeystore -srckeystore {} -destkeystore client.p12 -deststoretype PKCS12`",
                    path.display()
                ),
            ));
        }
    }
    if let Some(jaas) = properties.get(JAAS_CONFIG) {
        Jaas::parse(&jaas.to_string())
            .map_err(|message| problem(&format!("properties.{JAAS_CONFIG}"), message))?;
    }
    Ok(())
}

/// The librdkafka properties of these settings (validated before).
pub(crate) fn properties(
    protocol: Option<SecurityProtocol>,
    ssl: &SslSettings,
    properties: &PropertyMap,
) -> Properties {
    let mut props = Properties::new();
    let mut set = |key: &str, value: &str| {
        props.insert(key.to_owned(), value.to_owned());
    };
    if let Some(protocol) = protocol {
        set("security.protocol", protocol.librdkafka_value());
    }
    if let Some(path) = &ssl.trust_store_location {
        set("ssl.ca.location", &path.to_string_lossy());
    }
    if let Some(pem) = &ssl.trust_store_certificates {
        set("ssl.ca.pem", pem);
    }
    if let Some(path) = &ssl.key_store_location {
        let path = path.to_string_lossy();
        if StoreType::of(ssl.key_store_type, Path::new(path.as_ref())) == StoreType::Pkcs12 {
            set("ssl.keystore.location", &path);
            if let Some(password) = &ssl.key_store_password {
                set("ssl.keystore.password", password.expose());
            }
        } else {
            // One PEM file with the certificate chain and the key, as Spring's PEM key stores.
            set("ssl.certificate.location", &path);
            set("ssl.key.location", &path);
        }
    }
    if let Some(pem) = &ssl.key_store_certificate_chain {
        set("ssl.certificate.pem", pem);
    }
    if let Some(key) = &ssl.key_store_key {
        set("ssl.key.pem", key.expose());
    }
    if let Some(password) = &ssl.key_password {
        set("ssl.key.password", password.expose());
    }
    if let Some(jaas) = properties
        .get(JAAS_CONFIG)
        .and_then(|line| Jaas::parse(&line.to_string()).ok())
    {
        set("sasl.username", &jaas.username);
        set("sasl.password", &jaas.password);
    }
    props
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaas_lines_give_username_and_password() {
        let jaas = Jaas::parse(
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="s3cr=t;";"#,
        )
        .expect("a SCRAM line parses");
        assert_eq!(
            (jaas.username.as_str(), jaas.password.as_str()),
            ("alice", "s3cr=t;")
        );
        let error = Jaas::parse("com.sun.security.auth.module.Krb5LoginModule required;")
            .err()
            .expect("Kerberos is refused");
        assert!(error.contains("Krb5LoginModule"), "{error}");
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let ssl = SslSettings {
            key_store_password: Some(Secret::from("hunter2")),
            ..SslSettings::default()
        };
        assert!(!format!("{ssl:?}").contains("hunter2"));
    }
}
