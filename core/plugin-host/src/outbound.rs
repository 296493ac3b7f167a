//! Outbound HTTP grants: the adapter's manifest declares, the operator grants, and the host
//! allows a request only where both agree. An empty list on either side means no network.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// A scheme, host and port that requests may go to. The port may be a wildcard (`*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    /// `None` matches any port.
    pub port: Option<u16>,
}

impl Origin {
    /// Parses `scheme://host[:port|:*][/anything]`. A missing port means the scheme's
    /// default (80 or 443).
    pub fn parse(text: &str) -> Result<Origin, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("`{text}` has no scheme; write it as https://host:port"))?;
        let scheme = scheme.to_ascii_lowercase();
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        if authority.is_empty() {
            return Err(format!("`{text}` has no host"));
        }
        let (host, port) = split_host_port(authority);
        let port = match port {
            Some("*") => None,
            Some(p) => Some(p.parse::<u16>().map_err(|_| format!("`{text}` has an invalid port `{p}`"))?),
            None => Some(default_port(&scheme).ok_or_else(|| format!("`{text}`: give a port for scheme `{scheme}`"))?),
        };
        Ok(Origin { scheme, host: host.to_ascii_lowercase(), port })
    }

    /// Whether a concrete request target falls under this origin.
    pub fn matches(&self, target: &Target) -> bool {
        self.scheme == target.scheme && self.host == target.host && self.port.is_none_or(|p| p == target.port)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}://{}:{}", self.scheme, self.host, p),
            None => write!(f, "{}://{}:*", self.scheme, self.host),
        }
    }
}

/// Where a request actually goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Target {
    /// The target of a request URI, or `None` when it names no host.
    pub fn from_uri(uri: &http::Uri) -> Option<Target> {
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let port = uri.port_u16().or_else(|| default_port(&scheme))?;
        Some(Target { scheme, host, port })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(rest) = authority.strip_prefix('[') {
        // IPv6 literal: [::1]:8080
        let (host, tail) = rest.split_once(']').unwrap_or((rest, ""));
        return (host, tail.strip_prefix(':'));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Expands `{{key}}` placeholders from the adapter's config. A placeholder whose key is
/// absent makes the whole entry unusable, and the error names the key.
pub fn expand_template(template: &str, config: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| format!("unclosed `{{{{` in `{template}`"))?;
        let key = after[..end].trim();
        let value = config.get(key).ok_or_else(|| format!("`{template}` needs config key `{key}`"))?;
        // An endpoint may be written with or without a scheme; keep only the authority
        // when the template already supplies one.
        let value = if out.ends_with("://") { value.split_once("://").map_or(value.as_str(), |(_, a)| a) } else { value.as_str() };
        out.push_str(value.trim_end_matches('/'));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The outbound policy of one plugin.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OutboundPolicy {
    /// The plugin's configured name.
    pub plugin: String,
    /// Origins the manifest declares, after template expansion.
    pub declared: Vec<Origin>,
    /// Manifest entries that could not be expanded, with the reason.
    pub unresolved: Vec<String>,
    /// Origins the operator grants.
    pub granted: Vec<Origin>,
    /// Where the grant lives, for error messages (the config file path).
    pub config_source: String,
}

impl OutboundPolicy {
    /// Builds the policy from the manifest's templates and the operator's grants.
    pub fn new(
        plugin: &str,
        declared_templates: &[String],
        grants: &[String],
        config: &BTreeMap<String, String>,
        config_source: &str,
    ) -> Result<OutboundPolicy, String> {
        let mut declared = Vec::new();
        let mut unresolved = Vec::new();
        for template in declared_templates {
            match expand_template(template, config).and_then(|s| Origin::parse(&s)) {
                Ok(origin) => declared.push(origin),
                Err(reason) => unresolved.push(reason),
            }
        }
        let granted = grants
            .iter()
            .map(|g| Origin::parse(g).map_err(|e| format!("plugins.{plugin}.allow_hosts: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OutboundPolicy { plugin: plugin.to_string(), declared, unresolved, granted, config_source: config_source.to_string() })
    }

    /// Allows the target, or says why not and what would allow it.
    pub fn check(&self, target: &Target) -> Result<(), Denial> {
        let declared = self.declared.iter().any(|o| o.matches(target));
        let granted = self.granted.iter().any(|o| o.matches(target));
        match (declared, granted) {
            (true, true) => Ok(()),
            (true, false) => Err(Denial::NotGranted {
                target: target.clone(),
                fix: format!(
                    "add it to the grants in {}: [plugins.{}] allow_hosts = [\"{}\"]",
                    self.config_source, self.plugin, target
                ),
            }),
            (false, _) => Err(Denial::NotDeclared {
                target: target.clone(),
                declared: self.declared.iter().map(ToString::to_string).collect(),
            }),
        }
    }

    /// The origins a request may go to: declared and granted.
    pub fn effective(&self) -> Vec<String> {
        self.declared
            .iter()
            .filter(|d| self.granted.iter().any(|g| g.scheme == d.scheme && g.host == d.host && (g.port.is_none() || g.port == d.port)))
            .map(ToString::to_string)
            .collect()
    }
}

/// An outbound request the sandbox refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Denial {
    /// The manifest declares it, but the operator has not granted it.
    NotGranted { target: Target, fix: String },
    /// The manifest does not declare it; no grant can widen the manifest.
    NotDeclared { target: Target, declared: Vec<String> },
    /// The request named no host.
    NoHost { uri: String },
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::NotGranted { target, fix } => {
                write!(f, "outbound request to {target} is declared by the adapter but not granted by the operator; to allow it, {fix}")
            }
            Denial::NotDeclared { target, declared } => {
                let declared = if declared.is_empty() { "nothing".to_string() } else { declared.join(", ") };
                write!(
                    f,
                    "outbound request to {target} is not declared in the adapter's manifest (it declares {declared}); \
                     an operator grant cannot widen the manifest, so check the adapter's config (such as its endpoint) or ask its vendor"
                )
            }
            Denial::NoHost { uri } => write!(f, "outbound request to `{uri}` names no host"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(s: &str) -> Target {
        Target::from_uri(&s.parse().unwrap()).unwrap()
    }

    fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn origins_parse_with_default_and_wildcard_ports() {
        assert_eq!(Origin::parse("https://VC.example").unwrap().to_string(), "https://vc.example:443");
        assert_eq!(Origin::parse("http://127.0.0.1:*").unwrap().port, None);
        assert_eq!(Origin::parse("http://[::1]:8080/x").unwrap().host, "::1");
        assert!(Origin::parse("vc.example").is_err());
        assert!(Origin::parse("ftp://x").is_err());
    }

    #[test]
    fn templates_expand_from_config() {
        let c = config(&[("endpoint", "https://vc.lab:8443/")]);
        assert_eq!(expand_template("https://{{endpoint}}", &c).unwrap(), "https://vc.lab:8443");
        assert_eq!(expand_template("{{endpoint}}", &c).unwrap(), "https://vc.lab:8443");
        assert!(expand_template("https://{{missing}}", &c).unwrap_err().contains("missing"));
    }

    #[test]
    fn a_request_needs_both_declaration_and_grant() {
        let c = config(&[("endpoint", "127.0.0.1:9000")]);
        let p = OutboundPolicy::new("vc", &["http://{{endpoint}}".into()], &["http://127.0.0.1:*".into()], &c, "homeward.toml").unwrap();
        assert!(p.check(&target("http://127.0.0.1:9000/sdk")).is_ok());
        // Granted by the wildcard, but not declared by the manifest.
        assert!(matches!(p.check(&target("http://127.0.0.1:9001/")), Err(Denial::NotDeclared { .. })));
        assert_eq!(p.effective(), vec!["http://127.0.0.1:9000".to_string()]);

        let none = OutboundPolicy::new("vc", &["http://{{endpoint}}".into()], &[], &c, "homeward.toml").unwrap();
        let err = none.check(&target("http://127.0.0.1:9000/sdk")).unwrap_err();
        assert!(matches!(err, Denial::NotGranted { .. }));
        assert!(err.to_string().contains("allow_hosts = [\"http://127.0.0.1:9000\"]"), "{err}");
    }

    #[test]
    fn unresolvable_declarations_are_reported_not_allowed() {
        let p = OutboundPolicy::new("vc", &["https://{{endpoint}}".into()], &["https://x:*".into()], &BTreeMap::new(), "h.toml").unwrap();
        assert!(p.declared.is_empty());
        assert_eq!(p.unresolved.len(), 1);
    }
}
