//! `${name}` and `${name:default}` placeholders in listener attributes, as Spring resolves them.

use std::collections::BTreeMap;

use crate::config::env_var_name;

/// Replaces each `${name}` / `${name:default}` in `text`: from `properties`, else the environment
/// variable `name` or its relaxed form (`app.topic` -> `APP_TOPIC`), else the default.
pub(crate) fn resolve(text: &str, properties: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed placeholder in `{text}`"))?;
        let (name, default) = match after[..end].split_once(':') {
            Some((name, default)) => (name, Some(default)),
            None => (&after[..end], None),
        };
        let relaxed = env_var_name(name);
        let value = properties
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
            .or_else(|| std::env::var(&relaxed).ok())
            .or_else(|| default.map(str::to_owned))
            .ok_or_else(|| {
                format!("placeholder `${{{name}}}` is not set: set property `{name}` or environment variable {relaxed}, or give a default `${{{name}:...}}`")
            })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_resolve_from_properties_then_defaults() {
        let properties = BTreeMap::from([("app.topic".to_owned(), "orders".to_owned())]);
        assert_eq!(resolve("${app.topic}", &properties).unwrap(), "orders");
        assert_eq!(
            resolve("x-${app.topic}-y", &properties).unwrap(),
            "x-orders-y"
        );
        assert_eq!(
            resolve("${missing.key:fallback}", &properties).unwrap(),
            "fallback"
        );
        assert_eq!(resolve("plain", &properties).unwrap(), "plain");
        let error = resolve("${missing.key}", &properties).unwrap_err();
        assert!(error.contains("MISSING_KEY"), "{error}");
        assert!(resolve("${open", &properties).is_err());
    }
}
