//! libpq's multi-host connection strings, which Patroni, pg_auto_failover and other failover
//! setups document: several hosts tried in order on every (re)connect, the first whose session
//! is what `target_session_attrs` asks for chosen. Both forms libpq reads:
//! `postgres://u:pw@a:5432,b:5433/db?target_session_attrs=read-write` and
//! `host=a,b port=5432,5433 user=u dbname=db target_session_attrs=read-write`.
//!
//! Each host becomes a single-host URL the driver reads, with the same user, password,
//! database and parameters; `target_session_attrs` becomes [`SessionAttrs`], which the
//! connection code checks on each session it opens.

use std::fmt;

/// What a session must be for a connection to take it (libpq's `target_session_attrs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAttrs {
    /// The first host that accepts the login (libpq's default).
    Any,
    /// A session that takes writes by default (`transaction_read_only` off).
    ReadWrite,
    /// A session that does not take writes by default.
    ReadOnly,
    /// A server not in recovery.
    Primary,
    /// A server in recovery.
    Standby,
    /// A standby if any host is one, else any host.
    PreferStandby,
}

impl SessionAttrs {
    const NAMES: &[(&str, Self)] = &[
        ("any", Self::Any),
        ("read-write", Self::ReadWrite),
        ("read-only", Self::ReadOnly),
        ("primary", Self::Primary),
        ("standby", Self::Standby),
        ("prefer-standby", Self::PreferStandby),
    ];

    fn parse(value: &str) -> Result<Self, String> {
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, attrs)| *attrs)
            .ok_or_else(|| {
                format!(
                    "target_session_attrs = `{value}` is not one libpq knows; use one of {}",
                    Self::NAMES
                        .iter()
                        .map(|(name, _)| *name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    /// Whether a session of a server `in_recovery`, `read_only` by default, will do. For
    /// [`Self::PreferStandby`], the first pass over the hosts takes only a standby.
    pub fn accepts(self, in_recovery: bool, read_only: bool, first_pass: bool) -> bool {
        match self {
            Self::Any => true,
            Self::ReadWrite => !read_only,
            Self::ReadOnly => read_only,
            Self::Primary => !in_recovery,
            Self::Standby => in_recovery,
            Self::PreferStandby => in_recovery || !first_pass,
        }
    }
}

impl fmt::Display for SessionAttrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::NAMES
            .iter()
            .find(|(_, attrs)| attrs == self)
            .map_or("any", |(name, _)| name);
        f.write_str(name)
    }
}

/// The hosts of a connection string, in order, each as a single-host URL, and what the
/// session must be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Hosts {
    pub urls: Vec<String>,
    pub attrs: SessionAttrs,
}

/// `text` (a URL or a key/value string) split into its hosts. A URL with one host and no
/// `target_session_attrs` comes back as it was.
pub(crate) fn split(text: &str) -> Result<Hosts, String> {
    if is_key_value(text) {
        return from_key_value(text);
    }
    from_url(text)
}

/// A libpq key/value string: no scheme, and `key=value` words.
pub(crate) fn is_key_value(text: &str) -> bool {
    !text.contains("://")
        && text
            .split_whitespace()
            .next()
            .is_some_and(|word| word.contains('='))
}

fn from_url(url: &str) -> Result<Hosts, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(single(url));
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), authority),
    };
    let (tail, attrs) = take_session_attrs(tail)?;
    let urls = hosts
        .split(',')
        .map(|host| {
            if host.is_empty() {
                return Err(
                    "an empty host in the host list (two commas, or one at an end)".to_owned(),
                );
            }
            Ok(format!("{scheme}://{userinfo}{host}{tail}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Hosts { urls, attrs })
}

fn single(url: &str) -> Hosts {
    Hosts {
        urls: vec![url.to_owned()],
        attrs: SessionAttrs::Any,
    }
}

/// The path and query without `target_session_attrs`, and its value.
fn take_session_attrs(tail: &str) -> Result<(String, SessionAttrs), String> {
    let Some((path, query)) = tail.split_once('?') else {
        return Ok((tail.to_owned(), SessionAttrs::Any));
    };
    let mut attrs = SessionAttrs::Any;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.strip_prefix("target_session_attrs=") {
            Some(value) => attrs = SessionAttrs::parse(value)?,
            None => kept.push(pair),
        }
    }
    let tail = if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    Ok((tail, attrs))
}

/// A key/value string as single-host URLs: `host` and `port` lists paired as libpq pairs them
/// (one port for every host, or one per host), the other keys as the URLs' parameters.
fn from_key_value(text: &str) -> Result<Hosts, String> {
    let pairs = key_values(text)?;
    let get = |key: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let attrs = get("target_session_attrs").map_or(Ok(SessionAttrs::Any), SessionAttrs::parse)?;
    let hosts: Vec<&str> = get("host").unwrap_or("localhost").split(',').collect();
    let ports: Vec<&str> = get("port").unwrap_or("5432").split(',').collect();
    if ports.len() != 1 && ports.len() != hosts.len() {
        return Err(format!(
            "{} hosts but {} ports: give one port for all hosts, or one per host",
            hosts.len(),
            ports.len()
        ));
    }
    let mut url = url::Url::parse("postgres://localhost").expect("a valid base URL");
    if let Some(user) = get("user") {
        url.set_username(user)
            .map_err(|()| "the user cannot go in a URL".to_owned())?;
    }
    if let Some(password) = get("password") {
        url.set_password(Some(password))
            .map_err(|()| "the password cannot go in a URL".to_owned())?;
    }
    url.set_path(get("dbname").unwrap_or_default());
    for (key, value) in &pairs {
        if !matches!(
            key.as_str(),
            "host" | "port" | "user" | "password" | "dbname" | "target_session_attrs"
        ) {
            url.query_pairs_mut().append_pair(key, value);
        }
    }
    let urls = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or("5432");
            host_url(&url, host, port)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Hosts { urls, attrs })
}

/// `base` pointed at `host` (a name, an address, or a socket directory) and `port`.
fn host_url(base: &url::Url, host: &str, port: &str) -> Result<String, String> {
    let mut url = base.clone();
    let port: u16 = port
        .parse()
        .map_err(|_| format!("the port `{port}` is not a number"))?;
    if host.starts_with('/') {
        url.query_pairs_mut().append_pair("host", host);
    } else if host.is_empty() {
        return Err("an empty host in the host list".to_owned());
    } else {
        url.set_host(Some(host))
            .map_err(|e| format!("the host `{host}` is not valid: {e}"))?;
    }
    url.set_port(Some(port))
        .map_err(|()| "a port cannot go in this URL".to_owned())?;
    Ok(url.to_string())
}

/// `key = value` pairs, values optionally single-quoted with `\'` and `\\` escapes.
fn key_values(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("`{key}` has no `=` and value"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("the value of `{key}` has no closing quote")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_host_url_comes_back_as_it_was() {
        let url = "postgres://app:pw@db:5432/prod?sslmode=require";
        assert_eq!(split(url).unwrap(), single(url));
    }

    #[test]
    fn a_multi_host_url_gives_a_url_per_host_and_the_session_attrs() {
        let hosts = split(
            "postgres://app:p%40w@a:5432,b,[::1]:5433/prod?sslmode=require&target_session_attrs=read-write",
        )
        .unwrap();
        assert_eq!(hosts.attrs, SessionAttrs::ReadWrite);
        assert_eq!(
            hosts.urls,
            [
                "postgres://app:p%40w@a:5432/prod?sslmode=require",
                "postgres://app:p%40w@b/prod?sslmode=require",
                "postgres://app:p%40w@[::1]:5433/prod?sslmode=require",
            ]
        );
    }

    #[test]
    fn key_value_strings_pair_hosts_and_ports_as_libpq_does() {
        let hosts = split(
            "host=a,b port=5432,5433 user=app password='s3 \\'cret' dbname=prod \
             target_session_attrs=primary sslmode=require",
        )
        .unwrap();
        assert_eq!(hosts.attrs, SessionAttrs::Primary);
        assert_eq!(
            hosts.urls,
            [
                "postgres://app:s3%20'cret@a:5432/prod?sslmode=require",
                "postgres://app:s3%20'cret@b:5433/prod?sslmode=require",
            ]
        );
        let one_port = split("host=a,b port=6432 dbname=prod").unwrap();
        assert_eq!(
            one_port.urls,
            ["postgres://a:6432/prod", "postgres://b:6432/prod"]
        );
    }

    #[test]
    fn mistakes_are_refused_saying_what_is_wrong() {
        let wrong = |text: &str| split(text).unwrap_err();
        assert!(wrong("postgres://a,,b/db").contains("empty host"));
        assert!(wrong("postgres://a,b/db?target_session_attrs=master").contains("read-write"));
        assert!(wrong("host=a,b,c port=1,2").contains("3 hosts but 2 ports"));
        assert!(wrong("host=a password='open").contains("closing quote"));
        assert!(wrong("host=a port=x").contains("not a number"));
    }

    #[test]
    fn session_attrs_accept_as_libpq_does() {
        use SessionAttrs::*;
        // (in recovery, read only by default)
        let primary = (false, false);
        let standby = (true, true);
        for (attrs, takes_primary, takes_standby) in [
            (Any, true, true),
            (ReadWrite, true, false),
            (ReadOnly, false, true),
            (Primary, true, false),
            (Standby, false, true),
        ] {
            assert_eq!(
                attrs.accepts(primary.0, primary.1, true),
                takes_primary,
                "{attrs}"
            );
            assert_eq!(
                attrs.accepts(standby.0, standby.1, true),
                takes_standby,
                "{attrs}"
            );
        }
        assert!(!PreferStandby.accepts(false, false, true));
        assert!(PreferStandby.accepts(false, false, false));
        assert!(PreferStandby.accepts(true, true, true));
    }
}
