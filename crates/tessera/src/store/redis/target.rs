//! Where Redis is: one server, a Sentinel-watched master, or a Cluster.
//!
//! URL forms:
//! - `redis://[user:password@]host:port[/db]` and `rediss://…` (TLS): one server.
//! - `redis+sentinel://[user:password@]host:port[,host:port…]/master-name[/db]`:
//!   the sentinels to ask, and the name of the master they watch.
//!   `rediss+sentinel://` talks TLS to the data nodes.
//! - `redis+cluster://[user:password@]host:port[,host:port…]` (or
//!   `rediss+cluster://`): seed nodes of a Cluster.

use std::fmt;

/// A parsed `--redis` URL.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server, by its `redis://` or `rediss://` URL.
    Standalone(String),
    /// Sentinels (as `redis://host:port` URLs) and the watched master's name.
    Sentinel {
        /// Sentinel addresses, as URLs.
        sentinels: Vec<String>,
        /// The master's name in the sentinels' configuration.
        master: String,
        /// Talk TLS to the data nodes.
        tls: bool,
        /// `user:password@` for the data nodes, if any.
        auth: Option<String>,
        /// Database number.
        db: i64,
    },
    /// Cluster seed nodes, as `redis://` or `rediss://` URLs.
    Cluster(Vec<String>),
}

/// Why a `--redis` URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad Redis URL ({0}); use redis://host:port, rediss://…, redis+sentinel://host:port,host:port/master or redis+cluster://host:port,host:port")]
pub struct InvalidRedisUrl(pub String);

impl RedisTarget {
    /// Parses one of the URL forms in the module docs.
    pub fn parse(url: &str) -> Result<Self, InvalidRedisUrl> {
        let bad = |why: &str| InvalidRedisUrl(why.to_owned());
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) => (Some(auth.to_owned()), rest),
            None => (None, rest),
        };
        let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
        let hosts: Vec<&str> = hosts.split(',').map(str::trim).filter(|h| !h.is_empty()).collect();
        if hosts.is_empty() || hosts.iter().any(|h| !h.contains(':') || h.contains(char::is_whitespace)) {
            return Err(bad("every node needs host:port"));
        }
        let with_auth = |tls: bool, host: &str| {
            let scheme = if tls { "rediss" } else { "redis" };
            match &auth {
                Some(a) => format!("{scheme}://{a}@{host}"),
                None => format!("{scheme}://{host}"),
            }
        };
        match scheme {
            "redis" | "rediss" => {
                if hosts.len() != 1 {
                    return Err(bad("several hosts need redis+sentinel:// or redis+cluster://"));
                }
                Ok(Self::Standalone(url.to_owned()))
            }
            "redis+cluster" | "rediss+cluster" => {
                if !path.is_empty() {
                    return Err(bad("a Cluster has no database number"));
                }
                let tls = scheme.starts_with("rediss");
                Ok(Self::Cluster(hosts.iter().map(|h| with_auth(tls, h)).collect()))
            }
            "redis+sentinel" | "rediss+sentinel" => {
                let mut parts = path.split('/');
                let master = parts.next().filter(|m| !m.is_empty()).ok_or_else(|| bad("missing /master-name"))?;
                let db = match parts.next() {
                    None | Some("") => 0,
                    Some(n) => n.parse().map_err(|_| bad("database must be a number"))?,
                };
                Ok(Self::Sentinel {
                    sentinels: hosts.iter().map(|h| format!("redis://{h}")).collect(),
                    master: master.to_owned(),
                    tls: scheme.starts_with("rediss"),
                    auth,
                    db,
                })
            }
            _ => Err(bad("unknown scheme")),
        }
    }
}

impl fmt::Debug for RedisTarget {
    /// Never prints passwords.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hide = |u: &str| match u.split_once("://").and_then(|(s, r)| r.rsplit_once('@').map(|(_, h)| (s, h))) {
            Some((scheme, host)) => format!("{scheme}://***@{host}"),
            None => u.to_owned(),
        };
        match self {
            Self::Standalone(u) => write!(f, "Standalone({})", hide(u)),
            Self::Sentinel { sentinels, master, .. } => write!(f, "Sentinel({sentinels:?}, {master})"),
            Self::Cluster(nodes) => write!(f, "Cluster({:?})", nodes.iter().map(|n| hide(n)).collect::<Vec<_>>()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standalone_urls_pass_through() {
        assert_eq!(
            RedisTarget::parse("redis://127.0.0.1:6379/2").unwrap(),
            RedisTarget::Standalone("redis://127.0.0.1:6379/2".into())
        );
        assert!(matches!(RedisTarget::parse("rediss://u:p@h:6380").unwrap(), RedisTarget::Standalone(_)));
    }

    #[test]
    fn sentinel_urls_name_sentinels_and_master() {
        let t = RedisTarget::parse("redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/mymaster/3").unwrap();
        assert_eq!(
            t,
            RedisTarget::Sentinel {
                sentinels: vec!["redis://10.0.0.1:26379".into(), "redis://10.0.0.2:26379".into()],
                master: "mymaster".into(),
                tls: false,
                auth: Some(":pw".into()),
                db: 3,
            }
        );
        assert!(!format!("{t:?}").contains("pw"));
        assert!(RedisTarget::parse("redis+sentinel://h:1").is_err());
    }

    #[test]
    fn cluster_urls_list_seeds() {
        let t = RedisTarget::parse("redis+cluster://a:7000,b:7001, c:7002").unwrap();
        assert_eq!(
            t,
            RedisTarget::Cluster(vec!["redis://a:7000".into(), "redis://b:7001".into(), "redis://c:7002".into()])
        );
        assert!(RedisTarget::parse("redis+cluster://a:7000/1").is_err());
    }

    #[test]
    fn junk_is_refused() {
        for bad in ["", "localhost:6379", "redis://", "redis://a:1,b:2", "http://a:1", "redis+cluster://host"] {
            assert!(RedisTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
