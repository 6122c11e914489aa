//! Browser `Origin` allow-list: exact origins (`https://app.example.com`) and subdomain
//! wildcards (`*.example.com`, or `https://*.example.com` to pin the scheme).

pub struct OriginPolicy {
    rules: Vec<Rule>,
}

enum Rule {
    Exact(String),
    Suffix { scheme: Option<String>, suffix: String },
}

impl OriginPolicy {
    pub fn new(allowed: &[String]) -> Self {
        let rules = allowed
            .iter()
            .map(|entry| {
                let entry = entry.trim().trim_end_matches('/').to_ascii_lowercase();
                let (scheme, rest) = match entry.split_once("://") {
                    Some((scheme, rest)) => (Some(scheme.to_owned()), rest.to_owned()),
                    None => (None, entry.clone()),
                };
                match rest.strip_prefix("*.") {
                    Some(domain) => Rule::Suffix {
                        scheme,
                        suffix: format!(".{domain}"),
                    },
                    None => Rule::Exact(entry),
                }
            })
            .collect();
        Self { rules }
    }

    /// Whether a request with this `Origin` header may connect. No rules: everyone. No header
    /// (not a browser): allowed, since only browsers are subject to cross-site requests.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if self.rules.is_empty() {
            return true;
        }
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        let Some((scheme, authority)) = origin.split_once("://") else {
            return false;
        };
        let host = authority
            .rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(authority, |(h, _)| h);
        self.rules.iter().any(|rule| match rule {
            Rule::Exact(exact) => *exact == origin,
            Rule::Suffix { scheme: wanted, suffix } => {
                wanted.as_deref().is_none_or(|w| w == scheme)
                    && host.ends_with(suffix.as_str())
                    && host.len() > suffix.len()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rules: &[&str]) -> OriginPolicy {
        OriginPolicy::new(&rules.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn exact_origins_match_exactly() {
        let p = policy(&["https://app.example.com"]);
        assert!(p.allows(Some("https://app.example.com")));
        assert!(p.allows(Some("HTTPS://APP.EXAMPLE.COM/")));
        assert!(!p.allows(Some("http://app.example.com")));
        assert!(!p.allows(Some("https://app.example.com.evil.net")));
        assert!(!p.allows(Some("https://app.example.com:8443")));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let p = policy(&["*.example.com"]);
        assert!(p.allows(Some("https://a.example.com")));
        assert!(p.allows(Some("http://deep.a.example.com:3000")));
        assert!(!p.allows(Some("https://example.com")));
        assert!(!p.allows(Some("https://evilexample.com")));
        assert!(!p.allows(Some("https://example.com.evil.net")));
        let scheme = policy(&["https://*.example.com"]);
        assert!(!scheme.allows(Some("http://a.example.com")));
    }

    #[test]
    fn no_rules_or_no_header_allow() {
        assert!(policy(&[]).allows(Some("https://anything.test")));
        assert!(policy(&["https://a.test"]).allows(None));
        assert!(!policy(&["https://a.test"]).allows(Some("null")));
    }
}
